using CsCheck;
using Tmem.Translation;

namespace Tmem.Tests;

/// <summary>
/// The inline table of single-page objects (Robin Hood, any capacity, backward-shift deletion)
/// against a Dictionary, for both key widths; and the look-up the RAM tier does by a descriptor's
/// owner index (the key's hash), which must find every entry wherever insertions, deletions and
/// resizes have moved it.
/// </summary>
[Trait("Kind", "Unit")]
public class InlinePagesTests
{
    private static readonly Bucket Bucket = TmemObjectTests.NewBucket();

    /// <summary>Everything the model holds is found, by key and by (hash, descriptor), and the probes it does not hold are not.</summary>
    private static void AssertSame<TKey>(InlinePages<TKey> table, Dictionary<ObjectId, (uint Index, uint Descriptor)> model, IEnumerable<ObjectId> probes)
        where TKey : struct, IInlineKey<TKey>
    {
        Assert.Equal(model.Count, table.Count);
        Assert.True(table.Count * 8 <= table.Capacity * 7, $"{table.Count} entries in {table.Capacity} slots");
        foreach (var (id, (index, descriptor)) in model)
        {
            Assert.True(TKey.TryFrom(id, out var key));
            int at = table.Locate(key, id.GetHashCode());
            Assert.True(at >= 0, $"{id} not found");
            Assert.Equal(index, table.IndexAt(at));
            Assert.Equal(descriptor, table.DescriptorAt(at));
            Assert.True(table.Holds((uint)id.GetHashCode(), descriptor, out uint position), $"{id}'s descriptor {descriptor} not found by its hash");
            Assert.Equal((uint)at, position);
            var handle = table.HandleAt(position);
            Assert.Equal(id, handle.Id);
            Assert.Equal(index, handle.Index);
            Assert.False(table.Holds((uint)id.GetHashCode(), descriptor + 1_000_000, out _)); // a descriptor it does not map
        }
        foreach (var id in probes)
        {
            if (model.ContainsKey(id) || !TKey.TryFrom(id, out var key)) continue;
            Assert.Equal(-1, table.Locate(key, id.GetHashCode()));
        }
    }

    private static readonly Gen<(int Op, ulong Key)[]> GenOps =
        Gen.Select(Gen.Frequency((6, Gen.Const(0)), (3, Gen.Const(1)), (1, Gen.Const(2))),
            Gen.Frequency((8, Gen.ULong[0, 200]), (1, Gen.ULong))).Array[0, 600];

    private static void RunModel<TKey>(Func<ulong, ObjectId> idOf) where TKey : struct, IInlineKey<TKey>
    {
        GenOps.Sample(ops =>
        {
            var table = new InlinePages<TKey>(Bucket);
            var model = new Dictionary<ObjectId, (uint, uint)>();
            uint nextDescriptor = 1;
            foreach (var (op, k) in ops)
            {
                var id = idOf(k);
                Assert.True(TKey.TryFrom(id, out var key));
                int hash = id.GetHashCode();
                int at = table.Locate(key, hash);
                Assert.Equal(model.ContainsKey(id), at >= 0);
                switch (op)
                {
                    case 0 when at < 0: // add
                        uint index = (uint)(k * 7 % 5);
                        table.Add(key, hash, index, nextDescriptor);
                        model[id] = (index, nextDescriptor++);
                        break;
                    case 0: // replace
                        var (oldIndex, oldDescriptor) = model[id];
                        Assert.Equal(oldDescriptor, table.Replace(at, nextDescriptor));
                        model[id] = (oldIndex, nextDescriptor++);
                        break;
                    case 1 when at >= 0: // remove
                        Assert.Equal(model[id].Item2, table.RemoveAt(at));
                        model.Remove(id);
                        break;
                    default: // look-up only
                        break;
                }
            }
            AssertSame(table, model, Enumerable.Range(0, 201).Select(i => idOf((ulong)i)));

            var drained = new Dictionary<ObjectId, (uint, uint)>();
            table.DrainTo(drained, static (d, id, index, descriptor) => d.Add(id, (index, descriptor)));
            Assert.Equal(model.OrderBy(kv => kv.Key.Word0), drained.OrderBy(kv => kv.Key.Word0));
            AssertSame(table, new Dictionary<ObjectId, (uint, uint)>(), model.Keys);
        }, iter: 300, threads: 1, print: ops => string.Join(" ", ops.Select(o => $"{"ARL"[o.Op]}{o.Key}")));
    }

    [Fact]
    public void NarrowKeys_RandomAddReplaceRemove_MatchDictionary() => RunModel<NarrowKey>(k => new ObjectId(k));

    [Fact]
    public void WideKeys_RandomAddReplaceRemove_MatchDictionary() => RunModel<WideKey>(k => new ObjectId(k, k ^ 0x5555, 3));

    [Fact]
    public void NarrowKey_TakesOnlyIdsWhoseLastWordsAreZero()
    {
        Assert.True(NarrowKey.TryFrom(new ObjectId(ulong.MaxValue), out var key));
        Assert.Equal(new ObjectId(ulong.MaxValue), NarrowKey.ToId(key));
        Assert.Equal(new ObjectId(ulong.MaxValue).GetHashCode(), NarrowKey.HashOf(key));
        Assert.False(NarrowKey.TryFrom(new ObjectId(1, 1, 0), out _));
        Assert.False(NarrowKey.TryFrom(new ObjectId(1, 0, 1), out _));
    }

    [Fact]
    public void GrowAndShrink_KeepTheLoadBetweenBoundsAndEveryEntryReachable()
    {
        // The load the memory figure rests on: after the first few slots, never under 1/2 while
        // growing (7/10 right after a growth), never over 7/8; a mostly emptied table shrinks.
        var table = new InlinePages<NarrowKey>(Bucket);
        var model = new Dictionary<ObjectId, (uint, uint)>();
        for (uint i = 1; i <= 20_000; i++)
        {
            var id = new ObjectId(i * 0x9E37ul);
            NarrowKey.TryFrom(id, out var key);
            table.Add(key, id.GetHashCode(), 0, i);
            model[id] = (0, i);
            if (i > 64) Assert.InRange((double)table.Count / table.Capacity, 0.69, 0.875);
        }
        AssertSame(table, model, []);
        int full = table.Capacity;
        var rng = new Random(3);
        foreach (var id in model.Keys.OrderBy(_ => rng.Next()).Take(19_000).ToList())
        {
            NarrowKey.TryFrom(id, out var key);
            table.RemoveAt(table.Locate(key, id.GetHashCode()));
            model.Remove(id);
        }
        Assert.True(table.Capacity < full / 8, $"capacity {table.Capacity} after emptying a table of {full}");
        Assert.True(table.Count * 4 >= table.Capacity, $"{table.Count} entries in {table.Capacity} slots");
        AssertSame(table, model, []);
    }
}
