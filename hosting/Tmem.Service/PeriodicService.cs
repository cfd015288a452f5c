namespace Tmem.Service;

/// <summary>
/// The shape every background service of the store shares: one tick every
/// <see cref="Interval"/> (none when it is null: turned off in configuration), against the
/// store <see cref="StoreHost"/> opened before anything served, only for a durable store when
/// <see cref="NeedsDurableStore"/>. A tick that fails is logged and the next one runs: no
/// background loop stops the host. The store being closed under a tick (at shutdown) ends the loop.
/// </summary>
internal abstract partial class PeriodicService(StoreHost host, ILogger logger) : BackgroundService
{
    /// <summary>Time between ticks; null turns the service off.</summary>
    protected abstract TimeSpan? Interval { get; }

    /// <summary>Whether the service has work only on a store with a data directory.</summary>
    protected virtual bool NeedsDurableStore => false;

    /// <summary>One round of the service's work.</summary>
    protected abstract ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken);

    /// <summary>Before the first tick (a baseline to compare with, say).</summary>
    protected virtual void Starting(TmemStore store)
    {
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (Interval is not { } interval) return;
        var store = host.Store;
        if (NeedsDurableStore && !store.IsDurable) return;
        Starting(store);
        using var timer = new PeriodicTimer(interval);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await TickAsync(store, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (Exception e)
            {
                LogTickFailed(GetType().Name, e);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Service} failed a round of its work; it tries again at its next tick")]
    private partial void LogTickFailed(string service, Exception exception);
}
