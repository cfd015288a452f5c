using System.Diagnostics;
using Tmem.GarnetHost;
using Xunit.Abstractions;
using static Tmem.Remote.Tests.RemotePages;

namespace Tmem.Remote.Tests;

/// <summary>
/// Nodes that die, come back empty or with old data, or hang (SIGSTOP), each test on a 3-primary
/// Garnet cluster of its own, with the store's own client (as the service runs it). Failures
/// must be misses within the request timeout, never a wrong or stale page, and the tier resumes by
/// itself. Latency bounds allow 1 s of scheduling slack on top of the timeout: the test machine is
/// small and shared.
/// </summary>
[Trait("Kind", "Remote")]
public sealed class RemoteFailureTests(ITestOutputHelper output)
{
    private const int SchedulingSlackMs = 1000;

    /// <summary>
    /// Freshly started nodes (and the client's first requests) are slow for a moment on this
    /// 2-core machine: the first few hundred writes can each exceed a 500 ms timeout. The tests
    /// measure a started cluster, so a throwaway pool's pages go through every node first.
    /// </summary>
    private static void WarmUp(TmemStore store)
    {
        var client = store.GetClient(99);
        int pool = client.CreatePool(new PoolOptions());
        for (int o = 0; o < 30; o++)
            for (uint i = 0; i < 10; i++) client.Put(pool, Oid(o), i, Page($"warm-up o{o}/i{i}", 0));
        WaitWritten(store);
        client.DestroyPool(pool);
    }

    private static async Task<(GarnetCluster Cluster, TmemStore Store)> StartAsync(int requestTimeoutMs)
    {
        var cluster = await GarnetCluster.StartAsync(primaries: 3);
        try
        {
            var options = new TmemOptions { RamBudgetBytes = 64 << 10, RemoteTier = GarnetFixture.Settings(cluster, "failures", requestTimeoutMs) };
            options.UseRemotePageStore(o => new RedisRemotePageStore(o));
            var store = TmemStore.Open(options);
            await WaitStateAsync(store, RemoteTierState.Healthy, TimeSpan.FromSeconds(20));
            WarmUp(store);
            return (cluster, store);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    internal static async Task WaitStateAsync(TmemStore store, RemoteTierState state, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (store.RemoteTier.State != state)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the remote tier did not become {state} within {within.TotalSeconds} s: {store.RemoteTier}");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// Four workers put, get and flush their own handles (a shared pool, so pages stay after a hit)
    /// while a node is saved, killed, restarted with the data of its save (old versions), then
    /// killed and restarted empty. Each worker knows the newest version of each of its handles and
    /// whether a get already missed it: a hit must be exactly that version, and a handle that
    /// missed must keep missing until its next put.
    /// </summary>
    [Fact]
    public async Task NodeKilledUnderLoad_ThenBackWithOldData_ThenBackEmpty_NeverAWrongOrStalePage()
    {
        const int TimeoutMs = 200;
        var (cluster, store) = await StartAsync(TimeoutMs);
        using var _ = cluster;
        using var __ = store;
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        var phase = "healthy";
        var stop = new CancellationTokenSource();
        var stats = new PhaseStats();
        // Workers behave as real clients do, never holding a pool thread forever: the synchronous
        // ones (odd) each have a thread of their own, the asynchronous ones yield once an
        // operation. A loop that neither awaits nor yields (a get served from RAM completes at once)
        // holds its pool thread for good, and four of them on a 2-core machine starve the
        // continuations that timeouts, the client and this test's own commands to the nodes need.
        var workers = Enumerable.Range(0, 4).Select(w => w % 2 == 1
            ? Task.Factory.StartNew(() => WorkAsync(client, pool, w, () => phase, stats, stop.Token).GetAwaiter().GetResult(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
            : Task.Run(() => WorkAsync(client, pool, w, () => phase, stats, stop.Token))).ToArray();

        async Task Phase(string name, int milliseconds)
        {
            phase = name;
            await Task.Delay(milliseconds);
        }

        await Phase("healthy", 1500);
        await cluster.Nodes[1].SaveAsync(); // what the node comes back with below
        await Phase("saved", 1000);
        cluster.Nodes[1].Kill();
        await Phase("killed", 2000);
        await cluster.Nodes[1].RestartAsync(cluster, recover: true);
        await Phase("back with old data", 2000);
        cluster.Nodes[1].Kill();
        await cluster.Nodes[1].RestartAsync(cluster, recover: false);
        await Phase("back empty", 1500);
        await WaitStateAsync(store, RemoteTierState.Healthy, TimeSpan.FromSeconds(15));
        await Phase("healthy again", 1500);
        stop.Cancel();
        await Task.WhenAll(workers);

        var s = store.GetStats();
        output.WriteLine(stats.Report());
        output.WriteLine(RemoteTierTests.Counters(store));
        Assert.Empty(stats.Wrong);
        foreach (var name in new[] { "killed", "back with old data", "back empty", "healthy again" })
            Assert.True(stats.Gets(name) > 50, $"the store stopped serving in phase '{name}': {stats.Report()}");
        Assert.True(stats.Hits("killed") > 0, $"nothing hit while a node was down: {stats.Report()}");
        Assert.True(stats.Hits("healthy again") > 0, $"no hit once the cluster was healthy again: {stats.Report()}");
        Assert.True(s.RemoteFailures + s.RemoteTimeouts + s.RemoteWriteFailures > 0, "killing a node caused no failure at all");
        Assert.True(s.RemoteHits > 0 && s.RemoteWrites > 0);
        Assert.True(stats.MaxGetMs < TimeoutMs + SchedulingSlackMs, $"a get took {stats.MaxGetMs} ms with a {TimeoutMs} ms timeout: {stats.Report()}");
    }

    private sealed class PhaseStats
    {
        private readonly Dictionary<string, (long Gets, long Hits)> _byPhase = new();
        public readonly List<string> Wrong = new();
        public long MaxGetMs;
        private string _slowest = "";

        public void Count(string phase, bool hit, long ms, bool sync)
        {
            lock (_byPhase)
            {
                var (gets, hits) = _byPhase.GetValueOrDefault(phase);
                _byPhase[phase] = (gets + 1, hits + (hit ? 1 : 0));
                if (ms <= MaxGetMs) return;
                MaxGetMs = ms;
                // What the process was doing then, so a slow get can be told apart from a starved pool.
                _slowest = $" ({(sync ? "sync" : "async")}, in phase '{phase}'; thread pool then: {ThreadPool.ThreadCount} threads, {ThreadPool.PendingWorkItemCount} items queued)";
            }
        }

        public void Fail(string what)
        {
            lock (Wrong) Wrong.Add(what);
        }

        public long Gets(string phase)
        {
            lock (_byPhase) return _byPhase.GetValueOrDefault(phase).Gets;
        }

        public long Hits(string phase)
        {
            lock (_byPhase) return _byPhase.GetValueOrDefault(phase).Hits;
        }


        public string Report()
        {
            lock (_byPhase) return string.Join("; ", _byPhase.Select(kv => $"{kv.Key}: {kv.Value.Gets} gets, {kv.Value.Hits} hits")) + $"; slowest get {MaxGetMs} ms{_slowest}";
        }
    }

    private static async Task WorkAsync(TmemClient client, int pool, int worker, Func<string> phase, PhaseStats stats, CancellationToken stop)
    {
        const int Objects = 8, Indexes = 8;
        var newest = new long[Objects, Indexes];   // 0: never put or flushed
        var missed = new bool[Objects, Indexes];   // a get missed since the last put
        var random = new Random(worker);
        var buffer = new byte[PageSize];
        long version = 0;
        while (!stop.IsCancellationRequested)
        {
            if (worker % 2 == 0) await Task.Yield();
            int o = random.Next(Objects), i = random.Next(Indexes);
            var oid = Oid(worker * 100 + o);
            string tag = $"w{worker}/o{o}/i{i}";
            int dice = random.Next(100);
            if (dice < 45)
            {
                long v = ++version;
                if (client.Put(pool, oid, (uint)i, Page(tag, v)) == PutStatus.Stored)
                {
                    newest[o, i] = v;
                    missed[o, i] = false;
                }
                else
                {
                    newest[o, i] = 0; // a failed put flushes the old page
                }
            }
            else if (dice < 50)
            {
                client.FlushPage(pool, oid, (uint)i);
                newest[o, i] = 0;
            }
            else
            {
                string now = phase();
                var watch = Stopwatch.StartNew();
                // Odd workers get synchronously: the thread waits for the cluster itself.
                var status = worker % 2 == 1 ? client.Get(pool, oid, (uint)i, buffer) : await client.GetAsync(pool, oid, (uint)i, buffer);
                stats.Count(now, status == GetStatus.Hit, watch.ElapsedMilliseconds, worker % 2 == 1);
                if (status == GetStatus.Hit)
                {
                    if (newest[o, i] == 0) stats.Fail($"{now}: {tag} hit after a flush: {Describe(buffer)}");
                    else if (missed[o, i]) stats.Fail($"{now}: {tag} hit after a miss (back from the cluster): {Describe(buffer)}");
                    else if (!Page(tag, newest[o, i]).AsSpan().SequenceEqual(buffer)) stats.Fail($"{now}: {tag} expected v{newest[o, i]}, got {Describe(buffer)}");
                }
                else if (newest[o, i] != 0)
                {
                    missed[o, i] = true;
                }
            }
        }
    }

    /// <summary>
    /// A node stopped with SIGSTOP keeps its connections open and answers nothing: gets of pages on
    /// it miss within the request timeout, the state turns degraded, the other nodes keep serving,
    /// and after SIGCONT the tier is healthy again by itself and new pages come back from the cluster.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SlowNode_Paused_GetsMissWithinTheTimeout_ThenResumes(bool syncGets)
    {
        const int TimeoutMs = 500;
        var (cluster, store) = await StartAsync(TimeoutMs);
        using var _ = cluster;
        using var __ = store;
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        const int Objects = 30, Indexes = 10;
        for (int o = 0; o < Objects; o++)
            for (uint i = 0; i < Indexes; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(o), i, Page($"o{o}/i{i}", 1)));
        var watch0 = Stopwatch.StartNew();
        WaitWritten(store);
        output.WriteLine($"written in {watch0.ElapsedMilliseconds} ms: {RemoteTierTests.Counters(store)}");
        Assert.True(store.GetStats().RemoteWrites > Objects * Indexes / 2, RemoteTierTests.Counters(store));

        var node = cluster.Nodes[0];
        node.Pause();
        var missedPages = new List<(int, uint)>();
        long slowest = 0, hits = 0;
        var buffer = new byte[PageSize];
        try
        {
            // The first page of every object: each object is one key, so its slot (random with the
            // store's incarnation) puts it on the paused node or another; about a third miss, each
            // waiting out the timeout, and the rest must hit.
            for (int o = 0; o < Objects; o++)
            {
                const uint i = 0;
                var watch = Stopwatch.StartNew();
                var status = syncGets ? client.Get(pool, Oid(o), i, buffer) : await client.GetAsync(pool, Oid(o), i, buffer);
                slowest = Math.Max(slowest, watch.ElapsedMilliseconds);
                if (status == GetStatus.Hit)
                {
                    Assert.True(Page($"o{o}/i{i}", 1).AsSpan().SequenceEqual(buffer), $"o{o}/i{i} got {Describe(buffer)}");
                    hits++;
                }
                else missedPages.Add((o, i));
            }
            await WaitStateAsync(store, RemoteTierState.Degraded, TimeSpan.FromSeconds(5));
        }
        finally
        {
            node.Resume();
        }
        output.WriteLine($"paused node: {hits} hits, {missedPages.Count} misses, slowest get {slowest} ms; {RemoteTierTests.Counters(store)}");
        Assert.True(missedPages.Count > 0, "no page was on the paused node");
        Assert.True(hits > 0, "the other nodes did not serve");
        Assert.True(store.GetStats().RemoteTimeouts > 0, "no request timed out");
        Assert.True(slowest < TimeoutMs + SchedulingSlackMs, $"a get took {slowest} ms with a {TimeoutMs} ms timeout");

        // The node answers again: what missed stays missed (get-get coherency), new pages work.
        await WaitStateAsync(store, RemoteTierState.Healthy, TimeSpan.FromSeconds(15));
        foreach (var (o, i) in missedPages) Assert.Equal(GetStatus.Miss, await client.GetAsync(pool, Oid(o), i, buffer));
        var before = store.GetStats();
        for (int o = 0; o < Objects; o++)
            for (uint i = 0; i < Indexes; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(o), i, Page($"o{o}/i{i}", 2)));
        WaitWritten(store);
        var written = store.GetStats();
        int misses = 0;
        for (int o = 0; o < Objects; o++)
        {
            for (uint i = 0; i < Indexes; i++)
            {
                if (await client.GetAsync(pool, Oid(o), i, buffer) == GetStatus.Hit)
                    Assert.True(Page($"o{o}/i{i}", 2).AsSpan().SequenceEqual(buffer), $"o{o}/i{i} got {Describe(buffer)}");
                else misses++;
            }
        }
        // Every page written to the cluster comes back; a page may miss only if its write did not
        // land (a node that just resumed can still time a write out on this loaded machine).
        var after = store.GetStats();
        Assert.True(after.RemoteHits > written.RemoteHits, $"no page came back from the cluster after the node resumed; {RemoteTierTests.Counters(store)}");
        long notWritten = written.RemoteWriteDrops + written.RemoteWriteFailures - before.RemoteWriteDrops - before.RemoteWriteFailures;
        Assert.True(misses <= notWritten, $"{misses} pages missed after the node resumed, {notWritten} writes did not land; {RemoteTierTests.Counters(store)}");
    }
}
