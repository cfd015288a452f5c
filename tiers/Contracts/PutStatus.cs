namespace Tmem;

/// <summary>
/// The outcome of a put. Every put may fail; when a put over an
/// existing page fails, the old page has been flushed too (put-put coherency).
/// </summary>
public enum PutStatus
{
    /// <summary>The page is stored.</summary>
    Stored = 0,

    /// <summary>The page compressed to more than the store's <c>MaxZsize</c> of the page size (counter <c>compress_poor</c>).</summary>
    RejectedPoorCompression = 1,

    /// <summary>
    /// Persistent pools only: the page compressed to more than the store's <c>MaxMeanZsize</c>
    /// of the page size while the mean compressed size of stored persistent pages is already above it
    /// (counter <c>mean_compress_poor</c>).
    /// </summary>
    RejectedMeanCompression = 2,

    /// <summary>
    /// No room: the RAM tier's byte budget or page limit is reached and nothing evictable is left
    /// (persistent pages are never evicted).
    /// </summary>
    RejectedCapacity = 3,

    /// <summary>
    /// Persistent pools only: a new page would take the store over
    /// the store's <c>MaxPersistentPages</c> or <c>MaxPersistentBytes</c>
    /// (counter <c>pers_limit_refused</c>). Replacing an existing page is always allowed.
    /// </summary>
    RejectedPersistentLimit = 4,

    /// <summary>
    /// Persistent pools only: the data directory's storage has no room for new pages now (the disk
    /// is full; the log keeps a reserve for flushes and refusals, which this refusal used), counter
    /// <c>storage_full_refused</c>. Like every refused put, it removed the old page at the handle,
    /// durably. Puts succeed again on their own once space is freed.
    /// </summary>
    RejectedStorageFull = 5,
}
