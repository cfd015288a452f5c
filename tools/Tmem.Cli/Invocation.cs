namespace Tmem.Cli;

/// <summary>
/// How to run this tool again from the user's shell: <c>tmem</c> when that name on PATH is this
/// program (an installed .NET tool), else the command that started it (so a suggested command
/// works as printed, even from <c>dotnet run</c>).
/// </summary>
internal static class Invocation
{
    public static string Command { get; } = Find();

    private static string Find()
    {
        string? process = Environment.ProcessPath;
        if (process is null) return "tmem";
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "tmem");
            if (File.Exists(candidate) && (SameFile(candidate, process) || IsToolShim(candidate))) return "tmem";
        }
        string name = Path.GetFileNameWithoutExtension(process);
        if (name == "dotnet") return $"dotnet {Quote(typeof(Invocation).Assembly.Location)}";
        return Quote(process);
    }

    private static bool SameFile(string a, string b) => string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    /// <summary>A .NET global tool's shim is a separate executable that runs this assembly.</summary>
    private static bool IsToolShim(string candidate) =>
        candidate.Contains(Path.Combine(".dotnet", "tools"), StringComparison.Ordinal) &&
        typeof(Invocation).Assembly.Location.Contains(Path.Combine(".dotnet", "tools", ".store"), StringComparison.Ordinal);

    private static string Quote(string path) => path.Contains(' ', StringComparison.Ordinal) ? $"'{path}'" : path;
}
