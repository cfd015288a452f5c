using System.Diagnostics;
using System.Reflection;

namespace Tmem.Service.Tests;

/// <summary>Runs one of this repository's built programs (tmem, the benchmark) as a process, as a user would.</summary>
public static class ToolProcess
{
    /// <summary>The repository root (the folder with Tmem.sln above the test binaries).</summary>
    public static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Tmem.sln"))) return d.FullName;
        throw new DirectoryNotFoundException($"no Tmem.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>A project's built assembly, such as <c>tools/Tmem.Cli</c>, <c>tmem.dll</c>, in this test run's configuration.</summary>
    public static string BuiltDll(string project, string assembly)
    {
        string config = typeof(ToolProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string tfm = new DirectoryInfo(AppContext.BaseDirectory).Name;
        string path = Path.Combine(RepositoryRoot(), project, "bin", config, tfm, assembly);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} not found; build the solution first.");
    }

    public static string CliDll() => BuiltDll(Path.Combine("tools", "Tmem.Cli"), "tmem.dll");

    /// <summary>Runs <c>dotnet DLL ARGS</c> in <paramref name="workingDirectory"/>; its exit code, stdout and stderr.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(string dll, IEnumerable<string> args, string workingDirectory,
        IDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) info.Environment[key] = value;
        return await RunAsync(info, timeout);
    }

    /// <summary>Runs a bash script in <paramref name="workingDirectory"/>.</summary>
    public static Task<(int ExitCode, string Stdout, string Stderr)> BashAsync(string script, string workingDirectory, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo("bash")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        return RunAsync(info, timeout);
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo info, TimeSpan? timeout)
    {
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(120));
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{info.FileName} {string.Join(' ', info.ArgumentList)} did not exit in time:\n{await stdout}\n{await stderr}");
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
