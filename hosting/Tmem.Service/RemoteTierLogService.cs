using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Watches the remote tier's state (<see cref="TmemStore.RemoteTier"/>, judged once a second by its
/// client) and logs each change once: degraded or down as a warning with the last failure, healthy
/// again as information. Runs only with <c>Tmem:RemoteTier:Enabled</c>. docs/remote-tier.md.
/// </summary>
internal sealed partial class RemoteTierLogService(StoreHost host, IOptions<TmemOptions> storeOptions, ILogger<RemoteTierLogService> logger) : PeriodicService(host, logger)
{
    private RemoteTierState _last = RemoteTierState.Off;

    protected override TimeSpan? Interval => storeOptions.Value.RemoteTier is { Enabled: true } ? TimeSpan.FromSeconds(1) : null;

    protected override ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        var status = store.RemoteTier;
        if (status.State == _last) return ValueTask.CompletedTask;
        var previous = _last;
        _last = status.State;
        var remote = storeOptions.Value.RemoteTier;
        switch (status.State)
        {
            case RemoteTierState.Healthy:
                LogHealthy(remote.Endpoints, previous);
                break;
            case RemoteTierState.Degraded:
                LogDegraded(status.LastError, remote.RequestTimeoutMs);
                break;
            case RemoteTierState.Down:
                LogDown(remote.Endpoints, status.LastError);
                break;
        }
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote tier healthy on {Endpoints} (was {Previous}): evicted ephemeral pages go to the cluster")]
    private partial void LogHealthy(string? endpoints, RemoteTierState previous);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote tier degraded: {Error}. Gets of pages on the failing nodes miss within {TimeoutMs} ms (Tmem:RemoteTier:RequestTimeoutMs) and writes to them are dropped; the other nodes serve as usual. It resumes by itself when the nodes answer")]
    private partial void LogDegraded(string? error, int timeoutMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote tier down: no node of {Endpoints} answers ({Error}). Evicted ephemeral pages are dropped and gets of remote pages miss, as without the remote tier; it resumes by itself when a node answers")]
    private partial void LogDown(string? endpoints, string? error);
}
