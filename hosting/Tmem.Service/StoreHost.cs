using Tmem.Durability;
using Microsoft.Extensions.Options;
using Tmem.Service.Startup;

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

    /// <summary>
    /// Opens (recovers) the store; Program.cs calls it after the listeners are bound and before the
    /// host starts, so that a failure is told in one line with its exit code.
    /// </summary>
    /// <exception cref="StartupFailure">The data directory is in use (3), damaged (4) or unusable (6).</exception>
    public void Open()
    {
        if (_store is not null) return;
        LogStarting(ServiceVersion.Text, Environment.ProcessId, Environment.Version.ToString());
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
            return;
        }
        string directory = Path.GetFullPath(o.DataDirectory);
        string key = $"{TmemOptions.SectionName}:{nameof(TmemOptions.DataDirectory)}";
        if (IsLockHeld(directory))
            throw new StartupFailure(ExitCodes.DataDirectoryInUse, $"{key} {directory} is in use: another service or tool holds its lock file {Path.Combine(directory, DataDirectoryLock.FileName)} (it names the process id); stop that process, or give this service a data directory of its own.");
        try
        {
            _store = TmemStore.Open(o, out var report);
            LogRecovered(report.DataDirectory!, o.Durability, report.PoolsRecovered, report.PagesRecovered, report.RecordsReplayed, report.Elapsed.TotalSeconds, o.RamBudgetBytes);
        }
        catch (TmemCorruptionException e)
        {
            throw new StartupFailure(ExitCodes.DataDirectoryDamaged,
                $"{key} {directory} holds damaged data, so the store was not opened (nothing was changed): {e.Message}" + Environment.NewLine +
                $"Inspect it with `tmem-admin verify {directory}`, then repair it with `tmem-admin recover {directory}` (it backs up what it changes).", e);
        }
        catch (IOException e) when (IsLockHeld(directory))
        {
            throw new StartupFailure(ExitCodes.DataDirectoryInUse, $"{key} {directory} is in use: another service or tool holds its lock file; stop it first.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StartupFailure(ExitCodes.DataDirectoryUnusable, $"{key} {directory} cannot be opened: {e.Message}; check that the service's user may create and write files there and that its disk has room.", e);
        }
        catch (TmemOptionsMismatchException e)
        {
            throw new StartupFailure(ExitCodes.BadConfiguration, $"{key} {directory} was not opened (nothing was changed): {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw new StartupFailure(ExitCodes.DataDirectoryDamaged, $"{key} {directory} cannot be recovered: {e.Message}", e);
        }
    }

    /// <summary>Whether another process holds the directory's lock file (looked at without creating anything).</summary>
    private static bool IsLockHeld(string directory)
    {
        string path = Path.Combine(directory, DataDirectoryLock.FileName);
        if (!File.Exists(path)) return false;
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Open();
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Tmem service {Version} starting (pid {Pid}, .NET {Runtime})")]
    private partial void LogStarting(string version, int pid, string runtime);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Store open in memory only (no Tmem:DataDirectory): persistent pools will not survive a restart. RAM budget {RamBudgetBytes} bytes")]
    private partial void LogOpenedInMemory(long ramBudgetBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Store open on {DataDirectory} ({Durability}): recovered {Pools} persistent pools, {Pages} pages from {Records} log records in {Seconds:0.000}s; RAM budget {RamBudgetBytes} bytes")]
    private partial void LogRecovered(string dataDirectory, DurabilityMode durability, long pools, long pages, long records, double seconds, long ramBudgetBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Store closed")]
    private partial void LogClosed();
}
