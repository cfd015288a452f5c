using System.Net;
using System.Net.Sockets;
using Tmem.Client;

namespace Tmem.Cli;

/// <summary>Where the service is and who to be there: --socket, --client, --secret (or TMEM_SOCKET, TMEM_CLIENT, TMEM_SECRET).</summary>
internal sealed record ServiceAddress(string Address, string Client, string Secret)
{
    public const string DefaultSocket = "tmem.sock";
    public const string DefaultClient = "local";

    /// <summary>Connects and authenticates; every failure becomes one sentence saying what to do.</summary>
    /// <exception cref="CliException">Unreachable (exit code 3).</exception>
    public async Task<TmemConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        EndPoint endPoint;
        try
        {
            endPoint = TmemEndpoint.Parse(Address);
        }
        catch (FormatException e)
        {
            throw new CliException(ExitCodes.Usage, $"--socket {Address}: {e.Message} Give a socket path, unix:PATH or tcp:HOST:PORT.");
        }
        const string start = "start the service (dotnet run --project hosting/Tmem.Service, or tmem-server) or give its socket with --socket or TMEM_SOCKET";
        if (endPoint is UnixDomainSocketEndPoint && !File.Exists(SocketPath))
            throw new CliException(ExitCodes.Unreachable, $"no service at {Path.GetFullPath(SocketPath)}: the socket file does not exist; {start}.");
        try
        {
            return await TmemConnection.ConnectAsync(endPoint, Client, Secret, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            string why = e.SocketErrorCode switch
            {
                SocketError.ConnectionRefused when endPoint is UnixDomainSocketEndPoint => "nothing listens on that socket file (the service stopped without removing it?)",
                SocketError.ConnectionRefused => "nothing listens on that port",
                SocketError.AccessDenied => "permission denied (the socket's mode allows only the service's user; Tmem:Service:SocketFileMode)",
                SocketError.AddressNotAvailable when endPoint is UnixDomainSocketEndPoint => "the socket file does not exist",
                SocketError.HostNotFound or SocketError.NoData => "the host name is unknown",
                SocketError.TimedOut => "the connection timed out",
                _ => e.Message,
            };
            throw new CliException(ExitCodes.Unreachable, $"cannot connect to {Describe(endPoint)}: {why}; {start}.");
        }
        catch (TmemRemoteException e)
        {
            throw new CliException(ExitCodes.Unreachable, e.Status == Tmem.Protocol.ProtocolStatus.AuthenticationFailed
                ? $"the service at {Describe(endPoint)} refused client '{Client}': unknown client name or wrong secret (give --client and --secret, or TMEM_CLIENT and TMEM_SECRET, as configured in Tmem:Service:Clients)."
                : $"the service at {Describe(endPoint)} refused the handshake of client '{Client}': {e.Message}");
        }
        catch (IOException e)
        {
            throw new CliException(ExitCodes.Unreachable, $"cannot connect to {Describe(endPoint)}: {e.Message}");
        }
    }

    private string SocketPath => Address.StartsWith("unix:", StringComparison.Ordinal) ? Address[5..] : Address;

    private static string Describe(EndPoint endPoint) => endPoint is UnixDomainSocketEndPoint unix ? Path.GetFullPath(unix.ToString()) : endPoint.ToString() ?? "?";
}
