using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>One step of <see cref="RawLogReader"/>: an entry (its record bytes) or a damage it stepped over.</summary>
/// <param name="Address">The entry's (or the damage's) log address.</param>
/// <param name="Next">Where the reader goes on from: the next entry, or where it resynchronised. For a damage,
/// [<see cref="Address"/>, <see cref="Next"/>) are the bytes whose records are unknown (empty when only an
/// entry's length header is damaged and the record it frames was found intact).</param>
/// <param name="Entry">The record bytes (FasterLog's payload, without its 4-byte header); null for damage.</param>
/// <param name="Damage">What is wrong at <see cref="Address"/>; null for an entry.</param>
/// <param name="Resynchronised">An entry found by scanning after a damage, not through FasterLog's framing: the
/// store cannot reach it (its scan stops or skips at the damage), but it is a whole record that passes its checksum.</param>
internal readonly record struct RawLogItem(long Address, long Next, byte[]? Entry, DataProblem? Damage, bool Resynchronised = false);

/// <summary>
/// Reads a FasterLog's segment files directly, by FasterLog's framing, without FASTER: each entry
/// is a 4-byte little-endian length and the payload padded to 4 bytes; an entry never spans a
/// page (4 MiB, <see cref="PageSize"/>); a zero length ends the page (padding to the next page,
/// zeros to its end). Segment <c>N</c> is <c>log/segment.N</c> and holds addresses
/// <c>[N, N+1) x segment size</c>. Unlike FasterLog's scan (which stops at the first bad spot),
/// it reports each damage with its address and resynchronises: after broken framing (a length
/// that does not fit, that disagrees with the record's own payload length, or zeros where
/// records must be) at the first 4-byte-aligned address in the page that holds a whole record
/// passing its CRC-32C and followed by another (or by the page's end), else at the next page
/// (every page starts with an entry); after a missing or cut segment file, at the next segment.
/// </summary>
internal sealed class RawLogReader(string logDirectory, int segmentSizeBits)
{
    // The store's framing, from the log that writes it.
    private const long PageSize = LogFraming.LogPageSize;
    private const int MaxEntrySize = LogFraming.MaxEntrySize;
    private const int Header = LogFraming.EntryHeaderSize;

    private readonly long _segmentSize = 1L << segmentSizeBits;

    public string SegmentPath(long segment) => Path.Combine(logDirectory, $"{DataLayout.SegmentBaseName}.{segment}");

    /// <summary>
    /// Entries and damage in [<paramref name="from"/>, <paramref name="until"/>). With
    /// <paramref name="stopAtFirstDamage"/> (reading past the commit point, where a bad spot is just
    /// the end of what was written) the first damage ends the walk.
    /// </summary>
    public IEnumerable<RawLogItem> Read(long from, long until, bool stopAtFirstDamage = false, Action<long>? progress = null)
    {
        var page = new byte[PageSize];
        long a = from;
        while (a < until)
        {
            long segment = a >> segmentSizeBits;
            long segmentEnd = Math.Min((segment + 1) * _segmentSize, until);
            string file = SegmentPath(segment);
            if (!File.Exists(file))
            {
                // One problem for a run of missing segments, up to the next file that exists.
                long last = segment;
                while ((last + 1) * _segmentSize < until && !File.Exists(SegmentPath(last + 1))) last++;
                long runEnd = Math.Min((last + 1) * _segmentSize, until);
                yield return Damage(a, runEnd, ProblemKind.MissingSegment, file,
                    last == segment
                        ? $"segment file {file} (log addresses {segment * _segmentSize} to {(segment + 1) * _segmentSize}) is missing; log addresses {a} to {runEnd} are unreadable"
                        : $"segment files {file} to {SegmentPath(last)} ({last - segment + 1} files, log addresses {segment * _segmentSize} to {(last + 1) * _segmentSize}) are missing; log addresses {a} to {runEnd} are unreadable");
                if (stopAtFirstDamage) yield break;
                a = (last + 1) * _segmentSize;
                continue;
            }
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            bool nextSegment = false;
            while (a < segmentEnd && !nextSegment)
            {
                long pageStart = a & ~(PageSize - 1);
                long pageEnd = pageStart + PageSize;
                int want = (int)(Math.Min(pageEnd, segmentEnd) - pageStart);
                int got = ReadFully(handle, page.AsSpan(0, want), pageStart & (_segmentSize - 1));
                long dataEnd = pageStart + got;
                long limit = Math.Min(Math.Min(pageEnd, until), dataEnd); // where this page's readable bytes end
                progress?.Invoke(a);
                while (a < Math.Min(pageEnd, until))
                {
                    int offset = (int)(a - pageStart);
                    if (a + Header > dataEnd)
                    {
                        // The file ends here. Quiet only where the commit point is this page's end and
                        // the rest of the page can be nothing but padding (FasterLog's own rule).
                        if (got == want)
                        {
                            yield return Damage(a, pageEnd, ProblemKind.BadFraming, file,
                                $"the log's commit point {until} is not at an entry boundary (the entry at {a} has no room for its header)");
                            a = pageEnd;
                            break;
                        }
                        if (until == pageEnd && a == dataEnd && until - a < MaxEntrySize)
                        {
                            a = pageEnd; // the rest of the page is padding FasterLog did not write
                            break;
                        }
                        yield return Damage(a, segmentEnd, ProblemKind.TruncatedSegment, file,
                            $"segment file {file} ends at byte {(pageStart & (_segmentSize - 1)) + got} (log address {dataEnd}), below the log's commit point {until}: log addresses {a} to {segmentEnd} are missing");
                        if (stopAtFirstDamage) yield break;
                        a = (segment + 1) * _segmentSize;
                        nextSegment = true;
                        break;
                    }
                    int length = BinaryPrimitives.ReadInt32LittleEndian(page.AsSpan(offset));
                    string? framing = null;
                    if (length == 0)
                    {
                        // Page padding is where the next entry did not fit: less than the largest
                        // entry before the page end, zeros to the end, and never before a commit
                        // point inside the page. Anything else is records zeroed below the commit point.
                        if (pageEnd - a >= MaxEntrySize || until < pageEnd)
                            framing = $"log addresses from {a} (segment file {file}, byte {a & (_segmentSize - 1)}) are zeros where records must be (the page does not end within an entry's size of {a}, or the commit point {until} is inside it)";
                        else if (page.AsSpan(offset, (int)(limit - a)).IndexOfAnyExcept((byte)0) is int nonZero and >= 0)
                            framing = $"log address {a} (segment file {file}, byte {a & (_segmentSize - 1)}) starts what would be page padding, but byte {a + nonZero} after it is not zero: records were zeroed there";
                        else
                        {
                            a = pageEnd;
                            break;
                        }
                    }
                    else if (length < LogRecord.HeaderSize || a + Header + (long)length > pageEnd || a + Header + (long)length > until)
                        framing = $"the entry header at log address {a} (segment file {file}, byte {a & (_segmentSize - 1)}) gives length {length}, which {(length < 0 ? "is negative" : length < LogRecord.HeaderSize ? "is shorter than a record header" : a + Header + (long)length > pageEnd ? $"runs past its 4 MiB page (ends at {pageEnd})" : $"runs past the commit point {until}")}";
                    else if (a + Header + length > dataEnd)
                    {
                        yield return Damage(a, segmentEnd, ProblemKind.TruncatedSegment, file,
                            $"segment file {file} ends at byte {(pageStart & (_segmentSize - 1)) + got} (log address {dataEnd}), inside the {length}-byte entry at log address {a}, below the log's commit point {until}: log addresses {a} to {segmentEnd} are missing");
                        if (stopAtFirstDamage) yield break;
                        a = (segment + 1) * _segmentSize;
                        nextSegment = true;
                        break;
                    }
                    else if (PayloadLengthField(page, offset) != length - LogRecord.HeaderSize)
                        framing = $"the entry header at log address {a} (segment file {file}, byte {a & (_segmentSize - 1)}) gives length {length}, but the record it frames says its payload is {PayloadLengthField(page, offset)} bytes";

                    if (framing is null)
                    {
                        long next = a + Header + ((length + 3L) & ~3L);
                        yield return new RawLogItem(a, next, page.AsSpan(offset + Header, length).ToArray(), null);
                        a = next;
                        continue;
                    }
                    if (stopAtFirstDamage)
                    {
                        yield return Damage(a, limit, ProblemKind.BadFraming, file, framing);
                        yield break;
                    }
                    long found = Resynchronise(page, pageStart, a, limit, pageEnd);
                    if (found >= 0 && length >= LogRecord.HeaderSize && found == a + Header + ((length + 3L) & ~3L) && found <= limit)
                    {
                        // The header framed the entry right (the next record is where it says): the
                        // damage is inside this record (its own length field); the consumer finds it.
                        yield return new RawLogItem(a, found, page.AsSpan(offset + Header, length).ToArray(), null);
                        a = found;
                        continue;
                    }
                    if (found < 0)
                    {
                        yield return Damage(a, limit, ProblemKind.BadFraming, file,
                            $"{framing}; no whole record follows in the page: log addresses {a} to {limit} are unreadable");
                        a = limit < Math.Min(pageEnd, until) ? limit : pageEnd;
                        if (a == pageEnd) break;
                        continue;
                    }
                    yield return Damage(a, found, ProblemKind.BadFraming, file,
                        found == a
                            ? $"{framing}; the record it frames is intact ({PayloadLengthField(page, offset) + LogRecord.HeaderSize} bytes, checksum valid): only the length header is damaged, but FasterLog cannot read past it"
                            : $"{framing}; resynchronised at the next whole record, at {found}: log addresses {a} to {found} are unreadable");
                    int recordLength = PayloadLengthField(page, (int)(found - pageStart)) + LogRecord.HeaderSize;
                    long after = found + Header + ((recordLength + 3L) & ~3L);
                    yield return new RawLogItem(found, after, page.AsSpan((int)(found - pageStart) + Header, recordLength).ToArray(), null, Resynchronised: true);
                    a = after;
                }
                if (a < pageEnd && a >= until) break;
            }
        }
        progress?.Invoke(until);
    }

    /// <summary>The payload length a record at entry offset <paramref name="offset"/> of the page claims (bytes 40..44 of the record).</summary>
    private static int PayloadLengthField(byte[] page, int offset) =>
        offset + Header + LogRecord.HeaderSize <= page.Length ? BinaryPrimitives.ReadInt32LittleEndian(page.AsSpan(offset + Header + 40)) : -1;

    /// <summary>
    /// The first entry address at or after <paramref name="from"/> (4-byte aligned, below
    /// <paramref name="limit"/>) where a whole record passing its CRC-32C starts (its length from
    /// its own header; the entry's length header is not trusted), followed by another such entry
    /// or by the end of the page's records; -1 when there is none.
    /// </summary>
    private static long Resynchronise(byte[] page, long pageStart, long from, long limit, long pageEnd)
    {
        for (long p = from; p + Header + LogRecord.HeaderSize <= limit; p += 4)
        {
            long end = RecordAt(page, pageStart, p, limit);
            if (end < 0) continue;
            if (p == from || FollowedByRecordOrPageEnd(page, pageStart, end, limit, pageEnd)) return p;
        }
        return -1;
    }

    /// <summary>Where the entry ends when a valid record starts 4 bytes after <paramref name="p"/> (by the record's own length), else -1.</summary>
    private static long RecordAt(byte[] page, long pageStart, long p, long limit)
    {
        if (p + Header + LogRecord.HeaderSize > limit) return -1;
        int offset = (int)(p - pageStart) + Header;
        var span = page.AsSpan(offset);
        if (span[4] != LogRecord.CurrentVersion || span[5] is < (byte)LogRecordType.Put or > (byte)LogRecordType.CompactionBase) return -1;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span[44..]) != 0) return -1;
        uint payload = BinaryPrimitives.ReadUInt32LittleEndian(span[40..]);
        if (payload > MaxEntrySize || p + Header + LogRecord.HeaderSize + payload > limit) return -1;
        int length = LogRecord.HeaderSize + (int)payload;
        if (!LogRecord.TryRead(span[..length], out _, out _)) return -1;
        return p + Header + ((length + 3L) & ~3L);
    }

    private static bool FollowedByRecordOrPageEnd(byte[] page, long pageStart, long at, long limit, long pageEnd)
    {
        if (at >= limit) return true;
        if (at + Header > limit) return false;
        int length = BinaryPrimitives.ReadInt32LittleEndian(page.AsSpan((int)(at - pageStart)));
        if (length == 0) return pageEnd - at < MaxEntrySize && page.AsSpan((int)(at - pageStart), (int)(limit - at)).IndexOfAnyExcept((byte)0) < 0;
        long end = RecordAt(page, pageStart, at, limit);
        return end >= 0 && end == at + Header + ((length + 3L) & ~3L);
    }

    private static RawLogItem Damage(long address, long next, ProblemKind kind, string file, string message) =>
        new(address, next, null, new DataProblem(kind, ProblemSeverity.Damage, address, file, message));

    private static int ReadFully(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[total..], offset + total);
            if (n == 0) break;
            total += n;
        }
        buffer[total..].Clear();
        return total;
    }
}
