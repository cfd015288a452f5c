using static Tmem.Remote.Tests.RemotePages;

namespace Tmem.Remote.Tests;

/// <summary>
/// The contract with the remote tier on, on a real 3-primary Garnet cluster: a RAM budget of 64
/// KiB (the least allowed) against hundreds of ~1.1 KiB pages, so nearly every page is evicted to
/// the cluster and gets come back from it. Every page names its handle and version.
/// </summary>
[Trait("Kind", "Remote")]
public sealed class RemoteTierTests(GarnetFixture garnet) : IClassFixture<GarnetFixture>
{
    private const int Pages = 300;

    /// <summary>
    /// These tests check correctness, not timeouts (RemoteFailureTests does): a request may take 2 s
    /// before it counts as failed, so a loaded test machine does not turn hits into misses.
    /// </summary>
    private const int RequestTimeoutMs = 2000;

    private TmemStore Open(string storeName = "test", Func<IRemotePageStore, IRemotePageStore>? wrap = null) =>
        GarnetFixture.OpenStore(new TmemOptions { RamBudgetBytes = 64 << 10 }, GarnetFixture.Settings(garnet.Cluster, storeName, RequestTimeoutMs), garnet.Connection, wrap);

    private static PutStatus Put(TmemClient client, int pool, int obj, uint index, long version) =>
        client.Put(pool, Oid(obj), index, Page($"p{pool}/o{obj}/i{index}", version));

    /// <summary>The remote tier's counters and state, for failure messages.</summary>
    public static string Counters(TmemStore store) =>
        string.Join(", ", store.GetStats().ToList().Where(kv => kv.Key.StartsWith("remote", StringComparison.Ordinal) || kv.Key.StartsWith("evicted", StringComparison.Ordinal)).Select(kv => $"{kv.Key}={kv.Value}"))
        + $"; {store.RemoteTier}";

    private static void AssertPage(byte[] buffer, int pool, int obj, uint index, long version)
    {
        var expected = Page($"p{pool}/o{obj}/i{index}", version);
        Assert.True(expected.AsSpan().SequenceEqual(buffer), $"p{pool}/o{obj}/i{index}: expected v{version}, got {Describe(buffer)}");
    }

    [Fact]
    public void EvictedPages_PrivatePool_ComeBackExactOnceEach()
    {
        using var store = Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions());
        for (int i = 0; i < Pages; i++) Assert.Equal(PutStatus.Stored, Put(client, pool, i % 10, (uint)(i / 10), 1));
        WaitWritten(store);
        var s = store.GetStats();
        Assert.True(s.RemoteWrites > Pages / 2, $"only {s.RemoteWrites} pages were written to the cluster; {Counters(store)}");
        Assert.Equal(0, s.RemoteWriteDrops);
        Assert.True(s.RemotePages > Pages / 2 && s.RemoteBytes > s.RemotePages * 64, $"remote_pages {s.RemotePages}, remote_bytes {s.RemoteBytes}");

        var buffer = new byte[PageSize];
        for (int i = 0; i < Pages; i++)
        {
            Assert.True(client.Get(pool, Oid(i % 10), (uint)(i / 10), buffer) == GetStatus.Hit, $"page {i} missed; {Counters(store)}");
            AssertPage(buffer, pool, i % 10, (uint)(i / 10), 1);
        }
        // Exclusive: each hit took the page, the remote copy with it.
        for (int i = 0; i < Pages; i++) Assert.Equal(GetStatus.Miss, client.Get(pool, Oid(i % 10), (uint)(i / 10), buffer));
        s = store.GetStats();
        Assert.True(s.RemoteHits > Pages / 2, $"remote_hits {s.RemoteHits}");
        Assert.Equal(0, s.RemoteMismatches);
        Assert.Equal(0, s.RemotePages);
        Assert.Equal(0, s.RemoteBytes);
        Assert.Equal(0, s.EphPages);
    }

    [Fact]
    public async Task EvictedPages_SharedPool_HitAgainAndAgain_AsyncToo()
    {
        using var store = Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        for (int i = 0; i < Pages; i++) Assert.Equal(PutStatus.Stored, Put(client, pool, 0, (uint)i, 7));
        WaitWritten(store);
        var buffer = new byte[PageSize];
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < Pages; i++)
            {
                var status = round == 0 ? client.Get(pool, Oid(0), (uint)i, buffer) : await client.GetAsync(pool, Oid(0), (uint)i, buffer);
                Assert.True(status == GetStatus.Hit, $"round {round} index {i} missed; {Counters(store)}");
                AssertPage(buffer, pool, 0, (uint)i, 7);
            }
        }
        Assert.True(store.GetStats().RemoteHits > Pages, $"remote_hits {store.GetStats().RemoteHits}");
    }

    /// <summary>
    /// Put over, flush page, flush object and destroy pool with every delete lost: the old versions
    /// stay in the cluster, and no get may ever return one (the descriptor's version decides).
    /// </summary>
    [Fact]
    public void PutOverFlushesAndDestroy_WithDeletesLost_NeverAStalePage()
    {
        LossyDeletes? lossy = null;
        using var store = Open(wrap: inner => lossy = new LossyDeletes(inner));
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        const int Objects = 6, PerObject = 50;
        for (int o = 0; o < Objects; o++)
            for (uint i = 0; i < PerObject; i++) Assert.Equal(PutStatus.Stored, Put(client, pool, o, i, 1));
        WaitWritten(store);
        // Object 0: put over (v2); object 1: flush page (even indexes); object 2: flush object;
        // objects 3-5 stay at v1. The v2 pages are evicted in their turn by what follows.
        for (uint i = 0; i < PerObject; i++) Assert.Equal(PutStatus.Stored, Put(client, pool, 0, i, 2));
        for (uint i = 0; i < PerObject; i += 2) Assert.True(client.FlushPage(pool, Oid(1), i));
        Assert.Equal(PerObject, client.FlushObject(pool, Oid(2)));
        WaitWritten(store);
        Assert.True(lossy!.LostDeletes > PerObject, $"only {lossy.LostDeletes} deletes were asked for");

        var buffer = new byte[PageSize];
        for (int o = 0; o < Objects; o++)
        {
            for (uint i = 0; i < PerObject; i++)
            {
                var status = client.Get(pool, Oid(o), i, buffer);
                bool gone = o == 2 || (o == 1 && i % 2 == 0);
                if (gone)
                {
                    Assert.Equal(GetStatus.Miss, status);
                    continue;
                }
                Assert.True(status == GetStatus.Hit, $"o{o} i{i} missed; {Counters(store)}"); // nothing was dropped: the queue and capacity had room
                AssertPage(buffer, pool, o, i, o == 0 ? 2 : 1);
            }
        }

        // Destroy, then a new pool (the same serial may come back): nothing of the old one.
        client.DestroyPool(pool);
        int again = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        for (int o = 0; o < Objects; o++)
            for (uint i = 0; i < PerObject; i++) Assert.Equal(GetStatus.Miss, client.Get(again, Oid(o), i, buffer));
        Assert.Equal(0, store.GetStats().RemoteMismatches);
        Assert.Equal(0, store.GetStats().RemotePages);
    }

    [Fact]
    public void SlowWriteback_GetsServedFromTheQueue_FullQueueDrops()
    {
        HeldWrites? held = null;
        var settings = GarnetFixture.Settings(garnet.Cluster, requestTimeoutMs: RequestTimeoutMs);
        settings.QueueBytes = 1L << 16; // 64 KiB: about 55 pages
        var options = new TmemOptions { RamBudgetBytes = 64 << 10 };
        using var store = GarnetFixture.OpenStore(options, settings, garnet.Connection, inner => held = new HeldWrites(inner));
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        for (uint i = 0; i < 200; i++) Assert.Equal(PutStatus.Stored, Put(client, pool, 0, i, 3));
        var s = store.GetStats();
        Assert.InRange(s.RemoteQueueBytes, 1, 1L << 16);
        Assert.True(s.RemoteWriteDrops > 0, "a full queue must drop evicted pages");
        var buffer = new byte[PageSize];
        int hits = 0;
        for (uint i = 0; i < 200; i++)
        {
            if (client.Get(pool, Oid(0), i, buffer) != GetStatus.Hit) continue;
            AssertPage(buffer, pool, 0, i, 3);
            hits++;
        }
        Assert.True(store.GetStats().RemoteQueueHits > 0, "no get was served from the writeback queue");
        held!.Release();
        WaitWritten(store);
        for (uint i = 0; i < 200; i++)
        {
            if (client.Get(pool, Oid(0), i, buffer) != GetStatus.Hit) { hits--; continue; }
            AssertPage(buffer, pool, 0, i, 3);
        }
        Assert.True(hits >= 0, "a page that hit from the queue missed once written (get-get coherency)");
    }

    /// <summary>Two stores on one cluster, under the same store name and under different ones: each sees only its own pages.</summary>
    [Fact]
    public void TwoStores_OneCluster_Isolated()
    {
        using var a = Open("machine-a");
        using var b = Open("machine-b");
        using var c = Open("machine-a"); // a second open under the same name: a new incarnation
        var stores = new[] { a, b, c };
        var pools = new int[3];
        for (int s = 0; s < 3; s++)
        {
            var client = stores[s].GetClient(1);
            pools[s] = client.CreatePool(new PoolOptions { SharedUuid = Guid.Parse("00000000-0000-0000-0000-0000000000aa") });
            for (uint i = 0; i < 150; i++) Assert.Equal(PutStatus.Stored, client.Put(pools[s], Oid(5), i, Page($"store{s}/i{i}", s)));
        }
        foreach (var store in stores) WaitWritten(store);
        var buffer = new byte[PageSize];
        for (int s = 0; s < 3; s++)
        {
            var client = stores[s].GetClient(1);
            for (uint i = 0; i < 150; i++)
            {
                Assert.True(client.Get(pools[s], Oid(5), i, buffer) == GetStatus.Hit, $"store {s} index {i} missed; {Counters(stores[s])}");
                Assert.True(Page($"store{s}/i{i}", s).AsSpan().SequenceEqual(buffer), $"store {s} index {i} got {Describe(buffer)}");
            }
            Assert.True(stores[s].GetStats().RemoteHits > 50);
            Assert.Equal(0, stores[s].GetStats().RemoteMismatches);
        }
    }

    /// <summary>The model-based test (random operations against a dictionary model) with eviction through the remote tier.</summary>
    [Fact]
    public void RandomOperations_WithRemoteTier_MatchDictionaryModel()
    {
        long remoteHits = 0, remoteWrites = 0;
        var counts = Tmem.Tests.ModelTests.RandomOperations(
            options => GarnetFixture.OpenStore(options, GarnetFixture.Settings(garnet.Cluster, requestTimeoutMs: RequestTimeoutMs), garnet.Connection),
            minOps: 50, maxOps: 300, iterations: 60,
            checkRun: store =>
            {
                var s = store.GetStats();
                Assert.Equal(0, s.RemoteMismatches);
                remoteHits += s.RemoteHits + s.RemoteQueueHits;
                remoteWrites += s.RemoteWrites;
            });
        Assert.True(counts.GetValueOrDefault("ephemeral hit") > 0, "no ephemeral hit");
        Assert.True(remoteWrites > 0 && remoteHits > 0, $"the remote tier was not exercised: {remoteWrites} writes, {remoteHits} hits");
    }
}
