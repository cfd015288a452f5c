using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Tmem.Service.Handlers;
using Tmem.Service.Sessions;
using Tmem.Service.Startup;

namespace Tmem.Service.Network;

/// <summary>
/// Listens on the Unix domain socket (and the TCP port, when configured) and serves each
/// connection (<see cref="FrameConnection"/>). <see cref="Bind"/> runs before the store opens
/// (Program.cs), so a socket that cannot be bound stops the start before anything is created on
/// disk; until <see cref="StartAsync"/> calls listen, connecting is refused (nobody gets in during
/// recovery). <see cref="StopAsync"/> is the first step of a graceful shutdown: stop accepting, let
/// every connection answer what it received (ShuttingDown for what it had not started) and close;
/// the store (stopped after this service) then commits and writes its checkpoint.
/// </summary>
internal sealed partial class ListenerService(SessionManager sessions, RequestDispatcher dispatcher, IOptions<ServiceOptions> options,
    ILoggerFactory loggerFactory, ILogger<ListenerService> logger) : IHostedService, IDisposable
{
    private const string S = ServiceOptions.SectionName;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<FrameConnection, Task> _connections = new();
    private string? _socketPath;
    private bool _bound;

    /// <summary>Binds every configured listener (no listen yet).</summary>
    /// <exception cref="StartupFailure">A listener cannot be bound (exit code 5), with what to do.</exception>
    public void Bind()
    {
        if (_bound) return;
        var o = options.Value;
        try
        {
            if (o.SocketPath.Length > 0)
            {
                string path = Path.GetFullPath(o.SocketPath);
                _listeners.Add(BindUnix(path, (UnixFileMode)Convert.ToInt32(o.SocketFileMode, 8)));
                _socketPath = path;
            }
            if (o.TcpPort != 0) _listeners.Add(BindTcp(IPAddress.Parse(o.TcpAddress), o.TcpPort));
        }
        catch
        {
            Unbind();
            throw;
        }
        _bound = true;
    }

    /// <summary>Start failed after <see cref="Bind"/>: closes the listeners and removes the socket file.</summary>
    public void Unbind()
    {
        foreach (var listener in _listeners) listener.Dispose();
        _listeners.Clear();
        if (_socketPath is not null) File.Delete(_socketPath);
        _socketPath = null;
        _bound = false;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Bind();
        var o = options.Value;
        if (sessions.Clients.Count == 0) LogNoClients();
        foreach (var listener in _listeners)
        {
            listener.Listen(512);
            if (listener.AddressFamily == AddressFamily.Unix) LogListeningUnix(_socketPath!, o.SocketFileMode);
            else if (IPAddress.IsLoopback(((IPEndPoint)listener.LocalEndPoint!).Address)) LogListeningTcp(listener.LocalEndPoint!.ToString()!);
            else LogListeningTcpRemote(listener.LocalEndPoint!.ToString()!);
        }
        foreach (var listener in _listeners) _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        return Task.CompletedTask;
    }

    /// <summary>Binds a Unix socket (no listen yet), replacing a stale socket file; <paramref name="key"/> names the setting in messages (the NBD listeners use this too).</summary>
    internal static Socket BindUnix(string path, UnixFileMode mode, string key = $"{S}:SocketPath")
    {
        string? directory = Path.GetDirectoryName(path);
        if (directory is not null && !Directory.Exists(directory))
            throw new StartupFailure(ExitCodes.CannotListen, $"{key} is {path}, but the directory {directory} does not exist; create it or choose another path.");
        if (Directory.Exists(path))
            throw new StartupFailure(ExitCodes.CannotListen, $"{key} is {path}, which is a directory; give the path of a socket file to create, such as {Path.Combine(path, "tmem.sock")}.");
        if (File.Exists(path))
        {
            // A socket file left by a service that did not stop cleanly: remove it, unless a live
            // service still answers on it.
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new StartupFailure(ExitCodes.CannotListen, $"{key} is {path}, which another process is listening on (a Tmem service already running?); stop it or choose another path.");
            }
            catch (SocketException)
            {
                try
                {
                    File.Delete(path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new StartupFailure(ExitCodes.CannotListen, $"{key} is {path}, a stale socket file that cannot be removed ({e.Message}); remove it or choose another path.", e);
                }
            }
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            // Before listen: until then a connect is refused, so nobody gets in under the umask's mode.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
            return socket;
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            string why = e is SocketException { SocketErrorCode: SocketError.AccessDenied } or UnauthorizedAccessException
                ? "permission denied: the service's user may not create files in that directory"
                : e.Message;
            throw new StartupFailure(ExitCodes.CannotListen, $"{key} is {path}, which cannot be bound: {why}; choose another path.", e);
        }
    }

    /// <summary>Binds a TCP socket (no listen yet); <paramref name="section"/> names the settings' section in messages.</summary>
    internal static Socket BindTcp(IPAddress address, int port, string section = S)
    {
        var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            tcp.Bind(new IPEndPoint(address, port));
            return tcp;
        }
        catch (SocketException e)
        {
            tcp.Dispose();
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => "another process listens there (a Tmem service already running?); stop it or choose another port",
                SocketError.AddressNotAvailable => $"{address} is not an address of this machine ({section}:TcpAddress); choose one it has, such as 127.0.0.1",
                SocketError.AccessDenied => "permission denied (ports under 1024 need privileges); choose a port from 1024 up",
                _ => e.Message,
            };
            throw new StartupFailure(ExitCodes.CannotListen, $"{section}:TcpPort {port} on {section}:TcpAddress {address} cannot be bound: {why}.", e);
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var o = options.Value;
        while (await Acceptor.NextAsync(listener, LogAcceptFailed, _stopping.Token).ConfigureAwait(false) is { } socket)
        {
            // A Unix socket's peer as the kernel knows it (SO_PEERCRED), for logs, the client list
            // and clients bound to a Unix user; a TCP peer by its address.
            var credentials = PeerCredentials.Of(socket);
            string peer = credentials?.ToString() ?? (socket.AddressFamily == AddressFamily.Unix ? "unix" : socket.RemoteEndPoint?.ToString() ?? "tcp");
            // Admission (ConnectionGovernor) happens in the constructor: it counts the connection
            // as unauthenticated, closing the oldest such one if they are at their limit.
            var connection = new FrameConnection(socket, sessions, dispatcher, o, loggerFactory.CreateLogger<FrameConnection>(), peer, credentials, _stopping.Token);
            _connections[connection] = Task.Run(async () =>
            {
                try
                {
                    await connection.RunAsync().ConfigureAwait(false);
                }
                finally
                {
                    _connections.TryRemove(connection, out _);
                }
            });
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        int open = _connections.Count;
        // Stop reading and accepting: each connection answers what it received and closes. Cancel
        // first, so that an accept failing because its listener closed is known to be the stop
        // (as NbdService does), not logged as a failure.
        _stopping.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Values).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            LogConnectionsAbandoned(_connections.Count);
        }
        if (_socketPath is not null) File.Delete(_socketPath);
        LogStopped(open);
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "Listening on Unix socket {Path} (mode {Mode})")]
    private partial void LogListeningUnix(string path, string mode);

    [LoggerMessage(Level = LogLevel.Information, Message = "Listening on TCP {EndPoint} (loopback only)")]
    private partial void LogListeningTcp(string endPoint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listening on TCP {EndPoint}, which is not loopback only (Tmem:Service:TcpAddress): clients on the network can connect")]
    private partial void LogListeningTcpRemote(string endPoint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No clients are configured (Tmem:Service:Clients): every handshake will be refused")]
    private partial void LogNoClients();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accept failed")]
    private partial void LogAcceptFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown timeout: {Count} connections still had requests in flight")]
    private partial void LogConnectionsAbandoned(int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Listeners closed; {Count} connections were open and have finished their requests")]
    private partial void LogStopped(int count);
}
