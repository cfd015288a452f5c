using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace Tmem.Service.Network;

/// <summary>
/// Listens on the Unix domain socket (and the TCP port, when configured) and serves each
/// connection (<see cref="Connection"/>). Binds in <see cref="StartAsync"/>, so a socket that
/// cannot be bound stops the start. <see cref="StopAsync"/> is the first step of a graceful
/// shutdown: stop accepting, let every connection finish the requests it has started (new
/// frames get ShuttingDown), close them; the store (stopped after this service) then commits
/// and writes its checkpoint.
/// </summary>
internal sealed partial class ListenerService(StoreHost host, ClientDirectory clients, ServiceMetrics metrics, IOptions<ServiceOptions> options,
    ILoggerFactory loggerFactory, ILogger<ListenerService> logger) : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<Connection, Task> _connections = new();
    private string? _socketPath;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (clients.Count == 0) LogNoClients();
        if (o.SocketPath.Length > 0)
        {
            _socketPath = Path.GetFullPath(o.SocketPath);
            var mode = (UnixFileMode)Convert.ToInt32(o.SocketFileMode, 8);
            _listeners.Add(BindUnix(_socketPath, mode));
            LogListeningUnix(_socketPath, o.SocketFileMode);
        }
        if (o.TcpPort != 0)
        {
            var address = IPAddress.Parse(o.TcpAddress);
            var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                tcp.Bind(new IPEndPoint(address, o.TcpPort));
                tcp.Listen(512);
            }
            catch
            {
                tcp.Dispose();
                throw;
            }
            _listeners.Add(tcp);
            if (IPAddress.IsLoopback(address)) LogListeningTcp(tcp.LocalEndPoint!.ToString()!);
            else LogListeningTcpRemote(tcp.LocalEndPoint!.ToString()!);
        }
        foreach (var listener in _listeners) _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        return Task.CompletedTask;
    }

    private static Socket BindUnix(string path, UnixFileMode mode)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            if ((File.GetAttributes(path) & FileAttributes.Directory) != 0)
                throw new IOException($"Tmem:Service:SocketPath {path} is a directory.");
            // A socket file left by a service that did not stop cleanly: remove it, unless a live
            // service still answers on it.
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new IOException($"Another process is listening on {path} (Tmem:Service:SocketPath); stop it or choose another path.");
            }
            catch (SocketException)
            {
                File.Delete(path);
            }
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            // Before Listen: until then a connect is refused, so nobody gets in under the umask's mode.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
            socket.Listen(512);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var o = options.Value;
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                LogAcceptFailed(e);
                continue;
            }
            if (metrics.Connections >= o.MaxConnections)
            {
                LogTooManyConnections(o.MaxConnections);
                socket.Dispose();
                continue;
            }
            if (socket.AddressFamily != AddressFamily.Unix) socket.NoDelay = true;
            string peer = socket.AddressFamily == AddressFamily.Unix ? $"unix#{socket.Handle.ToInt64().ToString(CultureInfo.InvariantCulture)}" : socket.RemoteEndPoint?.ToString() ?? "tcp";
            var connection = new Connection(socket, host.Store, clients, o, metrics, loggerFactory.CreateLogger<Connection>(), peer, _stopping.Token);
            metrics.ConnectionOpened();
            _connections[connection] = Task.Run(async () =>
            {
                try
                {
                    await connection.RunAsync().ConfigureAwait(false);
                }
                finally
                {
                    metrics.ConnectionClosed();
                    _connections.TryRemove(connection, out _);
                }
            });
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        int open = _connections.Count;
        // Stop accepting, then stop reading: each connection answers what it started and closes.
        foreach (var listener in _listeners) listener.Dispose();
        _stopping.Cancel();
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a connection: {Max} are open (Tmem:Service:MaxConnections)")]
    private partial void LogTooManyConnections(int max);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown timeout: {Count} connections still had requests in flight")]
    private partial void LogConnectionsAbandoned(int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Listeners closed; {Count} connections were open and have finished their requests")]
    private partial void LogStopped(int count);
}
