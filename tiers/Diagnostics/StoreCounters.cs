namespace Tmem.Diagnostics;

/// <summary>
/// The store's live counters (zcache's names where they fit). Monotonic counters and
/// gauges are plain fields updated with <see cref="Interlocked"/>; the hot read path (a
/// non-exclusive get) touches none of them, so readers on different buckets never share a
/// written cache line.
/// </summary>
internal sealed class StoreCounters
{
    public long FlushTotal;
    public long FlushFound;
    public long FlobjTotal;
    public long FlobjFound;
    public long FailedEphPuts;
    public long FailedPersPuts;
    public long CompressPoor;
    public long MeanCompressPoor;
    public long PersLimitRefused;
    public long EvictedEphPages;
    public long SlabCompactedPages;

    /// <summary>Background reclaim passes that ended with an exception (puts then evict for themselves).</summary>
    public long ReclaimFailures;

    // Gauges of what is stored now.
    public long ZeroFilledPages;
    public long EphPages;
    public long PersPages;
    public long EphZbytes;
    public long PersZbytes;
    public long PersSpilledPages;

    /// <summary>Bytes the live persistent pages' Put records take in the log (FasterLog entries, headers included).</summary>
    public long PersLogBytes;

    public long LogCompactions;
    public long LogCompactionCopiedBytes;
    public long LogTruncatedBytes;
    public long LogCompactionFailures;

    public long StorageFullRefused;

    // The remote tier (tiers/RemoteTier): levels, then counters.
    public long RemotePages;
    public long RemoteBytes;
    public long RemoteQueueBytes;
    public long RemoteWrites;
    public long RemoteWriteDrops;
    public long RemoteWriteFailures;
    public long RemoteHits;
    public long RemoteQueueHits;
    public long RemoteMisses;
    public long RemoteMismatches;
    public long RemoteTimeouts;
    public long RemoteFailures;
    public long RemoteEvictedPages;

    /// <summary>
    /// Sum of persistent pages' compressed lengths, each scaled to a 64 KiB page: the mean-size
    /// rule compares fractions of the page size, so pools of different page sizes mix fairly.
    /// </summary>
    public long PersZscaled;
}
