namespace Tmem.LogTier;

/// <summary>
/// How FasterLog (Microsoft.FASTER.Core 2.6.5, <c>LogChecksumType.None</c>, the store's setting)
/// frames the store's records on disk: each entry is a 4-byte little-endian length
/// (<see cref="EntryHeaderSize"/>) and the record's bytes, padded to a multiple of 4; an entry
/// never spans one of FasterLog's <see cref="LogPageSize"/> pages, and a page that cannot hold
/// the next entry ends in zeros (a zero length means "skip to the next page").
/// <see cref="FASTER.core.FasterLog.Enqueue(ReadOnlySpan{byte})"/> returns the address of an
/// entry's header; its record starts <see cref="EntryHeaderSize"/> bytes later.
/// <para>
/// Everything here describes those bytes: the log (which sets the page size), the mapped device
/// (direct reads past the header), compaction (what a copy takes) and the offline reader (which
/// walks the segment files without FASTER) share it.
/// </para>
/// </summary>
public static class LogFraming
{
    /// <summary>FasterLog's page size, in bits: 4 MiB pages, so a record (48 B + up to 64 KiB) never spans one.</summary>
    public const int LogPageSizeBits = 22;

    /// <summary>FasterLog's page size in bytes (not the store's pages: a log page holds many records).</summary>
    public const long LogPageSize = 1L << LogPageSizeBits;

    /// <summary>FasterLog's per-entry header: a 4-byte length (no per-entry checksum; records carry their own CRC).</summary>
    public const int EntryHeaderSize = 4;

    /// <summary>The largest entry the store writes: FasterLog header + record header + 64 KiB payload, padded.</summary>
    public const int MaxEntrySize = EntryHeaderSize + LogRecord.HeaderSize + ushort.MaxValue + 4;

    /// <summary>Bytes a record with <paramref name="payloadLength"/> payload bytes takes in the log: header, record, padding to 4.</summary>
    public static int EntrySize(int payloadLength) => EntrySizeOfRecord(LogRecord.SizeOf(payloadLength));

    /// <summary>Bytes a record of <paramref name="recordLength"/> bytes takes in the log: header, record, padding to 4.</summary>
    public static int EntrySizeOfRecord(int recordLength) => EntryHeaderSize + ((recordLength + 3) & ~3);

    /// <summary>
    /// Whether an entry at <paramref name="address"/> may follow one that ended at
    /// <paramref name="expected"/>: it must start right there, or at the next page when the rest
    /// of the previous one was too small for some entry (FasterLog pads a page end with zeros, and
    /// its scan skips a zero length to the next page, so zeroed records inside a page would
    /// otherwise vanish silently). The padding is bounded by the largest entry, not by the next
    /// one's size: with concurrent appenders the entry that did not fit need not be the page's first.
    /// </summary>
    public static bool FollowsOn(long expected, long address) =>
        address == expected || (address % LogPageSize == 0 && address > expected && address - expected < MaxEntrySize);

    /// <summary>
    /// Whether a walk of the entries that stopped at <paramref name="next"/> reached
    /// <paramref name="committed"/>: exactly, or but for the padding at the end of the page before
    /// it (a record never spans a FasterLog page: when the next one did not fit, the page ends in
    /// padding and the commit point can be the next page's start). Only that gap is normal.
    /// </summary>
    public static bool Reaches(long next, long committed) =>
        next >= committed || (committed % LogPageSize == 0 && committed - next < MaxEntrySize);
}
