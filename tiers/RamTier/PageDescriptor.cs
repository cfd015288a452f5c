namespace Tmem.RamTier;

/// <summary>
/// The pampd: where one stored page's bytes are, and (for bottom-up eviction) whose page it is.
/// 24 bytes, kept in <see cref="DescriptorTable"/> and named by a 32-bit id that the translation
/// stores. Every field except <see cref="Clock"/> is written only under the bucket lock of the
/// owning object once the descriptor is installed; readers outside that lock (the evictor) treat
/// what they read as a hint and re-check under the lock.
/// </summary>
internal struct PageDescriptor
{
    /// <summary>The object holding the page, or null while free or reserved.</summary>
    public Translation.TmemObject? Owner;

    /// <summary>
    /// A slab slot (<see cref="SlabAllocator"/> location) for compressed pages with a RAM copy; the
    /// 8-byte fill pattern for same-filled pages; 0 for spilled pages; the next free id while free.
    /// </summary>
    public ulong Location;

    /// <summary>The page's index within <see cref="Owner"/>.</summary>
    public uint Index;

    /// <summary>Compressed length in bytes (0 for same-filled pages).</summary>
    public ushort Length;

    /// <summary>A <see cref="DescriptorFlags"/> value.</summary>
    public byte Flags;

    /// <summary>CLOCK reference bit: set on install and on a hit, cleared by the sweeping hand.</summary>
    public byte Clock;
}

/// <summary>State bits of a <see cref="PageDescriptor"/>.</summary>
[Flags]
internal enum DescriptorFlags : byte
{
    /// <summary>On the free list.</summary>
    Free = 0,

    /// <summary>Allocated by a put that has not installed it yet.</summary>
    Reserved = 1,

    /// <summary>Installed in a translation: a live page.</summary>
    Installed = 2,

    /// <summary>The page is one 8-byte word repeated; <see cref="PageDescriptor.Location"/> holds it.</summary>
    SameFilled = 4,

    /// <summary>A persistent page: never dropped by eviction (at most spilled).</summary>
    Persistent = 8,

    /// <summary>A persistent page with no RAM copy: its bytes are only in the log (<see cref="Logged"/>).</summary>
    Spilled = 16,

    /// <summary>A persistent page whose Put record is in the log, at <see cref="DescriptorTable.GetLogAddress"/>.</summary>
    Logged = 32,
}
