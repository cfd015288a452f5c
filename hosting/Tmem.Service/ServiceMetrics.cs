using System.Diagnostics.Metrics;

namespace Tmem.Service;

/// <summary>
/// The service's own instruments, on a meter also named <c>Tmem</c> (beside the store's
/// counters), so <c>dotnet-counters monitor -n Tmem.Service --counters Tmem</c> shows both.
/// </summary>
internal sealed class ServiceMetrics : IDisposable
{
    private readonly Meter _meter = new("Tmem", "1.0");
    private long _connections;
    private long _requests;
    private long _refused;
    private long _commitCheckMilliseconds;

    public ServiceMetrics(StoreHost host)
    {
        _meter.CreateObservableUpDownCounter("connections", () => Volatile.Read(ref _connections), "{connection}", "open client connections");
        _meter.CreateObservableCounter("requests", () => Volatile.Read(ref _requests), "{request}", "requests received");
        _meter.CreateObservableCounter("requests_refused", () => Volatile.Read(ref _refused), "{request}", "requests answered with an error status");
        _meter.CreateObservableUpDownCounter("log_uncommitted_bytes", () => host.IsOpen ? host.Store.UncommittedLogBytes : 0, "By", "log bytes appended and not yet committed");
        _meter.CreateObservableGauge("commit_check_ms", () => Volatile.Read(ref _commitCheckMilliseconds), "ms", "how long the last commit check waited for the log to commit what was appended");
    }

    public void ConnectionOpened() => Interlocked.Increment(ref _connections);

    public void ConnectionClosed() => Interlocked.Decrement(ref _connections);

    public void RequestStarted() => Interlocked.Increment(ref _requests);

    public void RequestRefused() => Interlocked.Increment(ref _refused);

    public void CommitChecked(long milliseconds) => Volatile.Write(ref _commitCheckMilliseconds, milliseconds);

    public long Connections => Volatile.Read(ref _connections);

    public void Dispose() => _meter.Dispose();
}
