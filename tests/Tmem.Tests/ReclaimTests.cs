namespace Tmem.Tests;

/// <summary><see cref="TmemStore.Reclaim"/>: eviction ahead of demand, for the service's reclaim loop.</summary>
[Trait("Kind", "Unit")]
public class ReclaimTests
{
    [Fact]
    public void Reclaim_EvictsEphemeralPagesDownToTheTarget_AndLeavesPersistentPages()
    {
        using var store = TmemStore.Open(new TmemOptions { RamBudgetBytes = 4L << 20 });
        var client = store.GetClient(1);
        int eph = client.CreatePool(PoolOptions.Ephemeral);
        int pers = client.CreatePool(PoolOptions.Persistent);
        for (uint i = 0; i < 200; i++) Assert.Equal(PutStatus.Stored, client.Put(pers, new ObjectId(1), i, TestPages.Compressible(4096, (int)i)));
        for (uint i = 0; i < 3000; i++) client.Put(eph, new ObjectId(2), i, TestPages.Compressible(4096, 1000 + (int)i));
        var before = store.GetStats();
        Assert.True(before.RamSlotBytes > 3L << 20, $"the budget is not nearly full: {before.RamSlotBytes}");

        long target = 2L << 20;
        long freed = store.Reclaim(target);
        var after = store.GetStats();
        Assert.True(after.RamSlotBytes <= target, $"slot bytes {after.RamSlotBytes} are over the target {target}");
        Assert.Equal(before.RamSlotBytes - after.RamSlotBytes, freed);
        Assert.True(after.EvictedEphPages > before.EvictedEphPages);
        Assert.Equal(200, after.PersPages);
        var page = new byte[4096];
        for (uint i = 0; i < 200; i++) Assert.Equal(GetStatus.Hit, client.Get(pers, new ObjectId(1), i, page));

        // Already under the target: nothing to do.
        Assert.Equal(0, store.Reclaim(target));
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Reclaim(-1));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BackgroundReclaim_KeepsHeadroomFreeUnderTheBudget_OnlyWhenOn(bool on)
    {
        const long Budget = 16L << 20;
        using var store = TmemStore.Open(new TmemOptions { RamBudgetBytes = Budget, BackgroundReclaim = on });
        var client = store.GetClient(1);
        int eph = client.CreatePool(PoolOptions.Ephemeral);
        for (uint i = 0; i < 30_000; i++) Assert.Equal(PutStatus.Stored, client.Put(eph, new ObjectId(i / 64), i % 64, TestPages.Compressible(4096, (int)i)));
        store.WaitForBackgroundReclaim();
        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > 0, "about twice the budget was put and nothing was evicted");
        long headroom = Tmem.RamTier.CompressedRamTier.HeadroomBytes(Budget);
        Assert.Equal(128L << 10, headroom);
        if (on)
        {
            // The last put over the high water (half the headroom free) started a pass that
            // freed the whole headroom; later puts stayed under the high water.
            Assert.InRange(stats.RamSlotBytes, Budget - headroom - 8192, Budget - headroom / 2);
        }
        else
        {
            // Every put evicted just enough for itself: the budget stays full to within a page.
            Assert.InRange(stats.RamSlotBytes, Budget - 8192, Budget);
        }
        Assert.Equal(0, stats.ReclaimFailures);
        Assert.Equal(30_000, stats.EphPages + stats.EvictedEphPages);
    }

    [Fact]
    public void BackgroundReclaim_StoreDisposedWhilePassesRun_NoErrorAndNothingLeft()
    {
        // Dispose waits for a running pass before it frees the slabs the pass works on.
        for (int round = 0; round < 20; round++)
        {
            var store = TmemStore.Open(new TmemOptions { RamBudgetBytes = 8L << 20 });
            var client = store.GetClient(1);
            int eph = client.CreatePool(PoolOptions.Ephemeral);
            for (uint i = 0; i < 5_000; i++) client.Put(eph, new ObjectId(i), 0, TestPages.Compressible(4096, (int)i + round));
            store.Dispose();
            Assert.Equal(0, store.GetStats().ReclaimFailures); // a pass that ran into freed slabs would count here (or crash the process)
        }
    }

    [Fact]
    public void Reclaim_WithOnlyPersistentPagesInAMemoryStore_StopsWithoutLosingAny()
    {
        using var store = TmemStore.Open(new TmemOptions { RamBudgetBytes = 1L << 20 });
        var client = store.GetClient(1);
        int pers = client.CreatePool(PoolOptions.Persistent);
        for (uint i = 0; i < 100; i++) client.Put(pers, new ObjectId(1), i, TestPages.Compressible(4096, (int)i));
        Assert.Equal(0, store.Reclaim(0));
        Assert.Equal(100, store.GetStats().PersPages);
    }
}
