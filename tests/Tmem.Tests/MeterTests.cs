using System.Diagnostics.Metrics;

namespace Tmem.Tests;

/// <summary>The store's meter: every counter published with a unit that fits what it counts, and a description.</summary>
[Trait("Kind", "Unit")]
public sealed class MeterTests
{
    [Fact]
    public void EveryStoreInstrument_HasAUnitAndADescription_PagesArePagesAndPoolsPools()
    {
        var seen = new Dictionary<string, Instrument>();
        using var listener = new MeterListener();
        using var store = Stores.Open();
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (instrument.Meter.Name == "Tmem") lock (seen) seen[instrument.Name] = instrument;
        };
        listener.Start();
        foreach (var name in TmemStats.Names)
        {
            Assert.True(seen.TryGetValue(name, out var instrument), $"{name} is not on the meter");
            Assert.False(string.IsNullOrEmpty(instrument!.Description), $"{name} has no description");
            Assert.NotEqual(name, instrument.Description);
            Assert.False(string.IsNullOrEmpty(instrument.Unit), $"{name} has no unit");
            if (name.EndsWith("bytes", StringComparison.Ordinal)) Assert.Equal("By", instrument.Unit);
            if (name.EndsWith("pages", StringComparison.Ordinal)) Assert.Equal("{page}", instrument.Unit);
        }
        Assert.Equal("{pool}", seen["pools"].Unit);
        Assert.Equal("{compaction}", seen["log_compactions"].Unit);
        Assert.Equal("{put}", seen["failed_pers_puts"].Unit);
        Assert.IsType<ObservableGauge<long>>(seen["storage_state"]);
    }
}
