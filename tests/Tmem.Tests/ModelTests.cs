using CsCheck;
using K4os.Compression.LZ4;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// Random operation sequences over several clients and pools, run against the store (with a budget
/// small enough that ephemeral pages get evicted) and a dictionary model. Persistent pools must
/// agree exactly (including put refusals, which the model predicts from the documented rules);
/// ephemeral pools may lose pages, but a hit must be exactly the model's page and a miss is then
/// final (get-get coherency).
/// </summary>
[Trait("Kind", "Unit")]
public class ModelTests
{
    /// <summary>Even objects get narrow ids (last two words zero), odd ones wide ids: both inline tables and their promotions.</summary>
    private static ObjectId Oid(int n) => n % 2 == 0 ? new ObjectId((ulong)n) : TestPages.Oid(n);

    private const int Clients = 3;
    private const int MaxPools = 4;
    private const int PageSize = 16384; // the 64 KiB budget (the least allowed) holds only a few of these
    private const long Budget = 64 << 10;
    private static readonly Guid Uuid1 = new("11111111-1111-1111-1111-111111111111");
    private static readonly Guid Uuid2 = new("22222222-2222-2222-2222-222222222222");
    private static readonly int MaxZbytes = (int)(PageSize * (7.0 / 8.0));
    private static readonly int MaxMeanZbytes = (int)(PageSize * (5.0 / 8.0));

    /// <summary>Pages: zero, same-filled, three compressible sizes, barely compressible, two random.</summary>
    private static readonly byte[][] PageSet =
    [
        new byte[PageSize],
        SameFilled(PageSize, NonZeroWord),
        WithRandomPrefix(PageSize, 0.10, 1),
        WithRandomPrefix(PageSize, 0.35, 2),
        WithRandomPrefix(PageSize, 0.68, 3),
        CompressingTo(PageSize, 0.80, 0.86, 4),
        TestPages.Random(PageSize, 5),
        TestPages.Random(PageSize, 6),
    ];

    /// <summary>Compressed length of each page as the store sees it: 0 same-filled, -1 over MaxZsize.</summary>
    private static readonly int[] Zlen = PageSet.Select(p =>
    {
        if (IsSameFilled(p)) return 0;
        var target = new byte[MaxZbytes];
        int n = LZ4Codec.Encode(p, target, LZ4Level.L00_FAST);
        return n > 0 ? n : -1;
    }).ToArray();

    private static bool IsSameFilled(byte[] p)
    {
        for (int i = 8; i < p.Length; i++) if (p[i] != p[i % 8]) return false;
        return true;
    }

    public enum OpKind { Put, Get, FlushPage, FlushObject, CreatePool, DestroyPool }

    /// <summary>Pool types: 0 private ephemeral, 1 shared ephemeral (Uuid1), 2 persistent, 3 persistent exclusive, 4 shared persistent (Uuid2), 5 shared persistent (Uuid1: clashes with 1).</summary>
    public sealed record Op(OpKind Kind, int Client, int Pool, int Obj, uint Index, int Page, int PoolType)
    {
        public override string ToString() => Kind switch
        {
            OpKind.Put => $"Put(c{Client}, p{Pool}, o{Obj}, i{Index}, page{Page})",
            OpKind.Get => $"Get(c{Client}, p{Pool}, o{Obj}, i{Index})",
            OpKind.FlushPage => $"FlushPage(c{Client}, p{Pool}, o{Obj}, i{Index})",
            OpKind.FlushObject => $"FlushObject(c{Client}, p{Pool}, o{Obj})",
            OpKind.CreatePool => $"CreatePool(c{Client}, type{PoolType})",
            _ => $"DestroyPool(c{Client}, p{Pool})",
        };
    }

    private static PoolOptions OptionsFor(int type) => type switch
    {
        0 => new PoolOptions { PageSize = PageSize },
        1 => new PoolOptions { PageSize = PageSize, SharedUuid = Uuid1 },
        2 => new PoolOptions { PageSize = PageSize, Kind = PoolKind.Persistent },
        3 => new PoolOptions { PageSize = PageSize, Kind = PoolKind.Persistent, ExclusiveGets = true },
        4 => new PoolOptions { PageSize = PageSize, Kind = PoolKind.Persistent, SharedUuid = Uuid2 },
        _ => new PoolOptions { PageSize = PageSize, Kind = PoolKind.Persistent, SharedUuid = Uuid1 },
    };

    private static readonly Op[] Setup =
    [
        new(OpKind.CreatePool, 0, 0, 0, 0, 0, 0),
        new(OpKind.CreatePool, 0, 0, 0, 0, 0, 1),
        new(OpKind.CreatePool, 0, 0, 0, 0, 0, 2),
        new(OpKind.CreatePool, 1, 0, 0, 0, 0, 1),
        new(OpKind.CreatePool, 1, 0, 0, 0, 0, 3),
        new(OpKind.CreatePool, 2, 0, 0, 0, 0, 4),
        new(OpKind.CreatePool, 2, 0, 0, 0, 0, 0),
    ];

    private static readonly Gen<int> GenClient = Gen.Int[0, Clients - 1];
    private static readonly Gen<int> GenPool = Gen.Frequency((12, Gen.Int[0, MaxPools - 1]), (1, Gen.Int[-1, MaxPools]));
    private static readonly Gen<int> GenObj = Gen.Int[0, 2];
    private static readonly Gen<uint> GenIndex = Gen.UInt[0, 3];

    private static readonly Gen<Op> GenOp = Gen.Frequency(
        (30, Gen.Select(GenClient, GenPool, GenObj, GenIndex, Gen.Int[0, PageSet.Length - 1], (c, p, o, i, pg) => new Op(OpKind.Put, c, p, o, i, pg, 0))),
        (30, Gen.Select(GenClient, GenPool, GenObj, GenIndex, (c, p, o, i) => new Op(OpKind.Get, c, p, o, i, 0, 0))),
        (8, Gen.Select(GenClient, GenPool, GenObj, GenIndex, (c, p, o, i) => new Op(OpKind.FlushPage, c, p, o, i, 0, 0))),
        (4, Gen.Select(GenClient, GenPool, GenObj, (c, p, o) => new Op(OpKind.FlushObject, c, p, o, 0, 0, 0))),
        (5, Gen.Select(GenClient, Gen.Int[0, 5], (c, t) => new Op(OpKind.CreatePool, c, 0, 0, 0, 0, t))),
        (2, Gen.Select(GenClient, GenPool, (c, p) => new Op(OpKind.DestroyPool, c, p, 0, 0, 0, 0))));

    private sealed class MPool(int type)
    {
        public PoolOptions Options { get; } = OptionsFor(type);
        public bool Persistent => Options.Kind == PoolKind.Persistent;
        public bool ExclusiveGets => Persistent ? Options.ExclusiveGets : Options.SharedUuid is null;
        public int Members { get; set; } = 1;
        public Dictionary<(int Obj, uint Index), int> Pages { get; } = new();
    }

    private sealed class Model
    {
        public MPool?[][] Slots { get; } = Enumerable.Range(0, Clients).Select(_ => new MPool?[MaxPools]).ToArray();
        public Dictionary<Guid, MPool> Shared { get; } = new();

        public MPool? Resolve(int client, int pool) => pool >= 0 && pool < MaxPools ? Slots[client][pool] : null;

        public List<MPool> Live => Slots.SelectMany(s => s).OfType<MPool>().Distinct().ToList();

        public IEnumerable<int> PersistentPages => Live.Where(p => p.Persistent).SelectMany(p => p.Pages.Values);

        public IEnumerable<int> EphemeralPages => Live.Where(p => !p.Persistent).SelectMany(p => p.Pages.Values);

        /// <summary>What Pool.Put must answer, from the documented rules (single-threaded).</summary>
        public PutStatus PredictPut(MPool pool, int page)
        {
            int z = Zlen[page];
            if (z == 0) return PutStatus.Stored; // same-filled: no bytes; MaxPages (1024) is never reached here
            if (z < 0) return PutStatus.RejectedPoorCompression;
            var pers = PersistentPages.ToList();
            if (pool.Persistent && z > MaxMeanZbytes && pers.Count > 0 && pers.Sum(p => (long)Zlen[p]) / pers.Count > MaxMeanZbytes)
                return PutStatus.RejectedMeanCompression;
            // Room is reserved before the old page goes; every ephemeral page can be evicted for it.
            long persistentSlots = pers.Sum(p => (long)SlotSize(Zlen[p]));
            return persistentSlots + SlotSize(z) > Budget ? PutStatus.RejectedCapacity : PutStatus.Stored;
        }
    }

    /// <summary>How often each interesting outcome happened, so a drifting generator cannot make the test vacuous.</summary>
    private sealed class Coverage
    {
        public readonly Dictionary<string, int> Counts = new();

        public void Add(string what)
        {
            lock (Counts) Counts[what] = Counts.GetValueOrDefault(what) + 1;
        }

        public void AssertSeen(params string[] outcomes)
        {
            foreach (var what in outcomes)
                Assert.True(Counts.GetValueOrDefault(what) > 0, $"never saw '{what}'; saw {string.Join(", ", Counts.Select(kv => $"{kv.Key}={kv.Value}"))}");
        }
    }

    /// <summary>
    /// The model-based test on stores that <paramref name="open"/> makes from the test's settings
    /// (the remote tier's tests turn it on); <paramref name="checkRun"/> sees each store before it
    /// closes. The outcomes seen and how often.
    /// </summary>
    public static IReadOnlyDictionary<string, int> RandomOperations(Func<TmemOptions, TmemStore> open, int minOps, int maxOps, int iterations, Action<TmemStore>? checkRun = null)
    {
        var coverage = new Coverage();
        GenOp.Array[minOps, maxOps].Sample(ops => Run(ops, coverage, open, checkRun), iter: iterations, threads: 1, print: ops => string.Join("\n", ops.Select(o => o.ToString())));
        return coverage.Counts;
    }

    private static void Run(Op[] ops, Coverage coverage, Func<TmemOptions, TmemStore>? open = null, Action<TmemStore>? checkRun = null)
    {
        var options = new TmemOptions { RamBudgetBytes = Budget, MaxPoolsPerClient = MaxPools, BucketsPerPool = 4 };
        using var store = open is null ? TmemStore.Open(options) : open(options);
        var clients = Enumerable.Range(0, Clients).Select(store.GetClient).ToArray();
        var model = new Model();
        var all = Setup.Concat(ops).ToArray();
        for (int n = 0; n < all.Length; n++)
        {
            try
            {
                Step(clients, model, all[n], coverage);
                CheckStats(store, clients, model);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"Step {n - Setup.Length} {all[n]} failed: {e.Message}", e);
            }
        }

        // Final sweep: every page the model still has.
        var buffer = new byte[PageSize];
        for (int c = 0; c < Clients; c++)
        {
            for (int p = 0; p < MaxPools; p++)
            {
                var pool = model.Slots[c][p];
                if (pool is null) continue;
                foreach (var ((obj, index), page) in pool.Pages.ToList())
                {
                    var status = clients[c].Get(p, Oid(obj), index, buffer);
                    if (pool.Persistent) Assert.Equal(GetStatus.Hit, status);
                    if (status == GetStatus.Hit) Assert.Equal(PageSet[page], buffer);
                    if (status == GetStatus.Miss || pool.ExclusiveGets) pool.Pages.Remove((obj, index));
                }
            }
        }
        checkRun?.Invoke(store);
    }

    private static void Step(TmemClient[] clients, Model model, Op op, Coverage coverage)
    {
        var client = clients[op.Client];
        var oid = Oid(op.Obj);
        var pool = op.Kind == OpKind.CreatePool ? null : model.Resolve(op.Client, op.Pool);
        if (op.Kind != OpKind.CreatePool && pool is null)
        {
            var buffer = new byte[PageSize];
            var e = Assert.Throws<TmemException>(() =>
            {
                switch (op.Kind)
                {
                    case OpKind.Put: client.Put(op.Pool, oid, op.Index, PageSet[op.Page]); break;
                    case OpKind.Get: client.Get(op.Pool, oid, op.Index, buffer); break;
                    case OpKind.FlushPage: client.FlushPage(op.Pool, oid, op.Index); break;
                    case OpKind.FlushObject: client.FlushObject(op.Pool, oid); break;
                    default: client.DestroyPool(op.Pool); break;
                }
            });
            Assert.Equal(TmemError.PoolNotFound, e.Error);
            coverage.Add("PoolNotFound");
            return;
        }

        switch (op.Kind)
        {
            case OpKind.Put:
            {
                var expected = model.PredictPut(pool!, op.Page);
                var actual = client.Put(op.Pool, oid, op.Index, PageSet[op.Page]);
                Assert.Equal(expected, actual);
                coverage.Add((pool!.Persistent ? "persistent put " : "ephemeral put ") + actual);
                if (actual == PutStatus.Stored) pool!.Pages[(op.Obj, op.Index)] = op.Page;
                else pool!.Pages.Remove((op.Obj, op.Index));
                break;
            }
            case OpKind.Get:
            {
                var buffer = Filled(PageSize, 0xC3);
                var status = client.Get(op.Pool, oid, op.Index, buffer);
                bool has = pool!.Pages.TryGetValue((op.Obj, op.Index), out int page);
                if (status == GetStatus.Hit)
                {
                    Assert.True(has, "hit on a handle the model has no page for (resurrected or foreign page)");
                    Assert.Equal(PageSet[page], buffer);
                    if (pool.ExclusiveGets) pool.Pages.Remove((op.Obj, op.Index));
                    coverage.Add(pool.Persistent ? "persistent hit" : "ephemeral hit");
                }
                else
                {
                    Assert.False(pool.Persistent && has, "persistent page missing");
                    Assert.Equal(Filled(PageSize, 0xC3), buffer);
                    if (has) coverage.Add("evicted page missed");
                    pool.Pages.Remove((op.Obj, op.Index)); // evicted: it must stay missing
                }
                break;
            }
            case OpKind.FlushPage:
            {
                bool has = pool!.Pages.Remove((op.Obj, op.Index));
                bool found = client.FlushPage(op.Pool, oid, op.Index);
                if (pool.Persistent) Assert.Equal(has, found);
                else Assert.True(has || !found, "flushed a page the model does not have");
                break;
            }
            case OpKind.FlushObject:
            {
                var keys = pool!.Pages.Keys.Where(k => k.Obj == op.Obj).ToList();
                foreach (var k in keys) pool.Pages.Remove(k);
                int removed = client.FlushObject(op.Pool, oid);
                if (removed > 1) coverage.Add("flushed object pages");
                if (pool.Persistent) Assert.Equal(keys.Count, removed);
                else Assert.InRange(removed, 0, keys.Count);
                break;
            }
            case OpKind.CreatePool:
            {
                var options = OptionsFor(op.PoolType);
                var slots = model.Slots[op.Client];
                int free = Array.IndexOf(slots, null);
                TmemError? error = null;
                MPool? existing = null;
                if (free < 0) error = TmemError.PoolLimitReached;
                else if (options.SharedUuid is { } uuid && slots.Any(p => p?.Options.SharedUuid == uuid)) error = TmemError.SharedPoolAlreadyJoined;
                else if (options.SharedUuid is { } uuid2 && model.Shared.TryGetValue(uuid2, out existing) && existing.Options != options) error = TmemError.SharedPoolMismatch;

                if (error is { } expectedError)
                {
                    var e = Assert.Throws<TmemException>(() => client.CreatePool(options));
                    Assert.Equal(expectedError, e.Error);
                    coverage.Add(expectedError.ToString());
                    break;
                }
                Assert.Equal(free, client.CreatePool(options));
                if (existing is not null)
                {
                    existing.Members++;
                    slots[free] = existing;
                    coverage.Add("joined shared pool");
                }
                else
                {
                    var created = new MPool(op.PoolType);
                    slots[free] = created;
                    if (options.SharedUuid is { } uuid3) model.Shared.Add(uuid3, created);
                }
                break;
            }
            default:
            {
                client.DestroyPool(op.Pool);
                model.Slots[op.Client][op.Pool] = null;
                if (--pool!.Members == 0 && pool.Options.SharedUuid is { } uuid) model.Shared.Remove(uuid);
                break;
            }
        }
    }

    private static void CheckStats(TmemStore store, TmemClient[] clients, Model model)
    {
        var s = store.GetStats();
        var pers = model.PersistentPages.ToList();
        var eph = model.EphemeralPages.ToList();
        Assert.Equal(pers.Count, s.PersPages);
        Assert.Equal(pers.Sum(p => (long)Zlen[p]), s.PersZbytes);
        Assert.InRange(s.EphPages, 0, eph.Count);
        long persSlots = pers.Sum(p => (long)SlotSize(Zlen[p]));
        long ephSlots = eph.Sum(p => (long)SlotSize(Zlen[p]));
        Assert.InRange(s.RamSlotBytes, persSlots, Math.Min(Budget, persSlots + ephSlots));
        Assert.InRange(s.ZeroFilledPages, pers.Count(p => Zlen[p] == 0), pers.Count(p => Zlen[p] == 0) + eph.Count(p => Zlen[p] == 0));
        Assert.Equal(model.Live.Count, s.Pools);
        for (int c = 0; c < Clients; c++)
        {
            var pools = clients[c].GetPools();
            Assert.Equal(Enumerable.Range(0, MaxPools).Where(i => model.Slots[c][i] is not null), pools.Select(p => p.PoolId));
            foreach (var info in pools)
            {
                var mp = model.Slots[c][info.PoolId]!;
                Assert.Equal(mp.Options.Kind, info.Kind);
                Assert.Equal(mp.Options.SharedUuid, info.SharedUuid);
                Assert.Equal(mp.ExclusiveGets, info.ExclusiveGets);
                if (mp.Persistent) Assert.Equal(mp.Pages.Count, info.Pages);
                else Assert.InRange(info.Pages, 0, mp.Pages.Count);
            }
        }
    }

    [Fact]
    public void PageSet_CoversEveryKindOfPage()
    {
        Assert.Equal([0, 0], Zlen[..2]);
        Assert.All(Zlen[2..6], z => Assert.InRange(z, 1, MaxZbytes));
        Assert.True(Zlen[4] > MaxMeanZbytes && Zlen[5] > MaxMeanZbytes, "two pages must be subject to the mean rule");
        Assert.True(Zlen[2] < MaxMeanZbytes && Zlen[3] < MaxMeanZbytes);
        Assert.Equal([-1, -1], Zlen[6..]);
    }

    [Fact]
    public void RandomOperations_MatchDictionaryModel()
    {
        var coverage = new Coverage();
        GenOp.Array[1, 150].Sample(ops => Run(ops, coverage), iter: 400, threads: 1, print: ops => string.Join("\n", ops.Select(o => o.ToString())));
        coverage.AssertSeen("PoolNotFound", "ephemeral hit", "persistent hit", "evicted page missed", "flushed object pages",
            "persistent put RejectedPoorCompression", "ephemeral put RejectedPoorCompression", "persistent put RejectedMeanCompression",
            "SharedPoolMismatch", "SharedPoolAlreadyJoined", "PoolLimitReached", "joined shared pool");
    }

    [Fact]
    public void LongRandomOperations_MatchDictionaryModel()
    {
        // Longer runs reach the budget more often (eviction, capacity refusals, mean rule).
        var coverage = new Coverage();
        GenOp.Array[400, 800].Sample(ops => Run(ops, coverage), iter: 25, threads: 1, print: ops => string.Join("\n", ops.Select(o => o.ToString())));
        coverage.AssertSeen("evicted page missed", "persistent put RejectedCapacity", "ephemeral put RejectedCapacity",
            "persistent put RejectedMeanCompression", "persistent put Stored", "ephemeral put Stored");
    }
}
