using Tmem.Diagnostics;

namespace Tmem.Translation.Admission;

/// <summary>
/// zcache's <c>zv_max_mean_zsize</c>, for persistent pages: a page compressing to more than
/// <see cref="TmemOptions.MaxMeanZsize"/> of its page size is refused
/// (<see cref="PutStatus.RejectedMeanCompression"/>) while the mean compressed fraction of the
/// stored persistent pages is already over it. The mean is taken as a fraction of each page's
/// own size (lengths scaled to a 64 KiB page), so that pools of different page sizes compare
/// fairly. One per store: it reads the store's counters.
/// </summary>
internal sealed class MeanCompressionRule(double maxMeanZsize, StoreCounters counters)
{
    private readonly long _maxMeanScaled = (long)(PoolOptions.MaxPageSize * maxMeanZsize);

    /// <summary>The compressed size over which a page of <paramref name="pageSize"/> bytes is subject to the rule.</summary>
    public int ThresholdBytes(int pageSize) => (int)(pageSize * maxMeanZsize);

    /// <summary>Is the mean compressed fraction of the stored persistent pages over the limit?</summary>
    public bool MeanOverLimit()
    {
        long pages = Volatile.Read(ref counters.PersPages);
        return pages > 0 && Volatile.Read(ref counters.PersZscaled) / pages > _maxMeanScaled;
    }
}
