namespace Tmem.RamTier;

/// <summary>
/// Slabs of one slot size. <see cref="Current"/> takes allocations until full; then the fullest
/// partial slab becomes current, so sparse slabs drain and can be released (zsmalloc's
/// fullness grouping, simplified). Guarded by <see cref="Lock"/>.
/// </summary>
internal sealed class SizeClass
{
    /// <summary>Target slab size: small enough that a half-used slab per class wastes little.</summary>
    public const int TargetSlabBytes = 16 * 1024;

    public SizeClass(int slotSize)
    {
        SlotSize = slotSize;
        SlotsPerSlab = Math.Clamp((TargetSlabBytes + slotSize - 1) / slotSize, 4, 4096);
    }

    public Lock Lock { get; } = new();

    public int SlotSize { get; }

    public int SlotsPerSlab { get; }

    public Slab? Current { get; set; }

    /// <summary>Slabs with free slots other than <see cref="Current"/> (and not draining).</summary>
    public List<Slab> Partial { get; } = new();

    public int SlabCount { get; set; }

    public long UsedSlots { get; set; }

    public long FreeSlots => (long)SlabCount * SlotsPerSlab - UsedSlots;

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

    /// <summary>The partial slab with the fewest used slots, or null.</summary>
    public Slab? EmptiestPartial()
    {
        Slab? best = null;
        foreach (var slab in Partial)
            if (best is null || slab.Used < best.Used) best = slab;
        return best;
    }
}
