using CsCheck;
using Tmem.Translation;

namespace Tmem.Tests;

/// <summary>The per-object page table (open addressing, backward-shift deletion) against a Dictionary.</summary>
[Trait("Kind", "Unit")]
public class TmemObjectTests
{
    private static readonly Bucket Bucket = NewBucket();

    private static TmemObject NewObject() => new(new ObjectId(1), Bucket);

    /// <summary>A bucket of a pool of its own (no page is ever installed: only the index table is exercised).</summary>
    internal static Bucket NewBucket()
    {
        var options = new TmemOptions();
        var counters = new Tmem.Diagnostics.StoreCounters();
        var pool = new Pool(1, PoolOptions.Ephemeral, new StoreContext(options, new Tmem.RamTier.CompressedRamTier(options, counters, null), counters, null));
        return pool.Buckets[0];
    }

    private static void AssertSame(Dictionary<uint, uint> expected, TmemObject table, IEnumerable<uint> probes)
    {
        Assert.Equal(expected.Count, table.Count);
        foreach (var (index, id) in expected) Assert.Equal(id, table.Find(index));
        foreach (uint index in probes)
            Assert.Equal(expected.TryGetValue(index, out uint id) ? id : 0u, table.Find(index));
    }

    // Keys mostly from a small range (dense tables, long probe runs), sometimes anywhere.
    private static readonly Gen<uint> GenKey = Gen.Frequency((6, Gen.UInt[0, 63]), (1, Gen.UInt));

    // 0 = set, 1 = remove, 2 = find
    private static readonly Gen<(int Op, uint Key)[]> GenOps = Gen.Select(Gen.Frequency((5, Gen.Const(0)), (3, Gen.Const(1)), (2, Gen.Const(2))), GenKey).Array[0, 400];

    [Fact]
    public void RandomSetRemoveFind_MatchesDictionary()
    {
        GenOps.Sample(ops =>
        {
            var table = NewObject();
            var model = new Dictionary<uint, uint>();
            uint nextId = 1;
            foreach (var (op, key) in ops)
            {
                switch (op)
                {
                    case 0:
                        uint id = nextId++;
                        Assert.Equal(model.TryGetValue(key, out uint old) ? old : 0u, table.Set(key, id));
                        model[key] = id;
                        break;
                    case 1:
                        Assert.Equal(model.Remove(key, out uint removed) ? removed : 0u, table.Remove(key));
                        break;
                    default:
                        Assert.Equal(model.TryGetValue(key, out uint found) ? found : 0u, table.Find(key));
                        break;
                }
                Assert.Equal(model.Count, table.Count);
            }
            AssertSame(model, table, Enumerable.Range(0, 64).Select(i => (uint)i).Append(uint.MaxValue));

            var drained = new Dictionary<uint, uint>();
            table.DrainTo(drained, static (d, index, id) => d.Add(index, id));
            Assert.Equal(model.OrderBy(kv => kv.Key), drained.OrderBy(kv => kv.Key));
            AssertSame(new Dictionary<uint, uint>(), table, model.Keys);
            Assert.Equal(0u, table.Set(5, 77)); // usable after draining
            Assert.Equal(77u, table.Find(5));
        }, iter: 300, threads: 1, print: ops => string.Join(" ", ops.Select(o => $"{"SRF"[o.Op]}{o.Key}")));
    }

    [Fact]
    public void Remove_EveryOrder_KeepsAllOtherEntriesReachable()
    {
        // Dense table with wrap-around probe runs: remove in random order, checking everything after each step.
        var rng = new Random(7);
        for (int round = 0; round < 20; round++)
        {
            var table = NewObject();
            var model = new Dictionary<uint, uint>();
            var keys = Enumerable.Range(0, 300).Select(_ => (uint)rng.Next(0, 2000)).Distinct().ToList();
            foreach (uint key in keys)
            {
                table.Set(key, key + 1);
                model[key] = key + 1;
            }
            AssertSame(model, table, []);
            foreach (uint key in keys.OrderBy(_ => rng.Next()))
            {
                Assert.Equal(key + 1, table.Remove(key));
                model.Remove(key);
                Assert.Equal(0u, table.Remove(key));
                AssertSame(model, table, [key]);
            }
            Assert.Equal(0, table.Count);
        }
    }

    [Fact]
    public void Set_ExistingIndex_ReplacesWithoutGrowingCount()
    {
        var table = NewObject();
        Assert.Equal(0u, table.Set(0, 10));
        Assert.Equal(0u, table.Set(uint.MaxValue, 11));
        Assert.Equal(10u, table.Set(0, 12));
        Assert.Equal(11u, table.Set(uint.MaxValue, 13));
        Assert.Equal(2, table.Count);
        Assert.Equal(12u, table.Find(0));
        Assert.Equal(13u, table.Find(uint.MaxValue));
        Assert.Equal(0u, table.Find(1));
    }
}
