using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using Tmem.Protocol;
using Tmem.Service.Handlers;
using Tmem.Service.Sessions;

namespace Tmem.Service.Network;

/// <summary>
/// The transport of one tmem-protocol connection (docs/PROTOCOL.md): reads frames, hands each to
/// the <see cref="RequestDispatcher"/> (which knows the opcodes; this class does not), and sends
/// the responses handlers give back. It owns everything about the socket: buffers, back-pressure,
/// timeouts, shutdown and close.
/// <para>
/// <b>Buffers.</b> All pooled (<see cref="ArrayPool{T}.Shared"/>) and held only while in use: a
/// connection waiting for input with nothing buffered waits with a zero-byte receive and holds no
/// input buffer (1 KiB at most before its handshake, 64 KiB after, more only for a larger frame
/// being received); the output buffer is rented when a response is queued and given back once
/// sent. An idle connection costs a few KiB of objects.
/// </para>
/// <para>
/// <b>Back-pressure.</b> The reader stops reading (the kernel's buffers then stop the client)
/// while the client's MaxInFlight requests are started and unanswered, while this connection's
/// queued responses are over <see cref="OutputHighWaterBytes"/>, or while the service-wide
/// <see cref="ResponseBudget"/> is over its limit and this connection holds queued responses. A response write making no progress for SendTimeoutSeconds closes the connection.
/// </para>
/// <para>
/// <b>Who sends.</b> Responses completed while the reader works through one receive are sent by
/// the reader in one write before it waits again; responses completed elsewhere (a log commit, a
/// pool-table change) schedule a flush on the thread pool. One sender at a time (<c>_sending</c>,
/// under <c>_outLock</c>); a sender looks again under the lock before it stops, so nothing is
/// stranded.
/// </para>
/// <para>
/// <b>Timeouts.</b> The handshake must complete within HandshakeTimeoutSeconds of accept; an
/// authenticated connection with nothing in flight and no request for IdleTimeoutSeconds (when
/// set) is closed; the <see cref="ConnectionGovernor"/> may evict a connection still in its
/// handshake to make room. All three cancel the receive the reader waits in.
/// </para>
/// <para>
/// <b>Shutdown.</b> When the service stops, every frame received (buffered, or in the socket's
/// receive queue, for up to a second) is answered ShuttingDown, requests already started finish,
/// and the connection closes: every request read gets an answer before the end of the stream.
/// </para>
/// </summary>
internal sealed partial class FrameConnection : IRequestContext, IEvictable, IClientConnection, IThreadPoolWorkItem
{
    /// <summary>This connection's queued response bytes at which its reader stops reading.</summary>
    internal const int OutputHighWaterBytes = 192 * 1024;

    /// <summary>
    /// The output buffer a batch grows into: the high-water mark plus the largest response (a
    /// 64 KiB page) fit, so a connection holds at most one of these and one being sent.
    /// </summary>
    private const int OutputLargeBufferBytes = 256 * 1024;

    private const int ReceiveBytes = 64 * 1024;
    private const int OutputBufferBytes = 64 * 1024;
    private const long ShutdownDrainMilliseconds = 1000;
    private const int ShutdownSendSeconds = 3;

    private readonly Socket _socket;
    private readonly SessionManager _sessions;
    private readonly RequestDispatcher _dispatcher;
    private readonly ServiceOptions _options;
    private readonly ServiceMetrics _metrics;
    private readonly ResponseBudget _budget;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private readonly ConnectionTicket _ticket;
    private readonly FrameReader _reader = new(Wire.HandshakeMaxFrameBytes);
    private readonly Lock _outLock = new();
    private readonly AsyncSignal _slotFreed = new();
    private readonly AsyncSignal _drained = new();
    private readonly CancellationTokenSource _sendTimeout = new();
    private CancellationTokenSource _receiveCancel;
    private byte[]? _out;                // under _outLock: responses queued, not yet being sent
    private int _outLength;              // under _outLock
    private long _queuedBytes;           // under _outLock (read without): queued plus being sent
    private bool _sending;               // under _outLock: a sender is at work (the reader or a pool thread)
    private bool _readerFlushes;         // under _outLock: the reader is in a batch and sends its output after it
    private int _flushScheduled;         // a pool-thread flush is queued
    private volatile bool _broken;       // the socket failed or timed out: responses are dropped
    private volatile bool _evicted;      // the governor wants this unauthenticated connection gone
    private volatile bool _killed;       // an administrator closed it (ClientKill)
    private long _requests;              // requests received (written by the reader only)
    // Request latency (ServiceMetrics.RequestAnswered). A request answered while the reader
    // dispatches it (most) is timed without a lock from these fields; one answered later is
    // matched by id under _outLock, whichever of its answer and its registration comes first.
    private uint _dispatchId;
    private long _dispatchStart;
    private int _dispatchThread;         // the reader's thread while it dispatches, else 0
    private bool _answeredInDispatch;
    private bool _untimed;               // shutting down or closing on a bad frame: answers not timed
    private Dictionary<uint, long>? _startedLater;  // under _outLock: id -> start of a request not answered in its dispatch
    private Dictionary<uint, (long At, byte Opcode)>? _answeredEarly; // under _outLock: id -> answer of one answered before it was registered
    private bool _closing;               // reader: stop after this frame (an error that closes)
    private int _inFlight;
    private Session? _session;
    private int _maxFrameBytes = Wire.HandshakeMaxFrameBytes;
    private int _maxInFlight = 1;

    public FrameConnection(Socket socket, SessionManager sessions, RequestDispatcher dispatcher, ServiceOptions options, ILogger logger, string peer,
        PeerCredentials? credentials, CancellationToken stopping)
    {
        Id = sessions.Connections.NextId();
        ConnectedAt = DateTimeOffset.UtcNow;
        Credentials = credentials;
        _socket = socket;
        _sessions = sessions;
        _dispatcher = dispatcher;
        _options = options;
        _metrics = sessions.Metrics;
        _budget = sessions.ResponseBudget;
        _logger = logger;
        Peer = peer;
        _stopping = stopping;
        _receiveCancel = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        _ticket = sessions.Governor.AdmitUnauthenticated(this);
        sessions.Connections.Add(this);
    }

    public long Id { get; }

    public string Peer { get; }

    public PeerCredentials? Credentials { get; }

    public DateTimeOffset ConnectedAt { get; }

    public long Requests => Volatile.Read(ref _requests);

    public int InFlight => Volatile.Read(ref _inFlight);

    public long QueuedBytes => Volatile.Read(ref _queuedBytes);

    public Session? Session => _session;

    /// <summary>Serves the connection until the client closes it, an error or a timeout closes it, or the service stops.</summary>
    public async Task RunAsync()
    {
        // Stopping: a send that a client does not read must not hold the shutdown for the whole
        // SendTimeoutSeconds (which is as long as the host waits): it gets ShutdownSendSeconds.
        using var onStopping = _stopping.UnsafeRegister(static state => ((FrameConnection)state!).ShortenSendTimeout(), this);
        try
        {
            _receiveCancel.CancelAfter(TimeSpan.FromSeconds(_options.HandshakeTimeoutSeconds));
            BeginReaderBatch();
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            _broken = true;
        }
        catch (Exception e)
        {
            LogConnectionFailed(e, Peer);
            _broken = true;
        }
        finally
        {
            // Whatever the reader queued and did not send goes to a pool-thread flush.
            EndReaderBatch();
        }
        try
        {
            // Finish what was started: every request read gets its response (unless the socket is gone).
            while (Volatile.Read(ref _inFlight) > 0)
                await _slotFreed.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            await FlushAsync(fromReader: false).ConfigureAwait(false);
            while (Volatile.Read(ref _queuedBytes) > 0 && !_broken)
                await _drained.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            await GracefulClose.CloseAsync(_socket, _broken).ConfigureAwait(false);
        }
        finally
        {
            _sessions.Governor.Release(_ticket);
            _sessions.Connections.Remove(this);
            _reader.Dispose();
            DropOutput();
            _receiveCancel.Dispose();
            _sendTimeout.Dispose();
            if (_session is not null) LogClientDisconnected(_session.Name, Peer);
        }
    }

    private async Task ReadLoopAsync()
    {
        while (true)
        {
            while (!_closing)
            {
                if (_stopping.IsCancellationRequested)
                {
                    await AnswerShuttingDownAsync().ConfigureAwait(false);
                    return;
                }
                if (MustPause())
                {
                    if (!await PauseAsync().ConfigureAwait(false))
                    {
                        await AnswerShuttingDownAsync().ConfigureAwait(false);
                        return;
                    }
                    if (_broken) return;
                    BeginReaderBatch();
                    continue;
                }
                var result = _reader.TryRead(_maxFrameBytes, out var frame, out int length);
                if (result == FrameResult.Incomplete) break;
                if (result != FrameResult.Complete)
                {
                    RespondUntrusted(result, length);
                    _closing = true;
                    break;
                }
                Interlocked.Increment(ref _inFlight);
                Volatile.Write(ref _requests, _requests + 1);
                _metrics.RequestStarted(frame[4]);
                uint requestId = Wire.ReadRequestId(frame);
                long start = Stopwatch.GetTimestamp();
                _dispatchId = requestId;
                _dispatchStart = start;
                _answeredInDispatch = false;
                _dispatchThread = Environment.CurrentManagedThreadId;
                _dispatcher.Dispatch(this, frame);
                _dispatchThread = 0;
                if (!_answeredInDispatch) TimeLater(requestId, start);
            }
            if (_closing || _broken) return;
            await FlushAsync(fromReader: true).ConfigureAwait(false);
            int read;
            try
            {
                ArmIdleTimeout();
                // Nothing buffered: wait for input without holding a buffer.
                if (_reader.ReleaseIfEmpty())
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, _receiveCancel.Token).ConfigureAwait(false);
                read = await _socket.ReceiveAsync(_reader.GetReceiveMemory(), SocketFlags.None, _receiveCancel.Token).ConfigureAwait(false);
                DisarmIdleTimeout();
            }
            catch (OperationCanceledException)
            {
                if (_stopping.IsCancellationRequested)
                {
                    await AnswerShuttingDownAsync().ConfigureAwait(false);
                    return;
                }
                if (ContinueAfterTimeout()) continue;
                return;
            }
            if (read == 0) return; // the client closed its side: answer what was started, then close
            _reader.Advance(read);
            BeginReaderBatch();
        }
    }

    private bool MustPause()
    {
        long queued = Volatile.Read(ref _queuedBytes);
        if (Volatile.Read(ref _inFlight) >= _maxInFlight || queued > OutputHighWaterBytes) return true;
        if (!_budget.ShouldPause(queued)) return false;
        _budget.CountPause();
        return true;
    }

    /// <summary>
    /// Waits, reading nothing, until the limits allow the next request: a slot in flight, this
    /// connection's queue under its high-water mark, the service's response budget. Returns false
    /// when the service began to stop meanwhile.
    /// </summary>
    private async Task<bool> PauseAsync()
    {
        await FlushAsync(fromReader: true).ConfigureAwait(false);
        try
        {
            while (!_broken)
            {
                long queued = Volatile.Read(ref _queuedBytes);
                if (Volatile.Read(ref _inFlight) >= _maxInFlight)
                    await _slotFreed.WaitAsync(_stopping).ConfigureAwait(false);
                else if (queued > OutputHighWaterBytes)
                    await _drained.WaitAsync(_stopping).ConfigureAwait(false);
                else if (_budget.ShouldPause(queued))
                    await Task.WhenAny(_drained.WaitAsync(_stopping), _budget.WaitUnderLimitAsync()).ConfigureAwait(false);
                else
                    return true;
                if (_stopping.IsCancellationRequested) return false;
            }
            return true;
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>
    /// The service is stopping: every whole frame received gets ShuttingDown, those buffered and
    /// those in the socket's receive queue (for up to a second, so that a client that keeps
    /// sending cannot hold the shutdown).
    /// </summary>
    private async Task AnswerShuttingDownAsync()
    {
        _untimed = true;
        long deadline = Environment.TickCount64 + ShutdownDrainMilliseconds;
        while (!_broken)
        {
            FrameResult result;
            while ((result = _reader.TryRead(_maxFrameBytes, out var frame, out _)) == FrameResult.Complete)
            {
                Interlocked.Increment(ref _inFlight);
                _metrics.RequestStarted(frame[4]);
                this.RespondError(frame[4], Wire.ReadRequestId(frame), ProtocolStatus.ShuttingDown, "the service is stopping; the request was not carried out");
                if (Volatile.Read(ref _queuedBytes) > OutputHighWaterBytes) break;
            }
            await FlushAsync(fromReader: true).ConfigureAwait(false);
            while (Volatile.Read(ref _queuedBytes) > OutputHighWaterBytes && !_broken)
                await _drained.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            BeginReaderBatch();
            if (result == FrameResult.Complete) continue; // stopped for room, more buffered
            if (result != FrameResult.Incomplete || Environment.TickCount64 > deadline || _socket.Available == 0) return;
            int read = await _socket.ReceiveAsync(_reader.GetReceiveMemory(), SocketFlags.None, CancellationToken.None).ConfigureAwait(false);
            if (read == 0) return;
            _reader.Advance(read);
        }
    }

    /// <summary>A header that cannot be trusted: answered (with the opcode and id if they were there), then the connection closes.</summary>
    private void RespondUntrusted(FrameResult result, int length)
    {
        _untimed = true;
        var pending = _reader.Pending;
        byte opcode = pending.Length > 4 ? pending[4] : (byte)0;
        uint id = pending.Length >= Wire.HeaderSize ? Wire.ReadRequestId(pending) : 0;
        Interlocked.Increment(ref _inFlight);
        if (result == FrameResult.TooShort)
            this.RespondError(opcode, id, ProtocolStatus.MalformedFrame, $"frame length {length} is under the 12-byte header");
        else
            this.RespondError(opcode, id, ProtocolStatus.FrameTooLarge, _session is null
                ? $"frame length {length} is over {Wire.HandshakeMaxFrameBytes}, the limit before the handshake"
                : $"frame length {length} is over this client's limit of {_maxFrameBytes} bytes (Tmem:Service:Clients:*:MaxFrameBytes)");
    }

    private void ArmIdleTimeout()
    {
        if (_session is not null && _options.IdleTimeoutSeconds > 0) _receiveCancel.CancelAfter(TimeSpan.FromSeconds(_options.IdleTimeoutSeconds));
    }

    private void DisarmIdleTimeout()
    {
        if (_session is not null && _options.IdleTimeoutSeconds > 0) _receiveCancel.CancelAfter(Timeout.Infinite);
    }

    /// <summary>
    /// The receive was cancelled by a deadline or an eviction: close (false), or, for an idle
    /// deadline that finds work in flight or a stale handshake deadline, wait again (true).
    /// </summary>
    private bool ContinueAfterTimeout()
    {
        if (_killed)
        {
            LogKilled(_session?.Name ?? "(before handshake)", Peer);
            return false;
        }
        if (_evicted && _session is null)
        {
            LogEvicted(Peer, _options.MaxUnauthenticatedConnections);
            return false;
        }
        if (_session is null)
        {
            _metrics.HandshakeTimedOut();
            LogHandshakeTimeout(Peer, _options.HandshakeTimeoutSeconds);
            return false;
        }
        // Idle only if nothing is in flight, nothing waits to be sent and nothing has arrived
        // (input can arrive just as the deadline fires: then it is read, not dropped).
        if (_options.IdleTimeoutSeconds > 0 && Volatile.Read(ref _inFlight) == 0 && Volatile.Read(ref _queuedBytes) == 0 && _socket.Available == 0)
        {
            _metrics.IdleTimedOut();
            LogIdleTimeout(_session.Name, Peer, _options.IdleTimeoutSeconds);
            return false;
        }
        // A cancelled token cannot be re-armed: a new one for the next wait.
        var old = _receiveCancel;
        _receiveCancel = CancellationTokenSource.CreateLinkedTokenSource(_stopping);
        old.Dispose();
        return true;
    }

    /// <summary>The governor makes room: a connection still in its handshake closes at its next wait.</summary>
    public void Evict()
    {
        _evicted = true;
        CancelReceive();
    }

    /// <summary>An administrator closes this connection: its reader stops at its next wait for input, answers what it started, and closes.</summary>
    public void Kill()
    {
        _killed = true;
        CancelReceive();
    }

    private void CancelReceive()
    {
        try
        {
            _receiveCancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // closed already
        }
    }

    public bool TryAuthenticate(Session session)
    {
        if (!_sessions.Governor.TryAuthenticate(_ticket)) return false;
        // The handshake deadline no longer applies; the client's limits do. (A deadline firing
        // right now is told apart in ContinueAfterTimeout: the connection has a session.)
        _receiveCancel.CancelAfter(Timeout.Infinite);
        _session = session;
        _maxFrameBytes = session.Client.Options.MaxFrameBytes;
        _maxInFlight = session.Client.Options.MaxInFlight;
        _reader.ReceiveBytes = ReceiveBytes;
        return true;
    }

    public void CloseAfterResponse() => _closing = true;

    /// <summary>
    /// Queues one response frame and ends its request's time in flight. The reader sends what it
    /// queued itself at the end of its batch; a response completed anywhere else schedules a
    /// flush on the thread pool, unless a sender is at work (it looks again before it stops).
    /// </summary>
    public void Respond(byte opcode, uint id, ProtocolStatus status, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> more = default)
    {
        int length = Wire.HeaderSize + payload.Length + more.Length;
        bool wake;
        bool inDispatch = _dispatchThread == Environment.CurrentManagedThreadId && id == _dispatchId;
        if (inDispatch)
        {
            _answeredInDispatch = true;
            _metrics.RequestAnswered(opcode, Stopwatch.GetTimestamp() - _dispatchStart);
        }
        lock (_outLock)
        {
            if (!inDispatch && !_untimed) TimeAnswerLocked(opcode, id);
            if (!_broken)
            {
                if (_out is null)
                {
                    _out = ArrayPool<byte>.Shared.Rent(Math.Max(OutputBufferBytes, length));
                }
                else if (_outLength + length > _out.Length)
                {
                    // Straight to the large size (not doubling): fewer copies, fewer sizes held in the pool.
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(OutputLargeBufferBytes, _outLength + length));
                    _out.AsSpan(0, _outLength).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(_out);
                    _out = bigger;
                }
                var frame = _out.AsSpan(_outLength, length);
                Wire.WriteHeader(frame, length, (byte)(opcode | Wire.ResponseBit), status, id);
                payload.CopyTo(frame[Wire.HeaderSize..]);
                more.CopyTo(frame[(Wire.HeaderSize + payload.Length)..]);
                _outLength += length;
                Volatile.Write(ref _queuedBytes, _queuedBytes + length);
                _budget.Add(length);
            }
            wake = !_readerFlushes && !_sending;
        }
        if (wake) ScheduleFlush();
        if (status != ProtocolStatus.Ok) _metrics.RequestRefused();
        // Only the transitions someone may wait for: a slot under the limit again (the reader), none left (RunAsync).
        int left = Interlocked.Decrement(ref _inFlight);
        if (left == 0 || left == _maxInFlight - 1) _slotFreed.Set();
    }

    /// <summary>The reader: a request its dispatch did not answer; timed when its answer comes (or now, if it came meanwhile).</summary>
    private void TimeLater(uint id, long start)
    {
        lock (_outLock)
        {
            if (_answeredEarly is { } early && early.Remove(id, out var answer))
                _metrics.RequestAnswered(answer.Opcode, answer.At - start);
            else
                (_startedLater ??= [])[id] = start;
        }
    }

    /// <summary>Under _outLock: a request answered outside its dispatch.</summary>
    private void TimeAnswerLocked(byte opcode, uint id)
    {
        long now = Stopwatch.GetTimestamp();
        if (_startedLater is { } later && later.Remove(id, out long start))
        {
            _metrics.RequestAnswered(opcode, now - start);
        }
        else
        {
            (_answeredEarly ??= [])[id] = (now, opcode);
        }
    }

    private void ScheduleFlush()
    {
        if (Interlocked.Exchange(ref _flushScheduled, 1) == 0) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    /// <summary>The scheduled flush, on a pool thread.</summary>
    void IThreadPoolWorkItem.Execute()
    {
        Volatile.Write(ref _flushScheduled, 0);
        _ = PoolFlushAsync();
    }

    private async Task PoolFlushAsync() => await FlushAsync(fromReader: false).ConfigureAwait(false);

    private void BeginReaderBatch()
    {
        lock (_outLock) _readerFlushes = true;
    }

    /// <summary>The reader stops sending (it is leaving): what it queued goes to a pool-thread flush.</summary>
    private void EndReaderBatch()
    {
        bool wake;
        lock (_outLock)
        {
            _readerFlushes = false;
            wake = _outLength > 0 && !_sending;
        }
        if (wake) ScheduleFlush();
    }

    /// <summary>
    /// Sends what is queued, and what is queued meanwhile, until nothing is; returns at once when
    /// another sender is at work (that one sends it). From the reader, also ends its batch: later
    /// responses schedule a flush.
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
                _sendTimeout.CancelAfter(SendTimeout);
                var data = buffer.AsMemory(0, length);
                while (!data.IsEmpty)
                    data = data[await _socket.SendAsync(data, SocketFlags.None, _sendTimeout.Token).ConfigureAwait(false)..];
                _sendTimeout.TryReset();
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = [];
                bool done;
                lock (_outLock)
                {
                    SentLocked(length);
                    done = _outLength == 0 || _broken;
                    if (done) _sending = false;
                    else (buffer, length) = SwapLocked();
                }
                _drained.Set();
                if (done) return;
            }
        }
        catch (Exception e)
        {
            if (e is OperationCanceledException && _sendTimeout.IsCancellationRequested)
                LogSendTimeout(_session?.Name ?? "(before handshake)", Peer, (int)SendTimeout.TotalSeconds);
            // The client is gone or not reading: drop what is queued, and close.
            _broken = true;
            if (buffer.Length > 0) ArrayPool<byte>.Shared.Return(buffer);
            lock (_outLock)
            {
                SentLocked(length);
                _sending = false;
            }
            DropOutput();
            _drained.Set();
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

    private TimeSpan SendTimeout => TimeSpan.FromSeconds(_stopping.IsCancellationRequested
        ? Math.Min(_options.SendTimeoutSeconds, ShutdownSendSeconds)
        : _options.SendTimeoutSeconds);

    private void ShortenSendTimeout()
    {
        try
        {
            lock (_outLock)
            {
                if (_sending) _sendTimeout.CancelAfter(SendTimeout);
            }
        }
        catch (ObjectDisposedException)
        {
            // closed meanwhile
        }
    }

    /// <summary>Under the lock: takes the queued responses; the next response rents a new buffer.</summary>
    private (byte[] Buffer, int Length) SwapLocked()
    {
        var buffer = _out!;
        int length = _outLength;
        _out = null;
        _outLength = 0;
        return (buffer, length);
    }

    /// <summary>Under the lock: <paramref name="length"/> bytes left the queue (sent or dropped).</summary>
    private void SentLocked(int length)
    {
        Volatile.Write(ref _queuedBytes, _queuedBytes - length);
        _budget.Remove(length);
    }

    /// <summary>Drops the responses queued and not being sent (the connection is broken or done).</summary>
    private void DropOutput()
    {
        lock (_outLock)
        {
            if (_out is null || _sending) return;
            int length = _outLength;
            ArrayPool<byte>.Shared.Return(_out);
            _out = null;
            _outLength = 0;
            SentLocked(length);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {Name} disconnected ({Peer})")]
    private partial void LogClientDisconnected(string name, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the connection of {Name} ({Peer}): a response write made no progress for {Seconds}s (Tmem:Service:SendTimeoutSeconds)")]
    private partial void LogSendTimeout(string name, string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Closing connection {Peer}: no handshake within {Seconds}s (Tmem:Service:HandshakeTimeoutSeconds)")]
    private partial void LogHandshakeTimeout(string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Closing connection {Peer} before its handshake: {Max} connections were waiting for theirs, and this was the oldest (Tmem:Service:MaxUnauthenticatedConnections)")]
    private partial void LogEvicted(string peer, int max);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closing the idle connection of {Name} ({Peer}): no request for {Seconds}s (Tmem:Service:IdleTimeoutSeconds)")]
    private partial void LogIdleTimeout(string name, string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closing the connection of {Name} ({Peer}): an administrator asked (ClientKill)")]
    private partial void LogKilled(string name, string peer);

    [LoggerMessage(Level = LogLevel.Error, Message = "Connection {Peer} failed")]
    private partial void LogConnectionFailed(Exception exception, string peer);
}
