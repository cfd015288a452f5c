using System.Text;
using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>Logs one line of the store's counters every <see cref="ServiceOptions.StatsLogIntervalSeconds"/>.</summary>
internal sealed partial class StatsLogService(StoreHost host, IOptions<ServiceOptions> options, ILogger<StatsLogService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        int seconds = options.Value.StatsLogIntervalSeconds;
        if (seconds == 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(seconds));
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            LogStats(Format(host.Store.GetStats()));
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
