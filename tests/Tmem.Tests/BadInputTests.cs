using static Tmem.Tests.ContractTests;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>Misuse is refused with the documented exception and leaves the store unchanged.</summary>
[Trait("Kind", "Unit")]
public class BadInputTests
{
    /// <summary>A store with one page in a private ephemeral pool (0), a persistent pool (1) and a shared ephemeral pool (2).</summary>
    private static (TmemStore Store, TmemClient Client, byte[] Page) Populated()
    {
        var store = Stores.Open();
        var client = store.GetClient(1);
        var page = Compressible(4096, 1);
        Assert.Equal(0, client.CreatePool(Stores.PrivateEphemeral));
        Assert.Equal(1, client.CreatePool(Stores.Persistent));
        Assert.Equal(2, client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid())));
        for (int pool = 0; pool < 3; pool++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 1, page));
        return (store, client, page);
    }

    /// <summary>Every page of <see cref="Populated"/> is still there (read last: pool 0's get is exclusive).</summary>
    private static void AssertPagesIntact(TmemClient client, byte[] page)
    {
        for (int pool = 0; pool < 3; pool++)
        {
            var back = new byte[4096];
            Assert.Equal(GetStatus.Hit, client.Get(pool, Oid(1), 1, back));
            Assert.Equal(page, back);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(4095)]
    [InlineData(4097)]
    [InlineData(8192)]
    public void Put_WrongPageLength_ThrowsArgumentExceptionAndChangesNothing(int length)
    {
        var (store, client, page) = Populated();
        using var _ = store;
        var before = store.GetStats();
        for (int pool = 0; pool < 3; pool++)
        {
            int p = pool;
            // Over the existing page (which must survive) and at a new handle.
            Assert.Throws<ArgumentException>(() => client.Put(p, Oid(1), 1, new byte[length]));
            Assert.Throws<ArgumentException>(() => client.Put(p, Oid(1), 2, Compressible(length, 3)));
        }
        Assert.Equal(before, store.GetStats());
        AssertPagesIntact(client, page);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4095)]
    [InlineData(4097)]
    [InlineData(65536)]
    public void Get_WrongPageLength_ThrowsArgumentExceptionAndChangesNothing(int length)
    {
        var (store, client, page) = Populated();
        using var _ = store;
        var before = store.GetStats();
        var buffer = Filled(length, 0x3C);
        for (int pool = 0; pool < 3; pool++)
        {
            int p = pool;
            Assert.Throws<ArgumentException>(() => client.Get(p, Oid(1), 1, buffer));
        }
        Assert.Equal(Filled(length, 0x3C), buffer);
        Assert.Equal(before, store.GetStats());
        AssertPagesIntact(client, page); // in particular the exclusive pool 0 did not give its page away
    }

    [Fact]
    public void Operations_InvalidObjectId_ThrowArgumentExceptionAndChangeNothing()
    {
        var (store, client, page) = Populated();
        using var _ = store;
        Assert.False(ObjectId.Invalid.IsValid);
        Assert.Equal(new ObjectId(ulong.MaxValue, ulong.MaxValue, ulong.MaxValue), ObjectId.Invalid);
        var before = store.GetStats();
        var buffer = new byte[4096];
        for (int pool = 0; pool < 3; pool++)
        {
            int p = pool;
            Assert.Throws<ArgumentException>(() => client.Put(p, ObjectId.Invalid, 1, page));
            Assert.Throws<ArgumentException>(() => client.Get(p, ObjectId.Invalid, 1, buffer));
            Assert.Throws<ArgumentException>(() => client.FlushPage(p, ObjectId.Invalid, 1));
            Assert.Throws<ArgumentException>(() => client.FlushObject(p, ObjectId.Invalid));
        }
        Assert.Equal(before, store.GetStats());
        AssertPagesIntact(client, page);
    }

    [Fact]
    public void Operations_AlmostAllOnesObjectIds_AreValid()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.Persistent);
        ObjectId[] ids = [new(ulong.MaxValue, ulong.MaxValue, ulong.MaxValue - 1), new(ulong.MaxValue - 1, ulong.MaxValue, ulong.MaxValue), new(0, 0, 0)];
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.True(ids[i].IsValid);
            Assert.Equal(PutStatus.Stored, client.Put(pool, ids[i], 1, Compressible(4096, i)));
        }
        for (int i = 0; i < ids.Length; i++)
        {
            var back = new byte[4096];
            Assert.Equal(GetStatus.Hit, client.Get(pool, ids[i], 1, back));
            Assert.Equal(Compressible(4096, i), back);
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(3)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(99)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void Operations_UnknownPoolId_ThrowPoolNotFoundAndChangeNothing(int poolId)
    {
        var (store, client, page) = Populated();
        using var _ = store;
        var before = store.GetStats();
        var buffer = new byte[4096];
        AssertPoolNotFound(() => client.Put(poolId, Oid(1), 1, page));
        AssertPoolNotFound(() => client.Get(poolId, Oid(1), 1, buffer));
        AssertPoolNotFound(() => client.FlushPage(poolId, Oid(1), 1));
        AssertPoolNotFound(() => client.FlushObject(poolId, Oid(1)));
        AssertPoolNotFound(() => client.DestroyPool(poolId));
        Assert.Equal(before, store.GetStats());
        Assert.Equal(3, client.GetPools().Count);
        AssertPagesIntact(client, page);
    }

    [Fact]
    public void Operations_DestroyedPool_ThrowPoolNotFound()
    {
        var (store, client, page) = Populated();
        using var _ = store;
        client.DestroyPool(1);
        var before = store.GetStats();
        var buffer = new byte[4096];
        AssertPoolNotFound(() => client.Put(1, Oid(1), 1, page));
        AssertPoolNotFound(() => client.Get(1, Oid(1), 1, buffer));
        AssertPoolNotFound(() => client.FlushPage(1, Oid(1), 1));
        AssertPoolNotFound(() => client.FlushObject(1, Oid(1)));
        AssertPoolNotFound(() => client.DestroyPool(1));
        Assert.Equal(before, store.GetStats());
        Assert.Equal(0, before.PersPages);
    }

    [Fact]
    public void Operations_AnotherClientsPoolId_ThrowPoolNotFound()
    {
        var (store, client, page) = Populated();
        using var _ = store;
        var other = store.GetClient(2);
        var before = store.GetStats();
        var buffer = new byte[4096];
        for (int pool = 0; pool < 3; pool++)
        {
            int p = pool;
            AssertPoolNotFound(() => other.Put(p, Oid(1), 1, page));
            AssertPoolNotFound(() => other.Get(p, Oid(1), 1, buffer));
            AssertPoolNotFound(() => other.FlushPage(p, Oid(1), 1));
            AssertPoolNotFound(() => other.FlushObject(p, Oid(1)));
            AssertPoolNotFound(() => other.DestroyPool(p));
        }
        Assert.Equal(before, store.GetStats());
        AssertPagesIntact(client, page);
    }

    [Theory]
    [InlineData(0)]  // default, 16
    [InlineData(1)]
    [InlineData(3)]
    public void CreatePool_TooManyPools_ThrowsPoolLimitReachedAndChangesNothing(int limit)
    {
        using var store = Stores.Open(configure: o => { if (limit > 0) o.MaxPoolsPerClient = limit; });
        int max = limit > 0 ? limit : 16;
        Assert.Equal(max, store.Options.MaxPoolsPerClient);
        var client = store.GetClient(1);
        var sharedUuid = Guid.NewGuid();
        var other = store.GetClient(2);
        other.CreatePool(Stores.SharedEphemeral(sharedUuid));
        for (int i = 0; i < max; i++) Assert.Equal(i, client.CreatePool(i % 2 == 0 ? Stores.PrivateEphemeral : Stores.Persistent));
        var before = store.GetStats();

        foreach (var options in new[] { Stores.PrivateEphemeral, Stores.Persistent, Stores.SharedEphemeral(Guid.NewGuid()), Stores.SharedEphemeral(sharedUuid) })
        {
            var e = Assert.Throws<TmemException>(() => client.CreatePool(options));
            Assert.Equal(TmemError.PoolLimitReached, e.Error);
            Assert.Contains("MaxPoolsPerClient", e.Message);
        }
        Assert.Equal(before, store.GetStats());
        Assert.Equal(max, client.GetPools().Count);

        // The refused join did not become a member: the creator's leaving ends the shared pool.
        other.DestroyPool(0);
        Assert.Equal(before.Pools - 1, store.GetStats().Pools);

        client.DestroyPool(max - 1);
        Assert.Equal(max - 1, client.CreatePool(Stores.PrivateEphemeral));
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(256)]
    [InlineData(131072)]
    [InlineData(0)]
    [InlineData(-4096)]
    [InlineData(4097)]
    [InlineData(6144)]
    public void CreatePool_BadPageSize_ThrowsArgumentExceptionAndCreatesNothing(int pageSize)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        var e = Assert.Throws<ArgumentException>(() => client.CreatePool(new PoolOptions { PageSize = pageSize }));
        Assert.Contains(pageSize.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Throws<ArgumentException>(() => client.CreatePool(new PoolOptions { PageSize = pageSize, Kind = PoolKind.Persistent }));
        Assert.Throws<ArgumentException>(() => client.CreatePool(new PoolOptions { PageSize = pageSize, SharedUuid = Guid.NewGuid() }));
        Assert.Empty(client.GetPools());
        Assert.Equal(0, store.GetStats().Pools);
        Assert.Equal(0, client.CreatePool(Stores.PrivateEphemeral));
    }

    [Theory]
    [InlineData(512)]
    [InlineData(1024)]
    [InlineData(65536)]
    public void CreatePool_PowerOfTwoPageSizesInRange_AreAccepted(int pageSize)
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { PageSize = pageSize });
        Assert.Equal(pageSize, client.GetPools().Single(p => p.PoolId == pool).PageSize);
        Assert.Throws<ArgumentException>(() => client.Put(pool, Oid(1), 0, new byte[pageSize / 2]));
        var page = Compressible(pageSize, 1);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 0, page));
    }

    [Fact]
    public void CreatePool_BadKindOrNullOptions_Throws()
    {
        using var store = Stores.Open();
        var client = store.GetClient(1);
        Assert.Throws<ArgumentException>(() => client.CreatePool(new PoolOptions { Kind = (PoolKind)7 }));
        Assert.Throws<ArgumentNullException>(() => client.CreatePool(null!));
        Assert.Empty(client.GetPools());
        Assert.Equal(0, store.GetStats().Pools);
    }

    public static TheoryData<string, Action<TmemOptions>> BadOptions() => new()
    {
        { "RamBudgetBytes", o => o.RamBudgetBytes = 1000 },
        { "RamBudgetBytes", o => o.RamBudgetBytes = -1 },
        { "MaxPages", o => o.MaxPages = -1 },
        { "MaxPages", o => o.MaxPages = uint.MaxValue },
        { "MaxPoolsPerClient", o => o.MaxPoolsPerClient = 0 },
        { "MaxPoolsPerClient", o => o.MaxPoolsPerClient = 65537 },
        { "BucketsPerPool", o => o.BucketsPerPool = 3 },
        { "BucketsPerPool", o => o.BucketsPerPool = 0 },
        { "BucketsPerPool", o => o.BucketsPerPool = 1 << 17 },
        { "MaxZsize", o => o.MaxZsize = 0 },
        { "MaxZsize", o => o.MaxZsize = 1.5 },
        { "MaxZsize", o => o.MaxZsize = double.NaN },
        { "MaxMeanZsize", o => o.MaxMeanZsize = 0.9 }, // over MaxZsize (7/8)
        { "MaxMeanZsize", o => o.MaxMeanZsize = -0.1 },
        { "SlabCompactionThreshold", o => o.SlabCompactionThreshold = 0 },
        { "SlabCompactionThreshold", o => o.SlabCompactionThreshold = 11 },
        { "MaxPersistentPages", o => o.MaxPersistentPages = -1 },
        { "MaxPersistentBytes", o => o.MaxPersistentBytes = -5 },
        { "CommitIntervalMs", o => o.CommitIntervalMs = 0 },
        { "Durability", o => o.Durability = (DurabilityMode)7 },
        { "DataDirectory", o => o.DataDirectory = "" },
        { "LogSegmentSizeBytes", o => o.LogSegmentSizeBytes = 8L << 20 },
        { "LogSegmentSizeBytes", o => o.LogSegmentSizeBytes = 2L << 30 },
        { "LogSegmentSizeBytes", o => o.LogSegmentSizeBytes = 48L << 20 },
        { "LogCompactionLiveFraction", o => o.LogCompactionLiveFraction = 0.99 },
        { "LogCompactionLiveFraction", o => o.LogCompactionLiveFraction = -0.5 },
        { "LogCompactionLiveFraction", o => o.LogCompactionLiveFraction = double.NaN },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Open_BadOption_ThrowsArgumentExceptionNamingTheKey(string key, Action<TmemOptions> spoil)
    {
        var options = new TmemOptions();
        Assert.Empty(options.GetErrors());
        spoil(options);
        var e = Assert.Throws<ArgumentException>(() => TmemStore.Open(options));
        Assert.Contains(key, e.Message);
        Assert.Contains(key, Assert.Throws<ArgumentException>(options.Validate).Message);
        Assert.Contains(options.GetErrors(), m => m.Contains(key, StringComparison.Ordinal));
    }

    [Fact]
    public void Open_SeveralBadOptions_GetErrorsNamesEach()
    {
        var options = new TmemOptions { RamBudgetBytes = 1, MaxPoolsPerClient = 0, BucketsPerPool = 5 };
        var errors = options.GetErrors().ToList();
        Assert.Equal(3, errors.Count);
        Assert.Contains(errors, m => m.Contains("RamBudgetBytes", StringComparison.Ordinal));
        Assert.Contains(errors, m => m.Contains("MaxPoolsPerClient", StringComparison.Ordinal));
        Assert.Contains(errors, m => m.Contains("BucketsPerPool", StringComparison.Ordinal));
    }

    [Fact]
    public void Open_BoundaryOptions_AreAccepted()
    {
        using var store = TmemStore.Open(new TmemOptions
        {
            RamBudgetBytes = 65536, MaxPages = 1, MaxPoolsPerClient = 1, BucketsPerPool = 1, MaxZsize = 1, MaxMeanZsize = 1, SlabCompactionThreshold = 0.01,
        });
        var client = store.GetClient(0);
        int pool = client.CreatePool(Stores.Persistent);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 0, Compressible(4096, 1)));
        Assert.Equal(PutStatus.RejectedCapacity, client.Put(pool, Oid(1), 1, Compressible(4096, 2))); // MaxPages = 1
    }

    [Fact]
    public void Open_OptionsChangedAfterOpen_StoreKeepsTheValidatedSettings()
    {
        // Settings are validated when the store opens, and Options are "the settings the store was
        // opened with": values set on the caller's object afterwards must not slip in unvalidated.
        var options = new TmemOptions();
        using var store = TmemStore.Open(options);
        options.MaxPoolsPerClient = 0;  // invalid
        options.MaxZsize = 0.01;        // valid, but not what the store was opened with
        options.MaxMeanZsize = 0.005;
        Assert.NotEmpty(options.GetErrors());

        var client = store.GetClient(1);
        int pool = client.CreatePool(Stores.Persistent); // the limit is still 16
        var page = TestPages.Compressible(4096, 1);
        Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), 0, page)); // and MaxZsize still 7/8
        Assert.Equal(16, store.Options.MaxPoolsPerClient);
        Assert.Empty(store.Options.GetErrors());
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void GetClient_NegativeId_ThrowsArgumentException(int id)
    {
        using var store = Stores.Open();
        Assert.ThrowsAny<ArgumentException>(() => store.GetClient(id));
        Assert.Equal(0, store.GetClient(0).Id);
    }

    [Fact]
    public void UseAfterDispose_ThrowsObjectDisposedException()
    {
        var (store, client, page) = Populated();
        store.Dispose();
        var buffer = new byte[4096];
        Assert.Throws<ObjectDisposedException>(() => store.GetClient(1));
        Assert.Throws<ObjectDisposedException>(() => store.GetClient(7));
        Assert.Throws<ObjectDisposedException>(() => store.CompactSlabs());
        Assert.Throws<ObjectDisposedException>(() => client.CreatePool(Stores.PrivateEphemeral));
        for (int pool = 0; pool < 3; pool++)
        {
            int p = pool;
            Assert.Throws<ObjectDisposedException>(() => client.Put(p, Oid(1), 1, page));
            Assert.Throws<ObjectDisposedException>(() => client.Get(p, Oid(1), 1, buffer));
            Assert.Throws<ObjectDisposedException>(() => client.FlushPage(p, Oid(1), 1));
            Assert.Throws<ObjectDisposedException>(() => client.FlushObject(p, Oid(1)));
            Assert.Throws<ObjectDisposedException>(() => client.DestroyPool(p));
        }
        store.Dispose(); // twice is fine
        var stats = store.GetStats();
        Assert.Equal(0, stats.Pools);
        Assert.Equal(0, stats.EphPages + stats.PersPages);
    }

    [Fact]
    public void Dispose_WithOperationsInFlight_OperationsEndWithDisposedOrPoolNotFound()
    {
        var store = Stores.Open(256 << 10);
        var client = store.GetClient(1);
        int[] pools = [client.CreatePool(Stores.PrivateEphemeral), client.CreatePool(Stores.Persistent), client.CreatePool(Stores.SharedEphemeral(Guid.NewGuid()))];
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long ops = 0;
        var threads = Enumerable.Range(0, 3).Select(t => new Thread(() =>
        {
            var rng = new Random(t);
            var buffer = new byte[4096];
            var pages = Enumerable.Range(0, 8).Select(i => Compressible(4096, t * 10 + i)).ToArray();
            while (true)
            {
                int pool = pools[rng.Next(pools.Length)];
                var oid = Oid(rng.Next(4));
                uint index = (uint)rng.Next(64);
                try
                {
                    switch (rng.Next(4))
                    {
                        case 0: client.Put(pool, oid, index, pages[rng.Next(pages.Length)]); break;
                        case 1:
                            if (client.Get(pool, oid, index, buffer) == GetStatus.Hit && !pages.Any(p => p.AsSpan().SequenceEqual(buffer)) && !Enumerable.Range(0, 3).Any(o => Enumerable.Range(0, 8).Any(i => Compressible(4096, o * 10 + i).AsSpan().SequenceEqual(buffer))))
                                errors.Enqueue("a hit returned bytes nobody put");
                            break;
                        case 2: client.FlushPage(pool, oid, index); break;
                        default: if (rng.Next(8) == 0) client.FlushObject(pool, oid); break;
                    }
                    Interlocked.Increment(ref ops);
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                catch (TmemException e) when (e.Error == TmemError.PoolNotFound)
                {
                    // In flight while its pool was destroyed by the disposal; the next call reports the disposal.
                }
                catch (Exception e)
                {
                    errors.Enqueue($"{e.GetType().Name}: {e.Message}");
                    return;
                }
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Interlocked.Read(ref ops) < 3000 && DateTime.UtcNow < deadline) Thread.Sleep(1);
        store.Dispose();
        foreach (var thread in threads) Assert.True(thread.Join(TimeSpan.FromSeconds(10)), "an operation hung after Dispose");
        Assert.Empty(errors);
        Assert.True(Interlocked.Read(ref ops) >= 3000);
        var stats = store.GetStats();
        Assert.Equal(0, stats.Pools);
        Assert.Equal(0, stats.EphPages + stats.PersPages);
    }
}
