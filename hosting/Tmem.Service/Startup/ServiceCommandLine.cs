namespace Tmem.Service.Startup;

/// <summary>
/// What the service's command line holds besides configuration keys (<c>--Tmem:Key=value</c>):
/// <c>--help</c> and <c>--version</c>, which print and exit before anything starts or is created.
/// </summary>
internal static class ServiceCommandLine
{
    public const string Help = """
        usage: tmem-server [--Tmem:KEY=VALUE]...      (or: dotnet Tmem.Service.dll ...)

        Runs the Tmem service: opens (recovers) the store and serves it on a Unix socket (and TCP
        when configured) until SIGTERM or Ctrl+C. Every setting is a configuration key, read from
        appsettings.json (beside the program, in the content root, in the working directory), then
        environment variables (Tmem__RamBudgetBytes=256MiB), then the command line
        (--Tmem:RamBudgetBytes=256MiB); sizes take units (64KiB, 256MiB, 4GiB) or bytes.

        Common keys (all of them: docs/service.md, docs/engine.md and, for NBD, docs/nbd.md):
          --Tmem:DataDirectory=PATH          persistent pools' log (default ./data; empty: memory only)
          --Tmem:RamBudgetBytes=SIZE         RAM for compressed pages (default 256MiB)
          --Tmem:Durability=Strict|Relaxed   when persistent puts are acknowledged (default Strict)
          --Tmem:Service:SocketPath=PATH     the Unix socket (default ./tmem.sock)
          --Tmem:Service:TcpPort=PORT        also listen on TCP (default off; loopback unless TcpAddress)
          --Tmem:Service:Clients:0:Name=...  the clients that may connect (Id, Secret, SharedPools, ...)
          --Tmem:Nbd:Exports:0:Name=...      block devices served over NBD (Client, SizeBytes, Mode), on
          --Tmem:Nbd:Listeners:0:Client=...  NBD listeners, each acting for one client (SocketPath, TcpPort)

        Options:
          -h, --help       this text
          --version        the version

        Exit codes: 0 stopped normally; 1 unexpected failure; 2 bad configuration; 3 data directory in
        use; 4 data directory damaged (tmem-admin verify/recover); 5 cannot listen; 6 data directory
        cannot be opened.
        """;

    /// <summary>The exit code when the command line asked for help or the version (printed here); null to start the service.</summary>
    public static int? Handle(string[] args)
    {
        if (args.Any(a => a is "-h" or "--help" or "-?" or "/?"))
        {
            Console.Out.WriteLine(Help);
            return ExitCodes.Ok;
        }
        if (args.Any(a => a is "--version" or "-V"))
        {
            Console.Out.WriteLine($"tmem-server {ServiceVersion.Text}");
            return ExitCodes.Ok;
        }
        return null;
    }
}
