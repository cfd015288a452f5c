using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Tmem.Client;

namespace Tmem.Cli;

/// <summary>
/// <c>tmem bench</c>: load on a running service, as <c>redis-benchmark</c> gives a Redis: C
/// connections, each with P requests in flight, N puts then N gets of pages from a source, in a
/// pool of its own (destroyed after); prints each test's throughput and latency percentiles.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var connections = new Option<int>("--connections", "-c") { Description = "Connections (as the same client).", DefaultValueFactory = _ => 4 };
        var pipeline = new Option<int>("--pipeline", "-P") { Description = "Requests in flight per connection.", DefaultValueFactory = _ => 16 };
        var operations = new Option<int>("--operations", "-n") { Description = "Operations per test (puts, then as many gets).", DefaultValueFactory = _ => 100_000 };
        var pages = new Option<string>("--pages") { Description = "Page source: text (compressible, default), zeros (same-filled), random (incompressible: refused), runtime (the .NET runtime's assemblies), or file:PATH (pages cut from a file).", DefaultValueFactory = _ => "text" };
        var pool = new Option<PoolKind>("--pool") { Description = "Pool kind: Ephemeral (default) or Persistent (puts wait for the log's commit in Strict mode).", DefaultValueFactory = _ => PoolKind.Ephemeral };
        var tests = new Option<string[]>("--tests", "-t") { Description = "Tests to run: put, get, ping (default put and get).", AllowMultipleArgumentsPerToken = true };
        var command = new Command("bench", "Load a running service as redis-benchmark does: throughput and latency percentiles per test.")
        {
            connections, pipeline, operations, pages, pool, tests,
        };
        command.SetAction((r, ct) =>
        {
            byte[][] source = [];
            var wanted = r.GetValue(tests) is { Length: > 0 } t ? t.Select(x => x.ToLowerInvariant()).ToArray() : ["put", "get"];
            return Program.RunAsync(r, (o, first, token) => RunAsync(o, first, new ServiceAddress(r.GetValue(Program.Socket)!, r.GetValue(Program.Client)!, r.GetValue(Program.Secret)!),
                r.GetValue(connections), r.GetValue(pipeline), r.GetValue(operations), source, r.GetValue(pool), wanted, token), ct, checkFirst: () =>
            {
                if (r.GetValue(connections) < 1 || r.GetValue(pipeline) < 1 || r.GetValue(operations) < 1)
                    throw new CliException(ExitCodes.Usage, "--connections, --pipeline and --operations must be 1 or more.");
                foreach (var test in wanted)
                    if (test is not ("put" or "get" or "ping")) throw new CliException(ExitCodes.Usage, $"--tests {test}: the tests are put, get and ping.");
                if (wanted.Contains("get") && !wanted.Contains("put")) throw new CliException(ExitCodes.Usage, "--tests get needs put before it (the gets read what the puts stored).");
                source = Pages(r.GetValue(pages)!);
            });
        });
        return command;
    }

    private sealed record Result(string Test, int Operations, double Seconds, double[] LatenciesMs, int Refused, int Misses)
    {
        public double OpsPerSecond => Operations / Seconds;

        public double Percentile(double p) => LatenciesMs.Length == 0 ? 0 : LatenciesMs[Math.Min(LatenciesMs.Length - 1, (int)Math.Ceiling(p / 100 * LatenciesMs.Length) - 1)];
    }

    private static async Task<int> RunAsync(Output o, TmemConnection first, ServiceAddress address, int connectionCount, int depth, int operations, byte[][] source, PoolKind kind,
        string[] tests, CancellationToken cancellationToken)
    {
        var all = new List<TmemConnection> { first };
        try
        {
            for (int i = 1; i < connectionCount; i++) all.Add(await address.ConnectAsync(cancellationToken).ConfigureAwait(false));
            // A private pool of the client: its id serves every connection of the client. Ephemeral
            // gets are exclusive there, so each get takes the page its put stored.
            int pool = await first.CreatePoolAsync(kind == PoolKind.Persistent ? PoolOptions.Persistent : PoolOptions.Ephemeral, cancellationToken).ConfigureAwait(false);
            o.Line(string.Create(CultureInfo.InvariantCulture, $"{connectionCount} connection(s) x {depth} in flight, {operations} operations per test, {kind.ToString().ToLowerInvariant()} pool {pool}, {source.Length} distinct 4 KiB pages"));
            var results = new List<Result>();
            try
            {
                foreach (var test in tests)
                {
                    var result = await RunTestAsync(test, all, depth, operations, pool, source, cancellationToken).ConfigureAwait(false);
                    results.Add(result);
                    string notes = (result.Refused > 0 ? $"  ({result.Refused} refused)" : "") + (result.Misses > 0 ? $"  ({result.Misses} misses)" : "");
                    o.Line(string.Create(CultureInfo.InvariantCulture,
                        $"{test,-5} {result.OpsPerSecond,12:N0} ops/s  latency ms: p50 {result.Percentile(50):0.000}  p95 {result.Percentile(95):0.000}  p99 {result.Percentile(99):0.000}  p99.9 {result.Percentile(99.9):0.000}  max {result.LatenciesMs[^1]:0.000}{notes}"));
                }
            }
            finally
            {
                await first.DestroyPoolAsync(pool, CancellationToken.None).ConfigureAwait(false);
            }
            o.Document(new
            {
                connections = connectionCount,
                pipeline = depth,
                operations,
                pool = kind,
                pages = source.Length,
                tests = results.Select(x => new
                {
                    test = x.Test,
                    opsPerSecond = x.OpsPerSecond,
                    seconds = x.Seconds,
                    refused = x.Refused,
                    misses = x.Misses,
                    latencyMs = new { p50 = x.Percentile(50), p95 = x.Percentile(95), p99 = x.Percentile(99), p999 = x.Percentile(99.9), max = x.LatenciesMs[^1] },
                }),
            });
            return ExitCodes.Ok;
        }
        finally
        {
            foreach (var c in all.Skip(1)) await c.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task<Result> RunTestAsync(string test, List<TmemConnection> connections, int depth, int operations, int pool, byte[][] source, CancellationToken cancellationToken)
    {
        int next = -1, refused = 0, misses = 0;
        var latencies = new double[operations];
        var clock = Stopwatch.StartNew();
        var workers = new List<Task>();
        foreach (var connection in connections)
        {
            for (int w = 0; w < depth; w++)
            {
                workers.Add(Task.Run(async () =>
                {
                    var buffer = new byte[PoolOptions.DefaultPageSize];
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < operations)
                    {
                        var oid = new ObjectId((ulong)i + 1);
                        long start = Stopwatch.GetTimestamp();
                        switch (test)
                        {
                            case "put":
                                if (await connection.PutAsync(pool, oid, 0, source[i % source.Length], cancellationToken).ConfigureAwait(false) != PutStatus.Stored)
                                    Interlocked.Increment(ref refused);
                                break;
                            case "get":
                                if (await connection.GetAsync(pool, oid, 0, buffer, cancellationToken).ConfigureAwait(false) != GetStatus.Hit)
                                    Interlocked.Increment(ref misses);
                                break;
                            default:
                                await connection.PingAsync(cancellationToken).ConfigureAwait(false);
                                break;
                        }
                        latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    }
                }, cancellationToken));
            }
        }
        await Task.WhenAll(workers).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        Array.Sort(latencies);
        return new Result(test, operations, seconds, latencies, refused, misses);
    }

    /// <summary>The benchmark's pages, by source name.</summary>
    private static byte[][] Pages(string source)
    {
        const int size = PoolOptions.DefaultPageSize;
        if (source.StartsWith("file:", StringComparison.Ordinal))
        {
            string path = source[5..];
            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException(ExitCodes.Usage, $"--pages {source}: cannot read {path}: {e.Message}");
            }
            if (bytes.Length < size) throw new CliException(ExitCodes.Usage, $"--pages {source}: the file has fewer than {size} bytes.");
            return Cut(bytes).ToArray();
        }
        switch (source)
        {
            case "zeros":
                return [new byte[size]];
            case "random":
                return Enumerable.Range(0, 256).Select(i =>
                {
                    var page = new byte[size];
                    new Random(i).NextBytes(page);
                    return page;
                }).ToArray();
            case "runtime":
                return Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll").Order(StringComparer.Ordinal)
                    .SelectMany(f => Cut(File.ReadAllBytes(f))).Take(4096).ToArray();
            case "text":
                var words = new[] { "page ", "pool ", "tmem ", "store ", "cache ", "object ", "index ", "handle " };
                return Enumerable.Range(0, 256).Select(i =>
                {
                    var random = new Random(i);
                    var page = new byte[size];
                    int at = 0;
                    while (at < size)
                    {
                        var word = System.Text.Encoding.ASCII.GetBytes(words[random.Next(words.Length)] + random.Next(1000).ToString(CultureInfo.InvariantCulture) + " ");
                        int n = Math.Min(word.Length, size - at);
                        word.AsSpan(0, n).CopyTo(page.AsSpan(at));
                        at += n;
                    }
                    return page;
                }).ToArray();
            default:
                throw new CliException(ExitCodes.Usage, $"--pages {source}: give text, zeros, random, runtime or file:PATH.");
        }
    }

    private static IEnumerable<byte[]> Cut(byte[] bytes)
    {
        for (int at = 0; at + PoolOptions.DefaultPageSize <= bytes.Length; at += PoolOptions.DefaultPageSize)
            yield return bytes.AsSpan(at, PoolOptions.DefaultPageSize).ToArray();
    }
}
