using FASTER.core;

namespace Tmem.LogTier;

/// <summary>Visits one committed record: its address and its bytes (valid only during the call).</summary>
internal delegate void EntryVisitor<TState>(long address, ReadOnlySpan<byte> entry, TState state);

/// <summary>
/// Walks the committed log in order, checking that nothing below the commit point is missing:
/// FASTER reads a missing or cut segment file as zeros and its scan then just stops, and it
/// skips a zero length to the next page, so without these checks damage would silently drop
/// records. Every scan
/// <list type="bullet">
/// <item>first checks that every segment file under the commit point exists and is long enough
/// (<see cref="CheckSegmentsPresent"/>);</item>
/// <item>checks that each entry starts where the previous one ended, or at the next page
/// (<see cref="LogFraming.FollowsOn"/>);</item>
/// <item>and at its end that it reached the commit point (<see cref="LogFraming.Reaches"/>).</item>
/// </list>
/// Damage is a <see cref="TmemCorruptionException"/> naming the address. Two ways to scan, over
/// the same walk: <see cref="ScanCommitted"/> copies each record (for callers that block or
/// append while they go), <see cref="ForEachCommitted"/> hands out FasterLog's own buffers.
/// </summary>
internal sealed class LogScanner
{
    private readonly FasterLog _log;
    private readonly string _logDirectory;
    private readonly int _segmentSizeBits;

    public LogScanner(FasterLog log, string logDirectory, int segmentSizeBits)
    {
        _log = log;
        _logDirectory = logDirectory;
        _segmentSizeBits = segmentSizeBits;
    }

    /// <summary>
    /// Committed records from <paramref name="from"/> (at least the begin address) to
    /// <paramref name="until"/> (at most the commit point), in order: (address, bytes), each a copy.
    /// For callers that block or append while they go (compaction): nothing is held between
    /// records. Damage is thrown as for <see cref="ForEachCommitted"/>.
    /// </summary>
    public IEnumerable<(long Address, byte[] Entry)> ScanCommitted(long from, long until)
    {
        using var walk = Start(from, until);
        while (walk.TryCopyNext(out long address, out byte[] entry))
            yield return (address, entry);
        walk.CheckReachedEnd();
    }

    /// <summary>
    /// Recovery's scan: visits every committed record from <paramref name="from"/> in order, straight
    /// from FasterLog's buffers (no copy and no allocation per record). The visitor must not block
    /// or append to the log: it runs under FASTER's epoch protection. Throws
    /// <see cref="TmemCorruptionException"/> when segment files under the commit point are missing,
    /// or the records end before it (FASTER reads a missing or cut segment as zeros and its scan
    /// then just stops, which would silently drop everything after). Returns the records visited.
    /// </summary>
    public long ForEachCommitted<TState>(long from, EntryVisitor<TState> visit, TState state)
    {
        using var walk = Start(from, long.MaxValue);
        long records = walk.VisitAll(visit, state);
        walk.CheckReachedEnd();
        return records;
    }

    private Walk Start(long from, long until)
    {
        long committed = Math.Min(until, _log.CommittedUntilAddress);
        long begin = Math.Max(from, _log.BeginAddress);
        CheckSegmentsPresent(committed);
        return new Walk(_log.Scan(begin, committed), begin, committed, _logDirectory);
    }

    /// <summary>
    /// Every segment file under the commit point exists (the whole committed log, even when a scan
    /// starts later, after a checkpoint: the pages it indexes live below that point), and the
    /// commit point is not past the end of the segment files (FASTER adopts damaged commit
    /// metadata as it reads it).
    /// </summary>
    private void CheckSegmentsPresent(long committed)
    {
        long logBegin = _log.BeginAddress;
        if (committed <= logBegin) return;
        long segmentSize = 1L << _segmentSizeBits;
        // Each segment under the commit point must exist and reach the commit point (or its own
        // end): a later file (the space reserve, a preallocated segment) must not stand in for it.
        for (long segment = logBegin >> _segmentSizeBits; segment <= (committed - 1) >> _segmentSizeBits; segment++)
        {
            long start = segment << _segmentSizeBits;
            string file = Path.Combine(_logDirectory, $"{DataLayout.SegmentBaseName}.{segment}");
            if (!File.Exists(file))
                throw new TmemCorruptionException(start,
                    $"Segment file {file} (log addresses from {start}) is missing, but the log is committed until address {committed}. Nothing was changed; restore the file or repair the directory with the offline recovery tool.");
            long needed = Math.Min(segmentSize, committed - start);
            long length = new FileInfo(file).Length;
            if (length < needed)
                throw new TmemCorruptionException(start + length,
                    $"Segment file {file} is {length} bytes, but the log is committed until address {committed}, which needs {needed} bytes of it (log addresses {start + length} to {start + needed} are missing): the file is truncated or the commit metadata is damaged. Nothing was changed; restore the file or repair the directory with the offline recovery tool.");
        }
    }

    /// <summary>
    /// One scan: FasterLog's iterator and where the next entry must start. Each entry is checked
    /// (<see cref="CheckContiguous"/>) while FASTER's epoch is held, then copied or visited, then
    /// released.
    /// </summary>
    private sealed unsafe class Walk(FasterLogScanIterator iterator, long begin, long committed, string logDirectory) : IDisposable
    {
        private long _next = begin;

        /// <summary>The next record, copied (FasterLog's <c>GetNext</c> does the same copy); false at the end.</summary>
        public bool TryCopyNext(out long address, out byte[] entry)
        {
            if (!TryNext(out byte* bytes, out int length, out address))
            {
                entry = [];
                return false;
            }
            try
            {
                _next = CheckContiguous(_next, address, length);
                entry = new ReadOnlySpan<byte>(bytes, length).ToArray();
            }
            finally
            {
                iterator.UnsafeRelease();
            }
            return true;
        }

        /// <summary>Visits every record in place; returns how many.</summary>
        public long VisitAll<TState>(EntryVisitor<TState> visit, TState state)
        {
            long records = 0;
            while (TryNext(out byte* entry, out int length, out long address))
            {
                try
                {
                    _next = CheckContiguous(_next, address, length);
                    visit(address, new ReadOnlySpan<byte>(entry, length), state);
                }
                finally
                {
                    iterator.UnsafeRelease();
                }
                records++;
            }
            return records;
        }

        /// <summary>The scan must end at the commit point (see <see cref="LogFraming.Reaches"/>).</summary>
        public void CheckReachedEnd()
        {
            if (!LogFraming.Reaches(_next, committed))
                throw new TmemCorruptionException(_next,
                    $"The log's records end at address {_next}, below its commit point {committed}: a segment file in {logDirectory} is truncated or zeroed. Nothing was changed; repair the directory with the offline recovery tool.");
        }

        public void Dispose() => iterator.Dispose();

        /// <summary>On true, FASTER's epoch is held until <see cref="FasterLogScanIterator.UnsafeRelease"/>.</summary>
        private bool TryNext(out byte* entry, out int length, out long address)
        {
            try
            {
                return iterator.UnsafeGetNext(out entry, out length, out address, out _);
            }
            catch (FasterException e)
            {
                throw new TmemCorruptionException(_next,
                    $"Reading the log at address {_next} failed ({e.Message}): the log below its commit point {committed} is damaged. Nothing was changed; repair the directory with the offline recovery tool.");
            }
        }

        /// <summary>
        /// The entry at <paramref name="address"/> must start where the previous one ended
        /// (<paramref name="expected"/>), or at the next page (<see cref="LogFraming.FollowsOn"/>:
        /// zeroed records inside a page would otherwise vanish silently). Returns where this entry ends.
        /// </summary>
        private long CheckContiguous(long expected, long address, int length)
        {
            if (!LogFraming.FollowsOn(expected, address))
                throw new TmemCorruptionException(expected,
                    $"The log's records jump from address {expected} to {address}: the bytes between them in {logDirectory} are zeroed or damaged, below the commit point. Nothing was changed; repair the directory with the offline recovery tool.");
            return address + LogFraming.EntrySizeOfRecord(length);
        }
    }
}
