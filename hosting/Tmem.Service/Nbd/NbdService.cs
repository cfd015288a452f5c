using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Tmem.Service.Network;
using Tmem.Service.Sessions;

namespace Tmem.Service.Nbd;

/// <summary>A bound NBD listener and the configured client its connections act for.</summary>
internal sealed record NbdListener(string Client, Socket Socket, string Where, string? SocketPath);

/// <summary>The NBD front end's instruments, on the meter <c>Tmem</c> beside the store's and the service's.</summary>
internal sealed class NbdMetrics : IDisposable
{
    private readonly Meter _meter = new("Tmem", "1.0");
    private readonly long[] _requests = new long[8];
    private long _connections;

    public NbdMetrics()
    {
        _meter.CreateObservableUpDownCounter("nbd_connections", () => Volatile.Read(ref _connections), "{connection}", "NBD connections in the transmission phase");
        _meter.CreateObservableCounter("nbd_requests", () => Enumerable.Range(0, _requests.Length)
            .Select(i => new Measurement<long>(Volatile.Read(ref _requests[i]), new KeyValuePair<string, object?>("command", NbdProtocol.CommandName((ushort)i)))), "{request}", "NBD requests received, by command");
    }

    public void ConnectionOpened() => Interlocked.Increment(ref _connections);

    public void ConnectionClosed() => Interlocked.Decrement(ref _connections);

    public void Request(ushort type)
    {
        if (type < _requests.Length) Interlocked.Increment(ref _requests[type]);
    }

    public void Dispose() => _meter.Dispose();
}

/// <summary>
/// The NBD front end's transport (docs/nbd.md): binds every <c>Tmem:Nbd:Listeners</c> entry
/// before the store opens (Program.cs, with the exports' backing files), listens once the host
/// starts, serves each connection (<see cref="NbdConnection"/>), and at shutdown stops accepting
/// and lets every connection answer what it received. Registered just before the tmem listener:
/// it accepts before the service logs that it listens, and stops (after the tmem listener)
/// before the store closes.
/// </summary>
internal sealed partial class NbdService(NbdExports exports, SessionManager sessions, IOptions<NbdOptions> options, IOptions<ServiceOptions> serviceOptions,
    NbdMetrics metrics, ILoggerFactory loggerFactory, ILogger<NbdService> logger) : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<NbdListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();

    /// <summary>Opens the backing files and binds the listeners (before the store opens).</summary>
    /// <exception cref="Startup.StartupFailure">A backing file or a listener cannot be used.</exception>
    public void Prepare()
    {
        if (!exports.Enabled) return;
        exports.Prepare();
        var o = options.Value;
        try
        {
            for (int i = 0; i < o.Listeners.Count; i++)
            {
                var l = o.Listeners[i];
                string section = $"{NbdOptions.SectionName}:Listeners:{i}";
                if (l.SocketPath.Length > 0)
                {
                    string path = Path.GetFullPath(l.SocketPath);
                    var socket = ListenerService.BindUnix(path, (UnixFileMode)Convert.ToInt32(l.SocketFileMode, 8), $"{section}:SocketPath");
                    _listeners.Add(new NbdListener(l.Client, socket, $"Unix socket {path} (mode {l.SocketFileMode})", path));
                }
                if (l.TcpPort != 0)
                {
                    var socket = ListenerService.BindTcp(IPAddress.Parse(l.TcpAddress), l.TcpPort, section);
                    _listeners.Add(new NbdListener(l.Client, socket, $"TCP {socket.LocalEndPoint}", null));
                }
            }
        }
        catch
        {
            Unbind();
            throw;
        }
    }

    /// <summary>The start failed after <see cref="Prepare"/>: closes the listeners, removes their socket files, closes the backing files.</summary>
    public void Unbind()
    {
        foreach (var listener in _listeners)
        {
            listener.Socket.Dispose();
            if (listener.SocketPath is not null) File.Delete(listener.SocketPath);
        }
        _listeners.Clear();
        exports.Close();
    }

    /// <summary>Attaches the exports to their pools (after the store opened).</summary>
    public void Attach()
    {
        if (exports.Enabled) exports.Attach();
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var listener in _listeners)
        {
            listener.Socket.Listen(512);
            var names = exports.VisibleTo(listener.Client).Select(e => $"{e.Name} ({e.ModeName}, {e.Size} bytes)").ToList();
            bool remote = listener.Socket.LocalEndPoint is IPEndPoint ip && !IPAddress.IsLoopback(ip.Address);
            if (remote) LogListeningRemote(listener.Where, listener.Client);
            LogListening(listener.Where, listener.Client, names.Count == 0 ? "none" : string.Join(", ", names));
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
        return Task.CompletedTask;
    }

    private async Task AcceptLoopAsync(NbdListener listener)
    {
        while (await Acceptor.NextAsync(listener.Socket, LogAcceptFailed, _stopping.Token).ConfigureAwait(false) is { } socket)
        {
            var credentials = PeerCredentials.Of(socket);
            string peer = socket.AddressFamily == AddressFamily.Unix
                ? $"nbd {credentials?.ToString() ?? "unix#" + socket.Handle.ToInt64().ToString(CultureInfo.InvariantCulture)}"
                : $"nbd {socket.RemoteEndPoint}";
            var connection = new NbdConnection(socket, listener, exports, options.Value, serviceOptions.Value, sessions, metrics,
                loggerFactory.CreateLogger<NbdConnection>(), peer, credentials, _stopping.Token);
            // A thread of its own: the connection's socket is blocking (NbdConnection.Run).
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _connections[connection] = done.Task;
            var thread = new Thread(() =>
            {
                try
                {
                    connection.Run();
                }
                catch (Exception e)
                {
                    LogConnectionFailed(e, peer); // Run catches what it expects; this thread must not take the process down
                }
                finally
                {
                    _connections.TryRemove(connection, out _);
                    done.SetResult();
                }
            })
            { IsBackground = true, Name = "NBD connection" };
            thread.UnsafeStart();
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        int open = _connections.Count;
        _stopping.Cancel(); // first: an accept that fails because its socket closed is then known to be the stop
        foreach (var listener in _listeners) listener.Socket.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Values).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            LogAbandoned(_connections.Count);
        }
        foreach (var listener in _listeners)
            if (listener.SocketPath is not null) File.Delete(listener.SocketPath);
        exports.Close();
        if (_listeners.Count > 0) LogStopped(open);
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD listening on {Where} for client {Client}; exports: {Exports}")]
    private partial void LogListening(string where, string client, string exports);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NBD listening on {Where} for client {Client}, which is not loopback only: NBD has no authentication, anyone who can reach it acts as that client")]
    private partial void LogListeningRemote(string where, string client);

    [LoggerMessage(Level = LogLevel.Error, Message = "NBD connection {Peer} failed while closing")]
    private partial void LogConnectionFailed(Exception exception, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NBD accept failed")]
    private partial void LogAcceptFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown timeout: {Count} NBD connections still had requests in flight")]
    private partial void LogAbandoned(int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD listeners closed; {Count} connections were open and have finished their requests")]
    private partial void LogStopped(int count);
}
