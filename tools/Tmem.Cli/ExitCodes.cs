namespace Tmem.Cli;

/// <summary>tmem's exit codes (also in <c>tmem --help</c>).</summary>
internal static class ExitCodes
{
    /// <summary>Done.</summary>
    public const int Ok = 0;

    /// <summary>Done in part: pages refused by the store (put) or missing (get); the output says which and why.</summary>
    public const int Partial = 1;

    /// <summary>Bad command line, or an input file that cannot be read.</summary>
    public const int Usage = 2;

    /// <summary>The service cannot be reached, or refused the handshake.</summary>
    public const int Unreachable = 3;

    /// <summary>The service answered the request with an error (the message is the service's), or the connection broke.</summary>
    public const int Refused = 4;
}
