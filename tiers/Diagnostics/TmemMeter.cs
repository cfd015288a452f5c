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

    private readonly Meter _meter = new(MeterName, "1.0");

    public TmemMeter(TmemStore store)
    {
        foreach (var (name, read) in TmemStats.Fields)
        {
            string unit = name.EndsWith("bytes", StringComparison.Ordinal) ? "By" : "{page}";
            if (TmemStats.MonotonicNames.Contains(name))
                _meter.CreateObservableCounter(name, () => read(store.GetStats()), unit);
            else
                _meter.CreateObservableUpDownCounter(name, () => read(store.GetStats()), unit);
        }
    }

    public void Dispose() => _meter.Dispose();
}
