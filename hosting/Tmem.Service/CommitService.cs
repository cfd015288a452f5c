using System.Diagnostics;
using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// The service's side of the commit loop (durable stores). The store's log commits on its own
/// (Strict: group commits as acknowledgements wait; Relaxed: every <c>Tmem:CommitIntervalMs</c>),
/// and that loop is what keeps the durability promise, so this service does not replace it. Every
/// <see cref="ServiceOptions.CommitCheckIntervalMs"/> it asks for everything appended so far to
/// be committed (<see cref="TmemStore.WaitForCommitAsync"/>: in Strict mode this starts a commit
/// at once, so records nobody waits for, such as an exclusive get's removal, never sit
/// uncommitted long; in Relaxed mode it waits for the next interval commit), measures how long
/// that took (meter <c>commit_check_ms</c>) and warns when it took far longer than the interval:
/// in Relaxed mode that is the window a crash would lose.
/// </summary>
internal sealed partial class CommitService(StoreHost host, ServiceMetrics metrics, IOptions<TmemOptions> storeOptions, IOptions<ServiceOptions> options,
    ILogger<CommitService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        int interval = options.Value.CommitCheckIntervalMs;
        if (interval == 0 || storeOptions.Value.DataDirectory is null) return;
        // Far beyond what the loop promises, and well above a disk's fsync time.
        long warnMilliseconds = Math.Max(1000, 20L * storeOptions.Value.CommitIntervalMs);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(interval));
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            var store = host.Store;
            long uncommitted = store.UncommittedLogBytes;
            var clock = Stopwatch.StartNew();
            try
            {
                await store.WaitForCommitAsync().AsTask().WaitAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            long elapsed = clock.ElapsedMilliseconds;
            metrics.CommitChecked(elapsed);
            if (elapsed > warnMilliseconds)
                LogSlowCommit(elapsed, uncommitted, storeOptions.Value.Durability, storeOptions.Value.CommitIntervalMs);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The log took {Milliseconds} ms to commit {Bytes} appended bytes ({Durability}; Tmem:CommitIntervalMs is {IntervalMs}). In Relaxed mode a crash loses what is not committed; look for CPU starvation (Tmem:Service:MinThreadPoolThreads) or a slow disk")]
    private partial void LogSlowCommit(long milliseconds, long bytes, DurabilityMode durability, int intervalMs);
}
