using System.Diagnostics.Metrics;
using Tmem.Service.Sessions;

namespace Tmem.Service;

/// <summary>
/// The service's own instruments, on a meter also named <c>Tmem</c> (beside the store's
/// counters), so <c>dotnet-counters monitor -n Tmem.Service --counters Tmem</c> shows both. The
/// same names and values follow the store's counters in a Stats response.
/// </summary>
internal sealed class ServiceMetrics : IDisposable
{
    private readonly Meter _meter = new("Tmem", "1.0");
    private readonly StoreHost _host;
    private readonly ConnectionGovernor _governor;
    private readonly ResponseBudget _budget;
    private long _requests;
    private long _refused;
    private long _handshakeTimeouts;
    private long _idleTimeouts;
    private long _commitCheckMilliseconds;
    private readonly Histogram<double> _requestDuration;
    private readonly Histogram<double> _commitDuration;
    private static readonly KeyValuePair<string, object?>[] OpcodeTags = Enumerable.Range(0, 256)
        .Select(b => new KeyValuePair<string, object?>("opcode", Enum.IsDefined((Tmem.Protocol.Opcode)b) ? ((Tmem.Protocol.Opcode)b).ToString() : "unknown")).ToArray();

    public ServiceMetrics(StoreHost host, ConnectionGovernor governor, ResponseBudget budget)
    {
        _host = host;
        _governor = governor;
        _budget = budget;
        _meter.CreateObservableUpDownCounter("connections", () => (long)governor.Authenticated, "{connection}", "authenticated client connections open");
        _meter.CreateObservableUpDownCounter("connections_unauthenticated", () => (long)governor.Unauthenticated, "{connection}", "connections open that have not completed their handshake");
        _meter.CreateObservableCounter("connections_refused", () => governor.Refused, "{connection}", "handshakes refused because MaxConnections were authenticated");
        _meter.CreateObservableCounter("connections_evicted", () => governor.Evicted, "{connection}", "unauthenticated connections closed to make room for newer ones (MaxUnauthenticatedConnections)");
        _meter.CreateObservableCounter("handshake_timeouts", () => Volatile.Read(ref _handshakeTimeouts), "{connection}", "connections closed for not completing their handshake in HandshakeTimeoutSeconds");
        _meter.CreateObservableCounter("idle_timeouts", () => Volatile.Read(ref _idleTimeouts), "{connection}", "connections closed after IdleTimeoutSeconds without a request");
        _meter.CreateObservableCounter("requests", () => Volatile.Read(ref _requests), "{request}", "requests received");
        _meter.CreateObservableCounter("requests_refused", () => Volatile.Read(ref _refused), "{request}", "requests answered with an error status");
        _meter.CreateObservableUpDownCounter("queued_response_bytes", () => budget.Queued, "By", "response bytes queued for clients, all connections (bounded by MaxQueuedResponseBytes)");
        _meter.CreateObservableCounter("reads_paused", () => budget.Pauses, "{pause}", "times a connection stopped reading because queued_response_bytes was over MaxQueuedResponseBytes");
        _meter.CreateObservableUpDownCounter("log_uncommitted_bytes", () => host.IsOpen ? host.Store.UncommittedLogBytes : 0, "By", "log bytes appended and not yet committed");
        _meter.CreateObservableGauge("commit_check_ms", () => Volatile.Read(ref _commitCheckMilliseconds), "ms", "how long the last commit check waited for the log to commit what was appended");
        _requestDuration = _meter.CreateHistogram<double>("request_duration", "s", "time from a request's arrival to its answer being queued, by opcode (a persistent put's includes its wait for the log's commit)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
        _commitDuration = _meter.CreateHistogram<double>("commit_duration", "s", "how long the log took to commit what was appended, measured by each commit check that found appended records",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
    }

    private readonly long[] _requestsByOpcode = new long[256];

    /// <summary>A request with <paramref name="opcode"/> (byte 4 of its frame) was received.</summary>
    public void RequestStarted(byte opcode)
    {
        Interlocked.Increment(ref _requests);
        Interlocked.Increment(ref _requestsByOpcode[opcode]);
    }

    /// <summary>A request of another front end was received (NBD, whose commands <c>NbdMetrics</c> counts by command).</summary>
    public void RequestStarted() => Interlocked.Increment(ref _requests);

    /// <summary>Requests received with this opcode byte.</summary>
    public long RequestsOf(byte opcode) => Volatile.Read(ref _requestsByOpcode[opcode]);

    public void RequestRefused() => Interlocked.Increment(ref _refused);

    public void HandshakeTimedOut() => Interlocked.Increment(ref _handshakeTimeouts);

    public void IdleTimedOut() => Interlocked.Increment(ref _idleTimeouts);

    public void CommitChecked(long milliseconds) => Volatile.Write(ref _commitCheckMilliseconds, milliseconds);

    /// <summary>A commit check waited <paramref name="elapsed"/> for appended records to be committed.</summary>
    public void CommitTook(TimeSpan elapsed) => _commitDuration.Record(elapsed.TotalSeconds);

    /// <summary>A request with <paramref name="opcode"/> was answered <paramref name="elapsedTicks"/> (Stopwatch ticks) after it arrived.</summary>
    public void RequestAnswered(byte opcode, long elapsedTicks)
    {
        if (_requestDuration.Enabled) _requestDuration.Record(elapsedTicks / (double)System.Diagnostics.Stopwatch.Frequency, OpcodeTags[opcode]);
    }

    /// <summary>The service's counters (as on the meter), after the store's in a Stats response.</summary>
    public void AppendCounters(List<KeyValuePair<string, long>> list)
    {
        list.Add(new("connections", _governor.Authenticated));
        list.Add(new("connections_unauthenticated", _governor.Unauthenticated));
        list.Add(new("connections_refused", _governor.Refused));
        list.Add(new("connections_evicted", _governor.Evicted));
        list.Add(new("handshake_timeouts", Volatile.Read(ref _handshakeTimeouts)));
        list.Add(new("idle_timeouts", Volatile.Read(ref _idleTimeouts)));
        list.Add(new("requests", Volatile.Read(ref _requests)));
        list.Add(new("requests_refused", Volatile.Read(ref _refused)));
        list.Add(new("queued_response_bytes", _budget.Queued));
        list.Add(new("reads_paused", _budget.Pauses));
        list.Add(new("log_uncommitted_bytes", _host.IsOpen ? _host.Store.UncommittedLogBytes : 0));
        list.Add(new("commit_check_ms", Volatile.Read(ref _commitCheckMilliseconds)));
    }

    public void Dispose() => _meter.Dispose();
}
