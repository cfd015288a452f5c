namespace Tmem;

/// <summary>
/// The outcome of a put. Every put may fail (DESIGN.md section 3.1); when a put over an
/// existing page fails, the old page has been flushed too (put-put coherency).
/// </summary>
public enum PutStatus
{
    /// <summary>The page is stored.</summary>
    Stored = 0,

    /// <summary>The page compressed to more than <see cref="TmemOptions.MaxZsize"/> of the page size (counter <c>compress_poor</c>).</summary>
    RejectedPoorCompression = 1,

    /// <summary>
    /// Persistent pools only: the page compressed to more than <see cref="TmemOptions.MaxMeanZsize"/>
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
    /// <see cref="TmemOptions.MaxPersistentPages"/> or <see cref="TmemOptions.MaxPersistentBytes"/>
    /// (counter <c>pers_limit_refused</c>). Replacing an existing page is always allowed.
    /// </summary>
    RejectedPersistentLimit = 4,
}
