namespace Tmem.Tests;

/// <summary><see cref="TmemStore.SetRamBudget"/>: the RAM budget changed while the store runs.</summary>
[Trait("Kind", "Unit")]
public sealed class RamBudgetTests
{
    [Fact]
    public void Shrinking_EvictsEphemeralPagesDownToTheNewBudget_AtOnce_AndGrowingMakesRoomAgain()
    {
        using var store = Stores.Open(budgetBytes: 4L << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        for (int i = 0; i < 4000; i++) client.Put(pool, TestPages.Oid(i), 0, TestPages.Compressible(4096, i));
        var before = store.GetStats();
        Assert.True(before.RamSlotBytes > 3L << 20, $"only {before.RamSlotBytes} slot bytes filled");

        long after = store.SetRamBudget(1L << 20);
        var stats = store.GetStats();
        Assert.True(after <= 1L << 20, $"{after} slot bytes in use over the new 1 MiB budget");
        Assert.Equal(after, stats.RamSlotBytes);
        Assert.Equal(1L << 20, stats.RamBudgetBytes);
        Assert.Equal(1L << 20, store.Options.RamBudgetBytes);
        Assert.True(stats.EvictedEphPages > before.EvictedEphPages);
        Assert.Equal(stats.EphPages, before.EphPages - (stats.EvictedEphPages - before.EvictedEphPages));

        // Puts go on under the new budget (evicting), and a larger one is used once given.
        for (int i = 4000; i < 4500; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, TestPages.Oid(i), 0, TestPages.Compressible(4096, i)));
        Assert.True(store.GetStats().RamSlotBytes <= 1L << 20);
        store.SetRamBudget(8L << 20);
        for (int i = 4500; i < 9000; i++) client.Put(pool, TestPages.Oid(i), 0, TestPages.Compressible(4096, i));
        Assert.True(store.GetStats().RamSlotBytes > 2L << 20);
        Assert.Throws<ArgumentOutOfRangeException>(() => store.SetRamBudget(1000));
    }

    [Fact]
    public void Shrinking_ADurableStore_DropsRamCopiesOfPersistentPages_WhichStayReadable()
    {
        string dir = Directory.CreateTempSubdirectory("tmem-budget-").FullName;
        try
        {
            using var store = TmemStore.Open(new TmemOptions { DataDirectory = dir, RamBudgetBytes = 4L << 20 }, out _);
            var client = store.GetClient(1);
            int pool = client.CreatePool(PoolOptions.Persistent);
            var pages = Enumerable.Range(0, 600).Select(i => TestPages.Compressible(4096, i)).ToArray();
            for (int i = 0; i < pages.Length; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, TestPages.Oid(i), 0, pages[i]));
            Assert.Equal(0, store.GetStats().PersSpilledPages);

            long after = store.SetRamBudget(256L << 10);
            var stats = store.GetStats();
            Assert.True(after <= 256L << 10, $"{after} slot bytes in use over the new budget");
            Assert.True(stats.PersSpilledPages > 0);
            Assert.Equal(pages.Length, stats.PersPages);
            var buffer = new byte[4096];
            for (int i = 0; i < pages.Length; i++)
            {
                Assert.Equal(GetStatus.Hit, client.Get(pool, TestPages.Oid(i), 0, buffer));
                Assert.Equal(pages[i], buffer);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
