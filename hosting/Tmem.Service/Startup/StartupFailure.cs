namespace Tmem.Service.Startup;

/// <summary>The service's exit codes (docs/service.md, "Exit codes"): one per kind of failure to start.</summary>
internal static class ExitCodes
{
    /// <summary>Stopped normally (SIGTERM, Ctrl+C).</summary>
    public const int Ok = 0;

    /// <summary>An unexpected failure; the message says where.</summary>
    public const int Failed = 1;

    /// <summary>Bad configuration: an unknown <c>Tmem:</c> key, a value that does not parse or is out of range.</summary>
    public const int BadConfiguration = 2;

    /// <summary>The data directory is in use: another service or tool holds its lock file.</summary>
    public const int DataDirectoryInUse = 3;

    /// <summary>The data directory holds damaged data (TmemCorruptionException): run tmem-admin verify / recover.</summary>
    public const int DataDirectoryDamaged = 4;

    /// <summary>Cannot listen: the socket path or TCP address is unusable, or already served.</summary>
    public const int CannotListen = 5;

    /// <summary>The data directory cannot be opened or created (permissions, I/O error, full disk).</summary>
    public const int DataDirectoryUnusable = 6;
}

/// <summary>A failure to start that is told in a few lines (no stack trace) and ends the process with <see cref="ExitCode"/>.</summary>
internal sealed class StartupFailure(int exitCode, string message, Exception? inner = null) : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;
}
