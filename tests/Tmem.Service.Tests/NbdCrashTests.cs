using System.Diagnostics;
using System.Text;

namespace Tmem.Service.Tests;

/// <summary>
/// Persistent exports under SIGKILL: a real client (python3-libnbd) writes pages, FLUSHes, writes
/// more with FUA, then keeps writing without either while the service is killed. After the
/// restart every write a FLUSH or FUA covered is back byte for byte; the writes after them may be
/// lost, but each page holds one whole version (no half-applied page).
/// </summary>
[Trait("Kind", "Crash")]
public sealed class NbdCrashTests
{
    private const int P = 4096;
    private const int Flushed = 256;   // pages 0..255: written, then FLUSH
    private const int Fua = 16;        // pages 256..271: written with FUA
    private const int Loose = 64;      // pages 272..335, and 0..63 again: rewritten without FLUSH or FUA

    /// <summary>Page <paramref name="index"/> at <paramref name="version"/>: its header repeated over the page.</summary>
    private static byte[] Page(int index, int version)
    {
        var head = Encoding.ASCII.GetBytes($"page {index:D8} version {version:D8};");
        var page = new byte[P];
        for (int at = 0; at < P; at += head.Length) head.AsSpan(0, Math.Min(head.Length, P - at)).CopyTo(page.AsSpan(at));
        return page;
    }

    private const string Script = """
        P = 4096
        def page(i, v):
            head = b'page %08d version %08d;' % (i, v)
            return (head * (P // len(head) + 1))[:P]
        for i in range(256):
            h.pwrite(page(i, 1), i * P)
        h.flush()
        for i in range(256, 272):
            h.pwrite(page(i, 1), i * P, nbd.CMD_FLAG_FUA)
        open(marker, 'w').close()
        v = 2
        while True:
            for i in list(range(0, 64)) + list(range(272, 336)):
                h.pwrite(page(i, v), i * P)
            v += 1
        """;

    [NbdToolFact("nbdsh", "nbdcopy")]
    public Task Relaxed_FlushedAndFuaWrites_SurviveSigkill_LaterWritesAreWholePagesOrLost() =>
        RunAsync("--Tmem:Durability=Relaxed", "--Tmem:CommitIntervalMs=60000"); // a minute between interval commits: FLUSH and FUA must commit by themselves

    [NbdToolFact("nbdsh", "nbdcopy")]
    public Task Strict_FlushedAndFuaWrites_SurviveSigkill_LaterWritesAreWholePagesOrLost() =>
        RunAsync("--Tmem:Durability=Strict");

    private static async Task RunAsync(params string[] mode)
    {
        await using var server = new NbdServer(mode);
        await server.StartAsync();
        // The client says when its covered writes are done by creating a file (its output is not
        // redirected: a child holding a copy of a redirected pipe would keep the service's
        // output open past its death).
        string marker = Path.Combine(server.Root, "covered");
        var info = new ProcessStartInfo(Tool.Python.Value!) { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(Tool.Preamble(server.Uri("disk")) + $"marker = {PythonString(marker)}\n" + Script);
        using var client = Process.Start(info)!;
        var clock = Stopwatch.StartNew();
        while (!File.Exists(marker))
        {
            Assert.False(client.HasExited, $"the client exited ({(client.HasExited ? client.ExitCode : 0)}) before its writes were covered");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the client's covered writes took over 120 s");
            await Task.Delay(20);
        }
        await Task.Delay(400); // unflushed writes under way
        await server.Service.KillAsync();
        for (int i = 0; i < 300 && !client.HasExited; i++) await Task.Delay(100);
        Assert.True(client.HasExited, "the client did not notice the service was gone");
        Assert.NotEqual(0, client.ExitCode); // it was cut off mid-write

        await server.StartAsync();
        string image = Path.Combine(server.Root, "after.img");
        await Tool.CheckAsync("nbdcopy", [server.Uri("disk"), image]);
        var disk = await File.ReadAllBytesAsync(image);
        int lostOrOld = 0, newer = 0;
        for (int i = 0; i < Flushed + Fua + Loose; i++)
        {
            var page = disk.AsSpan(i * P, P);
            bool loose = i < Loose || i >= Flushed + Fua;
            if (!loose)
            {
                Assert.True(page.SequenceEqual(Page(i, 1)), $"page {i} was covered by a {(i < Flushed ? "FLUSH" : "FUA write")} and is not back: {Describe(page)}");
                continue;
            }
            // Loose pages: one whole version (or, never written, zeros).
            if (page.IndexOfAnyExcept((byte)0) < 0)
            {
                Assert.True(i >= Flushed + Fua, $"page {i} was flushed at version 1 and came back as zeros");
                lostOrOld++;
                continue;
            }
            int version = int.Parse(Encoding.ASCII.GetString(page.Slice(22, 8)));
            Assert.True(page.SequenceEqual(Page(i, version)), $"page {i} is not one whole version: {Describe(page)}");
            if (i < Loose) Assert.True(version >= 1, $"page {i} went back before its flushed version");
            if (version >= 2) newer++;
            else lostOrOld++;
        }
        Assert.True(newer + lostOrOld == 2 * Loose);
    }

    private static string PythonString(string s) => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";

    private static string Describe(ReadOnlySpan<byte> page) =>
        page.IndexOfAnyExcept((byte)0) < 0 ? "all zeros" : "'" + Encoding.ASCII.GetString(page[..31]) + "'...";
}
