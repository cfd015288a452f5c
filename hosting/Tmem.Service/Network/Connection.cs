using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Tmem.Protocol;

namespace Tmem.Service.Network;

/// <summary>
/// One client connection (docs/PROTOCOL.md): reads frames, carries out requests against the store
/// and writes responses. Requests are started in the order they arrive; most complete at once
/// (their response is queued before the next frame is read), while those that wait for a log
/// commit (persistent puts and flushes in Strict mode) or take the pool table (create, destroy)
/// complete later, so responses can come back in another order. Limits: at most the client's
/// MaxInFlight requests started and not answered (the connection is not read meanwhile), frames
/// up to its MaxFrameBytes, and about 1 MiB of responses queued for a client that does not read
/// (then reading stops too; a write that makes no progress for SendTimeoutSeconds closes the
/// connection).
/// </summary>
internal sealed partial class Connection
{
    private const int InitialBufferBytes = 64 * 1024;
    private const int OutputHighWaterBytes = 1 << 20;
    private const int MaxMessageBytes = 1000;

    private readonly Socket _socket;
    private readonly TmemStore _store;
    private readonly ClientDirectory _clients;
    private readonly ServiceOptions _options;
    private readonly ServiceMetrics _metrics;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private readonly Lock _outLock = new();
    private readonly Channel<bool> _outSignal = AutoResetEvent();
    private readonly Channel<bool> _outDrained = AutoResetEvent();
    private readonly Channel<bool> _slotFreed = AutoResetEvent();
    private readonly CancellationTokenSource _sendTimeout = new();
    private byte[] _in = new byte[InitialBufferBytes];
    private byte[] _out = new byte[InitialBufferBytes];
    private byte[] _flushing = new byte[InitialBufferBytes];
    private int _outLength;
    private bool _sending;              // under _outLock: one sender at a time (the reader or the writer loop)
    private bool _readerFlushes;        // under _outLock: the reader is in a batch and sends its output after it
    private volatile bool _broken;      // the socket failed or timed out: responses are dropped
    private bool _closing;              // reader: stop after this frame (an error that closes)
    private int _inFlight;
    private ConfiguredClient? _client;
    private TmemClient? _tmem;
    private int _maxFrameBytes = Wire.HandshakeMaxFrameBytes;
    private int _maxInFlight = 1;
    private byte[] _page = [];

    public Connection(Socket socket, TmemStore store, ClientDirectory clients, ServiceOptions options, ServiceMetrics metrics, ILogger logger, string peer, CancellationToken stopping)
    {
        _socket = socket;
        _store = store;
        _clients = clients;
        _options = options;
        _metrics = metrics;
        _logger = logger;
        Peer = peer;
        _stopping = stopping;
    }

    public string Peer { get; }

    private static Channel<bool> AutoResetEvent() => Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    /// <summary>Serves the connection until the client closes it, an error closes it, or the service stops.</summary>
    public async Task RunAsync()
    {
        var writer = Task.Run(WriteLoopAsync);
        try
        {
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
            _broken = true;
        }
        catch (Exception e)
        {
            LogConnectionFailed(e, Peer);
            _broken = true;
        }
        // Finish what was started: every request read gets its response (unless the socket is gone).
        while (Volatile.Read(ref _inFlight) > 0)
            await _slotFreed.Reader.ReadAsync(CancellationToken.None).ConfigureAwait(false);
        _outSignal.Writer.TryComplete();
        await writer.ConfigureAwait(false);
        await CloseAsync().ConfigureAwait(false);
        if (_client is not null) LogClientDisconnected(_client.Options.Name, Peer);
    }

    /// <summary>
    /// Reads and starts requests. Responses completed while the reader works through what one
    /// receive brought are not handed to the writer loop one by one: the reader sends them itself,
    /// in one write, before it waits for more input (or for a limit). On a Unix socket with room
    /// that write completes at once, so a pipelined request costs no thread switch on the way out.
    /// </summary>
    private async Task ReadLoopAsync()
    {
        try
        {
            await ReadFramesAsync().ConfigureAwait(false);
        }
        finally
        {
            // Whatever the reader queued and did not send goes to the writer loop.
            EndReaderBatch();
        }
    }

    private async Task ReadFramesAsync()
    {
        int start = 0, end = 0;
        while (!_closing)
        {
            BeginReaderBatch();
            // Frames already buffered.
            while (end - start >= 4 && !_closing)
            {
                int length = Wire.ReadLength(_in.AsSpan(start));
                if (length < Wire.HeaderSize || length > _maxFrameBytes)
                {
                    Interlocked.Increment(ref _inFlight);
                    byte opcode = end - start > 4 ? _in[start + 4] : (byte)0;
                    uint id = end - start >= Wire.HeaderSize ? Wire.ReadRequestId(_in.AsSpan(start)) : 0;
                    if (length < Wire.HeaderSize)
                        RespondError(opcode, id, ProtocolStatus.MalformedFrame, $"frame length {length} is under the 12-byte header");
                    else
                        RespondError(opcode, id, ProtocolStatus.FrameTooLarge, _client is null
                            ? $"frame length {length} is over {Wire.HandshakeMaxFrameBytes}, the limit before the handshake"
                            : $"frame length {length} is over this client's limit of {_maxFrameBytes} bytes (Tmem:Service:Clients:*:MaxFrameBytes)");
                    _closing = true;
                    break;
                }
                if (end - start < length)
                {
                    if (length > _in.Length)
                    {
                        var bigger = new byte[length];
                        _in.AsSpan(start, end - start).CopyTo(bigger);
                        (_in, end, start) = (bigger, end - start, 0);
                    }
                    break;
                }
                // Limits: wait (reading nothing more) while too much is in flight or queued to send.
                if (Volatile.Read(ref _inFlight) >= _maxInFlight || Volatile.Read(ref _outLength) > OutputHighWaterBytes)
                {
                    await FlushAsync(fromReader: true).ConfigureAwait(false);
                    while (Volatile.Read(ref _inFlight) >= _maxInFlight)
                        await _slotFreed.Reader.ReadAsync(_stopping).ConfigureAwait(false);
                    while (Volatile.Read(ref _outLength) > OutputHighWaterBytes && !_broken)
                        await _outDrained.Reader.ReadAsync(_stopping).ConfigureAwait(false);
                    BeginReaderBatch();
                }
                if (_broken) return;
                Interlocked.Increment(ref _inFlight);
                _metrics.RequestStarted();
                Dispatch(_in.AsSpan(start, length));
                start += length;
            }
            if (_closing) return;
            await FlushAsync(fromReader: true).ConfigureAwait(false);
            if (start == end)
            {
                start = end = 0;
            }
            else if (start > 0)
            {
                _in.AsSpan(start, end - start).CopyTo(_in);
                (end, start) = (end - start, 0);
            }
            int read;
            try
            {
                read = await _socket.ReceiveAsync(_in.AsMemory(end), SocketFlags.None, _stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                AnswerShuttingDown(start, end);
                return;
            }
            if (read == 0) return; // the client closed its side: answer what was started, then close
            end += read;
        }
    }

    /// <summary>Service stopping: complete frames already received get ShuttingDown rather than silence.</summary>
    private void AnswerShuttingDown(int start, int end)
    {
        while (end - start >= Wire.HeaderSize)
        {
            int length = Wire.ReadLength(_in.AsSpan(start));
            if (length < Wire.HeaderSize || end - start < length) return;
            Interlocked.Increment(ref _inFlight);
            RespondError(_in[start + 4], Wire.ReadRequestId(_in.AsSpan(start)), ProtocolStatus.ShuttingDown, "the service is stopping");
            start += length;
        }
    }

    /// <summary>One complete request frame. Every path ends in exactly one response (now or later).</summary>
    private void Dispatch(ReadOnlySpan<byte> frame)
    {
        byte opcode = frame[4];
        uint id = Wire.ReadRequestId(frame);
        var payload = frame[Wire.HeaderSize..];
        if (frame[5] != 0 || frame[6] != 0 || frame[7] != 0)
        {
            RespondError(opcode, id, ProtocolStatus.MalformedFrame, "request bytes 5-7 (status, reserved) must be 0");
            _closing = true;
            return;
        }
        if (_tmem is null)
        {
            if (opcode == (byte)Opcode.Hello)
            {
                Hello(id, payload);
            }
            else
            {
                RespondError(opcode, id, ProtocolStatus.HandshakeRequired, $"the first frame must be Hello (opcode 0x01), not opcode 0x{opcode:x2}");
                _closing = true;
            }
            return;
        }
        int poolId = payload.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(payload) : -1;
        try
        {
            switch ((Opcode)opcode)
            {
                case Opcode.Put:
                    Put(id, payload);
                    break;
                case Opcode.Get:
                    Get(id, payload);
                    break;
                case Opcode.FlushPage:
                    FlushPage(id, payload);
                    break;
                case Opcode.FlushObject:
                    FlushObject(id, payload);
                    break;
                case Opcode.CreatePool:
                    CreatePool(id, payload);
                    break;
                case Opcode.DestroyPool:
                    DestroyPool(id, payload);
                    break;
                case Opcode.Stats:
                    Stats(id, payload);
                    break;
                case Opcode.ListPools:
                    ListPools(id, payload);
                    break;
                case Opcode.Hello:
                    RespondError(opcode, id, ProtocolStatus.AlreadyAuthenticated, $"this connection is already authenticated as {_client!.Options.Name}");
                    break;
                default:
                    RespondError(opcode, id, ProtocolStatus.UnknownOpcode, $"opcode 0x{opcode:x2} is not a request this server knows");
                    break;
            }
        }
        catch (Exception e)
        {
            RespondException(opcode, id, poolId, e);
        }
    }

    private void Hello(uint id, ReadOnlySpan<byte> payload)
    {
        const byte op = (byte)Opcode.Hello;
        _closing = true; // unless it succeeds
        if (payload.Length < 2)
        {
            RespondError(op, id, ProtocolStatus.MalformedFrame, "Hello payload is shorter than its version field");
            return;
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        if (version != Wire.Version)
        {
            RespondError(op, id, ProtocolStatus.UnsupportedVersion, $"this server speaks protocol version {Wire.Version}; the Hello asked for {version}");
            return;
        }
        int nameLength = payload.Length > 2 ? payload[2] : -1;
        int secretAt = 3 + nameLength;
        if (nameLength < 1 || payload.Length < secretAt + 1 || payload.Length != secretAt + 1 + payload[secretAt])
        {
            RespondError(op, id, ProtocolStatus.MalformedFrame, "Hello payload must be version (2 bytes), name length (1..255), name, secret length, secret, and nothing after");
            return;
        }
        string name = Encoding.UTF8.GetString(payload.Slice(3, nameLength));
        var client = _clients.Authenticate(name, payload.Slice(secretAt + 1, payload[secretAt]));
        if (client is null)
        {
            LogAuthenticationFailed(name, Peer);
            RespondError(op, id, ProtocolStatus.AuthenticationFailed, "unknown client name or wrong secret");
            return;
        }
        _client = client;
        _tmem = _store.GetClient(client.Options.Id);
        _maxFrameBytes = client.Options.MaxFrameBytes;
        _maxInFlight = client.Options.MaxInFlight;
        _page = new byte[PoolOptions.MaxPageSize];
        _closing = false;
        Span<byte> answer = stackalloc byte[Wire.HelloResponseSize];
        BinaryPrimitives.WriteUInt16LittleEndian(answer, Wire.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(answer[2..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(answer[4..], client.Options.Id);
        BinaryPrimitives.WriteInt32LittleEndian(answer[8..], client.Options.MaxFrameBytes);
        BinaryPrimitives.WriteInt32LittleEndian(answer[12..], client.Options.MaxInFlight);
        BinaryPrimitives.WriteInt32LittleEndian(answer[16..], client.MaxPools);
        Respond(op, id, answer);
        LogClientConnected(client.Options.Name, client.Options.Id, Peer);
    }

    private void Put(uint id, ReadOnlySpan<byte> payload)
    {
        if (payload.Length < Wire.HandleSize)
        {
            RespondError((byte)Opcode.Put, id, ProtocolStatus.InvalidArgument, $"Put payload is {payload.Length} bytes; it must be the 32-byte handle and then the page");
            return;
        }
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var objectId = Wire.ReadObjectId(payload[4..]);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(payload[28..]);
        var page = payload[Wire.HandleSize..];
        if (!_store.IsDurable || _tmem!.GetPoolKind(poolId) == PoolKind.Ephemeral)
        {
            var status = _tmem!.Put(poolId, objectId, index, page);
            RespondByte((byte)Opcode.Put, id, (byte)status);
            return;
        }
        // A persistent put may wait for the log's commit; the page is consumed before that
        // (PutAsync copies it itself if it must wait for room first), so this frame's
        // buffer can be reused at once.
        var put = _tmem.PutAsync(poolId, objectId, index, page);
        if (put.IsCompletedSuccessfully) RespondByte((byte)Opcode.Put, id, (byte)put.Result);
        else _ = CompleteAsync(put, id, poolId);
    }

    private async Task CompleteAsync(ValueTask<PutStatus> put, uint id, int poolId)
    {
        try
        {
            RespondByte((byte)Opcode.Put, id, (byte)await put.ConfigureAwait(false));
        }
        catch (Exception e)
        {
            RespondException((byte)Opcode.Put, id, poolId, e);
        }
    }

    private void Get(uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(Opcode.Get, id, payload, Wire.HandleSize)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var objectId = Wire.ReadObjectId(payload[4..]);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(payload[28..]);
        var page = _page.AsSpan(0, _tmem!.GetPageSize(poolId));
        var status = _tmem.Get(poolId, objectId, index, page);
        if (status == GetStatus.Hit) Respond((byte)Opcode.Get, id, [(byte)GetStatus.Hit], page);
        else RespondByte((byte)Opcode.Get, id, (byte)GetStatus.Miss);
    }

    private void FlushPage(uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(Opcode.FlushPage, id, payload, Wire.HandleSize)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var objectId = Wire.ReadObjectId(payload[4..]);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(payload[28..]);
        var flush = _tmem!.FlushPageAsync(poolId, objectId, index);
        if (flush.IsCompletedSuccessfully) RespondByte((byte)Opcode.FlushPage, id, flush.Result ? (byte)1 : (byte)0);
        else _ = CompleteAsync(flush, id, poolId);
    }

    private async Task CompleteAsync(ValueTask<bool> flush, uint id, int poolId)
    {
        try
        {
            RespondByte((byte)Opcode.FlushPage, id, await flush.ConfigureAwait(false) ? (byte)1 : (byte)0);
        }
        catch (Exception e)
        {
            RespondException((byte)Opcode.FlushPage, id, poolId, e);
        }
    }

    private void FlushObject(uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(Opcode.FlushObject, id, payload, 4 + Wire.ObjectIdSize)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var objectId = Wire.ReadObjectId(payload[4..]);
        var flush = _tmem!.FlushObjectAsync(poolId, objectId);
        if (flush.IsCompletedSuccessfully) RespondInt((byte)Opcode.FlushObject, id, flush.Result);
        else _ = CompleteAsync(flush, id, poolId);
    }

    private async Task CompleteAsync(ValueTask<int> flush, uint id, int poolId)
    {
        try
        {
            RespondInt((byte)Opcode.FlushObject, id, await flush.ConfigureAwait(false));
        }
        catch (Exception e)
        {
            RespondException((byte)Opcode.FlushObject, id, poolId, e);
        }
    }

    private void CreatePool(uint id, ReadOnlySpan<byte> payload)
    {
        const byte op = (byte)Opcode.CreatePool;
        if (!CheckLength(Opcode.CreatePool, id, payload, Wire.CreatePoolSize)) return;
        var options = Wire.ReadCreatePool(payload, out string? error);
        if (options is null)
        {
            RespondError(op, id, ProtocolStatus.InvalidArgument, error!);
            return;
        }
        var client = _client!;
        if (options.PageSize <= PoolOptions.MaxPageSize && Wire.PutFrameSize(options.PageSize) > client.Options.MaxFrameBytes)
        {
            RespondError(op, id, ProtocolStatus.InvalidArgument,
                $"a put of a {options.PageSize}-byte page needs a {Wire.PutFrameSize(options.PageSize)}-byte frame, over this client's MaxFrameBytes ({client.Options.MaxFrameBytes})");
            return;
        }
        if (options.SharedUuid is { } uuid && !client.MayUseSharedPool(uuid))
        {
            RespondError(op, id, ProtocolStatus.SharedPoolNotAllowed, $"client {client.Options.Name} may not create or join shared pool {uuid} (Tmem:Service:Clients:*:SharedPools)");
            return;
        }
        var tmem = _tmem!;
        // Off the reader: creating a persistent pool waits for its log record's commit.
        _ = Task.Run(() =>
        {
            try
            {
                int poolId;
                lock (client.CreateLock)
                {
                    if (tmem.GetPools().Count >= client.MaxPools)
                    {
                        RespondError(op, id, ProtocolStatus.PoolLimitReached, $"client {client.Options.Name} already has {client.MaxPools} pools, its limit");
                        return;
                    }
                    poolId = tmem.CreatePool(options);
                }
                RespondInt(op, id, poolId);
            }
            catch (Exception e)
            {
                RespondException(op, id, -1, e);
            }
        });
    }

    private void DestroyPool(uint id, ReadOnlySpan<byte> payload)
    {
        const byte op = (byte)Opcode.DestroyPool;
        if (!CheckLength(Opcode.DestroyPool, id, payload, 4)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var tmem = _tmem!;
        _ = Task.Run(() =>
        {
            try
            {
                tmem.DestroyPool(poolId);
                Respond(op, id, []);
            }
            catch (Exception e)
            {
                RespondException(op, id, poolId, e);
            }
        });
    }

    private void Stats(uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(Opcode.Stats, id, payload, 0)) return;
        var counters = _store.GetStats().ToList();
        var answer = new byte[Wire.StatsSize(counters)];
        Wire.WriteStats(answer, counters);
        Respond((byte)Opcode.Stats, id, answer);
    }

    private void ListPools(uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(Opcode.ListPools, id, payload, 0)) return;
        var pools = _tmem!.GetPools();
        var answer = new byte[2 + pools.Count * Wire.PoolEntrySize];
        BinaryPrimitives.WriteUInt16LittleEndian(answer, (ushort)pools.Count);
        for (int i = 0; i < pools.Count; i++) Wire.WritePoolEntry(answer.AsSpan(2 + i * Wire.PoolEntrySize), pools[i]);
        Respond((byte)Opcode.ListPools, id, answer);
    }

    private bool CheckLength(Opcode opcode, uint id, ReadOnlySpan<byte> payload, int expected)
    {
        if (payload.Length == expected) return true;
        RespondError((byte)opcode, id, ProtocolStatus.InvalidArgument, $"{opcode} payload is {payload.Length} bytes; it must be {expected}");
        return false;
    }

    /// <summary>Maps a refusal from the store to its status; anything unexpected is a ServerError (logged).</summary>
    private void RespondException(byte opcode, uint id, int poolId, Exception e)
    {
        switch (e)
        {
            case TmemException { Error: TmemError.PoolNotFound } when _store.IsPoolIdUsedByAnotherClient(_client!.Options.Id, poolId):
                RespondError(opcode, id, ProtocolStatus.PoolOfAnotherClient, $"pool id {poolId} is not this client's; it belongs to another client and is unreachable from here");
                break;
            case TmemException { Error: TmemError.PoolNotFound }:
                RespondError(opcode, id, ProtocolStatus.PoolNotFound, $"no pool with id {poolId}");
                break;
            case TmemException { Error: TmemError.PoolLimitReached } t:
                RespondError(opcode, id, ProtocolStatus.PoolLimitReached, t.Message);
                break;
            case TmemException { Error: TmemError.SharedPoolMismatch } t:
                RespondError(opcode, id, ProtocolStatus.SharedPoolMismatch, t.Message);
                break;
            case TmemException { Error: TmemError.SharedPoolAlreadyJoined } t:
                RespondError(opcode, id, ProtocolStatus.SharedPoolAlreadyJoined, t.Message);
                break;
            case ArgumentException a:
                RespondError(opcode, id, ProtocolStatus.InvalidArgument, a.Message);
                break;
            case ObjectDisposedException:
                RespondError(opcode, id, ProtocolStatus.ShuttingDown, "the service is stopping");
                break;
            default:
                LogRequestFailed(e, (Opcode)opcode, Peer);
                RespondError(opcode, id, ProtocolStatus.ServerError, $"{e.GetType().Name}: {e.Message}");
                break;
        }
    }

    private void RespondError(byte opcode, uint id, ProtocolStatus status, string message)
    {
        Span<byte> text = stackalloc byte[MaxMessageBytes];
        int length = Encoding.UTF8.GetByteCount(message) <= MaxMessageBytes
            ? Encoding.UTF8.GetBytes(message, text)
            : Encoding.UTF8.GetBytes(message.AsSpan(0, MaxMessageBytes / 4), text);
        Write(opcode, id, status, text[..length], default);
    }

    private void RespondByte(byte opcode, uint id, byte value) => Write(opcode, id, ProtocolStatus.Ok, [value], default);

    private void RespondInt(byte opcode, uint id, int value)
    {
        Span<byte> answer = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(answer, value);
        Write(opcode, id, ProtocolStatus.Ok, answer, default);
    }

    private void Respond(byte opcode, uint id, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> more = default) =>
        Write(opcode, id, ProtocolStatus.Ok, payload, more);

    /// <summary>
    /// Queues one response frame and ends its request's time in flight. The reader sends what it
    /// queued itself at the end of its batch; a response completed anywhere else (a log commit, the
    /// pool table) wakes the writer loop.
    /// </summary>
    private void Write(byte opcode, uint id, ProtocolStatus status, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> more)
    {
        int length = Wire.HeaderSize + payload.Length + more.Length;
        bool wake;
        lock (_outLock)
        {
            if (!_broken)
            {
                if (_outLength + length > _out.Length) Array.Resize(ref _out, Math.Max(_out.Length * 2, _outLength + length));
                var frame = _out.AsSpan(_outLength, length);
                Wire.WriteHeader(frame, length, (byte)(opcode | Wire.ResponseBit), status, id);
                payload.CopyTo(frame[Wire.HeaderSize..]);
                more.CopyTo(frame[(Wire.HeaderSize + payload.Length)..]);
                Volatile.Write(ref _outLength, _outLength + length);
            }
            wake = !_readerFlushes;
        }
        if (wake) _outSignal.Writer.TryWrite(true);
        if (status != ProtocolStatus.Ok) _metrics.RequestRefused();
        // Only the transitions someone may wait for: a slot under the limit again (the reader), none left (RunAsync).
        int left = Interlocked.Decrement(ref _inFlight);
        if (left == 0 || left == _maxInFlight - 1) _slotFreed.Writer.TryWrite(true);
    }

    private void BeginReaderBatch()
    {
        lock (_outLock) _readerFlushes = true;
    }

    /// <summary>The reader stops sending (it is leaving): what it queued goes to the writer loop.</summary>
    private void EndReaderBatch()
    {
        bool wake;
        lock (_outLock)
        {
            _readerFlushes = false;
            wake = _outLength > 0;
        }
        if (wake) _outSignal.Writer.TryWrite(true);
    }

    /// <summary>
    /// Sends what is queued, and what is queued meanwhile, until nothing is; returns at once when
    /// another sender is at work (that one sends it: it looks again, under the lock, before it
    /// stops). From the reader, also ends its batch: later responses wake the writer loop.
    /// </summary>
    private async ValueTask FlushAsync(bool fromReader)
    {
        byte[] buffer;
        int length;
        lock (_outLock)
        {
            if (fromReader) _readerFlushes = false;
            if (_sending || _outLength == 0 || _broken) return;
            _sending = true;
            (buffer, length) = SwapLocked();
        }
        try
        {
            while (true)
            {
                _sendTimeout.CancelAfter(TimeSpan.FromSeconds(_options.SendTimeoutSeconds));
                var data = buffer.AsMemory(0, length);
                while (!data.IsEmpty)
                    data = data[await _socket.SendAsync(data, SocketFlags.None, _sendTimeout.Token).ConfigureAwait(false)..];
                _sendTimeout.TryReset();
                _outDrained.Writer.TryWrite(true);
                lock (_outLock)
                {
                    if (_outLength == 0 || _broken)
                    {
                        _sending = false;
                        return;
                    }
                    (buffer, length) = SwapLocked();
                }
            }
        }
        catch (Exception e)
        {
            if (e is OperationCanceledException && _sendTimeout.IsCancellationRequested)
                LogSendTimeout(_client?.Options.Name ?? "(before handshake)", Peer, _options.SendTimeoutSeconds);
            // The client is gone or not reading: drop what is queued, and close.
            _broken = true;
            lock (_outLock)
            {
                _outLength = 0;
                _sending = false;
            }
            _outDrained.Writer.TryWrite(true);
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception)
            {
                // already closed
            }
        }
    }

    /// <summary>Under the lock: takes the queued responses, leaving an empty buffer to queue into.</summary>
    private (byte[] Buffer, int Length) SwapLocked()
    {
        var buffer = _out;
        int length = _outLength;
        _out = _flushing;
        Volatile.Write(ref _outLength, 0);
        _flushing = buffer;
        return (buffer, length);
    }

    /// <summary>Sends responses completed off the reader, until the connection is done.</summary>
    private async Task WriteLoopAsync()
    {
        while (await _outSignal.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            _outSignal.Reader.TryRead(out _);
            await FlushAsync(fromReader: false).ConfigureAwait(false);
        }
        // Completed: the reader is done and every request answered; send the rest.
        await FlushAsync(fromReader: false).ConfigureAwait(false);
    }

    /// <summary>
    /// Closes so that the last response arrives: send FIN, then read (and discard) what the client
    /// still sends for a moment, since closing with unread input would reset the connection and
    /// could destroy that response in flight.
    /// </summary>
    private async Task CloseAsync()
    {
        try
        {
            if (!_broken)
            {
                _socket.Shutdown(SocketShutdown.Send);
                using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                var sink = new byte[4096];
                while (await _socket.ReceiveAsync(sink, SocketFlags.None, linger.Token).ConfigureAwait(false) > 0)
                {
                }
            }
        }
        catch (Exception)
        {
            // Reset, timed out or already closed: nothing more to deliver.
        }
        finally
        {
            _socket.Dispose();
            _sendTimeout.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {Name} (id {Id}) connected from {Peer}")]
    private partial void LogClientConnected(string name, int id, string peer);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {Name} disconnected ({Peer})")]
    private partial void LogClientDisconnected(string name, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handshake refused for client name {Name} from {Peer}: unknown name or wrong secret")]
    private partial void LogAuthenticationFailed(string name, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the connection of {Name} ({Peer}): a response write made no progress for {Seconds}s (Tmem:Service:SendTimeoutSeconds)")]
    private partial void LogSendTimeout(string name, string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Opcode} request from {Peer} failed unexpectedly")]
    private partial void LogRequestFailed(Exception exception, Opcode opcode, string peer);

    [LoggerMessage(Level = LogLevel.Error, Message = "Connection {Peer} failed")]
    private partial void LogConnectionFailed(Exception exception, string peer);
}
