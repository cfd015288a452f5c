using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using Tmem.Client;

namespace Tmem.Service.Tests;

/// <summary>
/// The real service as a child process (<c>dotnet Tmem.Service.dll</c>) on a socket and data
/// directory of its own under /tmp, with three clients configured:
/// alice (id 1) and bob (id 2) may use shared pool <see cref="SharedUuid"/>; carol (id 3) may use
/// no shared pool, holds at most 2 pools, sends frames of at most 8 KiB and has 4 requests in flight.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    public static readonly Guid SharedUuid = Guid.Parse("6f1c2a4e-8b3d-4c5e-9a7f-0123456789ab");
    public static readonly Guid ForbiddenUuid = Guid.Parse("00000000-0000-4000-8000-000000000001");

    private string[] _extraArgs;
    private readonly bool _shipped;
    private readonly StringBuilder _output = new();
    private Process? _process;

    public ServiceProcess(params string[] extraArgs)
        : this(shipped: false, extraArgs)
    {
    }

    private ServiceProcess(bool shipped, string[] extraArgs)
    {
        _shipped = shipped;
        _extraArgs = extraArgs;
        Root = Path.Combine("/tmp", "tmem-it-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Root);
    }

    /// <summary>
    /// The service as a new user runs it: the shipped configuration (client <c>local</c>, no
    /// secret; <c>tmem.sock</c> and <c>data</c> in its working directory, <see cref="Root"/>),
    /// only the stats log off, plus <paramref name="extraArgs"/>.
    /// </summary>
    public static ServiceProcess Shipped(params string[] extraArgs) => new(shipped: true, extraArgs);

    public string Root { get; }

    /// <summary>The arguments after the configured ones; set between runs to restart differently.</summary>
    public string[] ExtraArguments
    {
        get => _extraArgs;
        set => _extraArgs = value;
    }

    /// <summary>Environment variables the service process gets besides the test's.</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    public string SocketPath => Path.Combine(Root, _shipped ? "tmem.sock" : "s.sock");

    public string DataDirectory => Path.Combine(Root, "data");

    public int Pid => _process?.Id ?? throw new InvalidOperationException("not started");

    /// <summary>Everything the service wrote to stdout and stderr so far.</summary>
    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>
    /// Waits until the output holds <paramref name="text"/> (a line logged after start-up
    /// finished, by a hosted service that starts after the listeners); false after <paramref name="timeout"/>.
    /// </summary>
    public async Task<bool> WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (clock.Elapsed > timeout) return false;
            await Task.Delay(20);
        }
        return true;
    }

    /// <summary>
    /// The service to run: this repository's build, or <c>TMEM_TEST_SERVICE_DLL</c> (to run these
    /// tests against another build, such as the one before a fix, and see them fail).
    /// </summary>
    public static string ServiceDll()
    {
        if (System.Environment.GetEnvironmentVariable("TMEM_TEST_SERVICE_DLL") is { Length: > 0 } other) return other;
        string here = AppContext.BaseDirectory;
        string config = typeof(ServiceProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string tfm = new DirectoryInfo(here).Name;
        for (var d = new DirectoryInfo(here); d is not null; d = d.Parent)
        {
            string built = Path.Combine(d.FullName, "hosting", "Tmem.Service", "bin", config, tfm, "Tmem.Service.dll");
            if (File.Exists(Path.Combine(d.FullName, "Tmem.sln")) && File.Exists(built)) return built;
        }
        throw new FileNotFoundException($"Tmem.Service.dll ({config}, {tfm}) not found above {here}; build the solution first.");
    }

    public string[] Arguments() => _shipped ? ["--Tmem:Service:StatsLogIntervalSeconds=0", .. _extraArgs] :
    [
        $"--Tmem:DataDirectory={DataDirectory}",
        $"--Tmem:Service:SocketPath={SocketPath}",
        "--Tmem:Service:StatsLogIntervalSeconds=0",
        "--Tmem:Service:SendTimeoutSeconds=2",
        "--Tmem:Service:Clients:0:Name=alice", "--Tmem:Service:Clients:0:Id=1", "--Tmem:Service:Clients:0:Secret=alice-secret",
        $"--Tmem:Service:Clients:0:SharedPools:0={SharedUuid}",
        "--Tmem:Service:Clients:1:Name=bob", "--Tmem:Service:Clients:1:Id=2", "--Tmem:Service:Clients:1:Secret=bob-secret",
        $"--Tmem:Service:Clients:1:SharedPools:0={SharedUuid}",
        "--Tmem:Service:Clients:2:Name=carol", "--Tmem:Service:Clients:2:Id=3", "--Tmem:Service:Clients:2:Secret=carol-secret",
        "--Tmem:Service:Clients:2:MaxPools=2", "--Tmem:Service:Clients:2:MaxFrameBytes=8192", "--Tmem:Service:Clients:2:MaxInFlight=4",
        .. _extraArgs,
    ];

    /// <summary>Starts the service and waits until it listens. Returns how long that took.</summary>
    public async Task<TimeSpan> StartAsync()
    {
        var clock = Stopwatch.StartNew();
        var process = Launch();
        _process = process;
        while (!Output.Contains("Listening on Unix socket", StringComparison.Ordinal))
        {
            if (process.HasExited)
            {
                // Completes once the redirected output has been read to its end (the exit can be
                // seen before the last stderr lines arrive).
                await process.WaitForExitAsync();
                throw new InvalidOperationException($"The service exited with {process.ExitCode} before listening:\n{Output}");
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"The service did not listen within 60 s:\n{Output}");
            await Task.Delay(20);
        }
        return clock.Elapsed;
    }

    /// <summary>Runs the service expecting it to fail to start: its exit code and everything it wrote.</summary>
    public async Task<(int ExitCode, string Output)> RunUntilExitAsync()
    {
        using var process = Launch();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw new TimeoutException($"The service did not exit within 60 s:\n{Output}");
        }
        return (process.ExitCode, Output);
    }

    /// <summary>The service's counters, as a Stats request by <paramref name="name"/> sees them.</summary>
    public async Task<Dictionary<string, long>> StatsAsync(string name = "bob")
    {
        await using var connection = await ConnectAsync(name);
        return (await connection.GetStatsAsync()).ToDictionary(kv => kv.Key, kv => kv.Value);
    }

    /// <summary>Starts the service process with <see cref="Arguments"/>, its output collected into <see cref="Output"/> (cleared first).</summary>
    private Process Launch()
    {
        lock (_output) _output.Clear();
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(ServiceDll());
        foreach (var a in Arguments()) info.ArgumentList.Add(a);
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        foreach (var (key, value) in Environment) info.Environment[key] = value;
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    public Task<TmemConnection> ConnectAsync(string name = "alice") =>
        TmemConnection.ConnectAsync(SocketPath, name, name + "-secret");

    /// <summary>SIGTERM, as systemd stops it; returns the exit code.</summary>
    public async Task<int> StopAsync()
    {
        var process = _process ?? throw new InvalidOperationException("not started");
        Signal(process.Id, "TERM");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        _process = null;
        return process.ExitCode;
    }

    /// <summary>SIGKILL: no chance to commit or checkpoint.</summary>
    public async Task KillAsync()
    {
        var process = _process ?? throw new InvalidOperationException("not started");
        Signal(process.Id, "KILL");
        await process.WaitForExitAsync();
        _process = null;
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, pid.ToString(CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>The service's resident set size, from /proc.</summary>
    public long ResidentBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        throw new InvalidOperationException("no VmRSS");
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            Signal(p.Id, "KILL");
            await p.WaitForExitAsync();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
