using System.Runtime.CompilerServices;

namespace Tmem.RamTier;

/// <summary>
/// The pampd: where one stored page's bytes are (its <see cref="PageForm"/>), and, for bottom-up
/// eviction, whose page it is. 24 bytes, kept in <see cref="DescriptorTable"/> and named by a
/// 32-bit id that the translation stores. Every field except <see cref="Clock"/> is written only
/// under the owner's lock once the descriptor is installed; readers outside that lock (the
/// evictor) treat what they read as a hint and re-check under the lock.
/// </summary>
internal struct PageDescriptor
{
    /// <summary>The owner holding the page (a translation object), or null while free or reserved.</summary>
    public PageOwner? Owner;

    /// <summary>
    /// <see cref="PageForm.Slot"/> and <see cref="PageForm.Uncompressed"/>: the slab slot (<see cref="SlabAllocator"/> location);
    /// <see cref="PageForm.Pattern"/>: the 8-byte word; <see cref="PageForm.Below"/>: 0; the next free id while free.
    /// </summary>
    public ulong Location;

    /// <summary>The page's index within <see cref="Owner"/>.</summary>
    public uint Index;

    /// <summary>Stored length in bytes: compressed, the page size when uncompressed, 0 for a pattern, the record's payload length for a page below.</summary>
    public ushort Length;

    /// <summary><see cref="DescriptorFlags"/> in the low bits, the <see cref="PageForm"/> in bits 4-5 (see <see cref="Pack"/>).</summary>
    public byte Flags;

    /// <summary>CLOCK reference bit: set on install and on a hit, cleared by the sweeping hand.</summary>
    public byte Clock;

    private const int FormShift = 4;

    /// <summary>The representation; meaningful once installed.</summary>
    public readonly PageForm Form
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (PageForm)((Flags >> FormShift) & 3);
    }

    /// <summary>The state bits without the form.</summary>
    public readonly DescriptorFlags State
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (DescriptorFlags)(Flags & 0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Pack(DescriptorFlags state, PageForm form) => (byte)((byte)state | ((byte)form << FormShift));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PageForm FormOf(byte flags) => (PageForm)((flags >> FormShift) & 3);
}

/// <summary>State bits of a <see cref="PageDescriptor"/> (the low nibble of its flags byte).</summary>
[Flags]
internal enum DescriptorFlags : byte
{
    /// <summary>On the free list.</summary>
    Free = 0,

    /// <summary>Allocated by a put that has not installed it yet.</summary>
    Reserved = 1,

    /// <summary>Installed in a translation: a live page.</summary>
    Installed = 2,

    /// <summary>A persistent page: never dropped by eviction (at most moved to the tier below).</summary>
    Persistent = 4,

    /// <summary>
    /// The tier below holds a copy of the page at <see cref="DescriptorTable.GetBackingAddress"/>
    /// (a logged persistent page: its Put record's log address), with or without a RAM copy.
    /// </summary>
    Backed = 8,
}
