using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using StackExchange.Redis;
using Tmem.Client;
using Tmem.Protocol;

namespace Tmem.Bench;

/// <summary>
/// The <c>service</c> suite: the Tmem service and redis-server side by side, each a separate
/// process on a Unix socket of its own, driven with the same pages, the same number of
/// connections and the same pipelining depth: our client (one shared ephemeral pool, so gets
/// keep the page as Redis's GET does; memory-only store, as Redis runs with persistence off)
/// against StackExchange.Redis (key = the 32-byte handle, value = the 4 KiB page).
/// Needs redis-server on PATH (tools/bench-service.sh installs and runs it); the service is the
/// Tmem.Service.dll built beside this benchmark (or TMEM_BENCH_SERVICE_DLL).
/// </summary>
internal sealed class ServiceSuite
{
    private const int PageSize = Corpus.PageSize;
    private const int Connections = 4;
    private const int Depth = 32;          // requests in flight per connection
    private const int Copies = 8;          // the corpus is stored this many times under distinct handles
    private const int Repeats = 3;
    private const int WarmUp = 8192;      // operations before measuring (JIT on both sides), then flushed
    private static readonly Guid PoolUuid = Guid.Parse("b3a1e0c2-5d4f-4e6a-8b7c-9d0e1f2a3b4c");

    private readonly Report _report;
    private readonly byte[][] _pages;
    private readonly string _root;

    public ServiceSuite(Corpus corpus, Report report)
    {
        _report = report;
        _pages = Enumerable.Range(0, Copies).SelectMany(_ => corpus.Pages).ToArray();
        _root = Path.Combine("/tmp", "tmem-bench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Console.WriteLine($"corpus: {corpus.Description}, stored {Copies} times: {_pages.Length} pages; {Connections} connections x {Depth} in flight; median of {Repeats}");
    }

    private static ObjectId Oid(int key) => new((ulong)(key / 64));

    private static uint Index(int key) => (uint)(key % 64);

    private static byte[] RedisKey(int key)
    {
        var handle = new byte[Wire.HandleSize];
        Wire.WriteHandle(handle, 0, Oid(key), Index(key));
        return handle;
    }

    public void Run()
    {
        Directory.CreateDirectory(_root);
        try
        {
            var runs = new List<Dictionary<string, double>>();
            for (int rep = 0; rep < Repeats; rep++)
            {
                var run = new Dictionary<string, double>();
                RunService(run).GetAwaiter().GetResult();
                RunRedis(run).GetAwaiter().GetResult();
                Console.WriteLine($"  run {rep + 1}: " + string.Join(", ", run.Select(kv => $"{kv.Key}={kv.Value:0.##}")));
                runs.Add(run);
            }
            double M(string key) => Report.Median(runs.Select(r => r[key]).ToArray());
            foreach (var key in runs[0].Keys) _report.Add(key, M(key), key.EndsWith("_us", StringComparison.Ordinal) ? "median of runs" : "median of runs");
            double putRatio = M("svc_put_pages_per_s") / M("redis_set_pages_per_s");
            double getRatio = M("svc_get_pages_per_s") / M("redis_get_pages_per_s");
            double rssRatio = M("svc_rss_bytes_per_page") / M("redis_rss_bytes_per_page");
            _report.Add("svc_put_vs_redis", putRatio, "service puts / Redis SETs per second");
            _report.Add("svc_get_vs_redis", getRatio, "service gets / Redis GETs per second");
            _report.Add("svc_rss_bytes_per_page_vs_redis", rssRatio, "resident memory growth per stored page, service / Redis");
            _report.Target("svc_get_vs_redis >= 1.0", getRatio >= 1.0);
            _report.Target("svc_put_vs_redis >= 0.8", putRatio >= 0.8);
            _report.Target("svc_rss_bytes_per_page_vs_redis <= 0.6", rssRatio <= 0.6);
        }
        finally
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private async Task RunService(Dictionary<string, double> run)
    {
        string socket = Path.Combine(_root, "tmem.sock");
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _root };
        info.ArgumentList.Add(ServiceDll());
        foreach (var a in new[]
        {
            "--Tmem:DataDirectory=", "--Tmem:RamBudgetBytes=1073741824", $"--Tmem:Service:SocketPath={socket}",
            "--Tmem:Service:Clients:0:Name=bench", "--Tmem:Service:Clients:0:Secret=bench", "--Tmem:Service:Clients:0:MaxInFlight=256",
            "--Tmem:Service:StatsLogIntervalSeconds=0", "--Logging:LogLevel:Default=Warning",
        }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"  service: {e.Data}"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await WaitForSocket(socket, process);
            var connections = new TmemConnection[Connections];
            for (int c = 0; c < Connections; c++) connections[c] = await TmemConnection.ConnectAsync(socket, "bench", "bench");
            // Pools belong to the client, not the connection: one pool, used by every connection.
            int pool = await connections[0].CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = PoolUuid });
            var pools = Enumerable.Repeat(pool, Connections).ToArray();
            // Warm-up (JIT on both sides) on handles of another object range, then flushed.
            await Drive(WarmUp, async (c, key, _) => await connections[c].PutAsync(pools[c], new ObjectId(1UL << 40), (uint)key, _pages[key]));
            for (int c = 0; c < Connections; c++) await connections[c].FlushObjectAsync(pools[c], new ObjectId(1UL << 40));
            await Task.Delay(300);
            long rssBefore = ResidentBytes(process.Id);
            var ((putRate, putP50, putP99), putClientCpu, putServerCpu) = await DriveMeasured(_pages.Length, async (c, key, _) =>
            {
                var status = await connections[c].PutAsync(pools[c], Oid(key), Index(key), _pages[key]);
                if (status != PutStatus.Stored && !IsPoorlyCompressed(status)) throw new InvalidOperationException($"put {key}: {status}");
            }, process.Id);
            await Task.Delay(300);
            long rssAfter = ResidentBytes(process.Id);
            var buffers = Enumerable.Range(0, Connections * Depth).Select(_ => new byte[PageSize]).ToArray();
            long hits = 0;
            var ((getRate, getP50, getP99), getClientCpu, getServerCpu) = await DriveMeasured(_pages.Length, async (c, key, worker) =>
            {
                var buffer = buffers[c * Depth + worker];
                if (await connections[c].GetAsync(pools[c], Oid(key), Index(key), buffer) == GetStatus.Hit)
                {
                    Interlocked.Increment(ref hits);
                    if (key % 97 == 0 && !buffer.AsSpan().SequenceEqual(_pages[key])) throw new InvalidOperationException($"get {key}: wrong bytes");
                }
            }, process.Id);
            long stored = (await connections[0].GetStatsAsync()).First(kv => kv.Key == "eph_pages").Value;
            if (hits != stored) throw new InvalidOperationException($"{hits} gets hit but {stored} pages are stored");
            run["svc_put_pages_per_s"] = putRate;
            run["svc_get_pages_per_s"] = getRate;
            run["svc_put_p50_us"] = putP50;
            run["svc_put_p99_us"] = putP99;
            run["svc_get_p50_us"] = getP50;
            run["svc_get_p99_us"] = getP99;
            run["svc_put_server_cpu_us"] = putServerCpu;
            run["svc_put_client_cpu_us"] = putClientCpu;
            run["svc_get_server_cpu_us"] = getServerCpu;
            run["svc_get_client_cpu_us"] = getClientCpu;
            // Per page offered: pages the store refuses (poor compression) cost it nothing, and
            // Redis stores every one, so both are divided by the same count.
            run["svc_rss_bytes_per_page"] = (double)(rssAfter - rssBefore) / _pages.Length;
            run["svc_stored_fraction"] = (double)stored / _pages.Length;
            foreach (var c in connections) await c.DisposeAsync();
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    // Pages LZ4 cannot shrink under 7/8 are refused by design (every put may fail); Redis keeps them.
    private static bool IsPoorlyCompressed(PutStatus status) => status == PutStatus.RejectedPoorCompression;

    private async Task RunRedis(Dictionary<string, double> run)
    {
        string socket = Path.Combine(_root, "redis.sock");
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _root };
        foreach (var a in new[] { "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--protected-mode", "no" })
            info.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("redis-server is not on PATH: run tools/bench-service.sh, which installs it (Debian package redis-server).", e);
        }
        using var _ = process;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await WaitForSocket(socket, process);
            var multiplexers = new ConnectionMultiplexer[Connections];
            for (int c = 0; c < Connections; c++)
            {
                var options = new ConfigurationOptions { AbortOnConnectFail = true };
                options.EndPoints.Add(new UnixDomainSocketEndPoint(socket));
                multiplexers[c] = await ConnectionMultiplexer.ConnectAsync(options);
            }
            var dbs = multiplexers.Select(m => m.GetDatabase()).ToArray();
            var keys = Enumerable.Range(0, _pages.Length).Select(RedisKey).ToArray();
            var warmKeys = Enumerable.Range(0, WarmUp).Select(k => (RedisKey)(byte[])[.. RedisKey(k), 0xff]).ToArray();
            await Drive(WarmUp, async (c, key, _) => await dbs[c].StringSetAsync(warmKeys[key], _pages[key]));
            await dbs[0].KeyDeleteAsync(warmKeys);
            await Task.Delay(300);
            long rssBefore = ResidentBytes(process.Id);
            var ((setRate, setP50, setP99), setClientCpu, setServerCpu) = await DriveMeasured(_pages.Length, async (c, key, _) =>
            {
                if (!await dbs[c].StringSetAsync(keys[key], _pages[key])) throw new InvalidOperationException($"SET {key} failed");
            }, process.Id);
            await Task.Delay(300);
            long rssAfter = ResidentBytes(process.Id);
            var ((getRate, getP50, getP99), getClientCpu, getServerCpu) = await DriveMeasured(_pages.Length, async (c, key, _) =>
            {
                byte[]? value = await dbs[c].StringGetAsync(keys[key]);
                if (value is null || value.Length != PageSize) throw new InvalidOperationException($"GET {key} missed");
                if (key % 97 == 0 && !value.AsSpan().SequenceEqual(_pages[key])) throw new InvalidOperationException($"GET {key}: wrong bytes");
            }, process.Id);
            run["redis_set_pages_per_s"] = setRate;
            run["redis_get_pages_per_s"] = getRate;
            run["redis_set_p50_us"] = setP50;
            run["redis_set_p99_us"] = setP99;
            run["redis_get_p50_us"] = getP50;
            run["redis_get_p99_us"] = getP99;
            run["redis_set_server_cpu_us"] = setServerCpu;
            run["redis_set_client_cpu_us"] = setClientCpu;
            run["redis_get_server_cpu_us"] = getServerCpu;
            run["redis_get_client_cpu_us"] = getClientCpu;
            run["redis_rss_bytes_per_page"] = (double)(rssAfter - rssBefore) / _pages.Length;
            foreach (var m in multiplexers) await m.DisposeAsync();
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
    }

    /// <summary>
    /// Runs <paramref name="count"/> operations over <see cref="Connections"/> connections with
    /// <see cref="Depth"/> in flight on each (one async worker per slot, each waiting for its
    /// operation before the next). Returns operations per second and p50/p99 latency in us.
    /// </summary>
    private static async Task<(double Rate, double P50, double P99)> Drive(int count, Func<int, int, int, Task> operation) =>
        (await DriveMeasured(count, operation, serverPid: null)).Timing;

    /// <summary>
    /// <see cref="Drive"/>, plus the CPU time per operation spent by this process (the client)
    /// and by the server process: unlike a rate, that hardly moves when other work shares the
    /// cores, so it shows where the cost is.
    /// </summary>
    private static async Task<((double Rate, double P50, double P99) Timing, double ClientCpuUs, double ServerCpuUs)> DriveMeasured(
        int count, Func<int, int, int, Task> operation, int? serverPid)
    {
        var latencies = new double[count];
        var clientCpu = Environment.CpuUsage.TotalTime;
        double serverCpu = serverPid is { } pid ? CpuSeconds(pid) : 0;
        var clock = Stopwatch.StartNew();
        var workers = new List<Task>();
        int stride = Connections * Depth;
        for (int c = 0; c < Connections; c++)
        {
            for (int w = 0; w < Depth; w++)
            {
                int connection = c, worker = w;
                workers.Add(Task.Run(async () =>
                {
                    for (int key = connection * Depth + worker; key < count; key += stride)
                    {
                        long start = Stopwatch.GetTimestamp();
                        await operation(connection, key, worker);
                        latencies[key] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                    }
                }));
            }
        }
        await Task.WhenAll(workers);
        double seconds = clock.Elapsed.TotalSeconds;
        double clientUs = (Environment.CpuUsage.TotalTime - clientCpu).TotalMicroseconds / count;
        double serverUs = serverPid is { } p ? (CpuSeconds(p) - serverCpu) * 1e6 / count : 0;
        Array.Sort(latencies);
        return ((count / seconds, latencies[count / 2], latencies[(int)(count * 0.99)]), clientUs, serverUs);
    }

    /// <summary>User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks of 1/100 s).</summary>
    internal static double CpuSeconds(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // After the command: state is field 3, utime field 14, stime field 15.
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    internal static async Task WaitForSocket(string path, Process process)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException($"{process.StartInfo.FileName} exited with {process.ExitCode} before listening on {path}");
            if (File.Exists(path))
            {
                try
                {
                    using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await probe.ConnectAsync(new UnixDomainSocketEndPoint(path));
                    return;
                }
                catch (SocketException)
                {
                }
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"nothing listens on {path} after 60 s");
            await Task.Delay(20);
        }
    }

    internal static long ResidentBytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        throw new InvalidOperationException($"no VmRSS for process {pid}");
    }

    internal static string ServiceDll()
    {
        if (Environment.GetEnvironmentVariable("TMEM_BENCH_SERVICE_DLL") is { Length: > 0 } given) return Path.GetFullPath(given);
        // The service project is built beside the benchmark (a build-only project reference).
        string here = AppContext.BaseDirectory;
        string tfm = new DirectoryInfo(here).Name;
        string config = new DirectoryInfo(here).Parent!.Name;
        for (var d = new DirectoryInfo(here); d is not null; d = d.Parent)
        {
            string built = Path.Combine(d.FullName, "hosting", "Tmem.Service", "bin", config, tfm, "Tmem.Service.dll");
            if (File.Exists(Path.Combine(d.FullName, "Tmem.sln")) && File.Exists(built)) return built;
        }
        throw new FileNotFoundException($"Tmem.Service.dll ({config}) not found; build hosting/Tmem.Service or set TMEM_BENCH_SERVICE_DLL.");
    }
}
