namespace Tmem.Tests;

/// <summary>
/// Single-page objects live inline in their bucket's table (no object of their own) and move to a
/// full object when they get a second page. One bucket per pool here, so every object shares one
/// table: it grows, shrinks and shifts entries on insertion and removal, while each page's
/// descriptor keeps naming it by its id's hash, which eviction and slab compaction use to find
/// the page again. Each test runs with narrow ids (second and third words zero: 16-byte entries)
/// and wide ones (the second table).
/// </summary>
[Trait("Kind", "Unit")]
public class InlineObjectTests
{
    private static TmemStore OneBucketStore(long budget) =>
        TmemStore.Open(new TmemOptions { RamBudgetBytes = budget, BucketsPerPool = 1, BackgroundReclaim = false });

    private static byte[] PageOf(int obj, uint index, int version) => TestPages.Compressible(4096, obj * 7919 + (int)index * 104_729 + version);

    private static ObjectId Id(int obj, bool narrow) => narrow ? new ObjectId((ulong)obj) : new ObjectId((ulong)obj, 3, 0);

    private static byte[]? Get(TmemClient client, int pool, int obj, uint index, bool narrow)
    {
        var page = new byte[4096];
        return client.Get(pool, Id(obj, narrow), index, page) == GetStatus.Hit ? page : null;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SecondPage_MovesTheObjectOutOfTheTable_BothPagesStayAndFlushObjectTakesBoth(bool narrow)
    {
        using var store = OneBucketStore(64L << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        for (int obj = 0; obj < 300; obj++)
            Assert.Equal(PutStatus.Stored, client.Put(pool, Id(obj, narrow), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 0)));
        // Every third object gets a second page; every fifth has its first page replaced.
        for (int obj = 0; obj < 300; obj += 3)
            Assert.Equal(PutStatus.Stored, client.Put(pool, Id(obj, narrow), 100, PageOf(obj, 100, 0)));
        for (int obj = 0; obj < 300; obj += 5)
            Assert.Equal(PutStatus.Stored, client.Put(pool, Id(obj, narrow), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 1)));
        for (int obj = 0; obj < 300; obj++)
        {
            uint first = (uint)obj % 5;
            Assert.Equal(PageOf(obj, first, obj % 5 == 0 ? 1 : 0), Get(client, pool, obj, first, narrow));
            Assert.Null(Get(client, pool, obj, first + 1, narrow)); // another index of the same object is a miss
            if (obj % 3 == 0) Assert.Equal(PageOf(obj, 100, 0), Get(client, pool, obj, 100, narrow));
            else Assert.Null(Get(client, pool, obj, 100, narrow));
        }
        Assert.Equal(400, store.GetStats().EphPages);

        for (int obj = 0; obj < 300; obj += 2)
            Assert.Equal(obj % 3 == 0 ? 2 : 1, client.FlushObject(pool, Id(obj, narrow)));
        for (int obj = 0; obj < 300; obj++)
        {
            bool kept = obj % 2 == 1;
            Assert.Equal(kept, Get(client, pool, obj, (uint)obj % 5, narrow) is not null);
            Assert.Equal(kept && obj % 3 == 0, Get(client, pool, obj, 100, narrow) is not null);
        }
        Assert.Equal(150 + 50, store.GetStats().EphPages);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EvictionAndCompaction_FindInlinePagesAfterTheTableGrewAndShifted_NeverTheWrongPage(bool narrow)
    {
        const int Objects = 6000; // about 6 MB of pages into a 1 MiB budget: most are evicted
        using var store = OneBucketStore(1L << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        int flushed = 0;
        for (int obj = 0; obj < Objects; obj++)
        {
            // Stored every time: eviction can always find a victim, which it could not if it lost
            // track of entries that insertions, removals and resizes moved.
            Assert.Equal(PutStatus.Stored, client.Put(pool, Id(obj, narrow), (uint)obj % 5, PageOf(obj, (uint)obj % 5, 0)));
            if (obj % 4 == 3 && client.FlushPage(pool, Id(obj - 2, narrow), (uint)(obj - 2) % 5)) flushed++;
            if (obj % 1000 == 999) store.CompactSlabs();
        }
        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > Objects / 2, $"only {stats.EvictedEphPages} evicted");
        int hits = 0;
        for (int obj = 0; obj < Objects; obj++)
        {
            var back = Get(client, pool, obj, (uint)obj % 5, narrow);
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
