using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Tmem.CrashHost;

/// <summary>
/// The ack file: one text line per event, appended under one lock, each line handed to the
/// kernel (<c>write(2)</c>) before the call returns, so a SIGKILL loses no line that was written
/// (set <c>TMEM_CRASH_FSYNC=1</c> to also fsync each line, which only a power cut would need).
/// File order is real-time order: an issue line is written before its operation starts and an
/// ack line after its operation completed.
/// <code>
/// R run pid mode seed            a host run starts (its store is open and READY was printed)
/// I seq op label obj index timestamp
///                                operation seq is about to start; op is D/S/Z (put of a data,
///                                same-filled or zero page; its version is run &lt;&lt; 32 | seq),
///                                F (flush page) or O (flush object; index is -1)
/// A seq result timestamp         operation seq completed (acknowledged): a put's PutStatus,
///                                a flush page's found (0/1), a flush object's page count;
///                                timestamp is Stopwatch.GetTimestamp() (CLOCK_MONOTONIC)
/// </code>
/// Issue sequence numbers are assigned under the lock, so they follow file order.
/// </summary>
public sealed class Journal : IDisposable
{
    private readonly Lock _lock = new();
    private readonly FileStream _file;
    private readonly StreamWriter _writer;
    private readonly bool _fsync;
    private long _seq;

    public Journal(string path, bool fsync)
    {
        _file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, 4096);
        _writer = new StreamWriter(_file, new UTF8Encoding(false), 1024) { AutoFlush = false, NewLine = "\n" };
        _fsync = fsync;
    }

    /// <summary>The run after the last one the journal at <paramref name="path"/> records (1 for none).</summary>
    public static int NextRun(string path)
    {
        if (!File.Exists(path)) return 1;
        int last = 0;
        using var reader = new StreamReader(path);
        while (reader.ReadLine() is { } line)
        {
            if (line.StartsWith("R ", StringComparison.Ordinal))
                last = Math.Max(last, int.Parse(line.AsSpan(2, line.IndexOf(' ', 2) - 2), CultureInfo.InvariantCulture));
        }
        return last + 1;
    }

    public void Start(int run, string mode, int seed) =>
        Write(string.Create(CultureInfo.InvariantCulture, $"R {run} {Environment.ProcessId} {mode} {seed}"));

    /// <summary>Assigns the next sequence number and records the operation as issued.</summary>
    public long Issue(char op, int label, int obj, int index)
    {
        lock (_lock)
        {
            long seq = ++_seq;
            WriteLocked(string.Create(CultureInfo.InvariantCulture, $"I {seq} {op} {label} {obj} {index} {Stopwatch.GetTimestamp()}"));
            return seq;
        }
    }

    /// <summary>Records operation <paramref name="seq"/> as acknowledged with <paramref name="result"/>.</summary>
    public void Ack(long seq, long result) =>
        Write(string.Create(CultureInfo.InvariantCulture, $"A {seq} {result} {Stopwatch.GetTimestamp()}"));

    private void Write(string line)
    {
        lock (_lock) WriteLocked(line);
    }

    private void WriteLocked(string line)
    {
        _writer.Write(line);
        _writer.Write('\n');
        _writer.Flush(); // into the FileStream and on to the kernel
        if (_fsync) _file.Flush(flushToDisk: true);
    }

    public void Dispose()
    {
        _writer.Dispose();
        _file.Dispose();
    }
}
