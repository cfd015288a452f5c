using System.Diagnostics;
using FASTER.core;
using K4os.Compression.LZ4;

namespace Tmem.Bench;

/// <summary>
/// The <c>persistent</c> suite: durable persistent puts against bare FasterLog on the same
/// device type (FASTER's ManagedLocalStorageDevice in a temporary directory beside the working
/// directory's file system), with the same compressed payloads and 64 operations in flight.
/// </summary>
internal sealed class PersistentSuite
{
    private const int PageSize = Corpus.PageSize;
    private const int InFlight = 64;
    private const int Repeats = 3;

    private readonly Report _report;
    private readonly byte[][] _pages;
    private readonly byte[][] _compressed;
    private readonly string _root;
    private long _lastStoreCommits;

    /// <summary>The device the put figures use, for the store and the bare FasterLog alike (TMEM_BENCH_DEVICE, default the store's default).</summary>
    private readonly LogDeviceKind _device = Enum.TryParse<LogDeviceKind>(Environment.GetEnvironmentVariable("TMEM_BENCH_DEVICE"), out var d) ? d : new TmemOptions().LogDevice;

    /// <summary>Commits of the last bare FasterLog run.</summary>
    private long _bareCommits;

    public PersistentSuite(Corpus corpus, Report report)
    {
        _report = report;
        var buffer = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
        var pages = new List<byte[]>();
        var compressed = new List<byte[]>();
        foreach (var page in corpus.Pages)
        {
            if (Corpus.IsSameFilled(page)) continue;
            int length = LZ4Codec.Encode(page, buffer, LZ4Level.L00_FAST);
            if (length > PageSize * 5 / 8) continue; // under the mean-size rule: every put is stored
            pages.Add(page);
            compressed.Add(buffer.AsSpan(0, length).ToArray());
        }
        _pages = pages.ToArray();
        _compressed = compressed.ToArray();
        _root = Path.Combine(Directory.GetCurrentDirectory(), "bench-data-" + Environment.ProcessId);
        Console.WriteLine($"corpus: {corpus.Description}: {_pages.Length} pages compressing under 5/8 page used; data in {_root}");
    }

    public void Run()
    {
        try
        {
            // TMEM_BENCH_ONLY=puts,replay,checkpoint,cold,churn runs only those parts (targets of the others are then not judged).
            var only = Environment.GetEnvironmentVariable("TMEM_BENCH_ONLY")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            bool Part(string name) => only is null || only.Contains(name);
            if (Part("puts")) Puts();
            if (only is not null && only.Contains("profile-costs"))
            {
                // Development aid: CPU microseconds per page of each step, one thread.
                const int n = 50_000;
                var buffer = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
                double Time(Action<int> step)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < n; i++) step(i);
                    return sw.Elapsed.TotalMicroseconds / n;
                }
                Console.WriteLine($"  lz4 encode {Time(i => LZ4Codec.Encode(_pages[i % _pages.Length], buffer, LZ4Level.L00_FAST)):F2} us");
                Console.WriteLine($"  crc32c of compressed {Time(i => Tmem.LogTier.LogRecord.Crc32C(_compressed[i % _compressed.Length])):F2} us");
                using (var mem = TmemStore.Open(new TmemOptions { RamBudgetBytes = 1L << 30 }))
                {
                    var c = mem.GetClient(1);
                    int p = c.CreatePool(PoolOptions.Persistent);
                    Console.WriteLine($"  memory-only persistent put {Time(i => c.Put(p, new ObjectId((ulong)(i / 64)), (uint)(i % 64), _pages[i % _pages.Length])):F2} us");
                }
                foreach (var mode in new[] { DurabilityMode.Relaxed })
                {
                    using var durable = TmemStore.Open(new TmemOptions { DataDirectory = FreshDirectory("costs"), Durability = mode, RamBudgetBytes = 1L << 30, LogDevice = _device });
                    var c = durable.GetClient(1);
                    int p = c.CreatePool(PoolOptions.Persistent);
                    Console.WriteLine($"  durable {mode} put {Time(i => c.Put(p, new ObjectId((ulong)(i / 64)), (uint)(i % 64), _pages[i % _pages.Length])):F2} us");
                }
            }
            if (only is not null && only.Contains("profile-strict"))
            {
                // Development aid: Strict puts alone, with the process's CPU use.
                var cpu = Environment.CpuUsage.TotalTime;
                var wall = Stopwatch.StartNew();
                var (rate, _, _) = StorePuts(60_000, DurabilityMode.Strict, measureRecovery: false);
                Console.WriteLine($"  strict {rate:F0}/s, {_lastStoreCommits} commits, CPU {(Environment.CpuUsage.TotalTime - cpu).TotalSeconds / wall.Elapsed.TotalSeconds:F2} cores");
                cpu = Environment.CpuUsage.TotalTime;
                wall.Restart();
                _bareCommits = 0;
                double bare = BareFasterLog(60_000);
                Console.WriteLine($"  bare {bare:F0}/s, {_bareCommits} commits, CPU {(Environment.CpuUsage.TotalTime - cpu).TotalSeconds / wall.Elapsed.TotalSeconds:F2} cores");
            }
            if (Part("replay"))
            {
                var (warm, cold) = Replay(200_000);
                _report.Add("recovery_replay_mb_per_s", warm, "reopen of 200,000 pages with no checkpoint: log bytes replayed per second (median of 3; log in the page cache, as after a restart)");
                if (cold > 0) _report.Add("recovery_replay_mb_per_s_cold_cache", cold, "the same after dropping the page cache (as after a reboot)");
                _report.Target("recovery_replay_mb_per_s >= 300", warm >= 300);
            }
            if (Part("checkpoint"))
            {
                var (checkpointSeconds, openSeconds) = CheckpointOpen(1_000_000);
                _report.Add("checkpoint_write_s_1m_pages", checkpointSeconds, "TmemStore.Checkpoint() with 1,000,000 persistent pages");
                _report.Add("recovery_checkpoint_open_s_1m_pages", openSeconds, "reopen with a checkpoint and 1,000,000 persistent pages: seconds to ready");
                _report.Target("recovery_checkpoint_open_s_1m_pages <= 2", openSeconds <= 2);
            }
            if (Part("cold"))
            {
                var (mmap, viaFasterLogMapped, viaFasterLogFile) = ColdGets(100_000, 200_000);
                _report.Add("pers_get_cold_pages_per_s_mmap", mmap, "gets of spilled pages, 1 thread: Mapped device, decoded from the mapping");
                _report.Add("pers_get_cold_pages_per_s_fasterlog", viaFasterLogFile, "the same through FasterLog.ReadAsync on the File device");
                _report.Add("pers_get_cold_pages_per_s_fasterlog_mapped_device", viaFasterLogMapped, "the same through FasterLog.ReadAsync on the Mapped device");
                _report.Add("pers_get_cold_mmap_vs_fasterlog", mmap / viaFasterLogFile);
                _report.Target("pers_get_cold_pages_per_s_mmap >= 3 x pers_get_cold_pages_per_s_fasterlog", mmap >= 3 * viaFasterLogFile);
            }
            if (Part("churn"))
            {
                var (amplification, peak, compactions) = SpaceAmplification(100_000, 4);
                _report.Add("log_space_amplification", amplification, "log bytes on disk / live record bytes after 4 overwrites of 100,000 pages, compaction on (defaults)");
                _report.Add("log_space_amplification_peak", peak, $"the highest sampled during the churn ({compactions} compactions)");
                _report.Target("log_space_amplification <= 2.0", amplification <= 2.0);
            }
        }
        finally
        {
            if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
        }
    }

    private void Puts()
    {
        {
            int count = 20_000;
            var strict = new List<double>();
            var relaxed = new List<double>();
            var bare = new List<double>();
            var latencies = new List<double>();
            for (int rep = 0; rep < Repeats; rep++)
            {
                bare.Add(BareFasterLog(count));
                var (rate, lat, _) = StorePuts(count, DurabilityMode.Strict, measureRecovery: false);
                strict.Add(rate);
                latencies.AddRange(lat);
                relaxed.Add(StorePuts(count, DurabilityMode.Relaxed, measureRecovery: false).Rate);
            }
            latencies.Sort();
            _report.Add("pers_put_strict_pages_per_s", Report.Median(strict), $"PutAsync, Strict, {InFlight} in flight");
            _report.Add("fasterlog_commit_pages_per_s", Report.Median(bare), $"bare FasterLog: enqueue + group commit, {InFlight} in flight");
            _report.Add("pers_put_strict_vs_fasterlog", Report.Median(strict) / Report.Median(bare));
            _report.Add("pers_put_relaxed_pages_per_s", Report.Median(relaxed), "PutAsync, Relaxed");
            _report.Add("pers_commit_latency_p50_us", latencies[latencies.Count / 2], "put to acknowledge, Strict");
            _report.Add("pers_commit_latency_p99_us", latencies[(int)(latencies.Count * 0.99)]);
            _report.Target("pers_put_strict_vs_fasterlog >= 0.8", _report["pers_put_strict_vs_fasterlog"] >= 0.8);
        }
    }

    private string FreshDirectory(string name)
    {
        string dir = Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private (double Rate, List<double> LatenciesUs, double ReplayMbPerS) StorePuts(int count, DurabilityMode mode, bool measureRecovery)
    {
        string dir = FreshDirectory(mode.ToString());
        var options = new TmemOptions { DataDirectory = dir, Durability = mode, RamBudgetBytes = 1L << 30, LogDevice = _device, Diagnostics = new() };
        var latencies = new List<double>(count);
        double rate;
        using (var store = TmemStore.Open(options))
        {
            var client = store.GetClient(1);
            int pool = client.CreatePool(PoolOptions.Persistent);
            int next = -1;
            var sw = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, InFlight).Select(_ => Task.Run(async () =>
            {
                var mine = new List<double>();
                for (int i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
                {
                    long start = Stopwatch.GetTimestamp();
                    var status = await client.PutAsync(pool, new ObjectId((ulong)(i / 64)), (uint)(i % 64), _pages[i % _pages.Length]);
                    if (status != PutStatus.Stored) throw new InvalidOperationException($"A benchmark put was refused: {status}.");
                    mine.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                }
                return mine;
            })).ToArray();
            Task.WaitAll(workers);
            rate = count / sw.Elapsed.TotalSeconds;
            foreach (var w in workers) latencies.AddRange(w.Result);
            _lastStoreCommits = store.Diagnostics!.CommitCount;
        }
        double replay = 0;
        if (measureRecovery)
        {
            // Closing wrote a checkpoint; this figure is the full replay, so set it aside.
            File.Delete(Path.Combine(dir, "checkpoint", "index.ckpt"));
            using var reopened = TmemStore.Open(options, out var report);
            if (report.CheckpointCoveredUntil is not null) throw new InvalidOperationException("The replay measurement used a checkpoint.");
            if (report.PagesRecovered != count) throw new InvalidOperationException($"Recovered {report.PagesRecovered} pages, expected {count}.");
            replay = report.BytesReplayed / 1e6 / report.Elapsed.TotalSeconds;
        }
        return (rate, latencies, replay);
    }

    /// <summary>
    /// Writes <paramref name="pages"/> persistent pages (Relaxed), closes, removes the checkpoint,
    /// and reopens three times (each a full replay): median log bytes replayed per second.
    /// </summary>
    private (double Warm, double Cold) Replay(int pages)
    {
        string dir = FreshDirectory("replay");
        var options = new TmemOptions { DataDirectory = dir, Durability = DurabilityMode.Relaxed, RamBudgetBytes = 2L << 30, LogDevice = _device };
        Fill(options, pages);
        double Reopen()
        {
            File.Delete(Path.Combine(dir, "checkpoint", "index.ckpt"));
            using var reopened = TmemStore.Open(options, out var report);
            if (report.CheckpointCoveredUntil is not null) throw new InvalidOperationException("The replay measurement used a checkpoint.");
            if (report.PagesRecovered != pages) throw new InvalidOperationException($"Recovered {report.PagesRecovered} pages, expected {pages}.");
            return report.BytesReplayed / 1e6 / report.Elapsed.TotalSeconds;
        }
        var warm = new List<double> { Reopen(), Reopen(), Reopen() };
        var cold = new List<double>();
        for (int rep = 0; rep < 3 && DropPageCache(); rep++) cold.Add(Reopen());
        return (Report.Median(warm), cold.Count == 3 ? Report.Median(cold) : 0);
    }

    /// <summary>Opens a durable store, puts <paramref name="pages"/> corpus pages into a new persistent pool (client 1, pool 0) and closes it.</summary>
    private void Fill(TmemOptions options, int pages)
    {
        using var store = TmemStore.Open(options);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        for (int i = 0; i < pages; i++)
            if (client.Put(pool, new ObjectId((ulong)(i / 64)), (uint)(i % 64), _pages[i % _pages.Length]) != PutStatus.Stored)
                throw new InvalidOperationException("A benchmark put was refused.");
    }

    /// <summary>Drops the OS page cache (Linux, as root); false where that is not allowed.</summary>
    private static bool DropPageCache()
    {
        try
        {
            using (var sync = Process.Start("sync")!) sync.WaitForExit();
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    /// <summary>
    /// Fills a durable store (Relaxed, small RAM budget so pages spill) with
    /// <paramref name="pages"/> persistent pages, times a checkpoint, closes it, and times the
    /// reopen that loads the checkpoint.
    /// </summary>
    private (double CheckpointSeconds, double OpenSeconds) CheckpointOpen(int pages)
    {
        string dir = FreshDirectory("checkpoint");
        var options = new TmemOptions { DataDirectory = dir, Durability = DurabilityMode.Relaxed, RamBudgetBytes = 64L << 20, MaxPages = 2L * pages };
        double checkpointSeconds;
        using (var store = TmemStore.Open(options))
        {
            var client = store.GetClient(1);
            int pool = client.CreatePool(PoolOptions.Persistent);
            int next = -1;
            var workers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
            {
                for (int i = Interlocked.Increment(ref next); i < pages; i = Interlocked.Increment(ref next))
                    if (client.Put(pool, new ObjectId((ulong)(i / 64)), (uint)(i % 64), _pages[i % _pages.Length]) != PutStatus.Stored)
                        throw new InvalidOperationException("A benchmark put was refused.");
            })).ToArray();
            Task.WaitAll(workers);
            var sw = Stopwatch.StartNew();
            store.Checkpoint();
            checkpointSeconds = sw.Elapsed.TotalSeconds;
        }
        using var reopened = TmemStore.Open(options, out var report);
        if (report.PagesRecovered != pages || report.CheckpointCoveredUntil is null)
            throw new InvalidOperationException($"Reopen recovered {report.PagesRecovered} pages (checkpoint used: {report.CheckpointCoveredUntil is not null}).");
        return (checkpointSeconds, report.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Writes <paramref name="pages"/> persistent pages, closes (a checkpoint), and reopens the same
    /// directory three ways with a RAM budget that holds none of them, so every get reads the log:
    /// the Mapped device with direct reads, the Mapped device through FasterLog.ReadAsync, the File
    /// device (FasterLog.ReadAsync). Random gets on one thread; median of three passes each.
    /// </summary>
    private (double Mmap, double FasterLogMapped, double FasterLogFile) ColdGets(int pages, int gets)
    {
        string dir = FreshDirectory("cold");
        var options = new TmemOptions { DataDirectory = dir, Durability = DurabilityMode.Relaxed, RamBudgetBytes = 1L << 30 };
        Fill(options, pages);
        double Measure(LogDeviceKind device, bool direct, bool warm = false)
        {
            var cold = options.Clone();
            cold.LogDevice = device;
            cold.Diagnostics = new() { DirectReads = direct };
            if (warm)
            {
                // The reference: every page with its RAM copy (a full replay installs them; a
                // checkpoint's pages come back spilled).
                File.Delete(Path.Combine(dir, "checkpoint", "index.ckpt"));
            }
            else
            {
                cold.RamBudgetBytes = 1L << 20;
                cold.MaxPages = 2L * pages; // descriptors for every page, though no RAM copy
            }
            using var store = TmemStore.Open(cold);
            if (store.GetStats().PersSpilledPages != (warm ? 0 : pages)) throw new InvalidOperationException($"The {(warm ? "warm" : "cold")}-get store reopened with {store.GetStats().PersSpilledPages} pages spilled.");
            var client = store.GetClient(1);
            var page = new byte[PageSize];
            var rates = new List<double>();
            for (int pass = 0; pass < 3; pass++)
            {
                var rng = new Random(pass);
                var sw = Stopwatch.StartNew();
                for (int n = 0; n < gets; n++)
                {
                    int i = rng.Next(pages);
                    if (client.Get(0, new ObjectId((ulong)(i / 64)), (uint)(i % 64), page) != GetStatus.Hit)
                        throw new InvalidOperationException($"Cold get of page {i} missed.");
                }
                rates.Add(gets / sw.Elapsed.TotalSeconds);
                Console.WriteLine($"    {device} direct={direct} pass {pass}: {rates[^1]:F0}/s");
            }
            if (direct && !warm && store.Diagnostics!.DirectReadCount == 0) throw new InvalidOperationException("The mapped device served no direct read.");
            return Report.Median(rates);
        }
        var result = (Measure(LogDeviceKind.Mapped, direct: true), Measure(LogDeviceKind.Mapped, direct: false), Measure(LogDeviceKind.File, direct: false));
        _report.Add("pers_get_ram_pages_per_s", Measure(LogDeviceKind.Mapped, direct: true, warm: true), "the same gets with every page's RAM copy present (decompression only): the ceiling for cold gets");
        return result;
    }

    /// <summary>
    /// Default options (32 MiB segments, compaction at a live fraction of 0.6): puts
    /// <paramref name="pages"/> pages, then overwrites each <paramref name="overwrites"/> times
    /// with other corpus pages from two threads, sampling disk bytes / live bytes; the result is
    /// taken once the compaction running at the end (if any) has finished.
    /// </summary>
    private (double Final, double Peak, long Compactions) SpaceAmplification(int pages, int overwrites)
    {
        string dir = FreshDirectory("churn");
        var options = new TmemOptions { DataDirectory = dir, Durability = DurabilityMode.Relaxed, RamBudgetBytes = 1L << 30 };
        using var store = TmemStore.Open(options);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        double peak = 0;
        using var done = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                var stats = store.GetStats();
                if (stats.LogLiveBytes > 64L << 20) peak = Math.Max(peak, stats.LogSpaceAmplification);
                await Task.Delay(20);
            }
        });
        long total = (long)pages * (overwrites + 1);
        long next = -1;
        var writers = Enumerable.Range(0, 2).Select(w => Task.Run(() =>
        {
            for (long n = Interlocked.Increment(ref next); n < total; n = Interlocked.Increment(ref next))
            {
                int i = (int)(n % pages);
                var page = _pages[(int)((n * 7919) % _pages.Length)];
                var status = client.Put(pool, new ObjectId((ulong)(i / 64)), (uint)(i % 64), page);
                if (status != PutStatus.Stored)
                    throw new InvalidOperationException($"A benchmark put was refused: {status} (log disk {store.GetStats().LogDiskBytes} bytes, storage {store.Storage.State}).");
            }
        })).ToArray();
        Task.WaitAll(writers);
        done.Cancel();
        sampler.Wait();
        // A compaction the last puts started finishes, and FASTER deletes the truncated segments.
        SpinWait.SpinUntil(() => store.CompactLog() is null, 60_000);
        Thread.Sleep(500);
        var final = store.GetStats();
        Console.WriteLine($"  churn: {final.LogCompactions} compactions, log {final.LogBytes >> 20} MiB, on disk {final.LogDiskBytes >> 20} MiB, live {final.LogLiveBytes >> 20} MiB");
        return (final.LogSpaceAmplification, Math.Max(peak, final.LogSpaceAmplification), final.LogCompactions);
    }

    /// <summary>
    /// The baseline: the same compressed payloads (plus the same 48-byte header size) enqueued on a
    /// bare FasterLog by 64 tasks that each wait for their commit, while one loop commits
    /// back to back (group commit), on the same kind of device.
    /// </summary>
    private double BareFasterLog(int count)
    {
        string dir = FreshDirectory("fasterlog");
        using IDevice device = _device == LogDeviceKind.Mapped
            ? new Tmem.LogTier.MappedLogDevice(Path.Combine(dir, "segment"), 1L << 26) // the store's default segment size
            : Devices.CreateLogDevice(Path.Combine(dir, "segment"), preallocateFile: false, deleteOnClose: true);
        using var log = new FasterLog(new FasterLogSettings
        {
            LogDevice = device,
            PageSizeBits = 22,
            MemorySizeBits = 24,
            SegmentSizeBits = 26,
            LogCommitDir = Path.Combine(dir, "commits"),
            TryRecoverLatest = false,
        });
        var entries = _compressed.Select(c => new byte[48 + c.Length]).ToArray();
        for (int i = 0; i < entries.Length; i++) _compressed[i].CopyTo(entries[i], 48);
        int next = -1;
        using var done = new CancellationTokenSource();
        var committer = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                if (log.TailAddress > log.CommittedUntilAddress)
                {
                    await log.CommitAsync();
                    _bareCommits++;
                }
                else await Task.Yield();
            }
        });
        var sw = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, InFlight).Select(_ => Task.Run(async () =>
        {
            for (int i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
            {
                long address = log.Enqueue(entries[i % entries.Length]);
                await log.WaitForCommitAsync(address + 1);
            }
        })).ToArray();
        Task.WaitAll(workers);
        double rate = count / sw.Elapsed.TotalSeconds;
        done.Cancel();
        committer.Wait();
        return rate;
    }
}
