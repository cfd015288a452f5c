using System.Diagnostics;
using System.Text;

namespace Tmem.Service.Tests;

/// <summary>
/// The real service with the NBD front end on (docs/nbd.md), in a directory of its own: client
/// <c>nbd</c> (id 9) owns a persistent export <c>disk</c> and a cache export <c>cache</c> over
/// <c>backing.img</c> (made here, sparse), served on <c>nbd.sock</c>; client <c>alice</c> has a
/// listener of her own (<c>nbd-alice.sock</c>) and no exports. Relative paths resolve under the
/// service's working directory, <see cref="ServiceProcess.Root"/>.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    public const long DiskSize = 64L << 20;
    public const long CacheSize = 64L << 20;

    public NbdServer(params string[] extra)
    {
        Service = new ServiceProcess([.. BaseArguments(), .. extra]);
        using (var backing = File.Create(BackingFile)) backing.SetLength(CacheSize);
    }

    public ServiceProcess Service { get; }

    public string Root => Service.Root;

    public string Socket => Path.Combine(Root, "nbd.sock");

    public string AliceSocket => Path.Combine(Root, "nbd-alice.sock");

    public string BackingFile => Path.Combine(Root, "backing.img");

    public string Uri(string export) => $"nbd+unix:///{export}?socket={Socket}";

    public static string[] BaseArguments() =>
    [
        "--Tmem:Service:Clients:3:Name=nbd", "--Tmem:Service:Clients:3:Id=9", "--Tmem:Service:Clients:3:Secret=nbd-secret",
        "--Tmem:Nbd:Listeners:0:Client=nbd", "--Tmem:Nbd:Listeners:0:SocketPath=nbd.sock",
        "--Tmem:Nbd:Listeners:1:Client=alice", "--Tmem:Nbd:Listeners:1:SocketPath=nbd-alice.sock",
        "--Tmem:Nbd:Exports:0:Name=disk", "--Tmem:Nbd:Exports:0:Client=nbd", $"--Tmem:Nbd:Exports:0:SizeBytes={DiskSize}",
        "--Tmem:Nbd:Exports:0:Description=a persistent test disk",
        "--Tmem:Nbd:Exports:1:Name=cache", "--Tmem:Nbd:Exports:1:Client=nbd", "--Tmem:Nbd:Exports:1:Mode=Cache",
        "--Tmem:Nbd:Exports:1:BackingFile=backing.img",
    ];

    /// <summary>
    /// Starts the service (it says it listens once the tmem socket does) and checks that both NBD
    /// listeners accept at once: they start before the tmem listener, so a client that waits for
    /// the service's "Listening" line is never refused.
    /// </summary>
    public async Task StartAsync()
    {
        await Service.StartAsync();
        foreach (var path in new[] { Socket, AliceSocket })
        {
            using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            }
            catch (System.Net.Sockets.SocketException e)
            {
                Assert.Fail($"the service said it listens, but its NBD listener {path} refused a connection ({e.SocketErrorCode})");
            }
        }
    }

    /// <summary>Waits (up to 10 s) for the service's log to contain <paramref name="text"/> (its console logger writes a moment later).</summary>
    public async Task AssertLoggedAsync(string text)
    {
        for (int i = 0; i < 100 && !Service.Output.Contains(text, StringComparison.Ordinal); i++) await Task.Delay(100);
        Assert.Contains(text, Service.Output);
    }

    /// <summary>The store's counters, as the export's owner sees them.</summary>
    public Task<Dictionary<string, long>> StatsAsync() => Service.StatsAsync("nbd");

    public ValueTask DisposeAsync() => Service.DisposeAsync();
}

/// <summary>Runs the real NBD clients (Debian packages) as processes.</summary>
public static class Tool
{
    private static readonly Dictionary<string, string> Packages = new()
    {
        ["nbdinfo"] = "libnbd-bin", ["nbdcopy"] = "libnbd-bin", ["nbdfuse"] = "libnbd-bin", ["nbdsh"] = "python3-libnbd",
        ["qemu-io"] = "qemu-utils", ["qemu-img"] = "qemu-utils", ["fio"] = "fio", ["nbdkit"] = "nbdkit",
    };

    /// <summary>Why a test that needs <paramref name="tools"/> cannot run here, or null (<c>nbdsh</c>: a python3 that can import libnbd's module).</summary>
    public static string? Missing(params string[] tools)
    {
        var missing = tools.Where(t => t == "nbdsh" ? Python.Value is null : Find(t) is null).ToList();
        if (missing.Count == 0 && tools.Contains("nbdfuse") && !File.Exists("/dev/fuse")) return "needs /dev/fuse (FUSE), which this machine does not have";
        if (missing.Count == 0 && tools.Contains("nbdfuse") && Find("fusermount3") is null && Environment.UserName != "root")
            return "needs fusermount3 (Debian package fuse3) to unmount as a user other than root";
        if (missing.Count == 0) return null;
        var packages = missing.Select(t => Packages.GetValueOrDefault(t, t)).Distinct();
        return $"needs {string.Join(", ", missing)} (Debian package {string.Join(", ", packages)}; .ci/run installs it)";
    }

    public static string? Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>Runs a tool to its end: exit code, stdout, stderr. Killed (and failed) after <paramref name="timeoutSeconds"/>.</summary>
    public static async Task<(int Exit, string Out, string Err)> RunAsync(string tool, IEnumerable<string> args, int timeoutSeconds = 120, string? stdin = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        if (workingDirectory is not null) info.WorkingDirectory = workingDirectory;
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} did not finish within {timeoutSeconds}s; stderr so far: {(error.IsCompleted ? error.Result : "")}");
        }
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Runs a tool that must succeed; its stdout.</summary>
    public static async Task<string> CheckAsync(string tool, IEnumerable<string> args, int timeoutSeconds = 120, string? stdin = null)
    {
        var list = args.ToList();
        var (exit, stdout, stderr) = await RunAsync(tool, list, timeoutSeconds, stdin);
        Assert.True(exit == 0, $"{tool} {string.Join(' ', list)} exited {exit}:\n{stderr}\n{stdout}");
        return stdout;
    }

    /// <summary>
    /// A python3 whose <c>import nbd</c> works (libnbd's binding, package python3-libnbd): nbdsh is
    /// <c>python3 -m nbd</c>, and the python3 first on PATH may be another one (pyenv).
    /// </summary>
    public static readonly Lazy<string?> Python = new(() =>
    {
        foreach (var candidate in new[] { Find("python3"), "/usr/bin/python3" })
        {
            if (candidate is null || !File.Exists(candidate)) continue;
            try
            {
                var (exit, _, _) = RunAsync(candidate, ["-c", "import nbd"], 30).GetAwaiter().GetResult();
                if (exit == 0) return candidate;
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
            {
            }
        }
        return null;
    });

    /// <summary>
    /// A python3-libnbd script against <paramref name="uri"/>, with the base:allocation context: the
    /// connected handle is <c>h</c> (as in nbdsh), <c>nbd</c> the module. Its stdout.
    /// </summary>
    public static Task<string> NbdshAsync(string uri, string script, int timeoutSeconds = 120) =>
        CheckAsync(Python.Value ?? throw new InvalidOperationException(Missing("nbdsh")), ["-c", Preamble(uri) + script], timeoutSeconds);

    public static string Preamble(string uri) =>
        $"import nbd, sys\nh = nbd.NBD()\nh.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)\nh.connect_uri({Quote(uri)})\n";

    private static string Quote(string s) => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";
}

/// <summary>A fact that runs only where the real NBD clients it names are installed; skipped with the reason otherwise.</summary>
public sealed class NbdToolFactAttribute : FactAttribute
{
    public NbdToolFactAttribute(params string[] tools)
    {
        if (Tool.Missing(tools) is { } why) Skip = why;
    }
}

/// <summary>
/// Pages that compress like real memory and files: the corpus beside the repository
/// (<c>../shared/corpus</c>), or, without it, the runtime's own assemblies (real data too).
/// </summary>
public static class Corpus
{
    public static byte[] Bytes(long length)
    {
        var result = new byte[length];
        int at = 0;
        foreach (var file in Files())
        {
            using var stream = File.OpenRead(file);
            while (at < length)
            {
                int n = stream.Read(result, at, (int)Math.Min(length - at, 1 << 20));
                if (n == 0) break;
                at += n;
            }
            if (at == length) return result;
        }
        // Not enough input anywhere: repeat what there is.
        for (int i = at; i < length; i++) result[i] = result[i % Math.Max(1, at)];
        return result;
    }

    /// <summary>Where the pages come from, for messages.</summary>
    public static string Source => Files().FirstOrDefault() is { } f && f.EndsWith(".pages", StringComparison.Ordinal) ? Path.GetDirectoryName(f)! : "runtime assemblies";

    private static IEnumerable<string> Files()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (!File.Exists(Path.Combine(d.FullName, "Tmem.sln"))) continue;
            string corpus = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "corpus"));
            foreach (var name in new[] { "anon.pages", "file.pages" })
                if (File.Exists(Path.Combine(corpus, name))) yield return Path.Combine(corpus, name);
            break;
        }
        foreach (var dll in Directory.EnumerateFiles(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "*.dll").Order(StringComparer.Ordinal))
            yield return dll;
    }

    public static bool Same(byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b);

    public static string Describe(byte[] a, byte[] b)
    {
        if (a.Length != b.Length) return $"lengths {a.Length} and {b.Length}";
        int first = a.AsSpan().CommonPrefixLength(b);
        if (first == a.Length) return "identical";
        var sb = new StringBuilder($"first difference at byte {first} (page {first / 4096})");
        return sb.ToString();
    }
}
