using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using Tmem.CrashHost;
using Xunit.Abstractions;
using PageKind = Tmem.CrashHost.CrashLayout.PageKind;

namespace Tmem.Tests;

[CollectionDefinition("Crash", DisableParallelization = true)]
public sealed class CrashCollection
{
}

/// <summary>
/// Crash tests: a real process (tests/Tmem.CrashHost) works on a durable store and is killed with
/// SIGKILL at a random moment; the store is then opened here and what recovery brought back is
/// checked against the host's journal (ack file), for many cycles on one growing data directory.
/// <para>
/// The journal (<see cref="Journal"/>) has an issue line before each operation starts and an
/// ack line after it is acknowledged, in real-time order, so for two operations X and G,
/// "X precedes G" (X's ack line comes before G's issue line) means X completed before G began
/// and so is linearized before it. Every page names its handle and the operation that stored it.
/// Per handle, the state after recovery must be the effect of a <i>candidate</i>: an operation of
/// this run on the handle (a put: its page; a flush page, or a flush object of the handle's
/// object: a miss) that precedes no operation of the handle's <i>must set</i>, or the state the
/// previous cycle recovered (the baseline) if the must set is empty. A recovered page that is
/// not exactly some put's page, or names another handle, or a version never issued, fails.
/// </para>
/// <list type="bullet">
/// <item><b>Strict</b>: the must set is every acknowledged operation. So the page is the last
/// acknowledged state, or the effect of an operation in flight at the kill (or concurrent with
/// the last acknowledged one); never older, never lost.</item>
/// <item><b>Relaxed</b>: what survives must be a prefix of the log, and the log puts an
/// operation acknowledged before another was issued first. So if a handle's state can only be
/// the effect of operations of this run (a page names its one put; a miss or a zero page may
/// have several explanations, and the baseline may be one), one of them is in the prefix, and
/// so is every operation acknowledged before the earliest of them was issued: those join the
/// must set, and this repeats until nothing changes. Every operation acknowledged more than
/// <see cref="RelaxedLossBoundMs"/> before the last acknowledged put was issued joins it too: a
/// put waits, before it appends, while the oldest uncommitted append is older than the store's lag
/// limit (100 ms at the default 10 ms interval), so the log holds back appends rather than let the
/// loss grow when commits fall behind (an overloaded machine). Measuring from the kill instead
/// fails on a machine so loaded that no commit completes for a quarter of a second.
/// Dropping an acknowledged record from the middle of the log, or replaying a later record
/// without an earlier one, leaves some handle with no candidate (unless later operations on the
/// same handle hide it, which no check could see); so does losing everything older than the bound.</item>
/// </list>
/// Cycles: TMEM_CRASH_CYCLES overrides both tests' counts; TMEM_CRASH_SEED replays a seed;
/// TMEM_CRASH_HOST names the host's dll. A failing cycle keeps its directory and names it.
/// </summary>
[Collection("Crash")]
[Trait("Kind", "Crash")]
public class CrashTests(ITestOutputHelper output)
{
    /// <summary>
    /// Relaxed mode: an ack this much older than a later put's issue must have survived. The store's
    /// lag limit (<c>IntervalCommitPolicy.LagLimitMs</c>: 100 ms at the default interval) plus a margin.
    /// </summary>
    private const int RelaxedLossBoundMs = 150;

    [Fact]
    public void Strict_KilledHost_RecoversEveryAcknowledgedOperation() => RunCycles(DurabilityMode.Strict, Cycles(20));

    [Fact]
    public void Relaxed_KilledHost_RecoversAPrefixOfTheLog() => RunCycles(DurabilityMode.Relaxed, Cycles(8));

    private static int Cycles(int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable("TMEM_CRASH_CYCLES"), CultureInfo.InvariantCulture, out int n) && n > 0 ? n : fallback;

    private void RunCycles(DurabilityMode mode, int cycles)
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("TMEM_CRASH_SEED"), CultureInfo.InvariantCulture, out int s) ? s : Random.Shared.Next();
        var rng = new Random(seed);
        string root = Path.Combine(Path.GetTempPath(), $"tmem-crash-{mode.ToString().ToLowerInvariant()}-{Guid.NewGuid():N}");
        string dir = Path.Combine(root, "data");
        string journalPath = Path.Combine(root, "journal.txt");
        Directory.CreateDirectory(root);
        string host = LocateHost();
        output.WriteLine($"{mode}: {cycles} cycles, seed {seed} (TMEM_CRASH_SEED), host {host}, directory {root}");

        var baseline = new State[CrashLayout.Labels, CrashLayout.Objects, CrashLayout.Indices];
        foreach (var (l, o, i) in Handles()) baseline[l, o, i] = Miss;
        var clock = Stopwatch.StartNew();
        long totalIssued = 0, totalAcked = 0, firstBegin = -1, lastBegin = -1;
        for (int cycle = 1; cycle <= cycles; cycle++)
        {
            long journalStart = File.Exists(journalPath) ? new FileInfo(journalPath).Length : 0;
            int delayMs = rng.Next(100, 601);
            var (pid, killTimestamp, ready) = RunAndKill(host, dir, journalPath, mode, rng.Next(), delayMs);
            // The first run starts on an empty log: its READY line gives the begin address no truncation has moved.
            if (cycle == 1)
            {
                var begin = System.Text.RegularExpressions.Regex.Match(ready, @"log begin (\d+)");
                Assert.True(begin.Success, $"the host's READY line gives no log begin address: {ready}");
                firstBegin = long.Parse(begin.Groups[1].Value, CultureInfo.InvariantCulture);
            }
            var run = Parse(journalPath, journalStart, expectedRun: cycle, expectedPid: pid);

            var open = Stopwatch.StartNew();
            TmemStore reopened;
            RecoveryReport report;
            try
            {
                reopened = TmemStore.Open(new TmemOptions { DataDirectory = dir, Durability = mode }, out report);
            }
            catch (Exception e)
            {
                throw new InvalidOperationException($"{mode} cycle {cycle} (seed {seed}, directory {root} kept): reopening the store after the kill failed: {e.Message}", e);
            }
            using (var store = reopened)
            {
                open.Stop();
                var recovered = ReadAll(store);
                var errors = Check(mode, run, baseline, recovered, killTimestamp, out string detail);
                int acked = run.Ops.Count(o => o.Acked);
                totalIssued += run.Ops.Count;
                totalAcked += acked;
                long firstAck = run.Ops.Where(o => o.Acked).Select(o => o.AckTimestamp).DefaultIfEmpty(killTimestamp).Min();
                output.WriteLine($"cycle {cycle}: {ready}; killed {delayMs} ms after READY ({(killTimestamp - firstAck) * 1000 / Stopwatch.Frequency} ms after the first ack); {run.Ops.Count} issued, {acked} acked, " +
                    $"{run.Ops.Count - acked} in flight; reopened in {open.ElapsedMilliseconds} ms ({report.RecordsReplayed} records, " +
                    $"{report.PagesRecovered} pages); {detail}");
                if (errors.Count > 0)
                {
                    Assert.Fail($"{mode} cycle {cycle} (seed {seed}, directory {root} kept, run {run.Number}): {errors.Count} handle(s) wrong after the kill:\n" +
                        string.Join("\n", errors.Take(12)));
                }
                baseline = recovered;
                lastBegin = report.BeginAddress;
            }
        }
        output.WriteLine($"{mode}: {cycles} cycles in {clock.Elapsed.TotalSeconds:F1} s, {totalIssued} operations issued, {totalAcked} acknowledged");
        Assert.True(totalAcked > cycles, $"the host acknowledged only {totalAcked} operations in {cycles} cycles");
        // The host compacts the log every few tens of milliseconds: some recovery saw a truncated log
        // (any cycle's: a compaction takes 100-250 ms on a loaded 2-core machine, and the kills
        // come 100-600 ms after READY, so one cycle or another may miss it).
        if (cycles >= 5 && Environment.GetEnvironmentVariable("TMEM_CRASH_COMPACT_MS") != "0")
            Assert.True(lastBegin > firstBegin, $"the log's begin address never moved ({firstBegin}): no compaction was recovered from");
        Directory.Delete(root, recursive: true);
    }

    // ---- the host process -------------------------------------------------------------------

    /// <summary>
    /// The host's dll: TMEM_CRASH_HOST; else beside this assembly (the test project references
    /// Tmem.CrashHost, so a build copies it, its runtimeconfig and deps here); else
    /// tests/Tmem.CrashHost/bin/CONFIG/TFM under the repository root above this assembly.
    /// </summary>
    private static string LocateHost()
    {
        if (Environment.GetEnvironmentVariable("TMEM_CRASH_HOST") is { Length: > 0 } given) return Path.GetFullPath(given);
        string here = AppContext.BaseDirectory;
        string beside = Path.Combine(here, "Tmem.CrashHost.dll");
        if (File.Exists(beside) && File.Exists(Path.Combine(here, "Tmem.CrashHost.runtimeconfig.json"))) return beside;
        string config = typeof(CrashTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string tfm = new DirectoryInfo(here).Name;
        for (var d = new DirectoryInfo(here); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Tmem.sln")))
            {
                string built = Path.Combine(d.FullName, "tests", "Tmem.CrashHost", "bin", config, tfm, "Tmem.CrashHost.dll");
                if (File.Exists(built)) return built;
                break;
            }
        }
        throw new FileNotFoundException($"Tmem.CrashHost.dll is not beside {here} nor under the repository's tests/Tmem.CrashHost/bin/{config}/{tfm}; build the solution or set TMEM_CRASH_HOST.");
    }

    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } path && File.Exists(path)) return path;
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        return "dotnet";
    }

    /// <summary>Starts the host, waits for READY, lets it run, and SIGKILLs it. Returns its pid, the kill time and its READY line.</summary>
    private static (int Pid, long KillTimestamp, string Ready) RunAndKill(string host, string dir, string journal, DurabilityMode mode, int seed, int delayMs)
    {
        var info = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // 'dotnet app.dll' runs the app in this very process (the muxer loads the runtime; no child).
        foreach (string arg in new[] { host, dir, journal, mode == DurabilityMode.Strict ? "strict" : "relaxed", seed.ToString(CultureInfo.InvariantCulture) })
            info.ArgumentList.Add(arg);
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = info };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line) lock (stderr) stderr.AppendLine(line);
        };
        process.Start();
        process.BeginErrorReadLine();
        try
        {
            // Stdout is read on a thread of its own, not the thread pool: READY is seen at once.
            string? ready = null;
            using var seen = new ManualResetEventSlim();
            var reader = new Thread(() =>
            {
                while (process.StandardOutput.ReadLine() is { } line)
                {
                    if (ready is null && line.StartsWith("READY", StringComparison.Ordinal))
                    {
                        Volatile.Write(ref ready, line);
                        seen.Set();
                    }
                }
                seen.Set(); // end of output: the host exited
            }) { IsBackground = true, Name = "crash host stdout" };
            reader.Start();
            if (!seen.Wait(TimeSpan.FromSeconds(60)) || Volatile.Read(ref ready) is not { } readyLine)
            {
                Assert.Fail(process.HasExited ? $"the host exited with {process.ExitCode} before READY:\n{Stderr()}" : $"the host printed no READY within 60 s:\n{Stderr()}");
                return default;
            }
            Thread.Sleep(delayMs);
            if (process.HasExited) Assert.Fail($"the host exited with {process.ExitCode} on its own:\n{Stderr()}");
            long killTimestamp = Stopwatch.GetTimestamp();
            process.Kill(); // SIGKILL on Linux, to the host itself
            process.WaitForExit();
            reader.Join();
            // 128 + SIGKILL: the kill ended it, not a failure of its own just before.
            Assert.True(process.ExitCode == 137, $"the host ended with {process.ExitCode}, not by SIGKILL:\n{Stderr()}");
            return (process.Id, killTimestamp, readyLine);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
                process.WaitForExit();
            }
        }

        string Stderr()
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit(); // and for the stderr handler to see the end of the stream
            lock (stderr) return stderr.ToString();
        }
    }

    // ---- the journal ------------------------------------------------------------------------

    /// <summary>An operation of one run. Positions are line numbers in the run's part of the journal.</summary>
    private sealed class Op
    {
        public long Seq;
        public char Kind;    // D, S, Z: puts; F: flush page; O: flush object
        public int Label;
        public int Obj;
        public int Index;    // -1 for O
        public int IssuePos;
        public int AckPos = int.MaxValue; // unacknowledged: after everything
        public long Result;
        public long IssueTimestamp;
        public long AckTimestamp;

        public bool Acked => AckPos != int.MaxValue;

        public override string ToString() =>
            $"#{Seq} {Kind}{(Kind == 'O' ? "" : $"[{Index}]")} issued@{IssuePos} {(Acked ? $"acked@{AckPos}={Result}" : "unacked")}";
    }

    private sealed record Run(int Number, List<Op> Ops);

    private static Run Parse(string path, long offset, int expectedRun, int expectedPid)
    {
        string text;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            file.Seek(offset, SeekOrigin.Begin);
            text = new StreamReader(file, Encoding.UTF8).ReadToEnd();
        }
        var lines = text.Split('\n');
        // The last element is "" after a complete last line, or a line the kill cut short: dropped either way.
        Assert.True(lines.Length > 1 && lines[0].StartsWith("R ", StringComparison.Ordinal), $"the journal has no run header at offset {offset}");
        var header = lines[0].Split(' ');
        Assert.Equal(expectedRun, int.Parse(header[1], CultureInfo.InvariantCulture));
        Assert.True(int.Parse(header[2], CultureInfo.InvariantCulture) == expectedPid, $"the journal's writer (pid {header[2]}) is not the process that was killed ({expectedPid})");
        var ops = new List<Op>();
        var bySeq = new Dictionary<long, Op>();
        for (int pos = 1; pos < lines.Length - 1; pos++)
        {
            var f = lines[pos].Split(' ');
            long seq = long.Parse(f[1], CultureInfo.InvariantCulture);
            switch (f[0])
            {
                case "I":
                    var op = new Op
                    {
                        Seq = seq,
                        Kind = f[2][0],
                        Label = int.Parse(f[3], CultureInfo.InvariantCulture),
                        Obj = int.Parse(f[4], CultureInfo.InvariantCulture),
                        Index = int.Parse(f[5], CultureInfo.InvariantCulture),
                        IssueTimestamp = long.Parse(f[6], CultureInfo.InvariantCulture),
                        IssuePos = pos,
                    };
                    Assert.Equal(ops.Count + 1, seq);
                    ops.Add(op);
                    bySeq.Add(seq, op);
                    break;
                case "A":
                    var acked = bySeq[seq];
                    Assert.False(acked.Acked, $"operation {seq} acknowledged twice");
                    acked.AckPos = pos;
                    acked.Result = long.Parse(f[2], CultureInfo.InvariantCulture);
                    acked.AckTimestamp = long.Parse(f[3], CultureInfo.InvariantCulture);
                    break;
                default:
                    Assert.Fail($"journal line '{lines[pos]}'");
                    break;
            }
        }
        return new Run(expectedRun, ops);
    }

    // ---- recovered state --------------------------------------------------------------------

    /// <summary>A handle's state: Kind M (miss), Z (zero page), D or S (data or same-filled page of Version), X (bad page).</summary>
    private readonly record struct State(char Kind, long Version, string? Error = null)
    {
        public override string ToString() => Kind switch
        {
            'M' => "miss",
            'Z' => "zero page",
            'X' => $"bad page ({Error})",
            _ => $"{(Kind == 'D' ? "data" : "same-filled")} page of {CrashLayout.Describe(Version)}",
        };
    }

    private static State Miss => new('M', 0);

    private static IEnumerable<(int Label, int Obj, int Index)> Handles()
    {
        for (int l = 0; l < CrashLayout.Labels; l++)
            for (int o = 0; o < CrashLayout.Objects; o++)
                for (int i = 0; i < CrashLayout.Indices; i++)
                    yield return (l, o, i);
    }

    private static State[,,] ReadAll(TmemStore store)
    {
        var c1 = store.GetClient(1);
        var c2 = store.GetClient(2);
        // The host makes its pools durable before it prints READY (in Relaxed mode by closing and
        // reopening the store), so they are always here, under the ids it created them with.
        string pools = $"client 1 has [{string.Join(", ", c1.GetPools())}], client 2 has [{string.Join(", ", c2.GetPools())}]";
        Assert.True(c1.GetPools() is [{ PoolId: 0, Kind: PoolKind.Persistent, SharedUuid: null }, { PoolId: 1, Kind: PoolKind.Persistent } shared1]
            && shared1.SharedUuid == CrashLayout.SharedUuid
            && c2.GetPools() is [{ PoolId: 0, Kind: PoolKind.Persistent } shared2] && shared2.SharedUuid == CrashLayout.SharedUuid,
            $"the pools did not come back as created: {pools}");

        var states = new State[CrashLayout.Labels, CrashLayout.Objects, CrashLayout.Indices];
        var page = new byte[CrashLayout.PageSize];
        var other = new byte[CrashLayout.PageSize];
        long hits = 0;
        foreach (var (label, obj, index) in Handles())
        {
            var oid = CrashLayout.Oid(obj);
            var status = c1.Get(label == CrashLayout.PrivateLabel ? 0 : 1, oid, (uint)index, page);
            if (label == CrashLayout.SharedLabel)
            {
                // Both members see the same shared page.
                Assert.Equal(status, c2.Get(0, oid, (uint)index, other));
                Assert.True(status == GetStatus.Miss || page.AsSpan().SequenceEqual(other), $"the shared pool gives clients 1 and 2 different pages at object {obj} index {index}");
            }
            if (status == GetStatus.Miss)
            {
                states[label, obj, index] = Miss;
                continue;
            }
            hits++;
            var (kind, version, error) = CrashLayout.Decode(page, label, obj, index);
            states[label, obj, index] = error is not null ? new State('X', version, error)
                : kind switch { PageKind.Zero => new State('Z', 0), PageKind.SameFilled => new State('S', version), _ => new State('D', version) };
        }
        // Nothing else came back: no page outside the handles the host uses.
        Assert.Equal(hits, store.GetStats().PersPages);
        return states;
    }

    // ---- the check --------------------------------------------------------------------------

    private static State Effect(Op op, int run) => op.Kind switch
    {
        'D' or 'S' => new State(op.Kind, CrashLayout.Version(run, op.Seq)),
        'Z' => new State('Z', 0),
        _ => Miss,
    };

    /// <summary>The rule in the class summary. Returns one message per wrong handle.</summary>
    private static List<string> Check(DurabilityMode mode, Run run, State[,,] baseline, State[,,] recovered, long killTimestamp, out string detail)
    {
        // Operations per handle (a flush object is an operation on each of its object's handles).
        var perHandle = new List<Op>[CrashLayout.Labels, CrashLayout.Objects, CrashLayout.Indices];
        foreach (var (l, o, i) in Handles()) perHandle[l, o, i] = new List<Op>();
        foreach (var op in run.Ops)
        {
            if (op.Kind == 'O')
            {
                for (int i = 0; i < CrashLayout.Indices; i++) perHandle[op.Label, op.Obj, i].Add(op);
            }
            else
            {
                perHandle[op.Label, op.Obj, op.Index].Add(op);
            }
        }

        // The must set: in Strict mode every acknowledged operation; in Relaxed mode those
        // acknowledged before the issue position `forced` (below) or more than the loss bound
        // before the kill.
        bool strict = mode == DurabilityMode.Strict;
        long lastPutIssue = run.Ops.Where(op => op.Acked && op.Kind is 'D' or 'S' or 'Z').Select(op => op.IssueTimestamp).DefaultIfEmpty(long.MinValue / 2).Max();
        long bound = lastPutIssue - RelaxedLossBoundMs * Stopwatch.Frequency / 1000;
        int forced = -1;
        bool Must(Op op) => op.Acked && (strict || op.AckPos < forced || op.AckTimestamp < bound);

        // The latest-issued must-survive operation of a handle (its issue position, -1 for none),
        // and the operations that can explain the handle's recovered state: candidates (ack after
        // that position) whose effect is the state. Null when the baseline explains it.
        (int MustIssue, Op? LastMust, List<Op>? Explaining) Explain(int l, int o, int i)
        {
            var ops = perHandle[l, o, i];
            var got = recovered[l, o, i];
            int mustIssue = -1;
            Op? lastMust = null;
            foreach (var op in ops)
            {
                if (op.IssuePos > mustIssue && Must(op))
                {
                    mustIssue = op.IssuePos;
                    lastMust = op;
                }
            }
            if (lastMust is null && got == baseline[l, o, i]) return (mustIssue, null, null);
            return (mustIssue, lastMust, got.Kind == 'X' ? [] : ops.Where(op => op.AckPos > mustIssue && Effect(op, run.Number) == got).ToList());
        }

        // A handle explained only by operations of this run shows that one of them is in the
        // recovered prefix, so everything acknowledged before the earliest of them was issued is
        // too (the log orders it first). Raise `forced` to that until nothing changes. (A page
        // names its one put, so this holds any put whose page came back; a miss or zero page
        // counts only when no older operation explains it.) Strict: every ack is in already.
        for (bool changed = !strict; changed;)
        {
            changed = false;
            foreach (var (l, o, i) in Handles())
            {
                if (Explain(l, o, i).Explaining is { Count: > 0 } explaining && explaining.Min(op => op.IssuePos) is int lower && lower > forced)
                {
                    forced = lower;
                    changed = true;
                }
            }
        }
        if (strict)
        {
            detail = "strict: every acknowledged operation must survive";
        }
        else
        {
            var prefix = run.Ops.Where(op => op.Acked && op.AckPos < forced).ToList();
            detail = $"relaxed: recovery shows {prefix.Count} acknowledged operations in the prefix" +
                (prefix.Count == 0 ? "" : $" (the last acknowledged {(killTimestamp - prefix.Max(op => op.AckTimestamp)) * 1000 / Stopwatch.Frequency} ms before the kill)") +
                $"; {run.Ops.Count(op => op.Acked && op.AckTimestamp < bound)} were acknowledged over {RelaxedLossBoundMs} ms before the last acknowledged put was issued " +
                $"({(killTimestamp - lastPutIssue) * 1000 / Stopwatch.Frequency} ms before the kill)";
        }

        var errors = new List<string>();
        foreach (var (l, o, i) in Handles())
        {
            var (_, lastMust, explaining) = Explain(l, o, i);
            if (explaining is null || explaining.Count > 0) continue;

            var ops = perHandle[l, o, i];
            var got = recovered[l, o, i];
            bool issued = ops.Any(op => Effect(op, run.Number) == got);
            string why = got.Kind switch
            {
                'X' => "corrupt",
                'D' or 'S' when CrashLayout.RunOf(got.Version) == run.Number && issued => "older than an operation that must have survived",
                'D' or 'S' when CrashLayout.RunOf(got.Version) >= run.Number => "a version never issued for this handle",
                _ when got == baseline[l, o, i] => "the previous cycle's state: operations that must have survived are lost",
                _ => "no candidate has this state",
            };
            var history = ops.Count <= 8 ? ops : ops.Take(2).Concat(ops.TakeLast(6));
            errors.Add($"pool label {l} object {o} index {i}: recovered {got}: {why}. Baseline {baseline[l, o, i]}; " +
                $"{(lastMust is null ? "no operation had to survive" : $"the latest-issued operation that had to survive is {lastMust}")}; " +
                $"{ops.Count} operation(s) this run: {string.Join(", ", history)}");
        }
        return errors;
    }
}
