using Xunit.Abstractions;
using static Tmem.Remote.Tests.RemotePages;

namespace Tmem.Remote.Tests;

/// <summary>
/// What a page costs in local memory when the remote tier holds it (managed heap growth per
/// remote page, with a 64 KiB RAM budget: nearly every page remote) against what it costs held
/// in RAM ((heap growth + slab bytes) per page, with a budget that holds them all), for the same
/// pages (about 1.1 KiB compressed) and handles (64 pages per object). 65,000 pages: nearly all of
/// the descriptor table's first chunk (65,536 descriptors, id 0 unused), so that its growth step
/// (a second chunk for a few pages more) does not blur the figure.
/// </summary>
[Trait("Kind", "Remote")]
public sealed class RemoteMetadataTests(GarnetFixture garnet, ITestOutputHelper output) : IClassFixture<GarnetFixture>
{
    private const int Count = 65_000;

    [Fact]
    public void RemotePage_LocalMemory_IsWellUnderALocalPages()
    {
        var pages = Enumerable.Range(0, 64).Select(i => Page("metadata", i)).ToArray();
        double local = Measure(remote: false, pages, Count, out _);
        Measure(remote: true, pages, 4096, out _); // warms what is not per page (the client's pooled buffers, the queue's segments)
        double remote = Measure(remote: true, pages, Count, out long remotePages);
        output.WriteLine($"local memory per page: in RAM {local:0.0} B (slot included), remote {remote:0.0} B ({remotePages} of {Count} pages remote)");
        Assert.True(remotePages > Count * 0.95, $"only {remotePages} pages went remote");
        Assert.True(remote * 10 < local, $"a remote page costs {remote:0.0} B of local memory, a page in RAM {local:0.0} B");
        Assert.InRange(remote, 32, 64); // descriptor 24 + backing address 8 + its share of the object's map and the object
    }

    private double Measure(bool remote, byte[][] pages, int count, out long remotePages)
    {
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var options = new TmemOptions { RamBudgetBytes = remote ? 64 << 10 : 1L << 30, MaxPages = 2 * Count };
        var settings = GarnetFixture.Settings(garnet.Cluster, "metadata", requestTimeoutMs: 2000);
        settings.CapacityBytes = 1L << 30;
        using var store = remote ? GarnetFixture.OpenStore(options, settings, garnet.Connection) : TmemStore.Open(options);
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(i / 64), (uint)(i % 64), pages[i % 64]));
            // Let the writer catch up before the queue fills (a measurement, not a test of drops).
            while (remote && i % 256 == 0 && store.GetStats().RemoteQueueBytes > settings.QueueBytes / 2) Thread.Sleep(1);
        }
        if (remote) WaitWritten(store);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        var s = store.GetStats();
        remotePages = s.RemotePages;
        GC.KeepAlive(store);
        return remote ? (after - before) / (double)s.RemotePages : (after - before + s.RamSlabBytes) / (double)s.EphPages;
    }
}
