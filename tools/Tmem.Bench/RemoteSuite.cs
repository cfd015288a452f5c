using System.Diagnostics;
using K4os.Compression.LZ4;
using StackExchange.Redis;
using Tmem.GarnetHost;
using Tmem.RamTier;
using Tmem.Remote;

namespace Tmem.Bench;

/// <summary>
/// The <c>remote</c> suite: the remote tier on a Garnet cluster this suite starts (3 primaries on
/// loopback, tests/Tmem.GarnetHost), against the same store without it, an exact LRU of the
/// combined capacity, and StackExchange.Redis GETs of the same values from the same cluster, in the
/// same run.
/// </summary>
internal sealed class RemoteSuite
{
    private const int PageSize = Corpus.PageSize;
    private const int PagesPerObject = 64;

    private readonly Report _report;
    private readonly byte[][] _accepted;
    private readonly int[] _compressedLength;

    public RemoteSuite(Corpus corpus, Report report)
    {
        _report = report;
        var buffer = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
        var accepted = new List<byte[]>();
        var lengths = new List<int>();
        foreach (var page in corpus.Pages)
        {
            if (Corpus.IsSameFilled(page)) continue;
            int length = LZ4Codec.Encode(page, buffer, LZ4Level.L00_FAST);
            if (length > PageSize * 7 / 8) continue;
            accepted.Add(page);
            lengths.Add(length);
        }
        _accepted = accepted.ToArray();
        _compressedLength = lengths.ToArray();
        Console.WriteLine($"corpus: {corpus.Description}: {_accepted.Length} compressible pages used");
    }

    private static ObjectId Oid(int key) => new((ulong)(key / PagesPerObject), 0xBE7C, 1);

    private static uint Index(int key) => (uint)(key % PagesPerObject);

    public void Run()
    {
        if (_accepted.Length == 0) throw new InvalidOperationException("The corpus has no compressible pages to benchmark.");
        Console.WriteLine("starting a 3-primary Garnet cluster on loopback...");
        using var cluster = GarnetCluster.StartAsync(primaries: 3, extraArguments: "--memory 1g --index 64m").GetAwaiter().GetResult();
        var config = RedisRemotePageStore.ClientConfiguration(Settings(cluster, 0));
        config.AbortOnConnectFail = true;
        config.AsyncTimeout = config.SyncTimeout = 10_000;
        using var connection = ConnectionMultiplexer.Connect(config);
        HitRatio(cluster, connection);
        Latency(cluster, connection);
        PutAtBudget(cluster, connection);
        Metadata(cluster, connection);
        var r = _report;
        r.Target("remote_hit_ratio_vs_exact_lru >= 0.95", r["remote_hit_ratio_vs_exact_lru"] >= 0.95);
        r.Target("remote_get_p50_vs_direct <= 1.5", r["remote_get_p50_vs_direct"] <= 1.5);
        r.Target("remote_put_at_budget_vs_off >= 0.8", r["remote_put_at_budget_vs_off"] >= 0.8);
    }

    private static RemoteTierOptions Settings(GarnetCluster cluster, long capacity) => new()
    {
        Enabled = true,
        Endpoints = cluster.Endpoints,
        StoreName = "bench",
        RequestTimeoutMs = 1000,
        CapacityBytes = Math.Max(1L << 20, capacity),
        QueueBytes = 64L << 20,
    };

    private static TmemStore Open(long budget, RemoteTierOptions? remote, IConnectionMultiplexer connection, long maxPages = 0)
    {
        var options = new TmemOptions { RamBudgetBytes = budget, MaxPages = maxPages };
        if (remote is null) return TmemStore.Open(options);
        options.RemoteTier = remote;
        options.UseRemotePageStore(o => new RedisRemotePageStore(o, connection));
        var store = TmemStore.Open(options);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (store.RemoteTier.State != RemoteTierState.Healthy)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the remote tier did not become healthy: {store.RemoteTier}");
            Thread.Sleep(5);
        }
        return store;
    }

    private static void WaitWritten(TmemStore store)
    {
        while (store.GetStats().RemoteQueueBytes != 0) Thread.Sleep(2);
    }

    /// <summary>The engine suite's Zipf(0.99) trace, get-then-put-on-miss, local budget 25% of the working set's slot bytes.</summary>
    private void HitRatio(GarnetCluster cluster, IConnectionMultiplexer connection)
    {
        const double skew = 0.99;
        int workingSet = Math.Max(16384, _accepted.Length);
        var slot = Enumerable.Range(0, workingSet).Select(k => SlabAllocator.SlotSizeFor(_compressedLength[k % _accepted.Length])).ToArray();
        long slotBytes = slot.Sum(s => (long)s);
        long budget = Math.Max(1L << 16, slotBytes / 4);
        long remoteCapacity = Enumerable.Range(0, workingSet).Sum(k => 64L + _compressedLength[k % _accepted.Length]);
        var zipf = new Zipf(workingSet, skew, seed: 7);
        var shuffle = Enumerable.Range(0, workingSet).OrderBy(_ => Random.Shared.Next()).ToArray();
        int accesses = 10 * workingSet;
        var trace = new int[accesses];
        for (int i = 0; i < accesses; i++) trace[i] = shuffle[zipf.Next()];

        double Replay(RemoteTierOptions? remote, out TmemStats stats)
        {
            using var store = Open(budget, remote, connection, maxPages: workingSet * 2L);
            var client = store.GetClient(1);
            int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
            var page = new byte[PageSize];
            long hits = 0, counted = 0;
            for (int i = 0; i < accesses; i++)
            {
                int key = trace[i];
                bool hit = client.Get(pool, Oid(key), Index(key), page) == GetStatus.Hit;
                if (!hit) client.Put(pool, Oid(key), Index(key), _accepted[key % _accepted.Length]);
                if (i < workingSet) continue; // warm-up
                counted++;
                if (hit) hits++;
            }
            stats = store.GetStats();
            return (double)hits / counted;
        }

        double on = Replay(Settings(cluster, remoteCapacity + (1L << 20)), out var onStats);
        double off = Replay(null, out _);
        var lru = new ExactLru(budget + remoteCapacity);
        long lruHits = 0, lruCounted = 0;
        for (int i = 0; i < accesses; i++)
        {
            bool hit = lru.Access(trace[i], slot[trace[i]]);
            if (i < workingSet) continue;
            lruCounted++;
            if (hit) lruHits++;
        }
        double exact = (double)lruHits / lruCounted;
        _report.Add("remote_hit_ratio", on, $"Zipf {skew}, {workingSet:N0} handles, local budget 25% of their slot bytes, remote capacity all of them; local + remote hits");
        _report.Add("local_only_hit_ratio", off, "the same trace and budget, remote tier off");
        _report.Add("exact_lru_combined_hit_ratio", exact, "an exact LRU with the local budget + the remote capacity");
        _report.Add("remote_hit_ratio_vs_exact_lru", on / exact);
        _report.Add("remote_bytes_per_page", onStats.RemotePages == 0 ? 0 : (double)onStats.RemoteBytes / (onStats.RemoteBytes - 64.0 * onStats.RemotePages), "remote value bytes over the compressed bytes (64-byte header)");
    }

    /// <summary>Gets of pages only the cluster holds, against StackExchange.Redis GETs of values of the same sizes, one at a time.</summary>
    private void Latency(GarnetCluster cluster, IConnectionMultiplexer connection)
    {
        const int Count = 5000, Rounds = 3;
        using var store = Open(64 << 10, Settings(cluster, 1L << 30), connection);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        for (int k = 0; k < Count; k++) client.Put(pool, Oid(k), Index(k), _accepted[k % _accepted.Length]);
        WaitWritten(store);
        var db = connection.GetDatabase();
        var values = Enumerable.Range(0, Count).Select(k => new byte[64 + _compressedLength[k % _accepted.Length]]).ToArray();
        foreach (var v in values) Random.Shared.NextBytes(v);
        for (int k = 0; k < Count; k++) db.StringSet($"bench-direct:{k}", values[k]);
        var page = new byte[PageSize];
        var remote = new List<double>();
        var direct = new List<double>();
        for (int round = 0; round < Rounds; round++)
        {
            for (int k = 0; k < Count; k++)
            {
                long start = Stopwatch.GetTimestamp();
                var status = client.Get(pool, Oid(k), Index(k), page);
                double us = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                if (status == GetStatus.Hit && round > 0) remote.Add(us);
                start = Stopwatch.GetTimestamp();
                using (var lease = db.StringGetLease($"bench-direct:{k}")) { }
                us = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                if (round > 0) direct.Add(us);
            }
        }
        remote.Sort();
        direct.Sort();
        double p50 = remote[remote.Count / 2], p99 = remote[(int)(remote.Count * 0.99)], d50 = direct[direct.Count / 2];
        _report.Add("remote_get_p50_us", p50, $"{remote.Count:N0} gets of remote pages (shared pool), sync, one at a time");
        _report.Add("remote_get_p99_us", p99);
        _report.Add("direct_get_p50_us", d50, "StackExchange.Redis GET of values of the same sizes from the same cluster");
        _report.Add("direct_get_p99_us", direct[(int)(direct.Count * 0.99)]);
        _report.Add("remote_get_p50_vs_direct", p50 / d50);
        for (int k = 0; k < Count; k++) db.KeyDelete($"bench-direct:{k}", CommandFlags.FireAndForget);
    }

    /// <summary>Ephemeral puts of fresh handles into a full store (each evicts one page), remote tier on and off.</summary>
    private void PutAtBudget(GarnetCluster cluster, IConnectionMultiplexer connection)
    {
        const int Fill = 20_000, Timed = 40_000;
        double Rate(bool on, out double processUs, out double clusterUs)
        {
            using var store = Open(8L << 20, on ? Settings(cluster, 1L << 30) : null, connection, maxPages: 4L * (Fill + Timed));
            var client = store.GetClient(1);
            int pool = client.CreatePool(PoolOptions.Ephemeral);
            for (int k = 0; k < Fill; k++) client.Put(pool, Oid(k), Index(k), _accepted[k % _accepted.Length]);
            if (on) WaitWritten(store);
            var process = Process.GetCurrentProcess();
            var processCpu = process.TotalProcessorTime;
            var clusterCpu = ClusterCpu(cluster);
            var sw = Stopwatch.StartNew();
            for (int k = Fill; k < Fill + Timed; k++) client.Put(pool, Oid(k), Index(k), _accepted[k % _accepted.Length]);
            double rate = Timed / sw.Elapsed.TotalSeconds;
            if (on) WaitWritten(store); // the writeback's whole cost, not just what ran beside the puts
            process.Refresh();
            processUs = (process.TotalProcessorTime - processCpu).TotalMicroseconds / Timed;
            clusterUs = (ClusterCpu(cluster) - clusterCpu).TotalMicroseconds / Timed;
            return rate;
        }
        var offRates = new List<double>();
        var onRates = new List<double>();
        var offCpu = new List<double>();
        var onCpu = new List<double>();
        var onCluster = new List<double>();
        for (int i = 0; i < 3; i++)
        {
            offRates.Add(Rate(false, out double cpu, out _));
            offCpu.Add(cpu);
            onRates.Add(Rate(true, out cpu, out double clusterCpu));
            onCpu.Add(cpu);
            onCluster.Add(clusterCpu);
        }
        double off = Report.Median(offRates), on = Report.Median(onRates);
        _report.Add("remote_put_at_budget_pages_per_s_on", on, "8 MiB budget, full; fresh handles, each put evicts (median of 3)");
        _report.Add("remote_put_at_budget_pages_per_s_off", off);
        _report.Add("remote_put_at_budget_vs_off", on / off);
        _report.Add("remote_put_at_budget_cpu_us_per_page_on", Report.Median(onCpu), "this process's CPU time per put, writeback drained included (median of 3)");
        _report.Add("remote_put_at_budget_cpu_us_per_page_off", Report.Median(offCpu));
        _report.Add("remote_put_at_budget_cluster_cpu_us_per_page", Report.Median(onCluster), "the Garnet nodes' CPU time per put, remote tier on (median of 3)");
    }

    /// <summary>The CPU time the cluster's node processes have used so far (utime + stime from /proc).</summary>
    private static TimeSpan ClusterCpu(GarnetCluster cluster)
    {
        long ticks = 0;
        foreach (var node in cluster.Nodes)
        {
            if (node.ProcessId == 0) continue;
            var stat = File.ReadAllText($"/proc/{node.ProcessId}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' '); // after "pid (comm) ": field 3 is fields[0]
            ticks += long.Parse(fields[11]) + long.Parse(fields[12]);  // utime, stime (fields 14 and 15)
        }
        return TimeSpan.FromSeconds(ticks / 100.0); // USER_HZ
    }

    /// <summary>Managed heap growth per remote page (65,000 pages, nearly all remote): the local metadata a remote page costs.</summary>
    private void Metadata(GarnetCluster cluster, IConnectionMultiplexer connection)
    {
        const int Count = 65_000;
        long before = GC.GetTotalMemory(forceFullCollection: true);
        using var store = Open(64 << 10, Settings(cluster, 1L << 30), connection, maxPages: 2 * Count);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        for (int k = 0; k < Count; k++)
        {
            client.Put(pool, Oid(k), Index(k), _accepted[k % _accepted.Length]);
            while (k % 256 == 0 && store.GetStats().RemoteQueueBytes > 32L << 20) Thread.Sleep(1);
        }
        WaitWritten(store);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        var s = store.GetStats();
        GC.KeepAlive(store);
        _report.Add("remote_metadata_bytes_per_page", (after - before) / (double)s.RemotePages, $"managed heap growth per remote page, {s.RemotePages:N0} remote pages, {PagesPerObject} per object");
    }
}
