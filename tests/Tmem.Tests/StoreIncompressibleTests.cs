using Tmem.Durability;
using Tmem.LogTier;
using Tmem.Recovery.Offline;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// <see cref="PoolOptions.StoreIncompressible"/> (docs/engine.md, "Pools that cannot refuse a
/// page"): a page that compresses poorly is stored uncompressed instead of refused, in every pool
/// kind, in RAM and in the log, through eviction, spilling, slab compaction, checkpoints, log
/// compaction, replay and the offline export; pools without it refuse as before.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class StoreIncompressibleTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-incompressible-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    public static TheoryData<PoolOptions> Kinds() => new(
        PoolOptions.Ephemeral with { StoreIncompressible = true },
        PoolOptions.Ephemeral with { StoreIncompressible = true, SharedUuid = Guid.NewGuid() },
        PoolOptions.Persistent with { StoreIncompressible = true },
        PoolOptions.Persistent with { StoreIncompressible = true, ExclusiveGets = true });

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index, int pageSize = 4096)
    {
        var page = Filled(pageSize, 0xEE);
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RandomAndBarelyCompressiblePages_AreStoredUncompressed_CompressiblePagesStillCompressed(PoolOptions options)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(options);
        var random = Random(4096, 1);
        var barely = WithRandomPrefix(4096, 0.92, 2); // LZ4 takes more than 7/8 of the page
        Assert.True(Lz4Length(barely) > 3584 && Lz4Length(barely) < 4096, $"{Lz4Length(barely)}");
        var good = Compressible(4096, 3);

        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 0, random));
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 1, barely));
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 2, good));
        var stats = store.GetStats();
        Assert.Equal(0, stats.CompressPoor);
        Assert.Equal(0, stats.FailedEphPuts + stats.FailedPersPuts);
        // Two pages at their full size, the third compressed.
        Assert.Equal(2 * 4096 + SlotSize(Lz4Length(good)), stats.RamSlotBytes);
        Assert.Equal(2 * 4096 + Lz4Length(good), stats.EphZbytes + stats.PersZbytes);
        Assert.True(Assert.Single(client.GetPools()).StoreIncompressible);

        Assert.Equal(random, Read(client, pool, Oid(1), 0));
        Assert.Equal(barely, Read(client, pool, Oid(1), 1));
        Assert.Equal(good, Read(client, pool, Oid(1), 2));
    }

    [Fact]
    public void WithoutTheOption_TheSamePagesAreRefused()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        Assert.Equal(PutStatus.RejectedPoorCompression, client.Put(pool, Oid(1), 0, Random(4096, 1)));
        Assert.Equal(PutStatus.RejectedPoorCompression, client.Put(pool, Oid(1), 1, WithRandomPrefix(4096, 0.92, 2)));
        Assert.False(Assert.Single(client.GetPools()).StoreIncompressible);
    }

    [Fact]
    public void MeanRule_RefusesInOrdinaryPersistentPools_NeverInStoreIncompressibleOnes()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int device = client.CreatePool(PoolOptions.Persistent with { StoreIncompressible = true });
        int plain = client.CreatePool(PoolOptions.Persistent);
        // Uncompressed pages push the store's mean compressed size over MaxMeanZsize (0.625) ...
        for (uint i = 0; i < 20; i++) Assert.Equal(PutStatus.Stored, client.Put(device, Oid(1), i, Random(4096, (int)i)));
        var mediocre = WithRandomPrefix(4096, 0.75, 5); // compresses to about 3/4: under MaxZsize, over the mean threshold
        Assert.InRange(Lz4Length(mediocre), 2600, 3584);
        // ... so the ordinary pool refuses a mediocre page, the device pool does not.
        Assert.Equal(PutStatus.RejectedMeanCompression, client.Put(plain, Oid(2), 0, mediocre));
        Assert.Equal(PutStatus.Stored, client.Put(device, Oid(2), 0, mediocre));
        Assert.Equal(mediocre, Read(client, device, Oid(2), 0));
    }

    [Fact]
    public void Options_PageSizeOver32KiB_IsRefused_SharedJoinMustAgree()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        var e = Assert.Throws<ArgumentException>(() => client.CreatePool(PoolOptions.Persistent with { StoreIncompressible = true, PageSize = 65536 }));
        Assert.Equal(nameof(PoolOptions.StoreIncompressible), e.ParamName);
        int big = client.CreatePool(PoolOptions.Ephemeral with { StoreIncompressible = true, PageSize = 32768 });
        var page = Random(32768, 9);
        Assert.Equal(PutStatus.Stored, client.Put(big, Oid(1), 0, page));
        Assert.Equal(page, Read(client, big, Oid(1), 0, 32768));

        var uuid = Guid.NewGuid();
        client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = uuid, StoreIncompressible = true });
        var mismatch = Assert.Throws<TmemException>(() => store.GetClient(2).CreatePool(PoolOptions.Ephemeral with { SharedUuid = uuid }));
        Assert.Equal(TmemError.SharedPoolMismatch, mismatch.Error);
        Assert.Contains("store incompressible", mismatch.Message);
    }

    [Fact]
    public void UncompressedEphemeralPages_AreEvictedUnderPressure_SlabCompactionMovesThemIntact()
    {
        using var store = Stores.Open(budgetBytes: 1 << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { StoreIncompressible = true, SharedUuid = Guid.NewGuid() });
        // 4 MiB of uncompressed pages into a 1 MiB budget: eviction makes room, nothing is refused.
        for (uint i = 0; i < 1024; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, Random(4096, (int)i)));
        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > 700, $"{stats.EvictedEphPages} evicted");
        Assert.True(stats.RamSlotBytes <= 1 << 20);
        int survivors = 0;
        for (uint i = 0; i < 1024; i++)
        {
            if (Read(client, pool, Oid(1), i) is { } back)
            {
                Assert.Equal(Random(4096, (int)i), back);
                survivors++;
            }
        }
        Assert.True(survivors > 0);

        // Flush most of the survivors, leaving sparse slabs; compaction moves the rest intact.
        uint kept = 0;
        for (uint i = 0; i < 1024; i++)
        {
            if (i % 8 == 0 && Read(client, pool, Oid(1), i) is not null) kept++;
            else client.FlushPage(pool, Oid(1), i);
        }
        store.CompactSlabs();
        Assert.True(store.GetStats().SlabCompactedPages > 0 || kept == 0);
        for (uint i = 0; i < 1024; i += 8)
            if (Read(client, pool, Oid(1), i) is { } back) Assert.Equal(Random(4096, (int)i), back);
    }

    [Fact]
    public async Task Durable_UncompressedPages_SurviveSpill_Reopen_Checkpoint_LogCompaction_AndThePoolKeepsTheOption()
    {
        var pages = Enumerable.Range(0, 300).Select(i => i % 3 == 0 ? Random(4096, i) : i % 3 == 1 ? Compressible(4096, i) : WithRandomPrefix(4096, 0.95, i)).ToArray();
        // A small budget: most pages spill to the log and are read back from their records.
        var options = new TmemOptions { DataDirectory = _dir, RamBudgetBytes = 256 << 10, LogCompactionLiveFraction = 0 };
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(3);
            Assert.Equal(0, c.CreatePool(PoolOptions.Persistent with { StoreIncompressible = true }));
            for (int i = 0; i < pages.Length; i++) Assert.Equal(PutStatus.Stored, await c.PutAsync(0, Oid(i / 64), (uint)i, pages[i]));
            Assert.True(store.GetStats().PersSpilledPages > 100, $"{store.GetStats().PersSpilledPages} spilled");
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, 0, Oid(i / 64), (uint)i));
        }

        // Replay of the whole log (the close wrote a checkpoint: move it aside to force the replay).
        string checkpoint = IndexCheckpoint.PathIn(_dir);
        File.Move(checkpoint, checkpoint + ".aside");
        using (var store = TmemStore.Open(options, out var report))
        {
            Assert.Equal(pages.Length, report.PagesRecovered);
            var c = store.GetClient(3);
            var pool = Assert.Single(c.GetPools());
            Assert.True(pool.StoreIncompressible);
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, 0, Oid(i / 64), (uint)i));
            // Overwrite a third of them (dead records for compaction), and the option still holds after recovery.
            for (int i = 0; i < pages.Length; i += 3)
            {
                pages[i] = Random(4096, 1000 + i);
                Assert.Equal(PutStatus.Stored, await c.PutAsync(0, Oid(i / 64), (uint)i, pages[i]));
            }
            var result = store.CompactLog(force: true);
            Assert.NotNull(result);
            Assert.True(result.CopiedBytes > 0 && result.TruncatedBytes > 0, $"{result}");
        }
        File.Delete(checkpoint + ".aside");

        // From the checkpoint the compaction wrote: every page comes back spilled and is read from its (copied) record.
        using (var store = TmemStore.Open(options, out var report))
        {
            Assert.NotNull(report.CheckpointCoveredUntil);
            Assert.Equal(0, report.RecordsReplayed);
            var c = store.GetClient(3);
            Assert.True(Assert.Single(c.GetPools()).StoreIncompressible);
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, 0, Oid(i / 64), (uint)i));
        }

        // The offline tool sees the option and the uncompressed pages, and export/import keeps both.
        var inspection = DataDirectoryInspector.Inspect(_dir);
        var summary = Assert.Single(inspection.Pools);
        Assert.True(summary.StoreIncompressible);
        Assert.Equal(pages.Count(p => Lz4Length(p) > 3584), summary.UncompressedPages);
        string file = Path.Combine(_dir + "-export", "c3.tmempool");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        try
        {
            PoolExporter.Export(_dir, 3, [], file);
            string target = Path.Combine(_dir + "-export", "target");
            PoolExporter.Import(target, file);
            using var imported = TmemStore.Open(new TmemOptions { DataDirectory = target });
            var c = imported.GetClient(3);
            Assert.True(Assert.Single(c.GetPools()).StoreIncompressible);
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, 0, Oid(i / 64), (uint)i));
        }
        finally
        {
            Directory.Delete(_dir + "-export", recursive: true);
        }
    }
}
