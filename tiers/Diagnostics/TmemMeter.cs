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
            string unit = name.EndsWith("bytes", StringComparison.Ordinal) ? "By" : "{page}";
            if (TmemStats.MonotonicNames.Contains(name))
                _meter.CreateObservableCounter(name, () => read(Snapshot()), unit);
            else
                _meter.CreateObservableUpDownCounter(name, () => read(Snapshot()), unit);
        }
    }

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
