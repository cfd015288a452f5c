using Tmem.Diagnostics;

namespace Tmem.Translation.Admission;

/// <summary>
/// zcache's <c>zv_page_count_policy_percent</c>, as a count and as bytes: a new persistent page
/// that would take the store over <see cref="TmemOptions.MaxPersistentPages"/> or
/// <see cref="TmemOptions.MaxPersistentBytes"/> is refused
/// (<see cref="PutStatus.RejectedPersistentLimit"/>); replacing a page never is. One per store.
/// </summary>
internal sealed class PersistentLimitRule(long maxPages, long maxBytes, StoreCounters counters)
{
    /// <summary>Would one more persistent page of <paramref name="compressedLength"/> bytes pass a limit? (0 means no limit.)</summary>
    public bool Refuses(int compressedLength) =>
        (maxPages > 0 && Volatile.Read(ref counters.PersPages) >= maxPages)
        || (maxBytes > 0 && Volatile.Read(ref counters.PersZbytes) + compressedLength > maxBytes);
}
