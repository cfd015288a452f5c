using System.Collections;
using System.Text;
using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Logs the store's and the service's counters every <see cref="ServiceOptions.StatsLogIntervalSeconds"/>:
/// one line (<c>stats flush_total=0 ...</c>) for a person, and each counter as its own structured
/// property (under the JSON console formatter, <c>"State": {"pers_pages": 12, ...}</c>) for a log pipeline.
/// </summary>
internal sealed class StatsLogService(StoreHost host, ServiceMetrics metrics, IOptions<ServiceOptions> options, ILogger<StatsLogService> logger) : PeriodicService(host, logger)
{
    private static readonly EventId Stats = new(1, "Stats");

    protected override TimeSpan? Interval => options.Value.StatsLogIntervalSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null;

    protected override ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        var counters = new List<KeyValuePair<string, long>>(store.GetStats().ToList());
        metrics.AppendCounters(counters);
        logger.Log(LogLevel.Information, Stats, new Counters(counters), null, static (state, _) => state.ToString());
        return ValueTask.CompletedTask;
    }

    internal static string Format(IEnumerable<KeyValuePair<string, long>> counters)
    {
        var line = new StringBuilder("stats");
        foreach (var (name, value) in counters) line.Append(' ').Append(name).Append('=').Append(value);
        return line.ToString();
    }

    /// <summary>The log state: every counter a property, and the line as the message.</summary>
    private sealed class Counters(List<KeyValuePair<string, long>> counters) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public int Count => counters.Count + 1;

        public KeyValuePair<string, object?> this[int index] => index < counters.Count
            ? new(counters[index].Key, counters[index].Value)
            : new("{OriginalFormat}", ToString());

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
        {
            for (int i = 0; i < Count; i++) yield return this[i];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => Format(counters);
    }
}
