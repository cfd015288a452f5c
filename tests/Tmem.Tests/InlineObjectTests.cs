namespace Tmem.Tests;

/// <summary>
/// Single-page objects live inline in their bucket's table (no object of their own) and move to a
/// full object when they get a second page. One bucket per pool here, so every object shares one
/// table: it grows, shifts entries back on removal, and every move re-points the page's
/// descriptor, which eviction and slab compaction use to find the page again.
/// </summary>
[Trait("Kind", "Unit")]
public class InlineObjectTests
{
    private static TmemStore OneBucketStore(long budget) =>
        TmemStore.Open(new TmemOptions { RamBudgetBytes = budget, BucketsPerPool = 1, BackgroundReclaim = false });

    private static byte[] PageOf(int obj, uint index, int version) => TestPages.Compressible(4096, obj * 7919 + (int)index * 104_729 + version);

    private static byte[]? Get(TmemClient client, int pool, int obj, uint index)
    {
        var page = new byte[4096];
        return client.Get(pool, new ObjectId((ulong)obj, 3, 0), index, page) == GetStatus.Hit ? page : null;
    }

    [Fact]
    public void SecondPage_MovesTheObjectOutOfTheTable_BothPagesStayAndFlushObjectTakesBoth()
    {
        using var store = OneBucketStore(64L << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        for (int obj = 0; obj < 300; obj++)
            Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId((ulong)obj, 3, 0), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 0)));
        // Every third object gets a second page; every fifth has its first page replaced.
        for (int obj = 0; obj < 300; obj += 3)
            Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId((ulong)obj, 3, 0), 100, PageOf(obj, 100, 0)));
        for (int obj = 0; obj < 300; obj += 5)
            Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId((ulong)obj, 3, 0), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 1)));
        for (int obj = 0; obj < 300; obj++)
        {
            uint first = (uint)obj % 5;
            Assert.Equal(PageOf(obj, first, obj % 5 == 0 ? 1 : 0), Get(client, pool, obj, first));
            Assert.Null(Get(client, pool, obj, first + 1)); // another index of the same object is a miss
            if (obj % 3 == 0) Assert.Equal(PageOf(obj, 100, 0), Get(client, pool, obj, 100));
            else Assert.Null(Get(client, pool, obj, 100));
        }
        Assert.Equal(400, store.GetStats().EphPages);

        for (int obj = 0; obj < 300; obj += 2)
            Assert.Equal(obj % 3 == 0 ? 2 : 1, client.FlushObject(pool, new ObjectId((ulong)obj, 3, 0)));
        for (int obj = 0; obj < 300; obj++)
        {
            bool kept = obj % 2 == 1;
            Assert.Equal(kept, Get(client, pool, obj, (uint)obj % 5) is not null);
            Assert.Equal(kept && obj % 3 == 0, Get(client, pool, obj, 100) is not null);
        }
        Assert.Equal(150 + 50, store.GetStats().EphPages);
    }

    [Fact]
    public void EvictionAndCompaction_FindInlinePagesAfterTheTableGrewAndShifted_NeverTheWrongPage()
    {
        const int Objects = 6000; // about 6 MB of pages into a 1 MiB budget: most are evicted
        using var store = OneBucketStore(1L << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        int flushed = 0;
        for (int obj = 0; obj < Objects; obj++)
        {
            // Stored every time: eviction can always find a victim, which it could not if a moved
            // entry's descriptor still named its old position.
            Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId((ulong)obj, 3, 0), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 0)));
            if (obj % 4 == 3 && client.FlushPage(pool, new ObjectId((ulong)(obj - 2), 3, 0), (uint)(obj - 2) % 5)) flushed++;
            if (obj % 1000 == 999) store.CompactSlabs();
        }
        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > Objects / 2, $"only {stats.EvictedEphPages} evicted");
        int hits = 0;
        for (int obj = 0; obj < Objects; obj++)
        {
            var back = Get(client, pool, obj, (uint)obj % 5);
            if (back is null) continue;
            hits++;
            Assert.Equal(PageOf(obj, (uint)obj % 5, 0), back);
        }
        Assert.Equal(hits, stats.EphPages);
        Assert.Equal(Objects, hits + flushed + stats.EvictedEphPages);

        // Every page left is still evictable: eviction finds each one where its descriptor says.
        store.Reclaim(0);
        Assert.Equal(0, store.GetStats().EphPages);
        Assert.Equal(0, store.GetStats().RamSlotBytes);
    }
}
