using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Owns the store for the service's lifetime: opens it in <see cref="StartAsync"/> (before anything
/// serves) and disposes it in <see cref="StopAsync"/>.
/// </summary>
internal sealed partial class StoreHost(IOptions<TmemOptions> options, ILogger<StoreHost> logger) : IHostedService, IDisposable
{
    private TmemStore? _store;

    public TmemStore Store => _store ?? throw new InvalidOperationException("The store is not open yet.");

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        _store = TmemStore.Open(o);
        LogOpened(o.RamBudgetBytes, o.MaxPoolsPerClient, o.BucketsPerPool);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        LogClosed();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _store?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Store open: RAM budget {RamBudgetBytes} bytes, {MaxPoolsPerClient} pools per client, {BucketsPerPool} buckets per pool")]
    private partial void LogOpened(long ramBudgetBytes, int maxPoolsPerClient, int bucketsPerPool);

    [LoggerMessage(Level = LogLevel.Information, Message = "Store closed")]
    private partial void LogClosed();
}
