namespace Tmem;

/// <summary>
/// The state of a durable store's storage (its data directory's disk), from the persistent log's
/// point of view (<see cref="TmemStore.Storage"/>). A memory-only store is always
/// <see cref="Healthy"/>. The store leaves every degraded state by itself once the disk allows.
/// </summary>
public enum StorageState
{
    /// <summary>Writes and syncs succeed and the log's space reserve (the next segment file) is allocated.</summary>
    Healthy = 0,

    /// <summary>
    /// The disk has no room for the log's next segment file. The log still has its reserve (the
    /// rest of the allocated segments), which it keeps for what frees space or refuses: flushes,
    /// pool destruction, and refusals of puts (<see cref="PutStatus.RejectedStorageFull"/>, which
    /// remove the old page durably). New persistent pages, new persistent pools, index checkpoints
    /// and log compaction wait until the segment can be allocated; the store retries every
    /// second. Gets, ephemeral pools and everything already durable keep working.
    /// </summary>
    Full = 1,

    /// <summary>
    /// Writes or syncs of the log's files fail (and are retried with back-off). Nothing new can be
    /// made durable: operations that need it wait up to that long and then answer
    /// <see cref="TmemNotDurableException"/>; their effect is in memory and in the log's buffer
    /// and becomes durable when the storage recovers (unless the store stops first).
    /// </summary>
    Failing = 2,
}

/// <summary>A snapshot of <see cref="TmemStore.Storage"/>.</summary>
/// <param name="State">Healthy, full or failing.</param>
/// <param name="Since">When the store entered <paramref name="State"/> (UTC; the open for a store that never changed state).</param>
/// <param name="LastError">What the last failure was (an errno and where), or null when healthy.</param>
public sealed record StorageStatus(StorageState State, DateTime Since, string? LastError);
