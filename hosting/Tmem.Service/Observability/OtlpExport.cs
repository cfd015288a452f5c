using System.Diagnostics.Tracing;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Tmem.Service.Observability;

/// <summary>
/// OTLP export of the <c>Tmem</c> meter, on when <c>Tmem:Service:OtlpEndpoint</c> or the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (<c>OTEL_EXPORTER_OTLP_METRICS_ENDPOINT</c>) is set. The
/// protocol is <c>Tmem:Service:OtlpProtocol</c>, else <c>OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL</c>,
/// else <c>grpc</c> for port 4317 and <c>http/protobuf</c> (the specification's default) for any
/// other; an HTTP endpoint given as a base gets <c>/v1/metrics</c> appended, as the specification
/// says. The resource names the service (<c>service.name</c> <c>tmem</c> unless
/// <c>OTEL_SERVICE_NAME</c>; <c>service.version</c>); <c>OTEL_RESOURCE_ATTRIBUTES</c> and
/// <c>OTEL_METRIC_EXPORT_INTERVAL</c> are honoured by the SDK. A failing export is logged as a
/// warning (<see cref="OtlpFailureLog"/>), not only to the SDK's own event source.
/// </summary>
internal static class OtlpExport
{
    public const string ServiceName = "tmem";

    /// <summary>Where and how to export, from the configuration (which holds the environment); null when export is off.</summary>
    public static (Uri Endpoint, OtlpExportProtocol Protocol)? Resolve(IConfiguration configuration)
    {
        string? own = configuration[$"{ServiceOptions.SectionName}:{nameof(ServiceOptions.OtlpEndpoint)}"];
        string? metrics = configuration["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"];
        string? general = configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        string? text = own is { Length: > 0 } ? own : metrics is { Length: > 0 } ? metrics : general is { Length: > 0 } ? general : null;
        if (text is null || !Uri.TryCreate(text, UriKind.Absolute, out var endpoint)) return null;
        string? protocolText = configuration[$"{ServiceOptions.SectionName}:{nameof(ServiceOptions.OtlpProtocol)}"] is { Length: > 0 } p ? p
            : configuration["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] is { Length: > 0 } mp ? mp
            : configuration["OTEL_EXPORTER_OTLP_PROTOCOL"];
        var protocol = protocolText switch
        {
            "grpc" => OtlpExportProtocol.Grpc,
            "http/protobuf" => OtlpExportProtocol.HttpProtobuf,
            _ => endpoint.Port == 4317 ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf,
        };
        bool signalSpecific = !(own is { Length: > 0 }) && metrics is { Length: > 0 };
        if (protocol == OtlpExportProtocol.HttpProtobuf && !signalSpecific && endpoint.AbsolutePath is "" or "/")
            endpoint = new Uri(endpoint, "v1/metrics");
        return (endpoint, protocol);
    }

    public static void Add(IServiceCollection services, IConfiguration configuration)
    {
        if (Resolve(configuration) is not { } target) return;
        services.AddSingleton<OtlpFailureLog>();
        services.AddHostedService(sp => sp.GetRequiredService<OtlpFailureLog>());
        services.AddSingleton(new OtlpTarget(target.Endpoint, target.Protocol));
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(
                serviceName: configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : ServiceName,
                serviceVersion: ServiceVersion.Text,
                autoGenerateServiceInstanceId: true))
            .WithMetrics(metrics => metrics
                .AddMeter("Tmem")
                .AddOtlpExporter(exporter =>
                {
                    exporter.Endpoint = target.Endpoint;
                    exporter.Protocol = target.Protocol;
                }));
    }
}

/// <summary>Where the metrics go (logged at start).</summary>
internal sealed record OtlpTarget(Uri Endpoint, OtlpExportProtocol Protocol);

/// <summary>
/// Turns the OTLP exporter's failure events (its EventSource, which nobody reads by default) into
/// a warning in the service's log: the first failure, then at most one a minute with the count
/// of failures in between, naming the endpoint, the protocol, and what to check.
/// </summary>
internal sealed partial class OtlpFailureLog(OtlpTarget target, ILogger<OtlpFailureLog> logger) : EventListener, IHostedService
{
    private const string SourceName = "OpenTelemetry-Exporter-OpenTelemetryProtocol";
    private readonly Lock _lock = new();
    private long _lastLogged;
    private bool _loggedOnce;
    private int _suppressed;
    private volatile bool _started;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _started = true;
        LogExporting(target.Endpoint, Protocol(target));
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == SourceName) EnableEvents(eventSource, EventLevel.Warning);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!_started || e.Level > EventLevel.Warning || target is null) return;
        string what = e.Message is { } format && e.Payload is { } payload
            ? SafeFormat(format, payload)
            : e.EventName ?? "export failed";
        int suppressed;
        lock (_lock)
        {
            long now = Environment.TickCount64;
            if (_loggedOnce && now - _lastLogged < 60_000)
            {
                _suppressed++;
                return;
            }
            _lastLogged = now;
            _loggedOnce = true;
            suppressed = _suppressed;
            _suppressed = 0;
        }
        LogExportFailed(target.Endpoint, Protocol(target), what, suppressed);
    }

    private static string Protocol(OtlpTarget target) => target.Protocol == OtlpExportProtocol.Grpc ? "grpc" : "http/protobuf";

    private static string SafeFormat(string format, IReadOnlyCollection<object?> payload)
    {
        try
        {
            return string.Format(System.Globalization.CultureInfo.InvariantCulture, format, payload.ToArray());
        }
        catch (FormatException)
        {
            return format;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Exporting the Tmem meter over OTLP to {Endpoint} ({Protocol})")]
    private partial void LogExporting(Uri endpoint, string protocol);

    [LoggerMessage(Level = LogLevel.Warning, Message = "OTLP export to {Endpoint} ({Protocol}) failed: {What} ({Suppressed} more failures since the last warning). Check that a collector listens there and speaks that protocol (4317 is usually grpc, 4318 http/protobuf; Tmem:Service:OtlpProtocol or OTEL_EXPORTER_OTLP_PROTOCOL)")]
    private partial void LogExportFailed(Uri endpoint, string protocol, string what, int suppressed);
}
