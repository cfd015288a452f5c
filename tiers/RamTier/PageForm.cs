namespace Tmem.RamTier;

/// <summary>
/// How a stored page is represented: the one place that says where its bytes are. Every path
/// of the RAM tier (install, read, release, eviction, slab compaction, checkpoint capture)
/// switches on this, never on combinations of flags. A new representation (a deduplicated page
/// pointing at a shared slot, say) is a new member here and a case in each of those paths of
/// <see cref="CompressedRamTier"/>.
/// </summary>
internal enum PageForm : byte
{
    /// <summary>Compressed bytes in a RAM slab slot (<see cref="PageDescriptor.Location"/> is the slot).</summary>
    Slot = 0,

    /// <summary>One 8-byte word repeated (zero or another): no bytes stored; <see cref="PageDescriptor.Location"/> is the word.</summary>
    Pattern = 1,

    /// <summary>
    /// No RAM copy: the tier below keeps the page at the descriptor's backing address (a
    /// persistent page whose Put record is in the log, read back from there on a get).
    /// </summary>
    Below = 2,

    /// <summary>
    /// The page itself, uncompressed, in a RAM slab slot (<see cref="PageDescriptor.Location"/> is
    /// the slot, <see cref="PageDescriptor.Length"/> the page size): a page that compresses poorly
    /// in a pool with <see cref="PoolOptions.StoreIncompressible"/>. Handled as <see cref="Slot"/>
    /// everywhere except a read, which copies instead of decompressing.
    /// </summary>
    Uncompressed = 3,
}
