using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Every <see cref="ServiceOptions.CompactionIntervalSeconds"/> (durable stores only): runs a log
/// compaction that is due and was not already started by the store itself after a commit, and
/// logs what compaction did since the last check, and any failure (which truncates nothing).
/// </summary>
internal sealed partial class CompactionService(StoreHost host, IOptions<ServiceOptions> options, ILogger<CompactionService> logger) : PeriodicService(host, logger)
{
    private TmemStats? _last;
    private Exception? _lastError;

    protected override TimeSpan? Interval => options.Value.CompactionIntervalSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null;

    protected override bool NeedsDurableStore => true;

    protected override void Starting(TmemStore store) => _last = store.GetStats();

    protected override async ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        try
        {
            // Off the timer's thread: a compaction scans the log and waits for commits.
            if (await Task.Run(() => store.CompactLog(cancellationToken: stoppingToken), stoppingToken).ConfigureAwait(false) is { } result)
                LogCompaction(result.TruncatedBytes, result.CopiedBytes, result.LogBytesAfter, result.Elapsed.TotalSeconds);
        }
        catch (Exception e) when (e is IOException or TmemCorruptionException or InvalidOperationException)
        {
            LogCompactionFailed(e);
        }
        var now = store.GetStats();
        if (_last is { } last && now.LogCompactions > last.LogCompactions)
            LogSince(now.LogCompactions - last.LogCompactions, now.LogTruncatedBytes - last.LogTruncatedBytes, now.LogBytes, now.LogDiskBytes, now.LogLiveBytes);
        if (store.LastLogCompactionError is { } error && !ReferenceEquals(error, _lastError)) LogCompactionFailed(error);
        _lastError = store.LastLogCompactionError;
        _last = now;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Log compacted: {Truncated} bytes released, {Copied} bytes of live records copied, log now {LogBytes} bytes, in {Seconds:0.000}s")]
    private partial void LogCompaction(long truncated, long copied, long logBytes, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Count} log compaction(s) since the last check released {Truncated} bytes; log {LogBytes} bytes ({DiskBytes} on disk) for {LiveBytes} live")]
    private partial void LogSince(long count, long truncated, long logBytes, long diskBytes, long liveBytes);

    [LoggerMessage(Level = LogLevel.Error, Message = "Log compaction failed; nothing was truncated, and the log keeps growing until it succeeds")]
    private partial void LogCompactionFailed(Exception exception);
}
