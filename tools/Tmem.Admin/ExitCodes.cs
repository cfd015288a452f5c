namespace Tmem.Admin;

/// <summary>tmem-admin's exit codes (README.md, "The offline recovery tool").</summary>
internal static class ExitCodes
{
    /// <summary>Done; for verify: no damage (notices such as a torn tail may be listed).</summary>
    public const int Ok = 0;

    /// <summary>verify found damage; recover left damage it may not repair without a flag, or the store still does not open.</summary>
    public const int Damaged = 1;

    /// <summary>Bad command line.</summary>
    public const int Usage = 2;

    /// <summary>The directory is in use: a running service or tool holds its lock file. Nothing was done.</summary>
    public const int InUse = 3;

    /// <summary>Refused, nothing changed: not a data directory, invalid format file, no room for a backup, an import clash, a damaged export file or source.</summary>
    public const int Refused = 4;

    /// <summary>Failed on an unexpected error (I/O, a bug); the message says where.</summary>
    public const int Failed = 5;
}
