using Tmem.RamTier;

namespace Tmem.Tests;

/// <summary>The RAM tier's slab allocator: slots by 16-byte size class, reuse, release of empty slabs.</summary>
[Trait("Kind", "Unit")]
public unsafe class SlabAllocatorTests
{
    private static void Write(SlabAllocator slabs, ulong location, int length, byte value) =>
        new Span<byte>(slabs.AddressOf(location), length).Fill(value);

    private static bool Holds(SlabAllocator slabs, ulong location, int length, byte value) =>
        new ReadOnlySpan<byte>(slabs.AddressOf(location), length).IndexOfAnyExcept(value) < 0;

    [Theory]
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(1000, 1008)]
    [InlineData(3584, 3584)]
    [InlineData(65536, 65536)]
    public void SlotSizeFor_RoundsUpTo16ByteClass(int length, int slot) => Assert.Equal(slot, SlabAllocator.SlotSizeFor(length));

    [Fact]
    public void Allocate_ManySizes_SlotsAreDistinctAndDoNotOverlap()
    {
        using var slabs = new SlabAllocator();
        var rng = new Random(3);
        var live = new List<(ulong Location, int Length, byte Value)>();
        for (int i = 0; i < 2000; i++)
        {
            int length = rng.Next(4) == 0 ? rng.Next(1, 4000) : 1000;
            ulong location = slabs.Allocate(length);
            byte value = (byte)(i % 251 + 1);
            Write(slabs, location, length, value);
            live.Add((location, length, value));
        }
        Assert.Equal(live.Count, live.Select(l => l.Location).Distinct().Count());
        Assert.All(live, l => Assert.True(Holds(slabs, l.Location, l.Length, l.Value), $"slot {l.Location:x} was overwritten"));
        Assert.True(slabs.SlabBytes >= live.Sum(l => (long)SlabAllocator.SlotSizeFor(l.Length)));
    }

    [Fact]
    public void Free_ThenAllocate_ReusesTheSlotWithoutGrowing()
    {
        using var slabs = new SlabAllocator();
        var locations = Enumerable.Range(0, 5).Select(_ => slabs.Allocate(1000)).ToList();
        long bytes = slabs.SlabBytes;
        slabs.Free(locations[2]);
        Assert.Equal(locations[2], slabs.Allocate(1000));
        Assert.Equal(bytes, slabs.SlabBytes);
        Assert.Equal(locations.Count, locations.Distinct().Count());
    }

    [Fact]
    public void Free_LastSlotOfNonCurrentSlab_ReleasesTheSlab()
    {
        using var slabs = new SlabAllocator();
        const int Length = 1000;
        var first = new List<ulong> { slabs.Allocate(Length) };
        long firstSlabBytes = slabs.SlabBytes;
        Assert.True(firstSlabBytes >= SlabAllocator.SlotSizeFor(Length));
        ulong firstSlab = first[0] >> 16;
        ulong next;
        while (((next = slabs.Allocate(Length)) >> 16) == firstSlab)
        {
            first.Add(next);
            Assert.True(first.Count < 100_000);
        }
        Assert.Equal(firstSlabBytes, (long)first.Count * SlabAllocator.SlotSizeFor(Length)); // the first slab is full
        long both = slabs.SlabBytes;
        Write(slabs, next, Length, 0x77);
        var rest = new List<ulong> { next };
        for (int i = 0; i < 10; i++)
        {
            rest.Add(slabs.Allocate(Length));
            Write(slabs, rest[^1], Length, 0x77);
        }

        foreach (ulong location in first.Take(first.Count - 1)) slabs.Free(location);
        Assert.Equal(both, slabs.SlabBytes); // one slot still used
        slabs.Free(first[^1]);
        Assert.Equal(both - firstSlabBytes, slabs.SlabBytes);
        Assert.All(rest, l => Assert.True(Holds(slabs, l, Length, 0x77)));

        // Allocation goes on working, in the current slab first.
        ulong again = slabs.Allocate(Length);
        Assert.DoesNotContain(again, rest);
        Write(slabs, again, Length, 0x55);
        Assert.All(rest, l => Assert.True(Holds(slabs, l, Length, 0x77)));
    }

    [Fact]
    public void FreeAll_ManySlabs_ReleasesAllButCurrentSlabs()
    {
        using var slabs = new SlabAllocator();
        var locations = Enumerable.Range(0, 3000).Select(_ => slabs.Allocate(1000)).ToList();
        long full = slabs.SlabBytes;
        Assert.True(full >= 3000L * 1008);
        foreach (ulong location in locations) slabs.Free(location);
        // At most the current slab of the class may stay (65536 bytes is the largest slab size).
        Assert.InRange(slabs.SlabBytes, 0, 65536 + 1008);
        Assert.True(slabs.SlabBytes < full / 10);
    }
}
