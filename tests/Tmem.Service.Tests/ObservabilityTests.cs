using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Tmem.Service.Tests;

/// <summary>
/// Observability as the conventions have it, on the real service: OTLP export configured by the
/// standard OTEL_* variables to a real HTTP listener that decodes the protobuf (resource
/// service.name/service.version, instruments with units and descriptions, the request-latency
/// histogram), a failing export logged as a warning, and the stats line as structured fields.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class ObservabilityTests
{
    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>What a collector saw in one export request (ExportMetricsServiceRequest).</summary>
    private sealed record Export(Dictionary<string, string> Resource, Dictionary<string, (string Description, string Unit)> Metrics);

    [Fact]
    public async Task OtlpExport_ByTheStandardVariables_ToAnHttpCollector_CarriesTheServiceAndInstrumentsWithUnits()
    {
        int port = FreePort();
        using var collector = new HttpListener();
        collector.Prefixes.Add($"http://127.0.0.1:{port}/");
        collector.Start();
        await using var service = new ServiceProcess("--Tmem:DataDirectory=");
        service.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{port}"; // no protocol given: http/protobuf, /v1/metrics
        service.Environment["OTEL_METRIC_EXPORT_INTERVAL"] = "300";
        await service.StartAsync();
        // Logged by a hosted service that starts after the listeners, so it may follow the line StartAsync waits for.
        string exporting = $"Exporting the Tmem meter over OTLP to http://127.0.0.1:{port}/v1/metrics (http/protobuf)";
        Assert.True(await service.WaitForOutputAsync(exporting, TimeSpan.FromSeconds(30)), $"no \"{exporting}\" in:\n{service.Output}");
        await using (var alice = await service.ConnectAsync())
        {
            int pool = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
            for (uint i = 0; i < 10; i++) await alice.PutAsync(pool, new ObjectId(1), i, Pages.Make("otlp", (int)i));
        }

        Export? seen = null;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (seen is null || !seen.Metrics.ContainsKey("request_duration"))
        {
            var context = await collector.GetContextAsync().WaitAsync(deadline.Token);
            Assert.Equal("POST", context.Request.HttpMethod);
            Assert.Equal("/v1/metrics", context.Request.Url!.AbsolutePath);
            Assert.Equal("application/x-protobuf", context.Request.ContentType);
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            seen = Decode(body.ToArray());
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.Close();
        }
        Assert.Equal("tmem", seen.Resource["service.name"]);
        Assert.Matches(@"^\d+\.\d+\.\d+", seen.Resource["service.version"]);
        Assert.True(seen.Resource.ContainsKey("service.instance.id"));
        Assert.Equal("{page}", seen.Metrics["pers_pages"].Unit);
        Assert.Equal("{pool}", seen.Metrics["pools"].Unit);
        Assert.Equal("{compaction}", seen.Metrics["log_compactions"].Unit);
        Assert.Equal("By", seen.Metrics["ram_slot_bytes"].Unit);
        Assert.Equal("{connection}", seen.Metrics["connections"].Unit);
        Assert.Equal("s", seen.Metrics["request_duration"].Unit);
        Assert.All(seen.Metrics, m => Assert.False(string.IsNullOrEmpty(m.Value.Description), $"{m.Key} has no description"));
    }

    [Fact]
    public async Task OtlpExport_ThatFails_IsAWarningInTheServiceLog_NamingEndpointAndProtocol()
    {
        int port = FreePort(); // nothing listens there
        await using var service = new ServiceProcess("--Tmem:DataDirectory=", $"--Tmem:Service:OtlpEndpoint=http://127.0.0.1:{port}", "--Tmem:Service:OtlpProtocol=grpc");
        service.Environment["OTEL_METRIC_EXPORT_INTERVAL"] = "300";
        await service.StartAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!service.Output.Contains("OTLP export to", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(50);
        Assert.Contains($"OTLP export to http://127.0.0.1:{port}/ (grpc) failed", service.Output);
    }

    [Fact]
    public async Task TheStatsLine_UnderTheJsonConsoleFormatter_HasEachCounterAsItsOwnField()
    {
        await using var service = new ServiceProcess("--Tmem:DataDirectory=", "--Logging:Console:FormatterName=json", "--Tmem:Service:StatsLogIntervalSeconds=1");
        await service.StartAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string? line = null;
        while (line is null && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            line = service.Output.Split('\n').FirstOrDefault(l => l.Contains("\"Category\":\"Tmem.Service.StatsLogService\"", StringComparison.Ordinal));
            if (line is null) await Task.Delay(50);
        }
        Assert.NotNull(line);
        using var document = JsonDocument.Parse(line);
        var state = document.RootElement.GetProperty("State");
        Assert.Equal(JsonValueKind.Number, state.GetProperty("pers_pages").ValueKind);
        Assert.Equal(0, state.GetProperty("pools").GetInt64());
        Assert.Equal(268435456, state.GetProperty("ram_budget_bytes").GetInt64());
        Assert.Equal(JsonValueKind.Number, state.GetProperty("connections").ValueKind);
        Assert.StartsWith("stats flush_total=0 ", document.RootElement.GetProperty("Message").GetString());
    }

    /// <summary>The parts of an OTLP ExportMetricsServiceRequest this test looks at, read with a minimal protobuf decoder.</summary>
    private static Export Decode(byte[] request)
    {
        var resource = new Dictionary<string, string>(StringComparer.Ordinal);
        var metrics = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        foreach (var rm in Fields(request).Where(f => f.Number == 1))              // resource_metrics
        {
            foreach (var r in Fields(rm.Bytes).Where(f => f.Number == 1))          // resource
                foreach (var kv in Fields(r.Bytes).Where(f => f.Number == 1))      // attributes
                {
                    var parts = Fields(kv.Bytes).ToList();
                    string key = Text(parts.First(p => p.Number == 1).Bytes);
                    var value = parts.FirstOrDefault(p => p.Number == 2);
                    resource[key] = value.Bytes is null ? "" : Fields(value.Bytes).Where(p => p.Number == 1).Select(p => Text(p.Bytes)).FirstOrDefault() ?? "";
                }
            foreach (var sm in Fields(rm.Bytes).Where(f => f.Number == 2))         // scope_metrics
                foreach (var m in Fields(sm.Bytes).Where(f => f.Number == 2))      // metrics
                {
                    var parts = Fields(m.Bytes).ToList();
                    string Get(int n) => parts.FirstOrDefault(p => p.Number == n).Bytes is { } b ? Text(b) : "";
                    metrics[Get(1)] = (Get(2), Get(3));
                }
        }
        return new Export(resource, metrics);
    }

    private static string Text(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    /// <summary>A protobuf message's fields: number and, for length-delimited ones, the bytes (others are skipped over).</summary>
    private static IEnumerable<(int Number, byte[] Bytes)> Fields(byte[] message)
    {
        int at = 0;
        while (at < message.Length)
        {
            ulong tag = Varint(message, ref at);
            int number = (int)(tag >> 3), wire = (int)(tag & 7);
            switch (wire)
            {
                case 0:
                    Varint(message, ref at);
                    break;
                case 1:
                    at += 8;
                    break;
                case 2:
                    int length = (int)Varint(message, ref at);
                    yield return (number, message.AsSpan(at, length).ToArray());
                    at += length;
                    break;
                case 5:
                    at += 4;
                    break;
                default:
                    throw new InvalidDataException($"protobuf wire type {wire} at {at}");
            }
        }
    }

    private static ulong Varint(byte[] data, ref int at)
    {
        ulong value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = data[at++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return value;
        }
    }
}
