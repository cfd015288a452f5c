using System.Globalization;

namespace Tmem.CrashHost;

/// <summary>
/// <c>Tmem.CrashHost DIR ACKFILE MODE(strict|relaxed) SEED</c>
/// <para>
/// Opens (and so recovers) the durable store in DIR, creates its two persistent pools on the
/// first run (client 1's private pool 0; a shared pool that client 1 maps as pool 1 and client
/// 2 as pool 0; see <see cref="CrashLayout"/>) or finds them recovered, prints READY, and then
/// runs <see cref="Workers"/> concurrent workers doing random PutAsync / FlushPageAsync /
/// FlushObjectAsync (and now and then their blocking forms) until it is killed, recording each
/// operation in ACKFILE before it starts and after it is acknowledged (<see cref="Journal"/>).
/// Any failure (including a refused put, which these pages never deserve) prints the exception
/// to stderr and exits non-zero.
/// </para>
/// </summary>
public static class Program
{
    public const int Workers = 4;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length != 4 || args[2] is not ("strict" or "relaxed") || !int.TryParse(args[3], CultureInfo.InvariantCulture, out int seed))
        {
            Console.Error.WriteLine("usage: Tmem.CrashHost DIR ACKFILE strict|relaxed SEED");
            return 2;
        }
        try
        {
            await RunAsync(args[0], args[1], args[2], seed);
            return 0; // never: the workers run until the process is killed
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"Tmem.CrashHost failed: {e}");
            return 1;
        }
    }

    private static async Task RunAsync(string dir, string ackFile, string mode, int seed)
    {
        // Four busy workers on a two-core machine leave the thread pool no idle thread, and
        // FASTER writes each commit's metadata from a pool work item: with the default minimum
        // (the core count) commits come late, and Relaxed appenders are held at the store's lag
        // limit until they do. A few more threads keep commits every CommitIntervalMs, as the
        // service's MinThreadPoolThreads does. TMEM_CRASH_MIN_THREADS=0 keeps the runtime's default.
        int minThreads = int.TryParse(Environment.GetEnvironmentVariable("TMEM_CRASH_MIN_THREADS"), CultureInfo.InvariantCulture, out int m) ? m : 2 * Workers;
        if (minThreads > 0)
        {
            ThreadPool.GetMinThreads(out int worker, out int io);
            ThreadPool.SetMinThreads(Math.Max(worker, minThreads), Math.Max(io, minThreads));
        }
        int run = Journal.NextRun(ackFile);
        if (run > CrashLayout.MaxRun) throw new InvalidOperationException($"run {run} is over {CrashLayout.MaxRun}");
        var durability = mode == "strict" ? DurabilityMode.Strict : DurabilityMode.Relaxed;
        // The smallest segments, so that compactions delete segment files within a few cycles.
        // The device alternates with the seed: the two write the same files, so each run recovers
        // what the other wrote (the test reopens with the file device).
        var device = (seed & 1) == 0 ? LogDeviceKind.File : LogDeviceKind.Mapped;
        var options = new TmemOptions { DataDirectory = dir, Durability = durability, LogSegmentSizeBytes = 16L << 20, LogDevice = device };
        var store = TmemStore.Open(options, out var report);
        // First run: create the pools. Later runs find them recovered under the same ids.
        if (CreatePools(store))
        {
            // Make the creations durable (closing commits) before the first kill, whatever the
            // mode and even if acknowledgements do not wait for commits: a kill before the log's
            // first commit completes leaves segment data without commit metadata, which
            // PersistentLog.Open refuses as damage, and the crash test would stop on that rather
            // than check anything (reported; not this host's to fix).
            store.Dispose();
            store = TmemStore.Open(options, out report);
            if (CreatePools(store)) throw new InvalidOperationException("the pools did not survive a clean close");
        }
        var c1 = store.GetClient(1);
        var c2 = store.GetClient(2);
        using var journal = new Journal(ackFile, Environment.GetEnvironmentVariable("TMEM_CRASH_FSYNC") == "1");
        journal.Start(run, mode, seed);
        Console.Out.WriteLine($"READY run {run}, recovered {report.RecordsReplayed} records, {report.PagesRecovered} pages in {report.Elapsed.TotalMilliseconds:F0} ms, log begin {report.BeginAddress}, {device} device");
        Console.Out.Flush();

        var views = new (TmemClient Client, int PoolId)[] { (c1, 0), (c1, 1), (c2, 0) };
        var workers = Enumerable.Range(0, Workers)
            .Select(w => Task.Run(() => WorkAsync(journal, views, run, durability, new Random(unchecked(seed * 1_000_003 + run * 101 + w)))))
            .ToList();
        // Log compaction every 20-150 ms (TMEM_CRASH_COMPACT_MS=0 turns it off), so that kills land
        // before, during and after its copies, truncations and checkpoints.
        int compactMs = int.TryParse(Environment.GetEnvironmentVariable("TMEM_CRASH_COMPACT_MS"), CultureInfo.InvariantCulture, out int cm) ? cm : 150;
        if (compactMs > 0) workers.Add(Task.Run(() => CompactAsync(store, compactMs, new Random(seed ^ run))));
        var failed = await Task.WhenAny(workers);
        await failed; // throws the worker's exception
        throw new InvalidOperationException("a worker stopped");
    }

    private static async Task CompactAsync(TmemStore store, int maxDelayMs, Random rng)
    {
        while (true)
        {
            await Task.Delay(rng.Next(Math.Min(20, maxDelayMs), maxDelayMs + 1));
            store.CompactLog(force: true);
        }
    }

    /// <summary>Creates whichever of the pools is missing; true if any was.</summary>
    private static bool CreatePools(TmemStore store)
    {
        var c1 = store.GetClient(1);
        var c2 = store.GetClient(2);
        var shared = PoolOptions.Persistent with { SharedUuid = CrashLayout.SharedUuid };
        bool created = false;
        if (!HasPool(c1, 0, null)) created = Expect(0, c1.CreatePool(PoolOptions.Persistent));
        if (!HasPool(c1, 1, CrashLayout.SharedUuid)) created = Expect(1, c1.CreatePool(shared));
        if (!HasPool(c2, 0, CrashLayout.SharedUuid)) created = Expect(0, c2.CreatePool(shared));
        return created;
    }

    private static bool HasPool(TmemClient client, int id, Guid? uuid)
    {
        var pool = client.GetPools().FirstOrDefault(p => p.PoolId == id);
        if (pool is null) return false;
        if (pool.Kind != PoolKind.Persistent || pool.SharedUuid != uuid)
            throw new InvalidOperationException($"client {client.Id} pool {id} came back as {pool}");
        return true;
    }

    private static bool Expect(int expected, int actual) =>
        actual == expected ? true : throw new InvalidOperationException($"a new pool got id {actual}, not {expected}");

    private static async Task WorkAsync(Journal journal, (TmemClient Client, int PoolId)[] views, int run, DurabilityMode mode, Random rng)
    {
        var page = new byte[CrashLayout.PageSize];
        while (true)
        {
            int label = rng.Next(CrashLayout.Labels);
            int obj = rng.Next(CrashLayout.Objects);
            int index = rng.Next(CrashLayout.Indices);
            var (client, poolId) = label == CrashLayout.PrivateLabel ? views[0] : views[1 + rng.Next(2)];
            var oid = CrashLayout.Oid(obj);
            int roll = rng.Next(100);
            char op = roll switch { < 57 => 'D', < 65 => 'S', < 72 => 'Z', < 97 => 'F', _ => 'O' };
            bool blocking = rng.Next(10) == 0;
            long seq = journal.Issue(op, label, obj, op == 'O' ? -1 : index);
            long result;
            switch (op)
            {
                case 'F':
                    result = (blocking ? client.FlushPage(poolId, oid, (uint)index) : await client.FlushPageAsync(poolId, oid, (uint)index)) ? 1 : 0;
                    break;
                case 'O':
                    result = blocking ? client.FlushObject(poolId, oid) : await client.FlushObjectAsync(poolId, oid);
                    break;
                default:
                    var kind = op switch { 'S' => CrashLayout.PageKind.SameFilled, 'Z' => CrashLayout.PageKind.Zero, _ => CrashLayout.PageKind.Data };
                    CrashLayout.Render(page, kind, label, obj, index, CrashLayout.Version(run, seq));
                    var status = blocking ? client.Put(poolId, oid, (uint)index, page) : await client.PutAsync(poolId, oid, (uint)index, page);
                    if (status != PutStatus.Stored)
                        throw new InvalidOperationException($"put {seq} ({op}, label {label}, object {obj}, index {index}) was refused: {status}");
                    result = (long)status;
                    break;
            }
            journal.Ack(seq, result);
            // Relaxed acknowledgements complete synchronously: yield, so that four busy workers
            // on a small machine do not starve the thread pool (and the commit loop on it).
            if (mode == DurabilityMode.Relaxed) await Task.Yield();
        }
    }
}
