using System.Diagnostics.Metrics;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>The contract (docs/engine.md, "The contract"), rule by rule, as this library implements it.</summary>
[Trait("Kind", "Unit")]
public class ContractTests
{
    public enum Kind { PrivateEphemeral, SharedEphemeral, Persistent, PersistentExclusive }

    public enum PageType { Compressible, BarelyCompressible, Zero, SameFilledNonZero }

    private static int Create(TmemClient client, Kind kind, int pageSize = PoolOptions.DefaultPageSize) => client.CreatePool(kind switch
    {
        Kind.PrivateEphemeral => new PoolOptions { PageSize = pageSize },
        Kind.SharedEphemeral => new PoolOptions { PageSize = pageSize, SharedUuid = Guid.NewGuid() },
        Kind.Persistent => new PoolOptions { PageSize = pageSize, Kind = PoolKind.Persistent },
        _ => new PoolOptions { PageSize = pageSize, Kind = PoolKind.Persistent, ExclusiveGets = true },
    });

    private static bool GetsAreExclusive(Kind kind) => kind is Kind.PrivateEphemeral or Kind.PersistentExclusive;

    private static bool IsPersistent(Kind kind) => kind is Kind.Persistent or Kind.PersistentExclusive;

    private static byte[] Build(PageType type, int size, int seed) => type switch
    {
        PageType.Compressible => Compressible(size, seed),
        PageType.BarelyCompressible => CompressingTo(size, 0.78, 0.86, seed),
        PageType.Zero => new byte[size],
        _ => SameFilled(size, NonZeroWord),
    };

    private static byte[]? GetOrNull(TmemClient client, int pool, ObjectId oid, uint index, int size = PoolOptions.DefaultPageSize)
    {
        var buffer = Filled(size, 0xEE);
        var status = client.Get(pool, oid, index, buffer);
        if (status == GetStatus.Miss) Assert.Equal(Filled(size, 0xEE), buffer); // a miss leaves the buffer alone
        return status == GetStatus.Hit ? buffer : null;
    }

    public static TheoryData<Kind, PageType, int> RoundTripCases()
    {
        var data = new TheoryData<Kind, PageType, int>();
        foreach (var kind in Enum.GetValues<Kind>())
            foreach (var type in Enum.GetValues<PageType>())
                foreach (int size in new[] { 512, 4096, 65536 })
                    data.Add(kind, type, size);
        return data;
    }

    public static TheoryData<Kind> Kinds() => new(Enum.GetValues<Kind>());

    // ---- Round trips -------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(RoundTripCases))]
    public void PutThenGet_AnyPageKindAndSize_ReturnsIdenticalBytes(Kind kind, PageType type, int size)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind, size);
        var page = Build(type, size, seed: size + (int)type);
        if (type == PageType.BarelyCompressible)
            Assert.InRange(Lz4Length(page), (int)(size * 0.78), (int)(size * 7 / 8)); // really barely compressible, still under the limit

        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(3), 9, page));
        var back = Filled(size, 0xEE);
        Assert.Equal(GetStatus.Hit, client.Get(pool, Oid(3), 9, back));
        Assert.Equal(page, back);
    }

    [Fact]
    public void Put_64KiBPageCompressingToPageSize_WithMaxZsizeOne_IsRefusedAndLosesNothing()
    {
        // MaxZsize = 1 still caps compressed pages at 65535 bytes (descriptors hold u16 lengths):
        // a 65536-byte page that LZ4 encodes to exactly 65536 bytes is refused, never stored
        // corrupt, and one that encodes to 65535 bytes round-trips.
        byte[]? atPageSize = null, justUnder = null;
        for (int prefix = 65000; prefix < 65536 && (atPageSize is null || justUnder is null); prefix++)
        {
            var candidate = new byte[65536];
            new Random(prefix).NextBytes(candidate.AsSpan(0, prefix));
            int length = Lz4Length(candidate);
            if (length == 65536) atPageSize ??= candidate;
            if (length == 65535) justUnder ??= candidate;
        }
        Assert.NotNull(atPageSize);
        Assert.NotNull(justUnder);

        using var store = Stores.Open(configure: o => o.MaxZsize = 1.0);
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid(), 65536));
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 0, justUnder));
        Assert.Equal(PutStatus.RejectedPoorCompression, client.Put(pool, Oid(2), 0, atPageSize));
        var back = new byte[65536];
        Assert.Equal(GetStatus.Miss, client.Get(pool, Oid(2), 0, back));
        Assert.Equal(GetStatus.Hit, client.Get(pool, Oid(1), 0, back));
        Assert.Equal(justUnder, back);
        Assert.True(client.FlushPage(pool, Oid(1), 0));
        Assert.Equal(0, store.GetStats().RamSlotBytes);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Get_Miss_LeavesDestinationUntouched(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        client.Put(pool, Oid(1), 1, Compressible(4096, 1));
        var buffer = Filled(4096, 0xA5);
        Assert.Equal(GetStatus.Miss, client.Get(pool, Oid(1), 2, buffer));
        Assert.Equal(GetStatus.Miss, client.Get(pool, Oid(2), 1, buffer));
        Assert.Equal(Filled(4096, 0xA5), buffer);
    }

    // ---- Put-put coherency ---------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Put_OverExistingPage_ReplacesIt(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        var first = Compressible(4096, 1);
        var second = Compressible(4096, 2);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 5, first));
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 5, second));
        Assert.Equal(second, GetOrNull(client, pool, Oid(1), 5));
        var stats = store.GetStats();
        Assert.Equal(GetsAreExclusive(kind) ? 0 : 1, IsPersistent(kind) ? stats.PersPages : stats.EphPages);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Put_RejectedPoorCompressionOverExistingPage_FlushesOldPage(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 5, Compressible(4096, 1)));
        Assert.Equal(PutStatus.RejectedPoorCompression, client.Put(pool, Oid(1), 5, TestPages.Random(4096, 2)));
        Assert.Null(GetOrNull(client, pool, Oid(1), 5));
        var stats = store.GetStats();
        Assert.Equal(0, stats.EphPages + stats.PersPages);
        Assert.Equal(0, stats.RamSlotBytes);
    }

    [Fact]
    public void Put_RejectedCapacityOverExistingPage_FlushesOldPage()
    {
        using var store = Stores.Open(1 << 20);
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.Persistent);
        uint stored = 0;
        PutStatus status;
        while ((status = client.Put(pool, Oid(1), stored, Compressible(4096, (int)stored))) == PutStatus.Stored)
        {
            stored++;
            Assert.True(stored < 100_000, "the budget never filled");
        }
        Assert.Equal(PutStatus.RejectedCapacity, status);
        Assert.True(stored > 100, $"only {stored} pages fitted in 1 MiB");
        var before = store.GetStats();
        Assert.Equal(stored, before.PersPages);

        // Handle 0 holds a page; the new page needs more room than is left.
        var big = CompressingTo(4096, 0.80, 0.86, 7);
        Assert.Equal(PutStatus.RejectedCapacity, client.Put(pool, Oid(1), 0, big));
        Assert.Null(GetOrNull(client, pool, Oid(1), 0));
        var after = store.GetStats();
        Assert.Equal(stored - 1, after.PersPages);
        Assert.Equal(before.FailedPersPuts + 1, after.FailedPersPuts);
        Assert.Equal(Compressible(4096, 1), GetOrNull(client, pool, Oid(1), 1));
    }

    // ---- Get-get coherency ---------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Get_AfterMissOfFlushedPage_MissesUntilNewPut(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        client.Put(pool, Oid(1), 1, Compressible(4096, 1));
        Assert.True(client.FlushPage(pool, Oid(1), 1));
        for (int i = 0; i < 3; i++)
        {
            Assert.Null(GetOrNull(client, pool, Oid(1), 1));
            client.Put(pool, Oid(1), (uint)(10 + i), Compressible(4096, 10 + i)); // unrelated activity
        }
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
        var fresh = Compressible(4096, 99);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 1, fresh));
        Assert.Equal(fresh, GetOrNull(client, pool, Oid(1), 1));
    }

    [Fact]
    public void Get_AfterMissOfEvictedPage_MissesUntilNewPut()
    {
        using var store = Stores.Open(64 << 10);
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        const int Pages = 300;
        for (uint i = 0; i < Pages; i++)
            Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, Compressible(4096, (int)i)));
        Assert.True(store.GetStats().EvictedEphPages > 0);

        var missed = new List<uint>();
        for (uint i = 0; i < Pages; i++)
        {
            var back = GetOrNull(client, pool, Oid(1), i);
            if (back is null) missed.Add(i);
            else Assert.Equal(Compressible(4096, (int)i), back);
        }
        Assert.NotEmpty(missed);

        // More pressure on other handles, then every miss must still be a miss.
        for (uint i = 0; i < Pages; i++) client.Put(pool, Oid(2), i, Compressible(4096, 1000 + (int)i));
        foreach (uint i in missed) Assert.Null(GetOrNull(client, pool, Oid(1), i));

        var fresh = Compressible(4096, 4242);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), missed[0], fresh));
        Assert.Equal(fresh, GetOrNull(client, pool, Oid(1), missed[0]));
    }

    // ---- Get modes -----------------------------------------------------------------------------

    [Fact]
    public void Get_PrivateEphemeralHit_IsExclusive()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.PrivateEphemeral);
        var page = Compressible(4096, 1);
        client.Put(pool, Oid(1), 1, page);
        Assert.Equal(page, GetOrNull(client, pool, Oid(1), 1));
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
        var stats = store.GetStats();
        Assert.Equal(0, stats.EphPages);
        Assert.Equal(0, stats.RamSlotBytes);
    }

    [Fact]
    public void Get_SharedEphemeralHit_KeepsPage()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        var page = Compressible(4096, 1);
        client.Put(pool, Oid(1), 1, page);
        for (int i = 0; i < 3; i++) Assert.Equal(page, GetOrNull(client, pool, Oid(1), 1));
        Assert.Equal(1, store.GetStats().EphPages);
    }

    [Fact]
    public void SharedEphemeral_TwoClientsJoiningSameUuid_SeeEachOthersPages()
    {
        using var store = Stores.Open();
        var uuid = Guid.NewGuid();
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        int poolA = a.CreatePool(Stores.PrivateEphemeral); // so the two clients' ids differ
        int sharedA = a.CreatePool(Stores.SharedEphemeral(uuid));
        int sharedB = b.CreatePool(Stores.SharedEphemeral(uuid));
        Assert.NotEqual(sharedA, sharedB);
        Assert.Equal(2, store.GetStats().Pools);

        var fromA = Compressible(4096, 1);
        var fromB = Compressible(4096, 2);
        a.Put(sharedA, Oid(1), 1, fromA);
        b.Put(sharedB, Oid(1), 2, fromB);
        Assert.Equal(fromA, GetOrNull(b, sharedB, Oid(1), 1));
        Assert.Equal(fromB, GetOrNull(a, sharedA, Oid(1), 2));
        Assert.Null(GetOrNull(a, poolA, Oid(1), 1));
    }

    [Fact]
    public void Get_PersistentDefault_KeepsPage()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.Persistent);
        var page = Compressible(4096, 1);
        client.Put(pool, Oid(1), 1, page);
        for (int i = 0; i < 3; i++) Assert.Equal(page, GetOrNull(client, pool, Oid(1), 1));
        Assert.Equal(1, store.GetStats().PersPages);
    }

    [Fact]
    public void Get_PersistentExclusiveGets_RemovesPage()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.PersistentExclusive);
        var page = Compressible(4096, 1);
        client.Put(pool, Oid(1), 1, page);
        Assert.Equal(page, GetOrNull(client, pool, Oid(1), 1));
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
        Assert.Equal(0, store.GetStats().PersPages);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CreatePool_ExclusiveGetsOnEphemeral_ThrowsArgumentException(bool shared)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        var options = new PoolOptions { Kind = PoolKind.Ephemeral, ExclusiveGets = true, SharedUuid = shared ? Guid.NewGuid() : null };
        Assert.Throws<ArgumentException>(() => client.CreatePool(options));
        Assert.Empty(client.GetPools());
        Assert.Equal(0, store.GetStats().Pools);
    }

    // ---- Persistent pages and eviction -----------------------------------------------------------

    [Fact]
    public void PersistentPages_UnderEphemeralPressure_AreNeverEvicted()
    {
        using var store = Stores.Open(1 << 20);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        const int PersistentPages = 200;
        for (uint i = 0; i < PersistentPages; i++)
            Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), i, Compressible(4096, (int)i)));
        for (uint i = 0; i < 3000; i++)
            client.Put(eph, Oid(2), i, Compressible(4096, 5000 + (int)i));

        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > 0);
        Assert.InRange(stats.RamSlotBytes, 0, stats.RamBudgetBytes);
        Assert.Equal(PersistentPages, stats.PersPages);
        for (uint i = 0; i < PersistentPages; i++)
            Assert.Equal(Compressible(4096, (int)i), GetOrNull(client, pers, Oid(1), i));
    }

    [Fact]
    public void Put_BudgetFullOfPersistentPages_RejectsCapacityAndNeverEvictsPersistent()
    {
        using var store = Stores.Open(1 << 20);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        for (uint i = 0; i < 50; i++) Assert.Equal(PutStatus.Stored, client.Put(eph, Oid(2), i, Compressible(4096, 9000 + (int)i)));

        uint stored = 0;
        PutStatus status;
        while ((status = client.Put(pers, Oid(1), stored, Compressible(4096, (int)stored))) == PutStatus.Stored)
        {
            stored++;
            Assert.True(stored < 100_000, "the budget never filled");
        }
        Assert.Equal(PutStatus.RejectedCapacity, status);
        Assert.Equal(0, store.GetStats().EphPages); // every ephemeral page made room before the refusal
        Assert.Equal(PutStatus.RejectedCapacity, client.Put(pers, Oid(1), 100_000, Compressible(4096, 77)));

        for (uint i = 0; i < 20; i++)
        {
            var result = client.Put(eph, Oid(3), i, Compressible(4096, 7000 + (int)i));
            Assert.True(result is PutStatus.Stored or PutStatus.RejectedCapacity, result.ToString());
            Assert.Equal(stored, store.GetStats().PersPages);
        }
        var stats = store.GetStats();
        Assert.InRange(stats.RamSlotBytes, 0, stats.RamBudgetBytes);
        Assert.True(stats.FailedPersPuts >= 2);
        for (uint i = 0; i < stored; i++)
            Assert.Equal(Compressible(4096, (int)i), GetOrNull(client, pers, Oid(1), i));
    }

    [Fact]
    public void Put_MaxPagesReached_EvictsEphemeralButRejectsWhenOnlyPersistentLeft()
    {
        using var store = Stores.Open(configure: o => o.MaxPages = 16);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        var zero = new byte[4096];
        Assert.Equal(PutStatus.Stored, client.Put(eph, Oid(1), 0, zero));
        for (uint i = 0; i < 16; i++) Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), i, zero));
        var stats = store.GetStats();
        Assert.Equal(1, stats.EvictedEphPages);
        Assert.Equal(0, stats.EphPages);
        Assert.Equal(PutStatus.RejectedCapacity, client.Put(pers, Oid(1), 16, zero));
        Assert.Equal(PutStatus.RejectedCapacity, client.Put(eph, Oid(1), 1, zero));
        Assert.True(client.FlushPage(pers, Oid(1), 3));
        Assert.Equal(PutStatus.Stored, client.Put(eph, Oid(1), 1, zero));
        Assert.Equal(15, store.GetStats().PersPages);
    }

    [Fact]
    public void Put_TightBudget_EvictsEphemeralPagesWithinBudgetAndNeverReturnsWrongBytes()
    {
        using var store = Stores.Open(128 << 10);
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        const int Pages = 600;
        for (uint i = 0; i < Pages; i++)
        {
            Assert.Equal(PutStatus.Stored, client.Put(pool, Oid((int)i % 5), i, Compressible(4096, (int)i)));
            Assert.InRange(store.GetStats().RamSlotBytes, 0, 128 << 10);
        }
        var stats = store.GetStats();
        Assert.True(stats.EvictedEphPages > 0);
        int hits = 0;
        for (uint i = 0; i < Pages; i++)
        {
            var back = GetOrNull(client, pool, Oid((int)i % 5), i);
            if (back is null) continue;
            hits++;
            Assert.Equal(Compressible(4096, (int)i), back);
        }
        Assert.InRange(hits, 1, Pages - 1);
        Assert.Equal(hits, stats.EphPages);
        Assert.Equal(Pages - hits, stats.EvictedEphPages);
    }

    // ---- Poor compression ----------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Put_RandomPage_RejectedPoorCompressionAndCounted(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        var before = store.GetStats();
        Assert.Equal(PutStatus.RejectedPoorCompression, client.Put(pool, Oid(1), 1, TestPages.Random(4096, 1)));
        var after = store.GetStats();
        Assert.Equal(before.CompressPoor + 1, after.CompressPoor);
        Assert.Equal(before.FailedEphPuts + (IsPersistent(kind) ? 0 : 1), after.FailedEphPuts);
        Assert.Equal(before.FailedPersPuts + (IsPersistent(kind) ? 1 : 0), after.FailedPersPuts);
        Assert.Equal(before.MeanCompressPoor, after.MeanCompressPoor);
        Assert.Equal(before.RamSlotBytes, after.RamSlotBytes);
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
    }

    [Fact]
    public void Put_PersistentMeanOverLimit_RejectsPoorlyCompressingPagesOnly()
    {
        // Pool.Put: a persistent page compressing to more than MaxMeanZsize of the page is refused
        // while PersZbytes / PersPages is already above MaxMeanZsize of the page.
        using var store = Stores.Open(configure: o => { o.MaxZsize = 0.95; o.MaxMeanZsize = 0.5; });
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        var poor = new[] { CompressingTo(4096, 0.65, 0.75, 1), CompressingTo(4096, 0.65, 0.75, 2), CompressingTo(4096, 0.65, 0.75, 3) };
        var good = Compressible(4096, 4);
        Assert.InRange(Lz4Length(good), 1, 2048);

        long Mean() { var st = store.GetStats(); return st.PersZbytes / st.PersPages; }

        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 0, poor[0])); // no persistent pages yet: no mean
        var s = store.GetStats();
        Assert.True(Mean() > 2048, $"mean {Mean()} should be over half a page");

        Assert.Equal(PutStatus.RejectedMeanCompression, client.Put(pers, Oid(1), 1, poor[1]));
        var after = store.GetStats();
        Assert.Equal(s.MeanCompressPoor + 1, after.MeanCompressPoor);
        Assert.Equal(s.FailedPersPuts + 1, after.FailedPersPuts);
        Assert.Equal(s.CompressPoor, after.CompressPoor);
        Assert.Null(GetOrNull(client, pers, Oid(1), 1));
        Assert.Equal(PutStatus.Stored, client.Put(eph, Oid(1), 1, poor[1])); // ephemeral pools have no mean rule

        // A mean refusal over an existing page flushes it (put-put coherency).
        Assert.Equal(PutStatus.RejectedMeanCompression, client.Put(pers, Oid(1), 0, poor[2]));
        Assert.Null(GetOrNull(client, pers, Oid(1), 0));
        Assert.Equal(0, store.GetStats().PersPages);

        // No persistent pages: no mean. Then a well-compressing page is stored while the mean is over.
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 0, poor[0]));
        Assert.True(Mean() > 2048);
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 2, good));

        // That brought the mean under the limit, so a poor page is accepted again ...
        Assert.True(Mean() <= 2048, $"mean {Mean()}");
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 1, poor[1]));
        // ... which lifts the mean over it, and the next poor page is refused.
        Assert.True(Mean() > 2048, $"mean {Mean()}");
        Assert.Equal(PutStatus.RejectedMeanCompression, client.Put(pers, Oid(1), 3, poor[2]));
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 4, good));

        Assert.Equal(poor[0], GetOrNull(client, pers, Oid(1), 0));
        Assert.Equal(poor[1], GetOrNull(client, pers, Oid(1), 1));
        Assert.Equal(good, GetOrNull(client, pers, Oid(1), 2));
        Assert.Null(GetOrNull(client, pers, Oid(1), 3));
        var end = store.GetStats();
        Assert.Equal(s.MeanCompressPoor + 3, end.MeanCompressPoor);
        Assert.Equal(4, end.PersPages);
    }

    [Fact]
    public void Put_PersistentMeanRule_ComparesFractionsOfEachPoolsPageSize()
    {
        // Well-compressing 64 KiB persistent pages hold many more compressed bytes per page than half
        // a 4 KiB page, but a small fraction of their own page: the mean rule must not refuse a 4 KiB
        // page that compresses to 70% while the mean fraction is low, and must once it is high.
        using var store = Stores.Open(configure: o => { o.MaxZsize = 0.95; o.MaxMeanZsize = 0.5; });
        var client = store.GetClient(1);
        int big = client.CreatePool(Stores.Persistent with { PageSize = 65536 });
        int small = client.CreatePool(Stores.Persistent);
        var bigPage = CompressingTo(65536, 0.15, 0.3, 11);
        Assert.Equal(PutStatus.Stored, client.Put(big, Oid(1), 0, bigPage));
        Assert.True(store.GetStats().PersZbytes > 2048, "the byte mean is over half a 4 KiB page");

        var poor = CompressingTo(4096, 0.65, 0.75, 12);
        Assert.Equal(PutStatus.Stored, client.Put(small, Oid(1), 0, poor));  // mean fraction (0.15-0.3) is under 0.5
        Assert.Equal(PutStatus.Stored, client.Put(small, Oid(1), 1, poor));  // mean fraction now ~0.5: at most at the limit
        Assert.True(client.FlushPage(big, Oid(1), 0));
        // Only the two 70% pages are left: the mean fraction is over 0.5 and the next poor page is refused.
        Assert.Equal(PutStatus.RejectedMeanCompression, client.Put(small, Oid(1), 2, poor));
        Assert.Equal(0, store.GetStats().CompressPoor);
    }

    [Fact]
    public void Put_PersistentPageLimit_RefusesNewPagesOnlyAndCounts()
    {
        using var store = Stores.Open(configure: o => o.MaxPersistentPages = 3);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.PrivateEphemeral);
        for (uint i = 0; i < 3; i++) Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), i, Compressible(4096, (int)i)));
        Assert.Equal(PutStatus.RejectedPersistentLimit, client.Put(pers, Oid(1), 3, Compressible(4096, 3)));
        Assert.Null(GetOrNull(client, pers, Oid(1), 3));
        // Replacing a page is not growth; ephemeral pools have no such limit.
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 0, Compressible(4096, 10)));
        Assert.Equal(PutStatus.Stored, client.Put(eph, Oid(1), 3, Compressible(4096, 3)));
        var stats = store.GetStats();
        Assert.Equal(3, stats.PersPages);
        Assert.Equal(1, stats.PersLimitRefused);
        Assert.Equal(1, stats.FailedPersPuts);
        Assert.Equal(Compressible(4096, 10), GetOrNull(client, pers, Oid(1), 0));
        // Room again after a flush.
        Assert.True(client.FlushPage(pers, Oid(1), 2));
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 3, Compressible(4096, 3)));
    }

    [Fact]
    public void Put_RefusedAfterItsSlotWasTaken_GivesTheSlotBack()
    {
        // A put takes its slab slot before the bucket lock, where the persistent limits are
        // checked: every refusal there must return the slot, or the slabs of refused pages
        // would stay allocated (and a full store would leak its memory away).
        using var store = Stores.Open(configure: o => o.MaxPersistentPages = 2);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 0, Compressible(4096, 0)));
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 1, Compressible(4096, 1)));
        long slabBytes = store.GetStats().RamSlabBytes;
        for (int i = 0; i < 500; i++)
            Assert.Equal(PutStatus.RejectedPersistentLimit, client.Put(pers, Oid(2 + i % 7), (uint)i, CompressingTo(4096, 0.05 + i % 14 * 0.05, 0.1 + i % 14 * 0.05, 100 + i)));
        var stats = store.GetStats();
        Assert.Equal(500, stats.PersLimitRefused);
        Assert.Equal(slabBytes, stats.RamSlabBytes);
        Assert.Equal(2, stats.PersPages);
        client.FlushObject(pers, Oid(1));
        stats = store.GetStats();
        Assert.Equal(0, stats.RamSlotBytes);
        Assert.Equal(0, stats.RamSlabBytes); // every slab emptied and released: no slot was kept
    }

    [Fact]
    public void Put_PersistentByteLimit_CountsCompressedBytes()
    {
        var page = Compressible(4096, 1);
        int length = Lz4Length(page);
        using var store = Stores.Open(configure: o => o.MaxPersistentBytes = 2L * length + length / 2);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 0, page));
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 1, page));
        Assert.Equal(PutStatus.RejectedPersistentLimit, client.Put(pers, Oid(1), 2, page));
        // Same-filled pages take no compressed bytes and pass.
        Assert.Equal(PutStatus.Stored, client.Put(pers, Oid(1), 3, new byte[4096]));
        Assert.Equal(2L * length, store.GetStats().PersZbytes);
    }

    // ---- Flushes -------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FlushPage_ExistingPage_ReturnsTrueRemovesItAndCounts(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        client.Put(pool, Oid(1), 1, Compressible(4096, 1));
        client.Put(pool, Oid(1), 2, Compressible(4096, 2));
        var before = store.GetStats();
        Assert.True(client.FlushPage(pool, Oid(1), 1));
        var after = store.GetStats();
        Assert.Equal(before.FlushTotal + 1, after.FlushTotal);
        Assert.Equal(before.FlushFound + 1, after.FlushFound);
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
        Assert.Equal(Compressible(4096, 2), GetOrNull(client, pool, Oid(1), 2));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FlushPage_AbsentPage_ReturnsFalseAndCountsTotalOnly(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        client.Put(pool, Oid(1), 1, Compressible(4096, 1));
        var before = store.GetStats();
        Assert.False(client.FlushPage(pool, Oid(1), 2));
        Assert.False(client.FlushPage(pool, Oid(2), 1));
        var after = store.GetStats();
        Assert.Equal(before.FlushTotal + 2, after.FlushTotal);
        Assert.Equal(before.FlushFound, after.FlushFound);
        Assert.Equal(before.EphPages + before.PersPages, after.EphPages + after.PersPages);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void FlushObject_RemovesEveryPageOfThatObjectOnly(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        int other = Create(client, kind);
        uint[] indices = [0, 1, 2, 3, 4, 5, 6, 7, 100, 1_000_000, uint.MaxValue - 1, uint.MaxValue];
        foreach (uint i in indices) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, Compressible(4096, (int)(i % 1000))));
        for (uint i = 0; i < 5; i++) client.Put(pool, Oid(2), i, Compressible(4096, 500 + (int)i));
        client.Put(other, Oid(1), 0, Compressible(4096, 600));
        var before = store.GetStats();

        Assert.Equal(indices.Length, client.FlushObject(pool, Oid(1)));
        var after = store.GetStats();
        Assert.Equal(before.FlobjTotal + 1, after.FlobjTotal);
        Assert.Equal(before.FlobjFound + 1, after.FlobjFound);
        foreach (uint i in indices) Assert.Null(GetOrNull(client, pool, Oid(1), i));
        for (uint i = 0; i < 5; i++) Assert.Equal(Compressible(4096, 500 + (int)i), GetOrNull(client, pool, Oid(2), i));
        Assert.Equal(Compressible(4096, 600), GetOrNull(client, other, Oid(1), 0));

        Assert.Equal(0, client.FlushObject(pool, Oid(1)));
        var again = store.GetStats();
        Assert.Equal(before.FlobjTotal + 2, again.FlobjTotal);
        Assert.Equal(before.FlobjFound + 1, again.FlobjFound);
    }

    // ---- Destroy -------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(Kinds))]
    public void DestroyPool_RemovesPagesAndIdBecomesUnknown(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int keep = Create(client, kind);
        int pool = Create(client, kind);
        client.Put(keep, Oid(1), 1, Compressible(4096, 1));
        for (uint i = 0; i < 20; i++) client.Put(pool, Oid(1), i, Compressible(4096, 10 + (int)i));
        client.Put(pool, Oid(1), 100, new byte[4096]);

        client.DestroyPool(pool);
        var stats = store.GetStats();
        Assert.Equal(1, stats.EphPages + stats.PersPages);
        Assert.Equal(0, stats.ZeroFilledPages);
        Assert.Equal(1, stats.Pools);
        var buffer = new byte[4096];
        AssertPoolNotFound(() => client.Get(pool, Oid(1), 1, buffer));
        AssertPoolNotFound(() => client.Put(pool, Oid(1), 1, buffer));
        AssertPoolNotFound(() => client.FlushPage(pool, Oid(1), 1));
        AssertPoolNotFound(() => client.FlushObject(pool, Oid(1)));
        AssertPoolNotFound(() => client.DestroyPool(pool));
        Assert.Equal(Compressible(4096, 1), GetOrNull(client, keep, Oid(1), 1));

        // The id is free again, and the new pool there starts empty.
        Assert.Equal(pool, Create(client, kind));
        Assert.Null(GetOrNull(client, pool, Oid(1), 1));
    }

    [Fact]
    public void CreatePool_AfterDestroy_ReusesFirstFreeId()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        Assert.Equal(0, client.CreatePool(Stores.PrivateEphemeral));
        Assert.Equal(1, client.CreatePool(Stores.Persistent));
        Assert.Equal(2, client.CreatePool(Stores.PrivateEphemeral));
        Assert.Equal(3, client.CreatePool(Stores.Persistent));
        client.DestroyPool(2);
        client.DestroyPool(0);
        Assert.Equal(0, client.CreatePool(Stores.Persistent));
        Assert.Equal(2, client.CreatePool(Stores.PrivateEphemeral));
        Assert.Equal(4, client.CreatePool(Stores.PrivateEphemeral));
        Assert.Equal([0, 1, 2, 3, 4], client.GetPools().Select(p => p.PoolId));
        Assert.Equal(5, store.GetStats().Pools);
    }

    [Theory]
    [InlineData(Kind.PrivateEphemeral)]
    [InlineData(Kind.SharedEphemeral)]
    [InlineData(Kind.Persistent)]
    public void DestroyPool_WithOperationsInFlight_WaitsForThemAndLeavesNothing(Kind kind)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = Create(client, kind);
        const int Threads = 3;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var ops = new long[Threads];
        var endedWithPoolNotFound = new bool[Threads];
        int destroyed = 0;
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var last = new Dictionary<uint, byte[]>();
            var buffer = new byte[4096];
            var rng = new Random(t);
            for (long n = 0; ; n++)
            {
                uint index = (uint)rng.Next(16);
                bool startedAfterDestroy = Volatile.Read(ref destroyed) == 1;
                try
                {
                    int choice = rng.Next(10);
                    if (choice < 5)
                    {
                        var page = n % 7 == 0 ? new byte[4096] : Compressible(4096, (int)(n % 50) + t * 100);
                        var status = client.Put(pool, Oid(t), index, page);
                        if (status == PutStatus.Stored) last[index] = page;
                        else { last.Remove(index); errors.Enqueue($"put refused: {status}"); }
                    }
                    else if (choice < 9)
                    {
                        if (client.Get(pool, Oid(t), index, buffer) == GetStatus.Hit)
                        {
                            if (!last.TryGetValue(index, out var expected) || !expected.AsSpan().SequenceEqual(buffer))
                                errors.Enqueue($"thread {t} index {index}: wrong page on a hit");
                            if (GetsAreExclusive(kind)) last.Remove(index);
                        }
                        else if (IsPersistent(kind) && last.ContainsKey(index))
                        {
                            errors.Enqueue($"thread {t} index {index}: persistent page missing");
                        }
                        else
                        {
                            last.Remove(index);
                        }
                    }
                    else
                    {
                        client.FlushPage(pool, Oid(t), index);
                        last.Remove(index);
                    }
                    if (startedAfterDestroy) errors.Enqueue("an operation that started after DestroyPool returned succeeded");
                    Interlocked.Increment(ref ops[t]);
                }
                catch (TmemException e) when (e.Error == TmemError.PoolNotFound)
                {
                    endedWithPoolNotFound[t] = true;
                    return;
                }
                catch (Exception e)
                {
                    errors.Enqueue($"thread {t}: {e.GetType().Name}: {e.Message}");
                    return;
                }
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Enumerable.Range(0, Threads).Any(i => Interlocked.Read(ref ops[i]) < 500) && DateTime.UtcNow < deadline && errors.IsEmpty) Thread.Sleep(1);
        client.DestroyPool(pool);
        Volatile.Write(ref destroyed, 1);
        foreach (var thread in threads) Assert.True(thread.Join(TimeSpan.FromSeconds(10)));

        Assert.Empty(errors);
        Assert.All(ops, o => Assert.True(o >= 500, $"a thread managed only {o} operations before the destroy"));
        Assert.All(endedWithPoolNotFound, ended => Assert.True(ended));
        Stores.AssertHoldsNothing(store.GetStats());
    }

    // ---- Shared pools --------------------------------------------------------------------------

    [Fact]
    public void SharedPool_DestroyedByOneMember_StaysUsableByTheOther()
    {
        using var store = Stores.Open();
        var uuid = Guid.NewGuid();
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        int poolA = a.CreatePool(Stores.SharedEphemeral(uuid));
        int poolB = b.CreatePool(Stores.SharedEphemeral(uuid));
        var page = Compressible(4096, 1);
        a.Put(poolA, Oid(1), 1, page);
        a.DestroyPool(poolA);

        AssertPoolNotFound(() => a.Get(poolA, Oid(1), 1, new byte[4096]));
        Assert.Equal(page, GetOrNull(b, poolB, Oid(1), 1));
        var second = Compressible(4096, 2);
        Assert.Equal(PutStatus.Stored, b.Put(poolB, Oid(1), 2, second));
        Assert.Equal(second, GetOrNull(b, poolB, Oid(1), 2));
        var stats = store.GetStats();
        Assert.Equal(1, stats.Pools);
        Assert.Equal(2, stats.EphPages);
    }

    [Fact]
    public void SharedPool_LastMemberLeaves_PoolAndPagesAreGone()
    {
        using var store = Stores.Open();
        var uuid = Guid.NewGuid();
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        int poolA = a.CreatePool(Stores.SharedEphemeral(uuid));
        int poolB = b.CreatePool(Stores.SharedEphemeral(uuid));
        for (uint i = 0; i < 10; i++) a.Put(poolA, Oid(1), i, Compressible(4096, (int)i));
        b.DestroyPool(poolB);
        Assert.Equal(10, store.GetStats().EphPages);
        a.DestroyPool(poolA);
        var stats = store.GetStats();
        Assert.Equal(0, stats.Pools);
        Assert.Equal(0, stats.EphPages);
        Assert.Equal(0, stats.RamSlotBytes);

        // Joining the UUID now makes a new, empty pool, which may even have another page size.
        int again = b.CreatePool(Stores.SharedEphemeral(uuid, 8192));
        Assert.Null(GetOrNull(b, again, Oid(1), 0, 8192));
    }

    public static TheoryData<PoolOptions, PoolOptions> MismatchCases()
    {
        var uuid = Guid.NewGuid();
        return new TheoryData<PoolOptions, PoolOptions>
        {
            { new() { SharedUuid = uuid }, new() { SharedUuid = uuid, Kind = PoolKind.Persistent } },
            { new() { SharedUuid = uuid }, new() { SharedUuid = uuid, PageSize = 8192 } },
            { new() { SharedUuid = uuid, Kind = PoolKind.Persistent }, new() { SharedUuid = uuid } },
            { new() { SharedUuid = uuid, Kind = PoolKind.Persistent }, new() { SharedUuid = uuid, Kind = PoolKind.Persistent, ExclusiveGets = true } },
            { new() { SharedUuid = uuid, Kind = PoolKind.Persistent, ExclusiveGets = true }, new() { SharedUuid = uuid, Kind = PoolKind.Persistent } },
        };
    }

    [Theory]
    [MemberData(nameof(MismatchCases))]
    public void SharedPool_JoinWithOtherSettings_ThrowsSharedPoolMismatchAndChangesNothing(PoolOptions created, PoolOptions joining)
    {
        using var store = Stores.Open();
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        int poolA = a.CreatePool(created);
        var page = Compressible(created.PageSize, 1);
        a.Put(poolA, Oid(1), 1, page);

        var e = Assert.Throws<TmemException>(() => b.CreatePool(joining));
        Assert.Equal(TmemError.SharedPoolMismatch, e.Error);
        Assert.Empty(b.GetPools());
        Assert.Equal(1, store.GetStats().Pools);
        Assert.Equal(0, b.CreatePool(Stores.PrivateEphemeral)); // no slot was taken
        Assert.Equal(page, GetOrNull(a, poolA, Oid(1), 1, created.PageSize));

        // The creator leaving destroys the pool: the failed join did not count as a member.
        a.DestroyPool(poolA);
        Assert.Equal(1, store.GetStats().Pools);
        Assert.Equal(0, store.GetStats().EphPages + store.GetStats().PersPages);
    }

    [Fact]
    public void SharedPool_JoinTwiceBySameClient_ThrowsSharedPoolAlreadyJoined()
    {
        using var store = Stores.Open();
        var uuid = Guid.NewGuid();
        var a = store.GetClient(1);
        int pool = a.CreatePool(Stores.SharedEphemeral(uuid));
        var e = Assert.Throws<TmemException>(() => a.CreatePool(Stores.SharedEphemeral(uuid)));
        Assert.Equal(TmemError.SharedPoolAlreadyJoined, e.Error);
        Assert.Single(a.GetPools());
        Assert.Equal(1, a.CreatePool(Stores.PrivateEphemeral));

        // One membership only: one destroy ends the pool.
        a.Put(pool, Oid(1), 1, Compressible(4096, 1));
        a.DestroyPool(pool);
        Assert.Equal(1, store.GetStats().Pools);
        Assert.Equal(0, store.GetStats().EphPages);
    }

    // ---- Isolation -----------------------------------------------------------------------------

    [Fact]
    public void Client_UsingAnotherClientsPoolIds_CannotReachItsPages()
    {
        using var store = Stores.Open();
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        int persA = a.CreatePool(Stores.Persistent);
        int ephA = a.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        var pageA = Compressible(4096, 1);
        a.Put(persA, Oid(1), 0, pageA);
        a.Put(ephA, Oid(1), 0, pageA);

        var buffer = Filled(4096, 0x11);
        for (int id = 0; id < store.Options.MaxPoolsPerClient; id++)
        {
            int poolId = id;
            AssertPoolNotFound(() => b.Get(poolId, Oid(1), 0, buffer));
            AssertPoolNotFound(() => b.Put(poolId, Oid(1), 0, buffer));
            AssertPoolNotFound(() => b.FlushPage(poolId, Oid(1), 0));
            AssertPoolNotFound(() => b.FlushObject(poolId, Oid(1)));
            AssertPoolNotFound(() => b.DestroyPool(poolId));
        }
        Assert.Equal(Filled(4096, 0x11), buffer);

        // B's own pools with the same ids are different pools.
        Assert.Equal(persA, b.CreatePool(Stores.Persistent));
        Assert.Equal(ephA, b.CreatePool(Stores.SharedEphemeral(Guid.NewGuid())));
        Assert.Null(GetOrNull(b, persA, Oid(1), 0));
        Assert.Null(GetOrNull(b, ephA, Oid(1), 0));
        Assert.Equal(0, b.FlushObject(persA, Oid(1)));
        var pageB = Compressible(4096, 2);
        b.Put(persA, Oid(1), 0, pageB);
        b.Put(ephA, Oid(1), 0, pageB);
        Assert.Equal(pageA, GetOrNull(a, persA, Oid(1), 0));
        Assert.Equal(pageA, GetOrNull(a, ephA, Oid(1), 0));
        Assert.Equal(pageB, GetOrNull(b, persA, Oid(1), 0));
    }

    // ---- Same-filled pages -----------------------------------------------------------------------

    [Theory]
    [InlineData(0UL, false)]
    [InlineData(0UL, true)]
    [InlineData(NonZeroWord, false)]
    [InlineData(NonZeroWord, true)]
    public void Put_SameFilledPages_TakeNoRamBytesAndAreCounted(ulong word, bool persistent)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(persistent ? Stores.Persistent : Stores.SharedEphemeral(Guid.NewGuid()));
        client.Put(pool, Oid(9), 0, Compressible(4096, 1)); // some RAM in use already
        var before = store.GetStats();
        var page = SameFilled(4096, word);
        for (uint i = 1; i <= 100; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, page));
        var after = store.GetStats();
        Assert.Equal(before.RamSlotBytes, after.RamSlotBytes);
        Assert.Equal(before.RamSlabBytes, after.RamSlabBytes);
        Assert.Equal(before.EphZbytes + before.PersZbytes, after.EphZbytes + after.PersZbytes);
        Assert.Equal(before.ZeroFilledPages + 100, after.ZeroFilledPages);
        Assert.Equal(before.EphPages + before.PersPages + 100, after.EphPages + after.PersPages);

        for (uint i = 1; i <= 50; i++) Assert.True(client.FlushPage(pool, Oid(1), i));
        Assert.Equal(before.ZeroFilledPages + 50, store.GetStats().ZeroFilledPages);
        Assert.Equal(page, GetOrNull(client, pool, Oid(1), 77));
    }

    // ---- Stats on the meter ----------------------------------------------------------------------

    [Fact]
    public void Meter_Tmem_PublishesEveryStatUnderItsNameWithGetStatsValues()
    {
        using var store = Stores.Open(3 << 20);
        var client = store.GetClient(1);
        int pers = client.CreatePool(Stores.Persistent);
        int eph = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        // A distinctive history, so that this store's meter can be told from other tests' stores.
        for (uint i = 0; i < 37; i++) client.Put(pers, Oid(1), i, Compressible(4096, (int)i));
        for (uint i = 0; i < 23; i++) client.Put(eph, Oid(2), i, i % 3 == 0 ? new byte[4096] : Compressible(4096, 100 + (int)i));
        for (uint i = 0; i < 13; i++) client.FlushPage(pers, Oid(1), i * 2);
        client.FlushObject(eph, Oid(2));
        client.FlushObject(eph, Oid(3));
        client.Put(pers, Oid(4), 0, TestPages.Random(4096, 5));
        var expected = store.GetStats().ToList().ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(TmemStats.Names, store.GetStats().ToList().Select(kv => kv.Key));
        Assert.Contains("eph_pages", TmemStats.Names);
        Assert.Contains("flush_total", TmemStats.Names);
        Assert.Equal(13, expected["flush_total"]);
        Assert.Equal(24, expected["pers_pages"]);

        var byMeter = new Dictionary<Meter, Dictionary<string, long>>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Tmem") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (byMeter)
            {
                if (!byMeter.TryGetValue(instrument.Meter, out var values)) byMeter[instrument.Meter] = values = new();
                values[instrument.Name] = value;
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        lock (byMeter)
        {
            Assert.NotEmpty(byMeter);
            var mine = byMeter.Values.Where(v => v.Count == expected.Count && expected.All(kv => v.TryGetValue(kv.Key, out long x) && x == kv.Value)).ToList();
            Assert.True(mine.Count == 1,
                $"no 'Tmem' meter reported exactly this store's stats; meters seen: {string.Join(" | ", byMeter.Values.Select(v => string.Join(",", v.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"))))}");
        }
    }

    // ---- Slab compaction -------------------------------------------------------------------------

    [Fact]
    public void Compact_AfterFlushingMostPages_ReleasesSlabBytesAndKeepsRemainingPagesExact()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()));
        const int Pages = 3000;
        for (uint i = 0; i < Pages; i++)
            Assert.Equal(PutStatus.Stored, client.Put(pool, Oid((int)i % 7), i, WithRandomPrefix(4096, 0.24, (int)i)));
        var rng = new Random(42);
        var kept = new List<uint>();
        for (uint i = 0; i < Pages; i++)
        {
            if (rng.NextDouble() < 0.7) Assert.True(client.FlushPage(pool, Oid((int)i % 7), i));
            else kept.Add(i);
        }
        var before = store.GetStats();
        Assert.True(before.RamSlabBytes > 2 * before.RamSlotBytes, $"expected sparse slabs: {before.RamSlabBytes} slab bytes for {before.RamSlotBytes} slot bytes");

        int moved = store.CompactSlabs();
        var after = store.GetStats();
        Assert.True(moved > 0);
        Assert.Equal(before.SlabCompactedPages + moved, after.SlabCompactedPages);
        Assert.Equal(before.RamSlotBytes, after.RamSlotBytes);
        Assert.True(after.RamSlabBytes < before.RamSlabBytes * 0.6, $"slab bytes {before.RamSlabBytes} -> {after.RamSlabBytes}");
        Assert.Equal(kept.Count, after.EphPages);

        var keptSet = kept.ToHashSet();
        for (uint i = 0; i < Pages; i++)
        {
            var back = GetOrNull(client, pool, Oid((int)i % 7), i);
            if (keptSet.Contains(i)) Assert.Equal(WithRandomPrefix(4096, 0.24, (int)i), back);
            else Assert.Null(back);
        }
    }

    internal static void AssertPoolNotFound(Action action)
    {
        var e = Assert.Throws<TmemException>(action);
        Assert.Equal(TmemError.PoolNotFound, e.Error);
    }

    internal static void AssertPoolNotFound<T>(Func<T> action) => AssertPoolNotFound(() => { action(); });
}

/// <summary>What the shared contract suite sees of an error, whichever client raised it.</summary>
public enum ContractError
{
    InvalidArgument,
    PoolNotFound,
    PoolOfAnotherClient,
    PoolLimitReached,
    SharedPoolMismatch,
    SharedPoolAlreadyJoined,
    Other,
}

/// <summary>An error of a client under <see cref="ContractSuite"/>, as the suite names it.</summary>
public sealed class ContractException(ContractError error, string message) : Exception(message)
{
    public ContractError Error { get; } = error;
}

/// <summary>
/// A client as <see cref="ContractSuite"/> drives it: the in-process <c>TmemClient</c> or the
/// wire client <c>TmemConnection</c> against a real service, behind one async API. Errors are
/// <see cref="ContractException"/>s, mapped one to one from each client's own.
/// </summary>
public interface IContractClient : IAsyncDisposable
{
    int ClientId { get; }

    Task<int> CreatePoolAsync(PoolOptions options);

    Task DestroyPoolAsync(int poolId);

    ValueTask<PutStatus> PutAsync(int poolId, ObjectId objectId, uint index, byte[] page);

    ValueTask<GetStatus> GetAsync(int poolId, ObjectId objectId, uint index, byte[] page);

    ValueTask<bool> FlushPageAsync(int poolId, ObjectId objectId, uint index);

    ValueTask<int> FlushObjectAsync(int poolId, ObjectId objectId);

    Task<IReadOnlyList<PoolInfo>> GetPoolsAsync();

    Task<IReadOnlyDictionary<string, long>> GetStatsAsync();
}

/// <summary>
/// The store's contract (docs/PROTOCOL.md, "What the operations mean"), rule by rule, written
/// once and run against every client (dotnet/runtime's ChannelTestBase style): a derived class
/// supplies <see cref="ConnectAsync"/>. <c>InProcessContractTests</c> (below) runs it on a
/// durable Strict store in this process; <c>ContractOverWireTests</c> (tests/Tmem.Service.Tests)
/// over the socket of a real service process. Clients <c>alice</c> (id 1) and <c>bob</c> (id 2)
/// may use <see cref="SharedUuid"/>. Each test uses pools of its own.
/// </summary>
public abstract class ContractSuite
{
    public static readonly Guid SharedUuid = Guid.Parse("6f1c2a4e-8b3d-4c5e-9a7f-0123456789ab");

    private static readonly ObjectId Oid = new(42, 7, 1);

    /// <summary>A client acting as the configured client <paramref name="name"/> (alice: id 1, bob: id 2).</summary>
    protected abstract Task<IContractClient> ConnectAsync(string name = "alice");

    /// <summary>A 4 KiB page of text naming (tag, version), compressing well; distinct per (tag, version).</summary>
    public static byte[] Page(string tag, int version, int size = 4096)
    {
        var page = new byte[size];
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes($"page {tag} version {version}; ");
        for (int written = 0; written < size; written += bytes.Length)
            bytes.AsSpan(0, Math.Min(bytes.Length, size - written)).CopyTo(page.AsSpan(written));
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(page, version);
        return page;
    }

    /// <summary>Random bytes: LZ4 cannot compress them under 7/8 of the page, so a put is refused.</summary>
    public static byte[] Incompressible(int seed, int size = 4096)
    {
        var page = new byte[size];
        new Random(seed).NextBytes(page);
        return page;
    }

    private static async Task<ContractException> Refused(Func<Task> call) => await Assert.ThrowsAsync<ContractException>(call);

    [Fact]
    public async Task Rule1_PutMayFail_RefusalIsVisibleAsItsStatus()
    {
        await using var alice = await ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            Assert.Equal(PutStatus.RejectedPoorCompression, await alice.PutAsync(pool, Oid, 0, Incompressible(1)));
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 1, Page("r1", 1)));
            var page = new byte[4096];
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 1, page));
            Assert.Equal(Page("r1", 1), page);
            // Bad arguments are refused with a status, and the client carries on.
            var wrongSize = await Refused(() => alice.PutAsync(pool, Oid, 2, new byte[1000]).AsTask());
            Assert.Equal(ContractError.InvalidArgument, wrongSize.Error);
            var invalidOid = await Refused(() => alice.PutAsync(pool, ObjectId.Invalid, 2, Page("r1", 2)).AsTask());
            Assert.Equal(ContractError.InvalidArgument, invalidOid.Error);
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 1, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule1_EveryPoolKindRefusesPoorCompression()
    {
        await using var alice = await ConnectAsync();
        foreach (var options in new[] { PoolOptions.Ephemeral, PoolOptions.Ephemeral with { SharedUuid = SharedUuid }, PoolOptions.Persistent, PoolOptions.Persistent with { ExclusiveGets = true } })
        {
            int pool = await alice.CreatePoolAsync(options);
            try
            {
                Assert.Equal(PutStatus.RejectedPoorCompression, await alice.PutAsync(pool, Oid, 0, Incompressible(7)));
                Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 0, new byte[4096]));
            }
            finally
            {
                await alice.DestroyPoolAsync(pool);
            }
        }
    }

    [Fact]
    public async Task Rule1_StoreIncompressiblePools_StoreWhatOthersRefuse_Uncompressed()
    {
        await using var alice = await ConnectAsync();
        foreach (var options in new[] { PoolOptions.Ephemeral with { StoreIncompressible = true, SharedUuid = SharedUuid }, PoolOptions.Persistent with { StoreIncompressible = true } })
        {
            int pool = await alice.CreatePoolAsync(options);
            try
            {
                Assert.True((await alice.GetPoolsAsync()).Single(p => p.PoolId == pool).StoreIncompressible);
                Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 0, Incompressible(7)));
                Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 1, Page("si", 1)));
                var page = new byte[4096];
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 0, page));
                Assert.Equal(Incompressible(7), page);
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 1, page));
                Assert.Equal(Page("si", 1), page);
            }
            finally
            {
                await alice.DestroyPoolAsync(pool);
            }
        }
    }

    [Fact]
    public async Task Rule2_PutPutCoherency_LaterPutWins_FailedPutFlushesTheOldPage()
    {
        await using var alice = await ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            var page = new byte[4096];
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 5, Page("r2", 1)));
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 5, Page("r2", 2)));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 5, page));
            Assert.Equal(Page("r2", 2), page);
            Assert.Equal(PutStatus.RejectedPoorCompression, await alice.PutAsync(pool, Oid, 5, Incompressible(2)));
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 5, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule3_GetGetCoherency_AMissStaysAMissUntilAPut()
    {
        await using var alice = await ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            var page = new byte[4096];
            await alice.PutAsync(pool, Oid, 0, Page("r3", 1));
            Assert.True(await alice.FlushPageAsync(pool, Oid, 0));
            for (int i = 0; i < 3; i++) Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 0, page));
            Assert.False(await alice.FlushPageAsync(pool, Oid, 0));
            await alice.PutAsync(pool, Oid, 0, Page("r3", 2));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 0, page));
            Assert.Equal(Page("r3", 2), page);
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule4_PrivateEphemeralGetIsExclusive_SharedEphemeralKeepsThePage()
    {
        await using var alice = await ConnectAsync();
        await using var bob = await ConnectAsync("bob");
        int priv = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
        int sharedA = await alice.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = SharedUuid });
        int sharedB = await bob.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = SharedUuid });
        try
        {
            var page = new byte[4096];
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(priv, Oid, 0, Page("r4", 1)));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(priv, Oid, 0, page));
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(priv, Oid, 0, page));

            // A page alice puts in the shared pool is read by bob, twice: it stays.
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(sharedA, Oid, 0, Page("r4", 2)));
            Assert.Equal(GetStatus.Hit, await bob.GetAsync(sharedB, Oid, 0, page));
            Assert.Equal(Page("r4", 2), page);
            Assert.Equal(GetStatus.Hit, await bob.GetAsync(sharedB, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(sharedA, Oid, 0, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(priv);
            await alice.DestroyPoolAsync(sharedA);
            await bob.DestroyPoolAsync(sharedB);
        }
    }

    [Fact]
    public async Task Rule5_PersistentGetKeepsThePage_UnlessExclusiveGets()
    {
        await using var alice = await ConnectAsync();
        int keep = await alice.CreatePoolAsync(PoolOptions.Persistent);
        int swap = await alice.CreatePoolAsync(PoolOptions.Persistent with { ExclusiveGets = true });
        try
        {
            var page = new byte[4096];
            await alice.PutAsync(keep, Oid, 0, Page("r5", 1));
            await alice.PutAsync(swap, Oid, 0, Page("r5", 2));
            for (int i = 0; i < 2; i++) Assert.Equal(GetStatus.Hit, await alice.GetAsync(keep, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(swap, Oid, 0, page));
            Assert.Equal(Page("r5", 2), page);
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(swap, Oid, 0, page));
            var pools = await alice.GetPoolsAsync();
            Assert.Contains(pools, p => p.PoolId == swap && p.ExclusiveGets && p.Kind == PoolKind.Persistent);
        }
        finally
        {
            await alice.DestroyPoolAsync(keep);
            await alice.DestroyPoolAsync(swap);
        }
    }

    [Fact]
    public async Task Rule6_FlushObjectRemovesEveryPage_DestroyedPoolIsUnusable()
    {
        await using var alice = await ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        var other = new ObjectId(43);
        for (uint i = 0; i < 10; i++) await alice.PutAsync(pool, Oid, i, Page("r6", (int)i));
        await alice.PutAsync(pool, other, 0, Page("r6o", 0));
        Assert.Equal(10, await alice.FlushObjectAsync(pool, Oid));
        Assert.Equal(0, await alice.FlushObjectAsync(pool, Oid));
        var page = new byte[4096];
        for (uint i = 0; i < 10; i++) Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, i, page));
        Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, other, 0, page));
        await alice.DestroyPoolAsync(pool);
        var gone = await Refused(() => alice.GetAsync(pool, other, 0, page).AsTask());
        Assert.Contains(gone.Error, new[] { ContractError.PoolNotFound, ContractError.PoolOfAnotherClient });
        Assert.Equal(ContractError.PoolNotFound, (await Refused(() => alice.DestroyPoolAsync(1000))).Error);
    }

    [Fact]
    public async Task PoolIds_AreTheClientsOwn_FirstFreeSlot_ReusedAtOnce()
    {
        await using var alice = await ConnectAsync();
        var ids = new List<int>();
        for (int i = 0; i < 3; i++) ids.Add(await alice.CreatePoolAsync(PoolOptions.Ephemeral));
        try
        {
            int middle = ids[1];
            await alice.DestroyPoolAsync(middle);
            ids.RemoveAt(1);
            int again = await alice.CreatePoolAsync(PoolOptions.Persistent);
            ids.Add(again);
            Assert.Equal(middle, again); // the first free slot, reused at once
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(again, Oid, 0, new byte[4096])); // a new, empty pool
        }
        finally
        {
            foreach (int id in ids) await alice.DestroyPoolAsync(id);
        }
    }

    [Fact]
    public async Task ListPools_EachEntryFedBackIntoCreatePool_MakesAPoolOfTheSameKind()
    {
        await using var alice = await ConnectAsync();
        await using var bob = await ConnectAsync("bob");
        var kinds = new[]
        {
            PoolOptions.Ephemeral, PoolOptions.Ephemeral with { SharedUuid = SharedUuid, PageSize = 8192 },
            PoolOptions.Persistent, PoolOptions.Persistent with { ExclusiveGets = true, PageSize = 512 },
            PoolOptions.Persistent with { StoreIncompressible = true }, PoolOptions.Ephemeral with { StoreIncompressible = true },
        };
        var mine = new List<int>();
        var bobs = new List<int>();
        try
        {
            foreach (var options in kinds) mine.Add(await alice.CreatePoolAsync(options));
            var listed = (await alice.GetPoolsAsync()).Where(p => mine.Contains(p.PoolId)).OrderBy(p => mine.IndexOf(p.PoolId)).ToList();
            Assert.Equal(kinds.Length, listed.Count);
            for (int i = 0; i < kinds.Length; i++)
            {
                var info = listed[i];
                Assert.Equal((kinds[i].Kind, kinds[i].PageSize, kinds[i].SharedUuid), (info.Kind, info.PageSize, info.SharedUuid));
                // ExclusiveGets says what a hit does: a private ephemeral pool's hit removes the page.
                bool exclusive = kinds[i].Kind == PoolKind.Ephemeral ? kinds[i].SharedUuid is null : kinds[i].ExclusiveGets;
                Assert.Equal(exclusive, info.ExclusiveGets);
                // Fed back (by bob for the shared pool, which alice has joined already): the same kind of pool.
                var again = Tmem.Protocol.Wire.ToCreateOptions(info);
                Assert.Equal(kinds[i], again);
                var creator = info.SharedUuid is null ? alice : bob;
                int id = await creator.CreatePoolAsync(again);
                (info.SharedUuid is null ? mine : bobs).Add(id);
                var twin = (await creator.GetPoolsAsync()).Single(p => p.PoolId == id);
                Assert.Equal(info with { PoolId = id, Pages = 0 }, twin with { Pages = 0 });
            }
        }
        finally
        {
            foreach (int id in mine) await alice.DestroyPoolAsync(id);
            foreach (int id in bobs) await bob.DestroyPoolAsync(id);
        }
    }

    [Fact]
    public async Task Rule8_ConcurrentClients_PipelinedRequests_EachSeesItsOwnPages()
    {
        await using var bob = await ConnectAsync("bob");
        int shared = await bob.CreatePoolAsync(PoolOptions.Persistent with { SharedUuid = SharedUuid });
        var clients = new List<IContractClient>();
        try
        {
            for (int c = 0; c < 4; c++) clients.Add(await ConnectAsync(c % 2 == 0 ? "alice" : "bob"));
            // Each client pipelines puts and gets of its own objects in the one shared pool,
            // which every alice and bob client maps (bob's id here; alice joins under hers).
            await using var aliceJoin = await ConnectAsync();
            int aliceShared = await aliceJoin.CreatePoolAsync(PoolOptions.Persistent with { SharedUuid = SharedUuid });
            try
            {
                var work = clients.Select((conn, c) => Task.Run(async () =>
                {
                    int pool = c % 2 == 0 ? aliceShared : shared;
                    var puts = new List<Task<PutStatus>>();
                    for (int i = 0; i < 300; i++)
                        puts.Add(conn.PutAsync(pool, new ObjectId((ulong)(1000 + c)), (uint)i, Page($"c{c}", i)).AsTask());
                    Assert.All(await Task.WhenAll(puts), s => Assert.Equal(PutStatus.Stored, s));
                    var pages = Enumerable.Range(0, 300).Select(_ => new byte[4096]).ToArray();
                    var gets = Enumerable.Range(0, 300).Select(i => conn.GetAsync(pool, new ObjectId((ulong)(1000 + c)), (uint)i, pages[i]).AsTask()).ToArray();
                    Assert.All(await Task.WhenAll(gets), s => Assert.Equal(GetStatus.Hit, s));
                    for (int i = 0; i < 300; i++) Assert.Equal(Page($"c{c}", i), pages[i]);
                })).ToArray();
                await Task.WhenAll(work);
                var stats = await bob.GetStatsAsync();
                Assert.True(stats["pers_pages"] >= 1200, $"pers_pages {stats["pers_pages"]}");
            }
            finally
            {
                await aliceJoin.DestroyPoolAsync(aliceShared);
            }
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
            await bob.DestroyPoolAsync(shared);
        }
    }
}

/// <summary><see cref="ContractSuite"/> on the in-process client, over a durable Strict store (as the service runs).</summary>
[Trait("Kind", "Unit")]
public sealed class InProcessContractTests : ContractSuite, IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "tmem-contract-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly TmemStore _store;

    public InProcessContractTests()
    {
        _store = TmemStore.Open(new TmemOptions { DataDirectory = _directory, RamBudgetBytes = 64L << 20 });
    }

    protected override Task<IContractClient> ConnectAsync(string name = "alice") =>
        Task.FromResult<IContractClient>(new InProcessClient(_store, _store.GetClient(name switch { "alice" => 1, "bob" => 2, _ => 3 })));

    public void Dispose()
    {
        _store.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private sealed class InProcessClient(TmemStore store, TmemClient client) : IContractClient
    {
        public int ClientId => client.Id;

        private static ContractException Map(Exception e) => e switch
        {
            TmemException t => new ContractException(t.Error switch
            {
                TmemError.PoolNotFound => ContractError.PoolNotFound,
                TmemError.PoolLimitReached => ContractError.PoolLimitReached,
                TmemError.SharedPoolMismatch => ContractError.SharedPoolMismatch,
                TmemError.SharedPoolAlreadyJoined => ContractError.SharedPoolAlreadyJoined,
                _ => ContractError.Other,
            }, t.Message),
            ArgumentException a => new ContractException(ContractError.InvalidArgument, a.Message),
            _ => new ContractException(ContractError.Other, $"{e.GetType().Name}: {e.Message}"),
        };

        private static async ValueTask<T> Call<T>(Func<ValueTask<T>> call)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (e is TmemException or ArgumentException)
            {
                throw Map(e);
            }
        }

        public Task<int> CreatePoolAsync(PoolOptions options) => Call(() => ValueTask.FromResult(client.CreatePool(options))).AsTask();

        public Task DestroyPoolAsync(int poolId) => Call(() =>
        {
            client.DestroyPool(poolId);
            return ValueTask.FromResult(true);
        }).AsTask();

        public ValueTask<PutStatus> PutAsync(int poolId, ObjectId objectId, uint index, byte[] page) => Call(() => client.PutAsync(poolId, objectId, index, page));

        public ValueTask<GetStatus> GetAsync(int poolId, ObjectId objectId, uint index, byte[] page) => Call(() => client.GetAsync(poolId, objectId, index, page));

        public ValueTask<bool> FlushPageAsync(int poolId, ObjectId objectId, uint index) => Call(() => client.FlushPageAsync(poolId, objectId, index));

        public ValueTask<int> FlushObjectAsync(int poolId, ObjectId objectId) => Call(() => client.FlushObjectAsync(poolId, objectId));

        public Task<IReadOnlyList<PoolInfo>> GetPoolsAsync() => Task.FromResult(client.GetPools());

        public Task<IReadOnlyDictionary<string, long>> GetStatsAsync() =>
            Task.FromResult<IReadOnlyDictionary<string, long>>(store.GetStats().ToList().ToDictionary(kv => kv.Key, kv => kv.Value));

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
