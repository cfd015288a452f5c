using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;

namespace Tmem.Tests;

[CollectionDefinition("Stress", DisableParallelization = true)]
public sealed class StressCollection
{
}

/// <summary>
/// Threads hammer overlapping handles in a private ephemeral pool (destroyed and recreated now and
/// then), a shared ephemeral pool (through two clients) and a persistent pool, under a tight RAM
/// budget. Every page names its own handle and version and is a pure function of them, so a hit
/// proves the page is whole, is that handle's, and (checked against the put/flush history the
/// thread itself completed) is not stale. Two shapes: few objects of many pages in a budget small
/// enough that every put evicts for itself, and thousands of single-page objects in a budget large
/// enough for the background reclaim pass (which then evicts and compacts beside the workers).
/// </summary>
[Collection("Stress")]
[Trait("Kind", "Integration")]
public class StressTests(ITestOutputHelper output)
{
    private const int PageSize = 4096;
    /// <summary>The handles the workers use: objects (persistent ones are the first of them) and pages per object.</summary>
    private sealed record Shape(long Budget, int PersistentObjects, int EphemeralObjects, int Indices)
    {
        /// <summary>One page per object, at an index that varies with the object (not always 0).</summary>
        public bool SinglePage => Indices == 1;

        public uint IndexOf(int obj, Random rng) => SinglePage ? (uint)(obj % 7) : (uint)rng.Next(Indices);

        /// <summary>Single-page objects alternate narrow ids (last two words zero) and wide ones: the two inline tables.</summary>
        public ObjectId IdOf(int obj) => SinglePage && obj % 2 == 0 ? new ObjectId((ulong)obj) : TestPages.Oid(obj);

        public IEnumerable<(int Obj, uint Index)> Handles() =>
            Enumerable.Range(0, EphemeralObjects).SelectMany(obj => SinglePage ? [(obj, (uint)(obj % 7))] : Enumerable.Range(0, Indices).Select(i => (obj, (uint)i)));
    }

    // 128 persistent handles (about 315 KB, always fit); 256 handles per ephemeral pool, more than the budget holds.
    private static readonly Shape ManyPageObjects = new(512 << 10, 8, 16, 16);

    // 256 persistent pages (about 630 KB); 6,000 single-page objects per ephemeral pool, the two
    // pools together about three times what the 8 MiB budget (the smallest that reclaims in the background) holds.
    private static readonly Shape SinglePageObjects = new(Tmem.RamTier.CompressedRamTier.MinReclaimAheadBudgetBytes, 256, 6_000, 1);

    private Shape _shape = ManyPageObjects;
    private long Budget => _shape.Budget;
    private const int Threads = 4;
    private const int VersionCap = 1 << 21;
    private const uint Magic = 0x4D454D54;
    private const int SharedLabel = 1;
    private const int PersistentLabel = 2;

    private sealed record PrivatePool(int Label, TmemClient Client, int PoolId);

    private readonly int[] _ends = new int[VersionCap];    // sequence number at which put(version) returned
    private readonly byte[] _putStatus = new byte[VersionCap]; // 1 + PutStatus once put(version) returned
    private int _seq;
    private long _misses;
    private long _failedPuts;
    private long _version;
    private PrivatePool _private = null!;

    /// <summary>The page for (label, object, index, version): header, then blocks of random and repeated bytes.</summary>
    internal static void Render(Span<byte> page, int label, int obj, uint index, long version)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(page, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(page[4..], label);
        BinaryPrimitives.WriteInt32LittleEndian(page[8..], obj);
        BinaryPrimitives.WriteUInt32LittleEndian(page[12..], index);
        BinaryPrimitives.WriteInt64LittleEndian(page[16..], version);
        ulong x = (ulong)version * 0x9E3779B97F4A7C15UL ^ (ulong)label << 48 ^ (ulong)obj << 32 ^ index | 1;
        for (int block = 24; block < page.Length; block += 64)
        {
            var span = page.Slice(block, Math.Min(64, page.Length - block));
            for (int i = 0; i < span.Length; i++)
            {
                if (i < 32)
                {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    span[i] = (byte)x;
                }
                else
                {
                    span[i] = (byte)(block >> 6);
                }
            }
        }
    }

    private int NextSeq() => Interlocked.Increment(ref _seq);

    [Fact]
    public void ConcurrentOperations_TightBudget_PagesWholeFreshAndAccountingConsistent() => Run(ManyPageObjects);

    [Fact]
    public void ConcurrentOperations_SinglePageObjectsChurnWithBackgroundReclaim_PagesWholeFreshAndAccountingConsistent() => Run(SinglePageObjects);

    private void Run(Shape shape)
    {
        _shape = shape;
        using var store = Stores.Open(Budget);
        var a = store.GetClient(1);
        var b = store.GetClient(2);
        var uuid = Guid.NewGuid();
        int sharedA = a.CreatePool(Stores.SharedEphemeral(uuid));
        int sharedB = b.CreatePool(Stores.SharedEphemeral(uuid));
        int persistent = a.CreatePool(Stores.Persistent);
        var first = store.GetClient(1000);
        _private = new PrivatePool(1000, first, first.CreatePool(Stores.PrivateEphemeral));

        var probe = new byte[PageSize];
        Render(probe, PersistentLabel, 3, 5, 12345);
        // Compresses a bit, not to nothing, and stays under MaxMeanZsize (5/8) so the mean rule never applies.
        Assert.InRange(TestPages.Lz4Length(probe), PageSize / 3, PageSize * 5 / 8 - 1);

        if (shape.SinglePage)
        {
            // Fill both ephemeral pools once first (three times the budget), so eviction is certain
            // however fast the workers run; workers then churn what is left.
            var fill = new byte[PageSize];
            foreach (var (obj, index) in shape.Handles())
            {
                foreach (var (client, poolId, label) in new[] { (a, sharedA, SharedLabel), (_private.Client, _private.PoolId, _private.Label) })
                {
                    long version = Interlocked.Increment(ref _version);
                    Render(fill, label, obj, index, version);
                    var status = client.Put(poolId, _shape.IdOf(obj), index, fill);
                    _putStatus[version] = (byte)(1 + (int)status);
                    _ends[version] = NextSeq();
                    Assert.Equal(PutStatus.Stored, status);
                }
            }
            Assert.True(store.GetStats().EvictedEphPages > 0, "filling three times the budget evicted nothing");
        }

        var errors = new ConcurrentQueue<string>();
        var hits = new long[3]; // private, shared, persistent
        long recreations = 0;
        var stop = new ManualResetEventSlim();
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                Worker(t, store, a, b, sharedA, sharedB, persistent, stop, errors, hits, ref recreations);
            }
            catch (Exception e)
            {
                errors.Enqueue($"thread {t}: {e}");
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(2.5) && errors.IsEmpty) Thread.Sleep(20);
        stop.Set();
        foreach (var thread in threads) Assert.True(thread.Join(TimeSpan.FromSeconds(30)), "a worker hung");

        var stats = store.GetStats();
        output.WriteLine($"{Interlocked.Read(ref _version)} puts ({_failedPuts} refused), hits private/shared/persistent {string.Join("/", hits)}, " +
            $"{_misses} misses, {recreations} private pool recreations; {string.Join(", ", stats.ToList().Select(kv => $"{kv.Key}={kv.Value}"))}");
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(20)));
        Assert.All(hits, h => Assert.True(h > 0, $"hits per pool: {string.Join(", ", hits)}"));
        Assert.True(recreations > 0);
        Assert.True(stats.EvictedEphPages > 0, "the budget never forced an eviction");
        Assert.InRange(stats.RamSlotBytes, 0, Budget);
        Assert.Equal(0, stats.ReclaimFailures);
        store.WaitForBackgroundReclaim(); // the pass a last put started may still be evicting
        Assert.True(stats.EphPages >= 0 && stats.PersPages >= 0 && stats.ZeroFilledPages >= 0 && stats.EphZbytes >= 0 && stats.PersZbytes >= 0);

        // Quiet now: every persistent and shared page is whole and the gauges add up.
        var buffer = new byte[PageSize];
        long persistentPages = 0, sharedPages = 0;
        foreach (var (obj, index) in shape.Handles())
        {
            if (obj < shape.PersistentObjects && a.Get(persistent, _shape.IdOf(obj), index, buffer) == GetStatus.Hit)
            {
                persistentPages++;
                Assert.Null(Check(buffer, PersistentLabel, obj, index));
            }
            if (b.Get(sharedB, _shape.IdOf(obj), index, buffer) == GetStatus.Hit)
            {
                sharedPages++;
                Assert.Null(Check(buffer, SharedLabel, obj, index));
            }
        }
        var quiet = store.GetStats();
        long privatePages = _private.Client.GetPools().Single().Pages;
        Assert.Equal(persistentPages, quiet.PersPages);
        Assert.Equal(sharedPages + privatePages, quiet.EphPages);
        Assert.Equal(2, a.GetPools().Count);

        a.DestroyPool(sharedA);
        Assert.Equal(sharedPages + privatePages, store.GetStats().EphPages); // B still holds the shared pool
        b.DestroyPool(sharedB);
        a.DestroyPool(persistent);
        _private.Client.DestroyPool(_private.PoolId);
        Stores.AssertHoldsNothing(store.GetStats());
    }

    /// <summary>Null if the page is whole and is (label, obj, index)'s; else what is wrong.</summary>
    private static string? Check(ReadOnlySpan<byte> page, int label, int obj, uint index)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(page) != Magic) return "no page header (garbage or torn page)";
        int l = BinaryPrimitives.ReadInt32LittleEndian(page[4..]);
        int o = BinaryPrimitives.ReadInt32LittleEndian(page[8..]);
        uint i = BinaryPrimitives.ReadUInt32LittleEndian(page[12..]);
        long v = BinaryPrimitives.ReadInt64LittleEndian(page[16..]);
        if (l != label || o != obj || i != index) return $"page of handle (pool {l}, obj {o}, index {i}) returned for (pool {label}, obj {obj}, index {index})";
        var expected = new byte[page.Length];
        Render(expected, l, o, i, v);
        return page.SequenceEqual(expected) ? null : $"page (pool {l}, obj {o}, index {i}, version {v}) is torn or corrupt";
    }

    private void Worker(int t, TmemStore store, TmemClient a, TmemClient b, int sharedA, int sharedB, int persistent,
        ManualResetEventSlim stop, ConcurrentQueue<string> errors, long[] hits, ref long recreations)
    {
        var rng = new Random(1000 + t);
        var page = new byte[PageSize];
        var buffer = new byte[PageSize];
        // This thread's last completed write to a handle: sequence number at its start, and the version if it was a stored put.
        var handleBarrier = new Dictionary<(int Label, int Obj, uint Index), (int Start, long Version)>();
        var objectBarrier = new Dictionary<(int Label, int Obj), int>();
        var lastRecreate = Stopwatch.StartNew();
        var lastCompact = Stopwatch.StartNew();
        for (long n = 0; !stop.IsSet && errors.IsEmpty; n++)
        {
            if (t == 0 && lastRecreate.ElapsedMilliseconds > 150)
            {
                var old = _private;
                var client = store.GetClient(old.Label + 1);
                int id = client.CreatePool(Stores.PrivateEphemeral);
                if (id != 0) errors.Enqueue($"a new client's first pool got id {id}");
                Volatile.Write(ref _private, new PrivatePool(old.Label + 1, client, id));
                old.Client.DestroyPool(old.PoolId);
                Interlocked.Increment(ref recreations);
                lastRecreate.Restart();
            }
            if (t == 1 && lastCompact.ElapsedMilliseconds > 50)
            {
                store.CompactSlabs(); // moves pages while the others read them
                lastCompact.Restart();
            }

            int which = rng.Next(4); // 0 private, 1 shared via A, 2 shared via B, 3 persistent
            var priv = Volatile.Read(ref _private);
            var (client2, poolId, label) = which switch
            {
                0 => (priv.Client, priv.PoolId, priv.Label),
                1 => (a, sharedA, SharedLabel),
                2 => (b, sharedB, SharedLabel),
                _ => (a, persistent, PersistentLabel),
            };
            int obj = rng.Next(which == 3 ? _shape.PersistentObjects : _shape.EphemeralObjects);
            uint index = _shape.IndexOf(obj, rng);
            var oid = _shape.IdOf(obj);
            var handle = (label, obj, index);
            int roll = rng.Next(100);
            try
            {
                if (roll < 45)
                {
                    long version = Interlocked.Increment(ref _version);
                    if (version >= VersionCap) continue;
                    Render(page, label, obj, index, version);
                    int start = NextSeq();
                    var status = client2.Put(poolId, oid, index, page);
                    Volatile.Write(ref _putStatus[version], (byte)(1 + (int)status));
                    Volatile.Write(ref _ends[version], NextSeq());
                    if (status is not (PutStatus.Stored or PutStatus.RejectedCapacity))
                        errors.Enqueue($"put of a compressible page refused: {status}");
                    if (status != PutStatus.Stored) Interlocked.Increment(ref _failedPuts);
                    handleBarrier[handle] = (start, status == PutStatus.Stored ? version : -1);
                }
                else if (roll < 93)
                {
                    int start = NextSeq();
                    if (client2.Get(poolId, oid, index, buffer) != GetStatus.Hit)
                    {
                        // Get-get coherency: what this miss did not see must never be seen again.
                        handleBarrier[handle] = (start, -1);
                        Interlocked.Increment(ref _misses);
                        continue;
                    }
                    Interlocked.Increment(ref hits[which == 0 ? 0 : which == 3 ? 2 : 1]);
                    if (Check(buffer, label, obj, index) is { } problem)
                    {
                        errors.Enqueue($"thread {t}: {problem}");
                        continue;
                    }
                    long v = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(16));
                    CheckFresh(t, handle, v, handleBarrier, objectBarrier, errors);
                    if (which == 0) handleBarrier[handle] = (start, -1); // exclusive get: the page left the store
                }
                else if (roll < 99)
                {
                    int start = NextSeq();
                    client2.FlushPage(poolId, oid, index);
                    handleBarrier[handle] = (start, -1);
                }
                else
                {
                    int start = NextSeq();
                    client2.FlushObject(poolId, oid);
                    objectBarrier[(label, obj)] = start;
                }
            }
            catch (TmemException e) when (e.Error == TmemError.PoolNotFound && which == 0)
            {
                // Only a replaced private pool may vanish under us.
                if (ReferenceEquals(Volatile.Read(ref _private), priv))
                    errors.Enqueue($"thread {t}: PoolNotFound on the current private pool {priv.Label}");
            }

            if ((n & 255) == 0)
            {
                var s = store.GetStats();
                if (s.RamSlotBytes > Budget || s.RamSlotBytes < 0) errors.Enqueue($"ram_slot_bytes {s.RamSlotBytes} outside [0, {Budget}]");
                if (s.EphPages < 0 || s.PersPages < 0 || s.ZeroFilledPages < 0) errors.Enqueue($"negative page gauge: {s}");
            }
        }
    }

    /// <summary>
    /// A hit of version <paramref name="v"/> is stale if put(v) returned before this thread began its
    /// latest write to the handle (a put, flush or exclusive get), its latest miss on it (get-get
    /// coherency) or its latest flush of the object, unless v is that latest put itself. A page from
    /// a refused put must never appear.
    /// </summary>
    private void CheckFresh(int t, (int Label, int Obj, uint Index) handle, long v,
        Dictionary<(int Label, int Obj, uint Index), (int Start, long Version)> handleBarrier,
        Dictionary<(int Label, int Obj), int> objectBarrier, ConcurrentQueue<string> errors)
    {
        var status = Volatile.Read(ref _putStatus[v]);
        if (status != 0 && status != 1 + (int)PutStatus.Stored)
            errors.Enqueue($"thread {t}: {handle} returned version {v}, whose put was refused ({(PutStatus)(status - 1)})");
        handleBarrier.TryGetValue(handle, out var hb);
        objectBarrier.TryGetValue((handle.Label, handle.Obj), out int ob);
        if (hb.Start > ob && hb.Version == v) return;
        int latest = Math.Max(hb.Start, ob);
        int end = Volatile.Read(ref _ends[v]);
        if (end != 0 && end < latest)
            errors.Enqueue($"thread {t}: {handle} returned version {v}, stored before this thread's later write at seq {latest} (put ended at {end}; own last version {hb.Version})");
    }
}
