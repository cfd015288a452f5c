using System.Diagnostics;

namespace Tmem.Tests.Faults;

// Also used by tests/Tmem.Service.Tests (which references this project), to put a service's data directory on one.

/// <summary>
/// A real, small tmpfs mounted for one test (a full disk without filling the machine's). Needs
/// root and mount(8); tests that use it are skipped, with the reason, where that is not allowed.
/// </summary>
public sealed class Tmpfs : IDisposable
{
    private static readonly Lazy<string?> Unavailable = new(Probe);

    private Tmpfs(string path) => Path = path;

    /// <summary>The mount point.</summary>
    public string Path { get; }

    /// <summary>Null when tmpfs can be mounted here; else why not.</summary>
    public static string? WhyUnavailable => Unavailable.Value;

    public static Tmpfs Mount(long bytes) =>
        MountAt(System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tmem-tmpfs-" + Guid.NewGuid().ToString("N")), bytes);

    /// <summary>Mounts a tmpfs of <paramref name="bytes"/> on <paramref name="path"/> (created if missing).</summary>
    public static Tmpfs MountAt(string path, long bytes)
    {
        Directory.CreateDirectory(path);
        Run("mount", "-t", "tmpfs", "-o", $"size={bytes}", "tmpfs", path);
        return new Tmpfs(path);
    }

    /// <summary>Writes a file of <paramref name="bytes"/> real bytes (tmpfs does not reserve a sparse file).</summary>
    public string Ballast(long bytes)
    {
        string file = System.IO.Path.Combine(Path, "ballast");
        var chunk = new byte[1 << 20];
        chunk.AsSpan().Fill(0xA5);
        using var stream = new FileStream(file, FileMode.CreateNew);
        for (long written = 0; written < bytes; written += chunk.Length)
            stream.Write(chunk, 0, (int)Math.Min(chunk.Length, bytes - written));
        return file;
    }

    public void Dispose()
    {
        try
        {
            Run("umount", "-l", Path);
            Directory.Delete(Path, recursive: true);
        }
        catch (Exception)
        {
            // Best effort: a leftover mount point in /tmp must not fail the test run.
        }
    }

    private static void Run(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{command} {string.Join(' ', args)} failed ({process.ExitCode}): {error.Trim()}");
    }

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "tmpfs needs Linux";
        if (Environment.UserName != "root") return $"mounting a tmpfs needs root (running as {Environment.UserName})";
        try
        {
            using var probe = Mount(1 << 20);
            return null;
        }
        catch (Exception e)
        {
            return $"cannot mount a tmpfs here: {e.Message}";
        }
    }
}

/// <summary>A theory that needs a real tmpfs (<see cref="Tmpfs"/>); skipped with the reason where it cannot be mounted.</summary>
public sealed class TmpfsTheoryAttribute : TheoryAttribute
{
    public TmpfsTheoryAttribute()
    {
        if (Tmpfs.WhyUnavailable is { } why) Skip = why;
    }
}

/// <summary>A fact that needs a real tmpfs (<see cref="Tmpfs"/>); skipped with the reason where it cannot be mounted.</summary>
public sealed class TmpfsFactAttribute : FactAttribute
{
    public TmpfsFactAttribute()
    {
        if (Tmpfs.WhyUnavailable is { } why) Skip = why;
    }
}
