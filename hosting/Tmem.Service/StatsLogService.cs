using System.Text;
using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>Logs one line of the store's counters every <see cref="ServiceOptions.StatsLogIntervalSeconds"/>.</summary>
internal sealed partial class StatsLogService(StoreHost host, IOptions<ServiceOptions> options, ILogger<StatsLogService> logger) : PeriodicService(host, logger)
{
    protected override TimeSpan? Interval => options.Value.StatsLogIntervalSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null;

    protected override ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        LogStats(Format(store.GetStats()));
        return ValueTask.CompletedTask;
    }

    internal static string Format(TmemStats stats)
    {
        var line = new StringBuilder();
        foreach (var (name, value) in stats.ToList())
            line.Append(name).Append('=').Append(value).Append(' ');
        return line.ToString().TrimEnd();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "stats {Stats}")]
    private partial void LogStats(string stats);
}
