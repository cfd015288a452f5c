using System.Diagnostics.Metrics;

namespace Tmem.Diagnostics;

/// <summary>
/// Publishes every <see cref="TmemStats"/> counter on a <see cref="Meter"/> named <c>Tmem</c>
/// (visible to dotnet-counters and OpenTelemetry) under its snake_case name. Observable
/// instruments: nothing is added on the data path; values are read when a listener collects.
/// </summary>
internal sealed class TmemMeter : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Tmem";

    /// <summary>How long one snapshot serves the instruments: a collection reads them all at once.</summary>
    private const long SnapshotMs = 100;

    private readonly Meter _meter = new(MeterName, "1.0");
    private readonly TmemStore _store;
    private volatile Snap? _snapshot; // one reference, so a reader never sees half of an update

    public TmemMeter(TmemStore store)
    {
        _store = store;
        foreach (var (name, read) in TmemStats.Fields)
        {
            var (unit, description) = Describe(name);
            if (name is "storage_state" or "remote_state")
                _meter.CreateObservableGauge(name, () => read(Snapshot()), unit, description);
            else if (TmemStats.MonotonicNames.Contains(name))
                _meter.CreateObservableCounter(name, () => read(Snapshot()), unit, description);
            else
                _meter.CreateObservableUpDownCounter(name, () => read(Snapshot()), unit, description);
        }
    }

    /// <summary>Each counter's unit (UCUM, or an annotation in braces for a count of things) and description (docs/engine.md, "Counters").</summary>
    internal static (string Unit, string Description) Describe(string name) => name switch
    {
        "flush_total" => ("{call}", "flush-page calls"),
        "flush_found" => ("{call}", "flush-page calls that removed a page"),
        "flobj_total" => ("{call}", "flush-object calls"),
        "flobj_found" => ("{call}", "flush-object calls that found the object"),
        "failed_eph_puts" => ("{put}", "ephemeral puts refused, any reason"),
        "failed_pers_puts" => ("{put}", "persistent puts refused, any reason"),
        "compress_poor" => ("{put}", "puts refused for compressing over MaxZsize"),
        "mean_compress_poor" => ("{put}", "persistent puts refused by the mean-size rule (MaxMeanZsize)"),
        "pers_limit_refused" => ("{put}", "persistent puts refused by MaxPersistentPages or MaxPersistentBytes"),
        "zero_filled_pages" => ("{page}", "stored pages that are one 8-byte word repeated (no RAM bytes)"),
        "evicted_eph_pages" => ("{page}", "ephemeral pages evicted to make room"),
        "eph_pages" => ("{page}", "ephemeral pages stored"),
        "pers_pages" => ("{page}", "persistent pages stored"),
        "eph_zbytes" => ("By", "compressed bytes of the ephemeral pages stored"),
        "pers_zbytes" => ("By", "compressed bytes of the persistent pages stored"),
        "pers_spilled_pages" => ("{page}", "persistent pages with no RAM copy (read from the log)"),
        "ram_budget_bytes" => ("By", "the RAM tier's budget of slot bytes (RamBudgetBytes)"),
        "ram_slot_bytes" => ("By", "slot bytes in use in the RAM tier"),
        "ram_slab_bytes" => ("By", "slab bytes the RAM tier holds"),
        "slab_compacted_pages" => ("{page}", "pages moved out of sparse slabs by slab compaction"),
        "reclaim_failures" => ("{pass}", "background reclaim passes that ended with an error"),
        "pools" => ("{pool}", "live pools (a shared pool once)"),
        "log_bytes" => ("By", "the log from its begin to its tail"),
        "log_disk_bytes" => ("By", "the log's segment files on disk"),
        "log_live_bytes" => ("By", "log bytes the live pages' records take"),
        "log_reserve_bytes" => ("By", "the log's space reserve on disk: the segment file allocated ahead of the tail"),
        "log_compactions" => ("{compaction}", "log compactions finished"),
        "log_compaction_copied_bytes" => ("By", "bytes log compactions copied"),
        "log_truncated_bytes" => ("By", "log bytes log compactions released"),
        "log_compaction_failures" => ("{compaction}", "background log compactions that stopped on an error"),
        "storage_state" => ("1", "the data directory's storage: 0 healthy, 1 full, 2 failing"),
        "storage_full_refused" => ("{put}", "persistent puts refused with RejectedStorageFull"),
        "storage_failures" => ("{failure}", "failed attempts to write, sync or allocate the log's files (each retried)"),
        "not_durable" => ("{operation}", "operations answered TmemNotDurableException"),
        "remote_state" => ("1", "the remote tier: 0 off, 1 healthy, 2 degraded, 3 down"),
        "remote_pages" => ("{page}", "ephemeral pages only the remote tier holds (queued or written)"),
        "remote_bytes" => ("By", "bytes of the remote tier's values (headers included)"),
        "remote_queue_bytes" => ("By", "bytes in the remote tier's writeback queue"),
        "remote_writes" => ("{write}", "values written to the remote cluster"),
        "remote_write_drops" => ("{page}", "evicted ephemeral pages the remote tier did not take (queue full, capacity, down)"),
        "remote_write_failures" => ("{write}", "remote writes that failed or timed out (the page is lost)"),
        "remote_hits" => ("{get}", "gets answered from the remote cluster"),
        "remote_queue_hits" => ("{get}", "gets answered from the remote tier's writeback queue"),
        "remote_misses" => ("{get}", "gets of remote pages that missed"),
        "remote_mismatches" => ("{get}", "remote values that were not exactly the page asked for"),
        "remote_timeouts" => ("{request}", "remote requests over Tmem:RemoteTier:RequestTimeoutMs"),
        "remote_failures" => ("{request}", "remote requests that failed"),
        "remote_evicted_pages" => ("{page}", "remote pages eviction dropped (page limit, capacity)"),
        _ => (name.EndsWith("bytes", StringComparison.Ordinal) ? "By" : "1", name),
    };

    /// <summary>
    /// One <see cref="TmemStore.GetStats"/> for all the instruments of a collection, not one each
    /// (a durable store's snapshot lists the log's segment files).
    /// </summary>
    private TmemStats Snapshot()
    {
        long now = Environment.TickCount64;
        if (_snapshot is { } cached && now - cached.At < SnapshotMs) return cached.Stats;
        var stats = _store.GetStats();
        _snapshot = new Snap(stats, now);
        return stats;
    }

    private sealed record Snap(TmemStats Stats, long At);

    public void Dispose() => _meter.Dispose();
}
