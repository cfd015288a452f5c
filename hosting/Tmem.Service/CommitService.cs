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
    ILogger<CommitService> logger) : PeriodicService(host, logger)
{
    private StorageState _storage = StorageState.Healthy;

    protected override TimeSpan? Interval => options.Value.CommitCheckIntervalMs is > 0 and var ms ? TimeSpan.FromMilliseconds(ms) : null;

    protected override bool NeedsDurableStore => true;

    protected override async ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        // Far beyond what the loop promises, and well above a disk's fsync time.
        long warnMilliseconds = Math.Max(1000, 20L * storeOptions.Value.CommitIntervalMs);
        _storage = WatchStorage(store, _storage);
        long uncommitted = store.UncommittedLogBytes;
        var clock = Stopwatch.StartNew();
        try
        {
            await store.WaitForCommitAsync().AsTask().WaitAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (TmemNotDurableException)
        {
            return; // the storage is failing: said once by WatchStorage, not every tick
        }
        long elapsed = clock.ElapsedMilliseconds;
        metrics.CommitChecked(elapsed);
        if (uncommitted > 0) metrics.CommitTook(clock.Elapsed);
        if (elapsed > warnMilliseconds && _storage == StorageState.Healthy)
            LogSlowCommit(elapsed, uncommitted, storeOptions.Value.Durability, storeOptions.Value.CommitIntervalMs);
    }

    /// <summary>Logs each change of the store's storage state: a warning when it degrades, information when it recovers.</summary>
    private StorageState WatchStorage(TmemStore store, StorageState last)
    {
        var status = store.Storage;
        if (status.State == last) return last;
        switch (status.State)
        {
            case StorageState.Full:
                LogStorageFull(status.LastError);
                break;
            case StorageState.Failing:
                LogStorageFailing(status.LastError, storeOptions.Value.DurabilityTimeoutMs);
                break;
            default:
                LogStorageHealthy(last);
                break;
        }
        return status.State;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The log took {Milliseconds} ms to commit {Bytes} appended bytes ({Durability}; Tmem:CommitIntervalMs is {IntervalMs}). In Relaxed mode a crash loses what is not committed; look for CPU starvation (Tmem:Service:MinThreadPoolThreads) or a slow disk")]
    private partial void LogSlowCommit(long milliseconds, long bytes, DurabilityMode durability, int intervalMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Storage full: {Error}. Persistent puts are refused (RejectedStorageFull) until the disk has room for the next log segment; gets, flushes and ephemeral pools keep working. Free space on the data directory's file system; the store notices by itself")]
    private partial void LogStorageFull(string? error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Storage failing: {Error}. Writes are retried; operations that need durability answer NotDurable after {TimeoutMs} ms (Tmem:DurabilityTimeoutMs). Check the data directory's disk; the store recovers by itself once writes succeed")]
    private partial void LogStorageFailing(string? error, int timeoutMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Storage healthy again (was {Previous}); persistent puts are accepted")]
    private partial void LogStorageHealthy(StorageState previous);
}
