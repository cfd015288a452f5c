using System.Globalization;
using Microsoft.Extensions.Hosting.Systemd;
using Tmem.Service.Sessions;

namespace Tmem.Service;

/// <summary>
/// Feeds systemd's watchdog (<c>WatchdogSec=</c> in the unit: systemd sets <c>WATCHDOG_USEC</c>)
/// every half interval, but only while the store is healthy: a store whose storage is full or
/// failing (<see cref="TmemStore.Storage"/>) cannot make persistent pages durable, so the
/// watchdog is left to expire and systemd restarts the service (<c>Restart=on-failure</c>), which
/// is what an operator would do for a failing disk. A full disk is treated the same way (the lead's
/// rule: no feeding while the store cannot write); the service itself would recover once space is
/// freed, so a unit that prefers to wait it out sets a <c>WatchdogSec</c> longer than the outage
/// it tolerates. Each round also sends <c>STATUS=</c> (connections, storage), shown by
/// <c>systemctl status</c>. Off when systemd asked for no watchdog.
/// </summary>
internal sealed partial class WatchdogService(StoreHost host, ISystemdNotifier notifier, ConnectionGovernor governor, ILogger<WatchdogService> logger)
    : PeriodicService(host, logger)
{
    private bool _starving;

    protected override TimeSpan? Interval => WatchdogInterval(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), Environment.GetEnvironmentVariable("WATCHDOG_PID"), notifier.IsEnabled);

    /// <summary>Half of systemd's watchdog timeout, when it asked this process for one.</summary>
    internal static TimeSpan? WatchdogInterval(string? usec, string? pid, bool notifyEnabled)
    {
        if (!notifyEnabled || !long.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out long micros) || micros <= 0) return null;
        if (pid is { Length: > 0 } && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture)) return null;
        return TimeSpan.FromMicroseconds(micros / 2.0);
    }

    /// <summary>Whether the watchdog may be fed: the store is open and its storage healthy.</summary>
    internal static bool Healthy(StorageState state) => state == StorageState.Healthy;

    protected override ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        var storage = store.Storage;
        notifier.Notify(new ServiceState($"STATUS=serving {governor.Authenticated} connection(s); storage {storage.State.ToString().ToLowerInvariant()}"));
        if (Healthy(storage.State))
        {
            notifier.Notify(new ServiceState("WATCHDOG=1"));
            if (_starving) LogFedAgain();
            _starving = false;
        }
        else if (!_starving)
        {
            _starving = true;
            LogNotFed(storage.State, storage.LastError);
        }
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Not feeding the systemd watchdog: storage is {State} ({Error}); systemd restarts the service when WatchdogSec runs out unless the storage recovers first")]
    private partial void LogNotFed(StorageState state, string? error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Storage healthy: feeding the systemd watchdog again")]
    private partial void LogFedAgain();
}
