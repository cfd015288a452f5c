using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>One step of <see cref="RawLogReader"/>: an entry (its record bytes) or a damage it stepped over.</summary>
/// <param name="Address">The entry's (or the damage's) log address.</param>
/// <param name="Next">Where the reader goes on from: the next entry, or where it resynchronised.</param>
/// <param name="Entry">The record bytes (FasterLog's payload, without its 4-byte header); null for damage.</param>
/// <param name="Damage">What is wrong at <see cref="Address"/>; null for an entry.</param>
internal readonly record struct RawLogItem(long Address, long Next, byte[]? Entry, DataProblem? Damage);

/// <summary>
/// Reads a FasterLog's segment files directly, by FasterLog's framing, without FASTER: each entry
/// is a 4-byte little-endian length and the payload padded to 4 bytes; an entry never spans a
/// page (4 MiB, <see cref="PageSize"/>); a zero length ends the page (padding to the next page).
/// Segment <c>N</c> is <c>log/segment.N</c> and holds addresses <c>[N, N+1) x segment size</c>.
/// Unlike FasterLog's scan (which stops at the first bad spot), it reports each damage with its
/// address and resynchronises at the next page (every page starts with an entry) or, for a missing
/// or cut segment, at the next segment.
/// </summary>
internal sealed class RawLogReader(string logDirectory, int segmentSizeBits)
{
    // The store's framing, from the log that writes it.
    private const long PageSize = LogFraming.LogPageSize;
    private const int MaxEntrySize = LogFraming.MaxEntrySize;

    private readonly long _segmentSize = 1L << segmentSizeBits;

    public string SegmentPath(long segment) => Path.Combine(logDirectory, $"{PersistentLog.SegmentBaseName}.{segment}");

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
                yield return Damage(a, (last + 1) * _segmentSize, ProblemKind.MissingSegment, file,
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
                progress?.Invoke(a);
                while (a < Math.Min(pageEnd, until))
                {
                    int offset = (int)(a - pageStart);
                    if (a + 4 > dataEnd)
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
                        yield return Damage(a, (segment + 1) * _segmentSize, ProblemKind.TruncatedSegment, file,
                            $"segment file {file} ends at byte {(pageStart & (_segmentSize - 1)) + got} (log address {dataEnd}), below the log's commit point {until}: log addresses {a} to {segmentEnd} are missing");
                        if (stopAtFirstDamage) yield break;
                        a = (segment + 1) * _segmentSize;
                        nextSegment = true;
                        break;
                    }
                    int length = BinaryPrimitives.ReadInt32LittleEndian(page.AsSpan(offset));
                    if (length == 0)
                    {
                        // Page padding is where the next entry did not fit: less than the largest
                        // entry before the page end, and never before a commit point inside the page.
                        // Anything else is records zeroed below the commit point.
                        if (pageEnd - a >= MaxEntrySize || until < pageEnd)
                        {
                            yield return Damage(a, pageEnd, ProblemKind.BadFraming, file,
                                $"log addresses {a} to {Math.Min(pageEnd, until)} (segment file {file}, from byte {a & (_segmentSize - 1)}) are zeros where records must be (the page does not end within an entry's size of {a}, or the commit point {until} is inside it); skipped to the next page at {pageEnd}");
                            if (stopAtFirstDamage) yield break;
                        }
                        a = pageEnd;
                        break;
                    }
                    long next = a + 4 + ((length + 3L) & ~3L);
                    if (length < 0 || a + 4 + (long)length > pageEnd || a + 4 + (long)length > until)
                    {
                        yield return Damage(a, pageEnd, ProblemKind.BadFraming, file,
                            $"the entry header at log address {a} (segment file {file}, byte {a & (_segmentSize - 1)}) gives length {length}, which {(length < 0 ? "is negative" : a + 4 + (long)length > pageEnd ? $"runs past its 4 MiB page (ends at {pageEnd})" : $"runs past the commit point {until}")}; skipped to the next page at {pageEnd}");
                        if (stopAtFirstDamage) yield break;
                        a = pageEnd;
                        break;
                    }
                    if (a + 4 + length > dataEnd)
                    {
                        yield return Damage(a, (segment + 1) * _segmentSize, ProblemKind.TruncatedSegment, file,
                            $"segment file {file} ends at byte {(pageStart & (_segmentSize - 1)) + got} (log address {dataEnd}), inside the {length}-byte entry at log address {a}, below the log's commit point {until}: log addresses {a} to {segmentEnd} are missing");
                        if (stopAtFirstDamage) yield break;
                        a = (segment + 1) * _segmentSize;
                        nextSegment = true;
                        break;
                    }
                    yield return new RawLogItem(a, next, page.AsSpan(offset + 4, length).ToArray(), null);
                    a = next;
                }
                if (a < pageEnd && a >= until) break;
            }
        }
        progress?.Invoke(until);
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
