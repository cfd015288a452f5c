using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Tmem.Protocol;

namespace Tmem.Client;

/// <summary>
/// One connection to the Tmem service, acting for one configured client. The API mirrors the
/// in-process <c>TmemClient</c>: pools, put, get, flushes, stats.
/// <para>
/// Thread-safe: any number of callers may issue requests at once; they are pipelined over the
/// one socket (each carries a request id, responses are matched by it and may come back in any
/// order), up to the server's in-flight limit for the client (<see cref="MaxInFlight"/>; further
/// callers wait for a slot). Requests in flight at the same time are concurrent operations: to
/// have one take effect before another, await the first.
/// </para>
/// <para>
/// Cancelling a call stops the wait, not the request: one already sent may still be carried out.
/// When the connection fails (the server closed it, a network error, a malformed response) every
/// pending and later call throws <see cref="IOException"/> and <see cref="IsConnected"/> turns
/// false; it does not reconnect by itself: open a new connection, or let
/// <see cref="TmemConnectionFactory"/> do it with back-off (pool ids belong to the client, not
/// the connection, so they stay valid; after a restart of the service only persistent pools are back).
/// </para>
/// </summary>
public sealed class TmemConnection : IAsyncDisposable, IDisposable
{
    private const int InitialBufferBytes = 64 * 1024;
    private const int MaxResponseBytes = 64 << 20;

    private readonly Socket _socket;
    private readonly ConcurrentDictionary<uint, Pending> _pending = new();
    private readonly Lock _sendLock = new();
    private readonly Channel<bool> _sendSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private readonly SemaphoreSlim _slots;
    private readonly Task _readLoop;
    private readonly Task _writeLoop;
    private byte[] _send = new byte[InitialBufferBytes];
    private byte[] _sending = new byte[InitialBufferBytes];
    private int _sendLength;
    private uint _nextRequestId;
    private volatile Exception? _failure;

    private TmemConnection(Socket socket, int clientId, int maxFrameBytes, int maxInFlight, int maxPools)
    {
        _socket = socket;
        ClientId = clientId;
        MaxFrameBytes = maxFrameBytes;
        MaxInFlight = maxInFlight;
        MaxPools = maxPools;
        _slots = new SemaphoreSlim(maxInFlight, int.MaxValue);
        _readLoop = Task.Run(ReadLoopAsync);
        _writeLoop = Task.Run(WriteLoopAsync);
    }

    /// <summary>The client id the server authenticated this connection as.</summary>
    public int ClientId { get; }

    /// <summary>The largest frame this client may send (so the largest page is this less 44 bytes).</summary>
    public int MaxFrameBytes { get; }

    /// <summary>Requests this connection may have in flight at once.</summary>
    public int MaxInFlight { get; }

    /// <summary>Pools this client may hold at once.</summary>
    public int MaxPools { get; }

    /// <summary>
    /// False once the connection has failed or been disposed: every call then throws. Open a new
    /// one (<see cref="TmemConnectionFactory"/> does, with back-off).
    /// </summary>
    public bool IsConnected => _failure is null;

    /// <summary>
    /// Connects and authenticates as <paramref name="clientName"/> with <paramref name="secret"/>.
    /// </summary>
    /// <param name="endPoint">The service's Unix socket (<see cref="UnixDomainSocketEndPoint"/>) or TCP address; see <see cref="TmemEndpoint.Parse"/>.</param>
    /// <param name="clientName">A client name from the service's configuration (1 to 255 UTF-8 bytes).</param>
    /// <param name="secret">That client's secret (0 to 255 UTF-8 bytes).</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <exception cref="TmemRemoteException">The server refused the handshake (wrong secret, unknown name, version).</exception>
    /// <exception cref="SocketException">Nothing listens there.</exception>
    public static async Task<TmemConnection> ConnectAsync(EndPoint endPoint, string clientName, string secret, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        byte[] name = Encoding.UTF8.GetBytes(clientName ?? throw new ArgumentNullException(nameof(clientName)));
        byte[] secretBytes = Encoding.UTF8.GetBytes(secret ?? throw new ArgumentNullException(nameof(secret)));
        if (name.Length is 0 or > 255) throw new ArgumentException("The client name must be 1 to 255 UTF-8 bytes.", nameof(clientName));
        if (secretBytes.Length > 255) throw new ArgumentException("The secret must be at most 255 UTF-8 bytes.", nameof(secret));

        bool unix = endPoint is UnixDomainSocketEndPoint;
        var socket = new Socket(unix ? AddressFamily.Unix : endPoint.AddressFamily is AddressFamily.Unspecified ? AddressFamily.InterNetwork : endPoint.AddressFamily,
            SocketType.Stream, unix ? ProtocolType.Unspecified : ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            if (!unix) socket.NoDelay = true;
            int length = Wire.HeaderSize + 2 + 1 + name.Length + 1 + secretBytes.Length;
            var hello = new byte[length];
            Wire.WriteHeader(hello, length, (byte)Opcode.Hello, ProtocolStatus.Ok, 0);
            BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(12), Wire.Version);
            hello[14] = (byte)name.Length;
            name.CopyTo(hello, 15);
            hello[15 + name.Length] = (byte)secretBytes.Length;
            secretBytes.CopyTo(hello, 16 + name.Length);
            await SendAllAsync(socket, hello, cancellationToken).ConfigureAwait(false);

            var header = new byte[Wire.HeaderSize];
            await ReceiveExactlyAsync(socket, header, cancellationToken).ConfigureAwait(false);
            int responseLength = Wire.ReadLength(header);
            if (responseLength < Wire.HeaderSize || responseLength > Wire.HandshakeMaxFrameBytes || header[4] != (Wire.ResponseBit | (byte)Opcode.Hello))
                throw new IOException($"The server's handshake answer is not a Hello response (length {responseLength}, opcode 0x{header[4]:x2}).");
            var payload = new byte[responseLength - Wire.HeaderSize];
            await ReceiveExactlyAsync(socket, payload, cancellationToken).ConfigureAwait(false);
            var status = (ProtocolStatus)header[5];
            if (status != ProtocolStatus.Ok) throw new TmemRemoteException(status, Encoding.UTF8.GetString(payload));
            if (payload.Length < Wire.HelloResponseSize) throw new IOException("The server's Hello response is too short.");
            return new TmemConnection(socket,
                BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(4)),
                BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(8)),
                BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(12)),
                BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(16)));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Connects to an address in the form <see cref="TmemEndpoint.Parse"/> reads.</summary>
    public static Task<TmemConnection> ConnectAsync(string address, string clientName, string secret, CancellationToken cancellationToken = default) =>
        ConnectAsync(TmemEndpoint.Parse(address), clientName, secret, cancellationToken);

    /// <summary>Creates a pool, or joins a shared one, and returns this client's id for it.</summary>
    /// <exception cref="TmemRemoteException">Refused: limit, a shared UUID the client may not use, a mismatch, bad options.</exception>
    public async Task<int> CreatePoolAsync(PoolOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var p = await BeginAsync(Opcode.CreatePool, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + Wire.CreatePoolSize);
            Wire.WriteCreatePool(frame[Wire.HeaderSize..], options);
        }
        Signal();
        return (int)await EndAsync(p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Destroys (or, for a shared pool, leaves) a pool of this client.</summary>
    public async Task DestroyPoolAsync(int poolId, CancellationToken cancellationToken = default)
    {
        var p = await BeginAsync(Opcode.DestroyPool, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + 4);
            BinaryPrimitives.WriteInt32LittleEndian(frame[Wire.HeaderSize..], poolId);
        }
        Signal();
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Stores a copy of <paramref name="page"/> (the pool's page size) under the handle. Completes
    /// when the server acknowledges it: for a persistent pool, once it is as durable as the
    /// service's durability mode promises. The page is copied before the first await.
    /// </summary>
    public async ValueTask<PutStatus> PutAsync(int poolId, ObjectId objectId, uint index, ReadOnlyMemory<byte> page, CancellationToken cancellationToken = default)
    {
        int length = Wire.HeaderSize + Wire.HandleSize + page.Length;
        if (length > MaxFrameBytes)
            throw new ArgumentException($"A {page.Length}-byte page needs a {length}-byte frame, over this client's limit of {MaxFrameBytes}.", nameof(page));
        var p = await BeginAsync(Opcode.Put, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, length);
            Wire.WriteHandle(frame[Wire.HeaderSize..], poolId, objectId, index);
            page.Span.CopyTo(frame[(Wire.HeaderSize + Wire.HandleSize)..]);
        }
        Signal();
        return (PutStatus)await EndAsync(p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads the page under the handle into <paramref name="page"/> (the pool's page size): a hit
    /// copies it there (and, in a private ephemeral pool or an exclusive-gets pool, removes it
    /// from the store); a miss leaves <paramref name="page"/> untouched. Do not touch
    /// <paramref name="page"/> until this completes.
    /// </summary>
    public async ValueTask<GetStatus> GetAsync(int poolId, ObjectId objectId, uint index, Memory<byte> page, CancellationToken cancellationToken = default)
    {
        var p = await BeginAsync(Opcode.Get, cancellationToken).ConfigureAwait(false);
        p.Destination = page;
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + Wire.HandleSize);
            Wire.WriteHandle(frame[Wire.HeaderSize..], poolId, objectId, index);
        }
        Signal();
        return (GetStatus)await EndAsync(p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes the page under the handle; true if there was one.</summary>
    public async ValueTask<bool> FlushPageAsync(int poolId, ObjectId objectId, uint index, CancellationToken cancellationToken = default)
    {
        var p = await BeginAsync(Opcode.FlushPage, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + Wire.HandleSize);
            Wire.WriteHandle(frame[Wire.HeaderSize..], poolId, objectId, index);
        }
        Signal();
        return await EndAsync(p, cancellationToken).ConfigureAwait(false) != 0;
    }

    /// <summary>Removes every page of the object; returns how many there were.</summary>
    public async ValueTask<int> FlushObjectAsync(int poolId, ObjectId objectId, CancellationToken cancellationToken = default)
    {
        var p = await BeginAsync(Opcode.FlushObject, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + 4 + Wire.ObjectIdSize);
            BinaryPrimitives.WriteInt32LittleEndian(frame[Wire.HeaderSize..], poolId);
            Wire.WriteObjectId(frame[(Wire.HeaderSize + 4)..], objectId);
        }
        Signal();
        return (int)await EndAsync(p, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The store's counters as (snake_case name, value), in the order the service sends them.</summary>
    public async Task<IReadOnlyList<KeyValuePair<string, long>>> GetStatsAsync(CancellationToken cancellationToken = default)
    {
        var p = await SendEmptyAsync(Opcode.Stats, cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        return Wire.ReadStats(p.Payload);
    }

    /// <summary>This client's pools (shared ones under this client's ids).</summary>
    public async Task<IReadOnlyList<PoolInfo>> GetPoolsAsync(CancellationToken cancellationToken = default)
    {
        var p = await SendEmptyAsync(Opcode.ListPools, cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        var payload = p.Payload;
        if (payload.Length < 2) throw new IOException("ListPools response shorter than its count.");
        int count = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        if (payload.Length != 2 + count * Wire.PoolEntrySize) throw new IOException($"ListPools response is {payload.Length} bytes for {count} pools.");
        var pools = new List<PoolInfo>(count);
        for (int i = 0; i < count; i++) pools.Add(Wire.ReadPoolEntry(payload.AsSpan(2 + i * Wire.PoolEntrySize)));
        return pools;
    }

    /// <summary>A Ping (its payload echoed back): the round trip's time. For health checks.</summary>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        var p = await SendEmptyAsync(Opcode.Ping, cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        return System.Diagnostics.Stopwatch.GetElapsedTime(start);
    }

    /// <summary>The service's Info report: server, clients, requests, store, log and configuration sections.</summary>
    public async Task<TmemInfo> GetInfoAsync(CancellationToken cancellationToken = default)
    {
        var p = await SendEmptyAsync(Opcode.Info, cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        return TmemInfo.Parse(Encoding.UTF8.GetString(p.Payload));
    }

    /// <summary>Administrator clients: the settings that can change at run time whose key matches <paramref name="pattern"/> (empty: all; <c>Logging:*</c>: a prefix).</summary>
    /// <exception cref="TmemRemoteException"><see cref="ProtocolStatus.NotPermitted"/> for a client that is not an administrator.</exception>
    public async Task<IReadOnlyList<KeyValuePair<string, string>>> GetConfigAsync(string pattern = "", CancellationToken cancellationToken = default)
    {
        var p = await SendTextAsync(Opcode.ConfigGet, pattern ?? "", cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        return TmemInfo.ParsePairs(Encoding.UTF8.GetString(p.Payload));
    }

    /// <summary>Administrator clients: changes a setting at run time (<c>Tmem:RamBudgetBytes</c>, <c>Logging:LogLevel:CATEGORY</c>); returns the value now in force.</summary>
    /// <exception cref="TmemRemoteException">Not permitted, or a key or value the service refuses (the message says what it takes).</exception>
    public async Task<string> SetConfigAsync(string key, string value, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        var p = await SendTextAsync(Opcode.ConfigSet, $"{key}={value}", cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        string answer = Encoding.UTF8.GetString(p.Payload);
        int equals = answer.IndexOf('=', StringComparison.Ordinal);
        return equals >= 0 ? answer[(equals + 1)..] : answer;
    }

    /// <summary>Administrator clients: the connections open now, each as its fields (id, client, client_id, admin, peer, uid, pid, since, age_seconds, requests, in_flight, queued_bytes).</summary>
    public async Task<IReadOnlyList<IReadOnlyDictionary<string, string>>> ListClientsAsync(CancellationToken cancellationToken = default)
    {
        var p = await SendEmptyAsync(Opcode.ClientList, cancellationToken).ConfigureAwait(false);
        await EndAsync(p, cancellationToken).ConfigureAwait(false);
        var list = new List<IReadOnlyDictionary<string, string>>();
        foreach (var line in Encoding.UTF8.GetString(p.Payload).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                int equals = field.IndexOf('=', StringComparison.Ordinal);
                if (equals > 0) fields[field[..equals]] = field[(equals + 1)..];
            }
            list.Add(fields);
        }
        return list;
    }

    /// <summary>Administrator clients: closes connection <paramref name="connectionId"/> (an id from <see cref="ListClientsAsync"/>); false if none is open under it.</summary>
    public async Task<bool> KillClientAsync(long connectionId, CancellationToken cancellationToken = default)
    {
        var p = await BeginAsync(Opcode.ClientKill, cancellationToken).ConfigureAwait(false);
        lock (_sendLock)
        {
            var frame = ReserveLocked(p, Wire.HeaderSize + 8);
            BinaryPrimitives.WriteInt64LittleEndian(frame[Wire.HeaderSize..], connectionId);
        }
        Signal();
        return await EndAsync(p, cancellationToken).ConfigureAwait(false) != 0;
    }

    private async ValueTask<Pending> SendTextAsync(Opcode opcode, string text, CancellationToken cancellationToken)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        if (Wire.HeaderSize + bytes.Length > MaxFrameBytes) throw new ArgumentException($"The request is {bytes.Length} bytes, over this client's frame limit.", nameof(text));
        var p = await BeginAsync(opcode, cancellationToken).ConfigureAwait(false);
        lock (_sendLock) bytes.CopyTo(ReserveLocked(p, Wire.HeaderSize + bytes.Length)[Wire.HeaderSize..]);
        Signal();
        return p;
    }

    private async ValueTask<Pending> SendEmptyAsync(Opcode opcode, CancellationToken cancellationToken)
    {
        var p = await BeginAsync(opcode, cancellationToken).ConfigureAwait(false);
        lock (_sendLock) ReserveLocked(p, Wire.HeaderSize);
        Signal();
        return p;
    }

    /// <summary>Waits for an in-flight slot and registers a request id.</summary>
    private async ValueTask<Pending> BeginAsync(Opcode opcode, CancellationToken cancellationToken)
    {
        ThrowIfFailed();
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        var p = new Pending(opcode, Interlocked.Increment(ref _nextRequestId));
        _pending[p.Id] = p;
        if (_failure is { } failure && _pending.TryRemove(p.Id, out _))
        {
            _slots.Release();
            throw Closed(failure);
        }
        return p;
    }

    /// <summary>Under the send lock: room for a frame at the end of the send buffer, header written.</summary>
    private Span<byte> ReserveLocked(Pending p, int length)
    {
        if (_failure is { } failure)
        {
            _pending.TryRemove(p.Id, out _);
            throw Closed(failure);
        }
        if (_sendLength + length > _send.Length)
            Array.Resize(ref _send, Math.Max(_send.Length * 2, _sendLength + length));
        var frame = _send.AsSpan(_sendLength, length);
        _sendLength += length;
        Wire.WriteHeader(frame, length, (byte)p.Opcode, ProtocolStatus.Ok, p.Id);
        return frame;
    }

    private void Signal() => _sendSignal.Writer.TryWrite(true);

    private async ValueTask<long> EndAsync(Pending p, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled) return await p.Done.Task.ConfigureAwait(false);
        using var registration = cancellationToken.Register(static (state, token) =>
        {
            var pending = (Pending)state!;
            // Only a request whose response is not being read may be cancelled: the reader may be
            // copying a page into its destination.
            if (Interlocked.CompareExchange(ref pending.State, Pending.Cancelled, Pending.Waiting) == Pending.Waiting)
                pending.Done.TrySetCanceled(token);
        }, p);
        return await p.Done.Task.ConfigureAwait(false);
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            while (await _sendSignal.Reader.WaitToReadAsync().ConfigureAwait(false))
            {
                _sendSignal.Reader.TryRead(out _);
                byte[] buffer;
                int length;
                lock (_sendLock)
                {
                    buffer = _send;
                    length = _sendLength;
                    _send = _sending;
                    _sendLength = 0;
                    _sending = buffer;
                }
                if (length > 0) await SendAllAsync(_socket, buffer.AsMemory(0, length), CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    private async Task ReadLoopAsync()
    {
        using var reader = new FrameReader(InitialBufferBytes + MaxFrameBytes);
        try
        {
            while (true)
            {
                while (true)
                {
                    var result = reader.TryRead(MaxResponseBytes, out var frame, out int length);
                    if (result == FrameResult.Incomplete) break;
                    if (result != FrameResult.Complete) throw new InvalidDataException($"The server sent a frame of length {length}.");
                    Complete(frame);
                }
                int read = await _socket.ReceiveAsync(reader.GetReceiveMemory(), SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                    throw new IOException("The server closed the connection; requests still pending were not carried out (the server answers every request it reads before it closes).");
                reader.Advance(read);
            }
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    /// <summary>Reader: one response frame.</summary>
    private void Complete(ReadOnlySpan<byte> frame)
    {
        uint id = Wire.ReadRequestId(frame);
        if (!_pending.TryRemove(id, out var p))
        {
            // A server that could not read a request's id (a malformed frame) answers and closes.
            if (frame[5] != (byte)ProtocolStatus.Ok)
                throw new TmemRemoteException((ProtocolStatus)frame[5], Encoding.UTF8.GetString(frame[Wire.HeaderSize..]));
            throw new InvalidDataException($"The server answered request id {id}, which is not pending.");
        }
        if (frame[4] != (Wire.ResponseBit | (byte)p.Opcode))
            throw new InvalidDataException($"The server answered {p.Opcode} request {id} with opcode 0x{frame[4]:x2}.");
        var status = (ProtocolStatus)frame[5];
        var payload = frame[Wire.HeaderSize..];
        try
        {
            if (Interlocked.CompareExchange(ref p.State, Pending.Claimed, Pending.Waiting) != Pending.Waiting) return; // cancelled
            if (status != ProtocolStatus.Ok)
            {
                p.Done.TrySetException(new TmemRemoteException(status, Encoding.UTF8.GetString(payload)));
                return;
            }
            long result = 0;
            switch (p.Opcode)
            {
                case Opcode.CreatePool:
                    result = BinaryPrimitives.ReadInt32LittleEndian(payload);
                    break;
                case Opcode.Put:
                case Opcode.FlushPage:
                    result = payload[0];
                    break;
                case Opcode.Get:
                    result = payload[0];
                    if (result == (long)GetStatus.Hit)
                    {
                        var page = payload[1..];
                        if (page.Length != p.Destination.Length)
                        {
                            p.Done.TrySetException(new ArgumentException($"The page is {page.Length} bytes; the buffer given is {p.Destination.Length}.", "page"));
                            return;
                        }
                        page.CopyTo(p.Destination.Span);
                    }
                    break;
                case Opcode.FlushObject:
                    result = BinaryPrimitives.ReadInt32LittleEndian(payload);
                    break;
                case Opcode.Stats:
                case Opcode.ListPools:
                case Opcode.Info:
                case Opcode.ConfigGet:
                case Opcode.ConfigSet:
                case Opcode.ClientList:
                    p.Payload = payload.ToArray();
                    break;
                case Opcode.ClientKill:
                    result = payload[0];
                    break;
            }
            p.Done.TrySetResult(result);
        }
        catch (IndexOutOfRangeException)
        {
            p.Done.TrySetException(new IOException($"The server's {p.Opcode} response is too short ({payload.Length} payload bytes)."));
        }
        catch (ArgumentOutOfRangeException)
        {
            p.Done.TrySetException(new IOException($"The server's {p.Opcode} response is too short ({payload.Length} payload bytes)."));
        }
        finally
        {
            _slots.Release();
        }
    }

    private void Fail(Exception reason)
    {
        lock (_sendLock)
        {
            if (_failure is not null) return;
            _failure = reason;
        }
        _sendSignal.Writer.TryComplete();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        _socket.Dispose();
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var p) && Interlocked.CompareExchange(ref p.State, Pending.Claimed, Pending.Waiting) == Pending.Waiting)
                p.Done.TrySetException(Closed(reason));
        }
        // Wake callers waiting for a slot: they see the failure.
        _slots.Release(MaxInFlight);
    }

    private void ThrowIfFailed()
    {
        if (_failure is { } failure) throw Closed(failure);
    }

    private static Exception Closed(Exception reason) => reason is ObjectDisposedException
        ? new ObjectDisposedException(nameof(TmemConnection))
        : new IOException($"The connection to the Tmem service is closed: {reason.Message}", reason);

    private static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            data = data[sent..];
        }
    }

    private static async ValueTask ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0) throw new IOException("The server closed the connection during the handshake.");
            buffer = buffer[read..];
        }
    }

    /// <summary>Closes the connection; calls still pending throw <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        Fail(new ObjectDisposedException(nameof(TmemConnection)));
        await Task.WhenAll(_readLoop, _writeLoop).ConfigureAwait(false);
        _slots.Dispose();
    }

    /// <summary>Closes the connection (see <see cref="DisposeAsync"/>).</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private sealed class Pending(Opcode opcode, uint id)
    {
        public const int Waiting = 0, Claimed = 1, Cancelled = 2;

        public readonly TaskCompletionSource<long> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly Opcode Opcode = opcode;
        public readonly uint Id = id;
        public Memory<byte> Destination;
        public byte[] Payload = [];
        public int State;
    }
}
