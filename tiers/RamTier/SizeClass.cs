namespace Tmem.RamTier;

/// <summary>
/// Slabs of one slot size. <see cref="Current"/> takes allocations until full; then the fullest
/// partial slab becomes current, so sparse slabs drain and can be released (zsmalloc's
/// fullness grouping, simplified). Guarded by <see cref="Lock"/>.
/// </summary>
internal sealed class SizeClass
{
    /// <summary>Smallest slab: a class holding little wastes at most about this much in its current slab.</summary>
    public const int MinSlabBytes = 16 * 1024;

    /// <summary>Largest slab: big classes use few slabs, so per-slab bookkeeping stays under 2 bytes a page.</summary>
    public const int MaxSlabBytes = 64 * 1024;

    public SizeClass(int slotSize)
    {
        SlotSize = slotSize;
    }

    public Lock Lock { get; } = new();

    public int SlotSize { get; }

    public Slab? Current { get; set; }

    /// <summary>Slabs with free slots other than <see cref="Current"/> (and not draining).</summary>
    public List<Slab> Partial { get; } = new();

    public int SlabCount { get; set; }

    public long UsedSlots { get; set; }

    /// <summary>Slots in all slabs of this class.</summary>
    public long TotalSlots { get; set; }

    public long FreeSlots => TotalSlots - UsedSlots;

    /// <summary>
    /// Slots for a new slab: about 1/16 of what the class already holds, between
    /// <see cref="MinSlabBytes"/> and <see cref="MaxSlabBytes"/>, so the one partly used current
    /// slab stays a small fraction of the class.
    /// </summary>
    public int SlotsForNewSlab()
    {
        long target = Math.Clamp(TotalSlots * SlotSize / 16, MinSlabBytes, MaxSlabBytes);
        return (int)Math.Clamp((target + SlotSize - 1) / SlotSize, 4, 4096);
    }

    public void AddPartial(Slab slab)
    {
        slab.PartialIndex = Partial.Count;
        Partial.Add(slab);
    }

    public void RemovePartial(Slab slab)
    {
        int i = slab.PartialIndex;
        var last = Partial[^1];
        Partial[i] = last;
        last.PartialIndex = i;
        Partial.RemoveAt(Partial.Count - 1);
        slab.PartialIndex = -1;
    }

    /// <summary>The partial slab with the most used slots, or null.</summary>
    public Slab? FullestPartial()
    {
        Slab? best = null;
        foreach (var slab in Partial)
            if (best is null || slab.Used > best.Used) best = slab;
        return best;
    }
}
