namespace Tmem;

/// <summary>
/// A snapshot of the store's counters. Each property has the snake_case name that the
/// <c>Tmem</c> meter, the service's stats request and the tools use (see <see cref="Names"/>);
/// zcache's names where they fit.
/// </summary>
public sealed record TmemStats
{
    // Declared first: static initializers run in text order and Names reads this.
    private static readonly (string Name, Func<TmemStats, long> Read)[] FieldList =
    [
        ("flush_total", s => s.FlushTotal),
        ("flush_found", s => s.FlushFound),
        ("flobj_total", s => s.FlobjTotal),
        ("flobj_found", s => s.FlobjFound),
        ("failed_eph_puts", s => s.FailedEphPuts),
        ("failed_pers_puts", s => s.FailedPersPuts),
        ("compress_poor", s => s.CompressPoor),
        ("mean_compress_poor", s => s.MeanCompressPoor),
        ("pers_limit_refused", s => s.PersLimitRefused),
        ("zero_filled_pages", s => s.ZeroFilledPages),
        ("evicted_eph_pages", s => s.EvictedEphPages),
        ("eph_pages", s => s.EphPages),
        ("pers_pages", s => s.PersPages),
        ("eph_zbytes", s => s.EphZbytes),
        ("pers_zbytes", s => s.PersZbytes),
        ("pers_spilled_pages", s => s.PersSpilledPages),
        ("ram_budget_bytes", s => s.RamBudgetBytes),
        ("ram_slot_bytes", s => s.RamSlotBytes),
        ("ram_slab_bytes", s => s.RamSlabBytes),
        ("slab_compacted_pages", s => s.SlabCompactedPages),
        ("reclaim_failures", s => s.ReclaimFailures),
        ("pools", s => s.Pools),
        ("log_bytes", s => s.LogBytes),
        ("log_disk_bytes", s => s.LogDiskBytes),
        ("log_reserve_bytes", s => s.LogReserveBytes),
        ("log_live_bytes", s => s.LogLiveBytes),
        ("log_compactions", s => s.LogCompactions),
        ("log_compaction_copied_bytes", s => s.LogCompactionCopiedBytes),
        ("log_truncated_bytes", s => s.LogTruncatedBytes),
        ("log_compaction_failures", s => s.LogCompactionFailures),
        ("storage_state", s => s.StorageState),
        ("storage_full_refused", s => s.StorageFullRefused),
        ("storage_failures", s => s.StorageFailures),
        ("not_durable", s => s.NotDurable),
        ("remote_state", s => s.RemoteState),
        ("remote_pages", s => s.RemotePages),
        ("remote_bytes", s => s.RemoteBytes),
        ("remote_queue_bytes", s => s.RemoteQueueBytes),
        ("remote_writes", s => s.RemoteWrites),
        ("remote_write_drops", s => s.RemoteWriteDrops),
        ("remote_write_failures", s => s.RemoteWriteFailures),
        ("remote_hits", s => s.RemoteHits),
        ("remote_queue_hits", s => s.RemoteQueueHits),
        ("remote_misses", s => s.RemoteMisses),
        ("remote_mismatches", s => s.RemoteMismatches),
        ("remote_timeouts", s => s.RemoteTimeouts),
        ("remote_failures", s => s.RemoteFailures),
        ("remote_evicted_pages", s => s.RemoteEvictedPages),
    ];

    /// <summary><c>flush_total</c>: flush-page calls.</summary>
    public long FlushTotal { get; init; }

    /// <summary><c>flush_found</c>: flush-page calls that removed a page.</summary>
    public long FlushFound { get; init; }

    /// <summary><c>flobj_total</c>: flush-object calls.</summary>
    public long FlobjTotal { get; init; }

    /// <summary><c>flobj_found</c>: flush-object calls that removed at least one page.</summary>
    public long FlobjFound { get; init; }

    /// <summary><c>failed_eph_puts</c>: ephemeral puts refused, for any reason.</summary>
    public long FailedEphPuts { get; init; }

    /// <summary><c>failed_pers_puts</c>: persistent puts refused, for any reason.</summary>
    public long FailedPersPuts { get; init; }

    /// <summary><c>compress_poor</c>: puts refused for compressing over <see cref="TmemOptions.MaxZsize"/>.</summary>
    public long CompressPoor { get; init; }

    /// <summary><c>mean_compress_poor</c>: persistent puts refused by the mean-size rule (<see cref="TmemOptions.MaxMeanZsize"/>).</summary>
    public long MeanCompressPoor { get; init; }

    /// <summary><c>pers_limit_refused</c>: persistent puts refused by <see cref="TmemOptions.MaxPersistentPages"/> or <see cref="TmemOptions.MaxPersistentBytes"/>.</summary>
    public long PersLimitRefused { get; init; }

    /// <summary><c>zero_filled_pages</c>: stored pages that are one 8-byte word repeated (zero or not); they take no RAM-tier bytes.</summary>
    public long ZeroFilledPages { get; init; }

    /// <summary><c>evicted_eph_pages</c>: ephemeral pages dropped to make room.</summary>
    public long EvictedEphPages { get; init; }

    /// <summary><c>eph_pages</c>: ephemeral pages stored now.</summary>
    public long EphPages { get; init; }

    /// <summary><c>pers_pages</c>: persistent pages stored now.</summary>
    public long PersPages { get; init; }

    /// <summary><c>eph_zbytes</c>: compressed bytes of the ephemeral pages stored now.</summary>
    public long EphZbytes { get; init; }

    /// <summary><c>pers_zbytes</c>: compressed bytes of the persistent pages stored now.</summary>
    public long PersZbytes { get; init; }

    /// <summary><c>pers_spilled_pages</c>: persistent pages whose RAM copy was dropped (or never made): they are read from the log.</summary>
    public long PersSpilledPages { get; init; }

    /// <summary><c>ram_budget_bytes</c>: <see cref="TmemOptions.RamBudgetBytes"/>.</summary>
    public long RamBudgetBytes { get; init; }

    /// <summary><c>ram_slot_bytes</c>: RAM-tier slot bytes in use (compressed sizes rounded up to their size class).</summary>
    public long RamSlotBytes { get; init; }

    /// <summary><c>ram_slab_bytes</c>: native bytes held in slabs (used slots, free slots and slack).</summary>
    public long RamSlabBytes { get; init; }

    /// <summary><c>slab_compacted_pages</c>: pages moved out of sparse slabs by compaction.</summary>
    public long SlabCompactedPages { get; init; }

    /// <summary><c>reclaim_failures</c>: background reclaim passes that ended with an error (puts then evict for themselves; nothing is lost).</summary>
    public long ReclaimFailures { get; init; }

    /// <summary><c>pools</c>: live pools (a shared pool counts once).</summary>
    public long Pools { get; init; }

    /// <summary><c>log_bytes</c>: the persistent log from its begin to its tail address (0 for a memory-only store).</summary>
    public long LogBytes { get; init; }

    /// <summary><c>log_disk_bytes</c>: bytes of the log's segment files on disk (the space reserve apart: <c>log_reserve_bytes</c>).</summary>
    public long LogDiskBytes { get; init; }

    /// <summary><c>log_reserve_bytes</c>: the log's space reserve on disk: the segment allocated ahead of the tail (not log data), so that a full disk is seen a segment early.</summary>
    public long LogReserveBytes { get; init; }

    /// <summary><c>log_live_bytes</c>: log bytes that the live persistent pages' records take; compaction keeps <c>log_bytes</c> near this.</summary>
    public long LogLiveBytes { get; init; }

    /// <summary><c>log_compactions</c>: log compactions finished (live records copied forward, the log truncated).</summary>
    public long LogCompactions { get; init; }

    /// <summary><c>log_compaction_copied_bytes</c>: log bytes compaction copied forward.</summary>
    public long LogCompactionCopiedBytes { get; init; }

    /// <summary><c>log_truncated_bytes</c>: log bytes compaction released (the begin address moved by this much in total).</summary>
    public long LogTruncatedBytes { get; init; }

    /// <summary><c>log_compaction_failures</c>: background compactions that stopped on an error (see <see cref="TmemStore.LastLogCompactionError"/>); nothing is truncated then.</summary>
    public long LogCompactionFailures { get; init; }

    /// <summary><c>storage_state</c>: the data directory's storage now, as a number: 0 healthy, 1 full, 2 failing (<see cref="Tmem.StorageState"/>).</summary>
    public long StorageState { get; init; }

    /// <summary><c>storage_full_refused</c>: persistent puts refused with <see cref="PutStatus.RejectedStorageFull"/> (storage full or failing).</summary>
    public long StorageFullRefused { get; init; }

    /// <summary><c>storage_failures</c>: failed attempts to write, sync or allocate the log's files (each retried; see <see cref="TmemStore.Storage"/>).</summary>
    public long StorageFailures { get; init; }

    /// <summary><c>not_durable</c>: operations answered <see cref="TmemNotDurableException"/> (the storage failed for longer than <c>DurabilityTimeoutMs</c>).</summary>
    public long NotDurable { get; init; }

    /// <summary><c>remote_state</c>: the remote tier now, as a number: 0 off, 1 healthy, 2 degraded, 3 down (<see cref="Tmem.RemoteTierState"/>).</summary>
    public long RemoteState { get; init; }

    /// <summary><c>remote_pages</c>: ephemeral pages only the remote tier holds (queued for writing or written); they count in <c>eph_pages</c> too.</summary>
    public long RemotePages { get; init; }

    /// <summary><c>remote_bytes</c>: bytes of those pages' remote values (64-byte header included), bounded by <see cref="RemoteTierOptions.CapacityBytes"/>.</summary>
    public long RemoteBytes { get; init; }

    /// <summary><c>remote_queue_bytes</c>: bytes in the writeback queue (queued or being written), bounded by <see cref="RemoteTierOptions.QueueBytes"/>.</summary>
    public long RemoteQueueBytes { get; init; }

    /// <summary><c>remote_writes</c>: evicted pages written to the cluster.</summary>
    public long RemoteWrites { get; init; }

    /// <summary><c>remote_write_drops</c>: evicted ephemeral pages the remote tier did not take (queue full, capacity reached, tier down): dropped, as without it.</summary>
    public long RemoteWriteDrops { get; init; }

    /// <summary><c>remote_write_failures</c>: writes that failed or timed out; the page is lost (its next get misses).</summary>
    public long RemoteWriteFailures { get; init; }

    /// <summary><c>remote_hits</c>: gets of remote pages answered from the cluster.</summary>
    public long RemoteHits { get; init; }

    /// <summary><c>remote_queue_hits</c>: gets of remote pages answered from the writeback queue (not written yet).</summary>
    public long RemoteQueueHits { get; init; }

    /// <summary><c>remote_misses</c>: gets of remote pages that missed: no value, a mismatch, a failure or a timeout.</summary>
    public long RemoteMisses { get; init; }

    /// <summary><c>remote_mismatches</c>: values that came back but were not exactly the page asked for (handle, version or checksum differ); each was a miss.</summary>
    public long RemoteMismatches { get; init; }

    /// <summary><c>remote_timeouts</c>: requests to the cluster that took longer than <see cref="RemoteTierOptions.RequestTimeoutMs"/>.</summary>
    public long RemoteTimeouts { get; init; }

    /// <summary><c>remote_failures</c>: requests to the cluster that failed (no connection, an error reply).</summary>
    public long RemoteFailures { get; init; }

    /// <summary><c>remote_evicted_pages</c>: remote pages eviction dropped (the page limit, or the capacity nearly reached); counted in <c>evicted_eph_pages</c> too.</summary>
    public long RemoteEvictedPages { get; init; }

    /// <summary>Log bytes on disk per live log byte (the space amplification compaction bounds); 0 when nothing is live.</summary>
    public double LogSpaceAmplification => LogLiveBytes == 0 ? 0 : (double)LogDiskBytes / LogLiveBytes;

    /// <summary>Slab bytes per compressed byte stored (1.0 is perfect packing); 0 when nothing is stored.</summary>
    public double RamBytesPerCompressedByte =>
        EphZbytes + PersZbytes == 0 ? 0 : (double)RamSlabBytes / (EphZbytes + PersZbytes);

    /// <summary>Every counter as (snake_case name, value), in a fixed order.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> ToList()
    {
        var list = new List<KeyValuePair<string, long>>(Names.Count);
        foreach (var (name, read) in Fields)
            list.Add(new(name, read(this)));
        return list;
    }

    /// <summary>The snake_case names, in the order of <see cref="ToList"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = Fields.Select(f => f.Name).ToArray();

    /// <summary>Names of the counters that only grow (the rest are levels).</summary>
    internal static IReadOnlySet<string> MonotonicNames { get; } = new HashSet<string>
    {
        "flush_total", "flush_found", "flobj_total", "flobj_found", "failed_eph_puts", "failed_pers_puts",
        "compress_poor", "mean_compress_poor", "pers_limit_refused", "evicted_eph_pages", "slab_compacted_pages",
        "log_compactions", "log_compaction_copied_bytes", "log_truncated_bytes", "log_compaction_failures",
        "storage_full_refused", "storage_failures", "not_durable",
        "remote_writes", "remote_write_drops", "remote_write_failures", "remote_hits", "remote_queue_hits", "remote_misses",
        "remote_mismatches", "remote_timeouts", "remote_failures", "remote_evicted_pages",
    };

    internal static IReadOnlyList<(string Name, Func<TmemStats, long> Read)> Fields => FieldList;
}
