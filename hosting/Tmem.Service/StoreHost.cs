using Microsoft.Extensions.Options;
using Tmem.Recovery;

namespace Tmem.Service;

/// <summary>
/// Owns the store for the service's lifetime: opens it in <see cref="StartAsync"/> (before anything
/// serves; with a data directory this is recovery, and a failure stops the start) and disposes it
/// in <see cref="StopAsync"/> (which commits the log).
/// </summary>
internal sealed partial class StoreHost(IOptions<TmemOptions> options, IOptions<ServiceOptions> serviceOptions, ILogger<StoreHost> logger) : IHostedService, IDisposable
{
    private TmemStore? _store;
    private volatile bool _closed;

    public TmemStore Store => _store ?? throw new InvalidOperationException("The store is not open yet.");

    public bool IsOpen => _store is not null && !_closed;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // FASTER completes log writes on pool threads: with every pool thread busy serving
        // requests, commits stall until the pool grows (see tests/Tmem.CrashHost).
        int minThreads = serviceOptions.Value.MinThreadPoolThreads;
        ThreadPool.GetMinThreads(out int worker, out int io);
        ThreadPool.SetMinThreads(Math.Max(worker, minThreads), Math.Max(io, minThreads));
        var o = options.Value;
        if (o.DataDirectory is null)
        {
            _store = TmemStore.Open(o);
            LogOpenedInMemory(o.RamBudgetBytes);
        }
        else
        {
            _store = DurableStore.Open(o, out var report);
            LogRecovered(report.DataDirectory, o.Durability, report.PoolsRecovered, report.PagesRecovered, report.RecordsReplayed, report.Elapsed.TotalSeconds, o.RamBudgetBytes);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        // Disposing a durable store writes an index checkpoint and commits the log.
        Dispose();
        LogClosed();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _closed = true;
        _store?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Store open in memory only (no Tmem:DataDirectory): persistent pools will not survive a restart. RAM budget {RamBudgetBytes} bytes")]
    private partial void LogOpenedInMemory(long ramBudgetBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Store open on {DataDirectory} ({Durability}): recovered {Pools} persistent pools, {Pages} pages from {Records} log records in {Seconds:0.000}s; RAM budget {RamBudgetBytes} bytes")]
    private partial void LogRecovered(string dataDirectory, DurabilityMode durability, long pools, long pages, long records, double seconds, long ramBudgetBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Store closed")]
    private partial void LogClosed();
}
