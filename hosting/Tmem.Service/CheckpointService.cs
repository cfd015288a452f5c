using System.Diagnostics;
using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Writes an index checkpoint every <see cref="ServiceOptions.CheckpointIntervalSeconds"/> (durable
/// stores only), so that a restart after a crash replays only the log written since.
/// </summary>
internal sealed partial class CheckpointService(StoreHost host, IOptions<ServiceOptions> options, ILogger<CheckpointService> logger) : PeriodicService(host, logger)
{
    protected override TimeSpan? Interval => options.Value.CheckpointIntervalSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null;

    protected override bool NeedsDurableStore => true;

    protected override async ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            // Off the timer's thread: a checkpoint blocks while it copies the index and waits for a commit.
            long pages = await Task.Run(store.Checkpoint, stoppingToken).ConfigureAwait(false);
            LogCheckpoint(pages, clock.Elapsed.TotalSeconds);
        }
        catch (IOException e)
        {
            // The log stays authoritative; the next checkpoint (or shutdown) tries again.
            LogCheckpointFailed(e);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Checkpoint written: {Pages} persistent pages in {Seconds:0.000}s")]
    private partial void LogCheckpoint(long pages, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpoint failed; recovery will replay more of the log until one succeeds")]
    private partial void LogCheckpointFailed(Exception exception);
}
