using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Tmem.Service.Network;
using Tmem.Service.Sessions;
using static Tmem.Service.Nbd.NbdProtocol;

namespace Tmem.Service.Nbd;

/// <summary>
/// One NBD connection (docs/nbd.md): the fixed newstyle handshake, then the transmission phase,
/// on a socket of an <see cref="NbdListener"/> that acts for one configured client.
/// <para>
/// <b>Handshake.</b> Options are answered one at a time; anything malformed gets
/// NBD_REP_ERR_INVALID naming what was wrong, an unknown option NBD_REP_ERR_UNSUP, and the
/// connection stays open. Garbage where an option's magic should be, client flags this server did
/// not offer, more than <see cref="MaxOptions"/> options or an option over 16 MiB close it. The
/// handshake must end (GO or EXPORT_NAME) within <c>Tmem:Service:HandshakeTimeoutSeconds</c>, and
/// connections still in it are counted apart (<see cref="ConnectionGovernor"/>) so they cannot lock
/// clients out.
/// </para>
/// <para>
/// <b>Transmission.</b> The reader parses requests and starts each; requests whose work completes
/// at once (a get from RAM, an ephemeral or memory-only put) are answered before the next is read,
/// and the answers of one receive go out in one send. The others (a persistent write waiting for
/// its commit, a backing-file read) answer when done, out of order, as NBD allows. The reader stops
/// reading while <c>Tmem:Nbd:MaxInFlight</c> requests or <c>MaxInFlightBytes</c> payload bytes are in
/// flight, while over <see cref="OutputHighWaterBytes"/> of this connection's answers are unsent,
/// or while the service-wide <see cref="ResponseBudget"/> is over its limit; a send that makes no
/// progress for <c>Tmem:Service:SendTimeoutSeconds</c> closes the connection. A request that breaks
/// the protocol's framing (a bad magic) closes the connection after the answers already due; bad
/// arguments (an unknown command or flag, a range past the end, a length over the maximum) are
/// answered with the error the NBD specification names, and the connection goes on.
/// </para>
/// <para>
/// <b>Shutdown.</b> When the service stops, requests received whole are answered ESHUTDOWN,
/// requests in flight finish, and the connection closes.
/// </para>
/// </summary>
internal sealed partial class NbdConnection : IEvictable, IClientConnection
{
    /// <summary>This connection's unsent answer bytes at which its reader stops reading.</summary>
    internal const int OutputHighWaterBytes = 1 << 20;

    private const int MaxOptions = 4096;
    private const int MaxOptionBytes = 64 * 1024;
    private const int MaxSkippedOptionBytes = 16 << 20;
    private const int InputBytes = 64 * 1024;
    private const int BatchBytes = 64 * 1024;
    private const int MaxErrorMessageBytes = 1024;
    private const long ShutdownSendSeconds = 3;
    private const int MaxGather = 64;

    private readonly Socket _socket;
    private readonly NbdListener _listener;
    private readonly NbdExports _exports;
    private readonly NbdOptions _options;
    private readonly ServiceOptions _serviceOptions;
    private readonly ConnectionGovernor _governor;
    private readonly ResponseBudget _budget;
    private readonly ServiceMetrics _metrics;
    private readonly NbdMetrics _nbdMetrics;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private readonly ConnectionTicket _ticket;
    private readonly ConnectionRegistry _registry;
    private readonly AsyncSignal _slotFreed = new();
    private readonly AsyncSignal _drained = new();
    private readonly List<ArraySegment<byte>> _gather = [];
    private Timer? _stopTimer;
    private readonly SemaphoreSlim _flushWanted = new(0);
    private Thread? _sender;
    private long _sentBytes;
    private bool _sendStuck;
    private bool _closed;
    private readonly CancellationTokenSource _receiveCancel;

    private byte[] _in;
    private int _start;
    private int _end;

    // Handshake state.
    private bool _noZeroes;
    private bool _structured;
    private string? _metaExport; // the export the last SET_META_CONTEXT selected base:allocation for
    private int _optionsSeen;
    private volatile bool _evicted;
    private volatile bool _killed; // an administrator closed it (ClientKill)
    private long _requests;
    private bool _transmitting;

    // Transmission state.
    private NbdExport? _export;
    private int _inFlight;
    private long _inFlightBytes;
    private bool _baseAllocation;

    // Output: segments queued and not yet being sent, under _outLock.
    private readonly Lock _outLock = new();
    private List<Segment> _out = [];
    private List<Segment> _spare = [];
    private long _queuedBytes;   // queued plus being sent
    private bool _sending;
    private bool _readerFlushes;
    private int _flushScheduled;
    private volatile bool _broken;

    private readonly record struct Segment(byte[] Buffer, int Offset, int Length, bool Batch);

    public NbdConnection(Socket socket, NbdListener listener, NbdExports exports, NbdOptions options, ServiceOptions serviceOptions, SessionManager sessions,
        NbdMetrics nbdMetrics, ILogger logger, string peer, PeerCredentials? credentials, CancellationToken stopping)
    {
        _registry = sessions.Connections;
        Id = _registry.NextId();
        ConnectedAt = DateTimeOffset.UtcNow;
        Credentials = credentials;
        _socket = socket;
        _listener = listener;
        _exports = exports;
        _options = options;
        _serviceOptions = serviceOptions;
        _governor = sessions.Governor;
        _budget = sessions.ResponseBudget;
        _metrics = sessions.Metrics;
        _nbdMetrics = nbdMetrics;
        _logger = logger;
        Peer = peer;
        _stopping = stopping;
        _socket.Blocking = true; // never used asynchronously: see Run
        _socket.SendTimeout = checked(serviceOptions.SendTimeoutSeconds * 1000);
        _in = ArrayPool<byte>.Shared.Rent(1024);
        _receiveCancel = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        _ticket = _governor.AdmitUnauthenticated(this);
        _registry.Add(this);
    }

    public string Peer { get; }

    public long Id { get; }

    /// <summary>The export owner's session once an export is open (the operators' client list shows it); null in the handshake.</summary>
    public Session? Session => _transmitting ? _export?.Session : null;

    public PeerCredentials? Credentials { get; }

    public DateTimeOffset ConnectedAt { get; }

    public long Requests => Volatile.Read(ref _requests);

    public int InFlight => Volatile.Read(ref _inFlight);

    public long QueuedBytes => Volatile.Read(ref _queuedBytes);

    private string Client => _listener.Client;

    /// <summary>
    /// Serves the connection until the client leaves, an error or timeout closes it, or the service
    /// stops, on the calling thread (a thread of the connection's own, <see cref="NbdService"/>):
    /// its socket stays blocking, so a receive is one system call that the client's send wakes
    /// directly, with no readiness thread and thread-pool hop in between.
    /// </summary>
    public void Run()
    {
        using var onStopping = _stopping.UnsafeRegister(static state => ((NbdConnection)state!).ShortenSendTimeout(), this);
        using var onCancel = _receiveCancel.Token.UnsafeRegister(static state => ((NbdConnection)state!).StopReceiving(), this);
        try
        {
            _receiveCancel.CancelAfter(TimeSpan.FromSeconds(_serviceOptions.HandshakeTimeoutSeconds));
            if (Handshake())
            {
                _nbdMetrics.ConnectionOpened();
                try
                {
                    LogOpened(_export!.Name, Client, Peer, _structured);
                    Transmit();
                }
                finally
                {
                    _nbdMetrics.ConnectionClosed();
                }
            }
        }
        catch (OperationCanceledException) when (_killed && !_stopping.IsCancellationRequested)
        {
            // Reads no more; the requests started are answered below, then it closes.
            LogKilled(_export?.Name ?? "-", Client, Peer);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested && !_transmitting)
        {
            if (_evicted) LogEvicted(Peer);
            else
            {
                _metrics.HandshakeTimedOut();
                LogHandshakeTimeout(Peer, _serviceOptions.HandshakeTimeoutSeconds);
            }
            _broken = true;
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            _broken = true;
        }
        catch (Exception e)
        {
            LogFailed(e, Peer);
            _broken = true;
        }
        finally
        {
            EndReaderBatch();
        }
        try
        {
            while (Volatile.Read(ref _inFlight) > 0)
                _slotFreed.WaitAsync(CancellationToken.None).GetAwaiter().GetResult();
            Flush(fromReader: false);
            while (Volatile.Read(ref _queuedBytes) > 0 && !_broken)
                _drained.WaitAsync(CancellationToken.None).GetAwaiter().GetResult();
            GracefulClose.Close(_socket, _broken);
        }
        finally
        {
            _governor.Release(_ticket);
            _registry.Remove(this);
            ArrayPool<byte>.Shared.Return(_in);
            DropOutput();
            Volatile.Write(ref _closed, true);
            if (Volatile.Read(ref _sender) is not null) _flushWanted.Release(); // it ends
            onStopping.Dispose();
            onCancel.Dispose();
            _receiveCancel.Dispose();
            Interlocked.Exchange(ref _stopTimer, null)?.Dispose();
            if (_export is not null) LogClosed(_export.Name, Client, Peer);
        }
    }

    /// <summary>Closes the connection soon (an administrator's ClientKill): it reads no more, answers what it started, and closes.</summary>
    public void Kill()
    {
        _killed = true;
        CancelReceive();
    }

    public void Evict()
    {
        _evicted = true;
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

    // ---- Input -------------------------------------------------------------------------------

    private int Buffered => _end - _start;

    /// <summary>Ensures <paramref name="need"/> bytes are buffered; false at the end of the stream.</summary>
    private bool Fill(int need)
    {
        while (_end - _start < need)
        {
            if (_in.Length - _start < need)
            {
                if (_in.Length >= need)
                {
                    Buffer.BlockCopy(_in, _start, _in, 0, _end - _start);
                }
                else
                {
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(need, _transmitting ? InputBytes : 1024));
                    Buffer.BlockCopy(_in, _start, bigger, 0, _end - _start);
                    ArrayPool<byte>.Shared.Return(_in);
                    _in = bigger;
                }
                _end -= _start;
                _start = 0;
            }
            if (_transmitting)
            {
                // Nothing more to parse: send what this batch answered before waiting.
                Flush(fromReader: true);
            }
            int n = Receive(_in.AsSpan(_end));
            if (_transmitting) BeginReaderBatch();
            if (n == 0) return false;
            _end += n;
        }
        return true;
    }

    /// <summary>
    /// One blocking receive; 0 at the end of the stream. A kill, an eviction, the handshake
    /// timeout or the service's stop shuts the socket's receiving side (<see cref="StopReceiving"/>),
    /// which ends a receive under way: that is an <see cref="OperationCanceledException"/>.
    /// </summary>
    private int Receive(Span<byte> into)
    {
        int n;
        try
        {
            n = _socket.Receive(into, SocketFlags.None);
        }
        catch (SocketException) when (_receiveCancel.IsCancellationRequested)
        {
            n = 0;
        }
        if (n == 0 && _receiveCancel.IsCancellationRequested) throw new OperationCanceledException(_receiveCancel.Token);
        return n;
    }

    private void StopReceiving()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // closed already
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes; false at the end of the stream.</summary>
    private bool Skip(long count)
    {
        while (count > 0)
        {
            if (Buffered == 0 && !Fill(1)) return false;
            int n = (int)Math.Min(count, Buffered);
            _start += n;
            count -= n;
        }
        return true;
    }

    private ulong ReadU64(int at) => BinaryPrimitives.ReadUInt64BigEndian(_in.AsSpan(_start + at));

    private uint ReadU32(int at) => BinaryPrimitives.ReadUInt32BigEndian(_in.AsSpan(_start + at));

    private ushort ReadU16(int at) => BinaryPrimitives.ReadUInt16BigEndian(_in.AsSpan(_start + at));

    // ---- Handshake ---------------------------------------------------------------------------

    /// <summary>The fixed newstyle handshake; true when the transmission phase begins.</summary>
    private bool Handshake()
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, InitPasswd);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        SendNow(greeting);
        if (!Fill(4)) return false;
        uint clientFlags = ReadU32(0);
        _start += 4;
        if ((clientFlags & ~(ClientFlagFixedNewstyle | ClientFlagNoZeroes)) != 0)
        {
            LogBadHandshake(Peer, $"client flags 0x{clientFlags:x8} have bits this server did not offer (only 0x1 fixed newstyle and 0x2 no zeroes)");
            return false;
        }
        _noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
        while (true)
        {
            if (!Fill(16)) return false;
            ulong magic = ReadU64(0);
            uint option = ReadU32(8);
            uint length = ReadU32(12);
            if (magic != OptionMagic)
            {
                LogBadHandshake(Peer, $"expected an option (magic IHAVEOPT) and got 0x{magic:x16}");
                return false;
            }
            _start += 16;
            if (++_optionsSeen > MaxOptions)
            {
                LogBadHandshake(Peer, $"more than {MaxOptions} options without entering transmission");
                return false;
            }
            if (length > MaxOptionBytes)
            {
                if (length > MaxSkippedOptionBytes || !Skip(length))
                {
                    LogBadHandshake(Peer, $"{OptionName(option)} with {length} bytes of data");
                    return false;
                }
                ReplyError(option, RepErrTooBig, $"{OptionName(option)} carries {length} bytes; this server takes at most {MaxOptionBytes}");
                continue;
            }
            if (!Fill((int)length)) return false;
            var data = _in.AsMemory(_start, (int)length).ToArray();
            _start += (int)length;
            if (_stopping.IsCancellationRequested && option != OptAbort)
            {
                ReplyError(option, RepErrShutdown, "the service is stopping");
                return false;
            }
            switch (Option(option, data))
            {
                case OptionOutcome.Continue:
                    continue;
                case OptionOutcome.Transmit:
                    return true;
                default:
                    return false;
            }
        }
    }

    private enum OptionOutcome { Continue, Transmit, Close }

    private OptionOutcome Option(uint option, byte[] data)
    {
        switch (option)
        {
            case OptExportName:
            {
                string name;
                try
                {
                    name = Strict.GetString(data);
                }
                catch (DecoderFallbackException)
                {
                    LogBadHandshake(Peer, "NBD_OPT_EXPORT_NAME with a name that is not UTF-8");
                    return OptionOutcome.Close;
                }
                var export = Resolve(name, out string? why);
                if (export is null)
                {
                    LogRefused(Peer, Client, Printable(name), why!);
                    return OptionOutcome.Close; // this option cannot answer an error: the specification says to close
                }
                if (!Enter(export)) return OptionOutcome.Close;
                var reply = new byte[10 + (_noZeroes ? 0 : 124)];
                BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Size);
                BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), Flags(export));
                SendNow(reply);
                return OptionOutcome.Transmit;
            }
            case OptAbort:
                Reply(option, RepAck, []);
                return OptionOutcome.Close;
            case OptList:
                if (data.Length != 0)
                {
                    ReplyError(option, RepErrInvalid, "NBD_OPT_LIST carries no data");
                    return OptionOutcome.Continue;
                }
                foreach (var export in _exports.VisibleTo(Client))
                {
                    byte[] name = Encoding.UTF8.GetBytes(export.Name);
                    byte[] description = Encoding.UTF8.GetBytes(export.Description);
                    var payload = new byte[4 + name.Length + description.Length];
                    BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)name.Length);
                    name.CopyTo(payload, 4);
                    description.CopyTo(payload, 4 + name.Length);
                    Reply(option, RepServer, payload);
                }
                Reply(option, RepAck, []);
                return OptionOutcome.Continue;
            case OptStartTls:
                ReplyError(option, RepErrPolicy, "TLS is not offered: the listener (its socket's file mode, a loopback port) is the access control (docs/nbd.md)");
                return OptionOutcome.Continue;
            case OptInfo:
            case OptGo:
                return InfoOrGo(option, data);
            case OptStructuredReply:
                if (data.Length != 0)
                    ReplyError(option, RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY carries no data");
                else if (_structured)
                    ReplyError(option, RepErrInvalid, "structured replies are negotiated already");
                else
                {
                    _structured = true;
                    Reply(option, RepAck, []);
                }
                return OptionOutcome.Continue;
            case OptListMetaContext:
            case OptSetMetaContext:
                MetaContext(option, data);
                return OptionOutcome.Continue;
            default:
                ReplyError(option, RepErrUnsup, $"{OptionName(option)} is not supported by this server");
                return OptionOutcome.Continue;
        }
    }

    private static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

    /// <summary>The export a name selects for this listener's client (the empty name: its only export), or null and why.</summary>
    private NbdExport? Resolve(string name, out string? why)
    {
        why = null;
        if (name.Length == 0)
        {
            var visible = _exports.VisibleTo(Client).ToList();
            if (visible.Count == 1) return visible[0];
            why = visible.Count == 0
                ? $"client {Client} has no exports"
                : $"no default export: client {Client} has {visible.Count} exports ({string.Join(", ", visible.Select(e => e.Name))}); name one";
            return null;
        }
        var export = _exports.Find(Client, name);
        if (export is null) why = $"client {Client} has no export '{Printable(name)}' (its exports: {string.Join(", ", _exports.VisibleTo(Client).Select(e => e.Name).DefaultIfEmpty("none"))})";
        return export;
    }

    private ushort Flags(NbdExport export) => (ushort)(export.TransmissionFlags | (_structured ? TxSendDf : 0));

    /// <summary>The handshake ends: the connection counts as a client's (false at <c>MaxConnections</c>, or evicted meanwhile).</summary>
    private bool Enter(NbdExport export)
    {
        if (!_governor.TryAuthenticate(_ticket))
        {
            LogTooMany(Peer, _serviceOptions.MaxConnections);
            return false;
        }
        _receiveCancel.CancelAfter(Timeout.Infinite);
        _export = export;
        _baseAllocation = _structured && _metaExport == export.Name;
        _transmitting = true;
        BeginReaderBatch();
        return true;
    }

    private OptionOutcome InfoOrGo(uint option, byte[] data)
    {
        if (data.Length < 6)
        {
            ReplyError(option, RepErrInvalid, $"{OptionName(option)} data is {data.Length} bytes, under the 6 of a name length and a request count");
            return OptionOutcome.Continue;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 6)
        {
            ReplyError(option, RepErrInvalid, $"{OptionName(option)} names {nameLength} bytes of export name in {data.Length} bytes of data");
            return OptionOutcome.Continue;
        }
        int requests = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength));
        if (data.Length != 6 + nameLength + 2 * requests)
        {
            ReplyError(option, RepErrInvalid, $"{OptionName(option)} lists {requests} information requests, which does not match its {data.Length} bytes");
            return OptionOutcome.Continue;
        }
        string name;
        try
        {
            name = Strict.GetString(data, 4, (int)nameLength);
        }
        catch (DecoderFallbackException)
        {
            ReplyError(option, RepErrInvalid, "the export name is not UTF-8");
            return OptionOutcome.Continue;
        }
        var export = Resolve(name, out string? why);
        if (export is null)
        {
            ReplyError(option, RepErrUnknown, why!);
            return OptionOutcome.Continue;
        }
        bool wantsName = false, wantsDescription = false;
        for (int i = 0; i < requests; i++)
        {
            ushort info = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(6 + (int)nameLength + 2 * i));
            if (info == InfoName) wantsName = true;
            if (info == InfoDescription) wantsDescription = true;
        }
        if (option == OptGo && !_governor.TryAuthenticate(_ticket))
        {
            LogTooMany(Peer, _serviceOptions.MaxConnections);
            ReplyError(option, RepErrPolicy, $"the service has {_serviceOptions.MaxConnections} client connections open, its limit (Tmem:Service:MaxConnections); try again later");
            return OptionOutcome.Continue;
        }
        var info12 = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info12, InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(info12.AsSpan(2), (ulong)export.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info12.AsSpan(10), Flags(export));
        Reply(option, RepInfo, info12);
        var sizes = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(sizes, InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), 1);                          // any byte: unaligned requests are read-modify-write
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)export.PageSize);      // a page: no read-modify-write
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), (uint)_options.MaxPayloadBytes);
        Reply(option, RepInfo, sizes);
        if (wantsName || name.Length == 0)
            Reply(option, RepInfo, [.. BigEndian16(InfoName), .. Encoding.UTF8.GetBytes(export.Name)]);
        if (wantsDescription && export.Description.Length > 0)
            Reply(option, RepInfo, [.. BigEndian16(InfoDescription), .. Encoding.UTF8.GetBytes(export.Description)]);
        if (option == OptInfo)
        {
            Reply(option, RepAck, []);
            return OptionOutcome.Continue;
        }
        // Authenticated above (before any reply): now the transmission phase.
        _receiveCancel.CancelAfter(Timeout.Infinite);
        _export = export;
        _baseAllocation = _structured && _metaExport == export.Name;
        Reply(option, RepAck, []);
        _transmitting = true;
        BeginReaderBatch();
        return OptionOutcome.Transmit;
    }

    private static byte[] BigEndian16(ushort value) => [(byte)(value >> 8), (byte)value];

    /// <summary>LIST_META_CONTEXT and SET_META_CONTEXT: the one context is base:allocation.</summary>
    private void MetaContext(uint option, byte[] data)
    {
        bool set = option == OptSetMetaContext;
        if (set) _metaExport = null; // replaced even when this one fails
        if (!_structured)
        {
            ReplyError(option, RepErrInvalid, $"{OptionName(option)} needs NBD_OPT_STRUCTURED_REPLY first");
            return;
        }
        var queries = new List<string>();
        string? problem = null;
        string name = "";
        try
        {
            int at = 0;
            uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            at += 4;
            if (nameLength > data.Length - at) throw new ArgumentOutOfRangeException(nameof(data));
            name = Strict.GetString(data, at, (int)nameLength);
            at += (int)nameLength;
            uint count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            at += 4;
            for (uint i = 0; i < count; i++)
            {
                uint length = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
                at += 4;
                if (length > data.Length - at) throw new ArgumentOutOfRangeException(nameof(data));
                queries.Add(Strict.GetString(data, at, (int)length));
                at += (int)length;
            }
            if (at != data.Length) problem = $"{data.Length - at} bytes follow the last query";
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or DecoderFallbackException)
        {
            problem = e is DecoderFallbackException ? "a name or query is not UTF-8" : "a length points past the option's data";
        }
        if (problem is not null)
        {
            ReplyError(option, RepErrInvalid, $"{OptionName(option)}: {problem}");
            return;
        }
        var export = Resolve(name, out string? why);
        if (export is null)
        {
            ReplyError(option, RepErrUnknown, why!);
            return;
        }
        bool match = set
            ? queries.Contains(BaseAllocation, StringComparer.Ordinal)
            : queries.Count == 0 || queries.Any(q => q is "base:" or BaseAllocation);
        if (match)
        {
            var payload = new byte[4 + BaseAllocation.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, set ? BaseAllocationId : 0);
            Encoding.ASCII.GetBytes(BaseAllocation, payload.AsSpan(4));
            Reply(option, RepMetaContext, payload);
            if (set) _metaExport = export.Name;
        }
        Reply(option, RepAck, []);
    }

    private void ReplyError(uint option, uint type, string message)
    {
        var bytes = Encoding.UTF8.GetBytes(message);
        Reply(option, type, bytes.Length > MaxErrorMessageBytes ? bytes[..MaxErrorMessageBytes] : bytes);
    }

    private void Reply(uint option, uint type, byte[] payload)
    {
        var reply = new byte[20 + payload.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)payload.Length);
        payload.CopyTo(reply, 20);
        SendNow(reply);
    }

    /// <summary>Handshake replies are sent at once, one at a time, within the send timeout.</summary>
    private void SendNow(byte[] bytes)
    {
        int sent = 0;
        while (sent < bytes.Length)
        {
            try
            {
                sent += _socket.Send(bytes.AsSpan(sent), SocketFlags.None);
            }
            catch (SocketException e) when (IsTimeout(e))
            {
                throw new IOException("a handshake reply made no progress within the send timeout", e);
            }
        }
    }

    private static bool IsTimeout(SocketException e) => e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock;

    // ---- Transmission ------------------------------------------------------------------------

    private readonly record struct Request(ushort Type, ushort Flags, ulong Cookie, ulong Offset, uint Length, byte[]? Payload);

    private void Transmit()
    {
        // What the handshake left in the buffer is the first requests.
        if (_in.Length < InputBytes)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(InputBytes);
            Buffer.BlockCopy(_in, _start, bigger, 0, Buffered);
            _end = Buffered;
            _start = 0;
            ArrayPool<byte>.Shared.Return(_in);
            _in = bigger;
        }
        while (true)
        {
            if (_stopping.IsCancellationRequested)
            {
                AnswerShuttingDown();
                return;
            }
            if (MustPause())
            {
                Pause();
                continue;
            }
            bool more;
            try
            {
                more = Fill(RequestHeaderSize);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                AnswerShuttingDown();
                return;
            }
            if (!more) return; // the client closed: answer what was started, then close
            uint magic = ReadU32(0);
            if (magic != RequestMagic)
            {
                LogBadRequest(_export!.Name, Client, Peer, $"expected a request (magic 0x25609513) and got 0x{magic:x8}; the stream cannot be followed any further");
                return;
            }
            ushort flags = ReadU16(4);
            ushort type = ReadU16(6);
            ulong cookie = ReadU64(8);
            ulong offset = ReadU64(16);
            uint length = ReadU32(24);
            _start += RequestHeaderSize;
            byte[]? payload = null;
            if (type == CmdWrite)
            {
                if (length > _options.MaxPayloadBytes)
                {
                    // Answerable: its payload is skipped, the stream stays in step.
                    if (!Skip(length)) return;
                    StartAnswer(new Request(type, flags, cookie, offset, length, null), 0);
                    Answer(cookie, type, EINVAL, $"WRITE of {length} bytes is over the maximum payload {_options.MaxPayloadBytes} (NBD_INFO_BLOCK_SIZE)");
                    continue;
                }
                payload = ArrayPool<byte>.Shared.Rent((int)Math.Max(1, length));
                if (!ReceivePayload(payload, (int)length))
                {
                    ArrayPool<byte>.Shared.Return(payload);
                    return;
                }
            }
            if (type == CmdDisc)
            {
                LogDisconnect(_export!.Name, Client, Peer);
                return; // answer what is in flight, then close
            }
            Dispatch(new Request(type, flags, cookie, offset, length, payload));
        }
    }

    /// <summary>A write's payload: what is buffered, then straight from the socket.</summary>
    private bool ReceivePayload(byte[] payload, int length)
    {
        int have = Math.Min(length, Buffered);
        Buffer.BlockCopy(_in, _start, payload, 0, have);
        _start += have;
        while (have < length)
        {
            if (length - have < InputBytes / 2)
            {
                if (!Fill(length - have)) return false;
                Buffer.BlockCopy(_in, _start, payload, have, length - have);
                _start += length - have;
                return true;
            }
            Flush(fromReader: true);
            int n = Receive(payload.AsSpan(have, length - have));
            BeginReaderBatch();
            if (n == 0) return false;
            have += n;
        }
        return true;
    }

    private bool MustPause()
    {
        int inFlight = Volatile.Read(ref _inFlight);
        long queued = Volatile.Read(ref _queuedBytes);
        if (inFlight >= _options.MaxInFlight || (inFlight > 0 && Volatile.Read(ref _inFlightBytes) >= _options.MaxInFlightBytes) || queued > OutputHighWaterBytes) return true;
        if (!_budget.ShouldPause(queued)) return false;
        _budget.CountPause();
        return true;
    }

    private void Pause()
    {
        Flush(fromReader: true);
        try
        {
            while (!_broken && !_stopping.IsCancellationRequested)
            {
                int inFlight = Volatile.Read(ref _inFlight);
                long queued = Volatile.Read(ref _queuedBytes);
                if (inFlight >= _options.MaxInFlight || (inFlight > 0 && Volatile.Read(ref _inFlightBytes) >= _options.MaxInFlightBytes))
                    _slotFreed.WaitAsync(_stopping).GetAwaiter().GetResult();
                else if (queued > OutputHighWaterBytes)
                    _drained.WaitAsync(_stopping).GetAwaiter().GetResult();
                else if (_budget.ShouldPause(queued))
                    Task.WhenAny(_drained.WaitAsync(_stopping), _budget.WaitUnderLimitAsync()).GetAwaiter().GetResult();
                else
                    break;
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        BeginReaderBatch();
        if (_broken) throw new IOException("the connection broke while paused");
    }

    /// <summary>The service is stopping: every request received whole is answered ESHUTDOWN.</summary>
    private void AnswerShuttingDown()
    {
        while (Buffered >= RequestHeaderSize && ReadU32(0) == RequestMagic)
        {
            ushort type = ReadU16(6);
            ulong cookie = ReadU64(8);
            uint length = ReadU32(24);
            if (type == CmdWrite && Buffered < RequestHeaderSize + length) break;
            _start += RequestHeaderSize + (type == CmdWrite ? (int)length : 0);
            if (type == CmdDisc) break;
            StartAnswer(new Request(type, 0, cookie, 0, 0, null), 0);
            Answer(cookie, type, ESHUTDOWN, "the service is stopping; the request was not carried out");
        }
    }

    /// <summary>Counts a request as in flight until its answer.</summary>
    private void StartAnswer(in Request request, long bytes)
    {
        Interlocked.Increment(ref _inFlight);
        Interlocked.Add(ref _inFlightBytes, bytes);
        _metrics.RequestStarted();
        Interlocked.Increment(ref _requests);
        _nbdMetrics.Request(request.Type);
    }

    private void EndRequest(long bytes)
    {
        Interlocked.Add(ref _inFlightBytes, -bytes);
        int left = Interlocked.Decrement(ref _inFlight);
        if (left == 0 || left == _options.MaxInFlight - 1 || bytes > 0) _slotFreed.Set();
    }

    /// <summary>Checks a request against the export and the negotiated features, then starts it.</summary>
    private void Dispatch(Request r)
    {
        var export = _export!;
        long bytes = r.Type is CmdRead or CmdWrite ? r.Length : 0;
        StartAnswer(r, bytes);
        ushort allowed = (ushort)(CmdFlagFua | r.Type switch
        {
            CmdRead => _structured ? CmdFlagDf : 0,
            CmdWriteZeroes => CmdFlagNoHole | CmdFlagFastZero,
            CmdBlockStatus => CmdFlagReqOne,
            _ => 0,
        });
        string? invalid = null;
        uint error = EINVAL;
        ulong end = r.Offset + r.Length;
        if (r.Type > CmdBlockStatus)
            invalid = $"unknown command {r.Type}";
        else if ((r.Flags & ~allowed) != 0)
            invalid = $"flags 0x{r.Flags:x4} are not valid for {CommandName(r.Type)} (valid: 0x{allowed:x4})";
        else if (r.Type == CmdFlush && (r.Offset != 0 || r.Length != 0))
            invalid = "FLUSH must have offset and length 0";
        else if (r.Type != CmdFlush && (end < r.Offset || end > (ulong)export.Size))
        {
            invalid = $"{CommandName(r.Type)} of {r.Length} bytes at offset {r.Offset} goes past the end of the {export.Size}-byte export '{export.Name}'";
            if (r.Type is CmdWrite or CmdWriteZeroes) error = ENOSPC;
        }
        else if (r.Type == CmdRead && r.Length > _options.MaxPayloadBytes)
        {
            invalid = $"READ of {r.Length} bytes is over the maximum payload {_options.MaxPayloadBytes} (NBD_INFO_BLOCK_SIZE)";
            error = EOVERFLOW;
        }
        else if (r.Type == CmdBlockStatus && !_baseAllocation)
            invalid = "BLOCK_STATUS needs the base:allocation context (NBD_OPT_SET_META_CONTEXT for this export before NBD_OPT_GO)";
        if (invalid is not null)
        {
            if (r.Payload is not null) ArrayPool<byte>.Shared.Return(r.Payload);
            Answer(r.Cookie, r.Type, error, invalid, bytes);
            return;
        }
        _ = RunAsync(export, r, bytes);
    }

    /// <summary>Carries out a request and answers it (never throws).</summary>
    private async Task RunAsync(NbdExport export, Request r, long bytes)
    {
        try
        {
            long offset = (long)r.Offset;
            bool fua = (r.Flags & CmdFlagFua) != 0;
            switch (r.Type)
            {
                case CmdRead:
                    await ReadAsync(export, r, offset, bytes).ConfigureAwait(false);
                    return;
                case CmdWrite:
                    try
                    {
                        await export.WriteAsync(offset, r.Payload.AsMemory(0, (int)r.Length), fua).ConfigureAwait(false);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(r.Payload!);
                    }
                    break;
                case CmdFlush:
                    await export.FlushAsync().ConfigureAwait(false);
                    break;
                case CmdTrim:
                    await export.TrimAsync(offset, r.Length, fua).ConfigureAwait(false);
                    break;
                case CmdCache:
                    await export.CacheAsync(offset, r.Length).ConfigureAwait(false);
                    break;
                case CmdWriteZeroes:
                    await export.WriteZeroesAsync(offset, r.Length, (r.Flags & CmdFlagNoHole) != 0, fua).ConfigureAwait(false);
                    break;
                case CmdBlockStatus:
                    await BlockStatusAsync(export, r, offset).ConfigureAwait(false);
                    return;
            }
            Answer(r.Cookie, r.Type, 0, null, bytes);
        }
        catch (Exception e)
        {
            var (error, message) = Classify(export, e, r);
            Answer(r.Cookie, r.Type, error, message, bytes);
        }
    }

    private (uint Error, string Message) Classify(NbdExport export, Exception e, in Request r)
    {
        if (e is NbdException n) return (n.Error, n.Message);
        var failure = export.Session.Classify(e, export.PoolId, $"NBD {CommandName(r.Type)} on export '{export.Name}'", Peer);
        return failure.Kind switch
        {
            FailureKind.ShuttingDown => (ESHUTDOWN, "the service is stopping"),
            FailureKind.PoolNotFound or FailureKind.PoolOfAnotherClient => (EIO, $"the export's pool {export.PoolId} of client {export.Options.Client} is gone (destroyed through the tmem protocol?); restart the service to make a new one"),
            FailureKind.NotDurable => (EIO, $"not known to be durable: {failure.Message}"),
            _ => (EIO, failure.Message),
        };
    }

    private async Task ReadAsync(NbdExport export, Request r, long offset, long bytes)
    {
        int length = (int)r.Length;
        int prefix = _structured ? StructuredReplyHeaderSize + 8 : SimpleReplyHeaderSize;
        var buffer = ArrayPool<byte>.Shared.Rent(prefix + length);
        bool owned = true;
        try
        {
            await export.ReadAsync(offset, buffer.AsMemory(prefix, length)).ConfigureAwait(false);
            if (!_structured)
            {
                WriteSimpleHeader(buffer, 0, r.Cookie);
            }
            else if ((r.Flags & CmdFlagDf) != 0 || !HasZeroPage(buffer.AsSpan(prefix, length), offset, export.PageSize))
            {
                WriteChunkHeader(buffer, ReplyFlagDone, ReplyTypeOffsetData, r.Cookie, 8 + length);
                BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(StructuredReplyHeaderSize), r.Offset);
            }
            else
            {
                AnswerSparse(r, offset, buffer.AsSpan(prefix, length), export.PageSize, bytes);
                return;
            }
            owned = false;
            Enqueue(buffer, prefix + length, bytes);
        }
        catch (Exception e)
        {
            var (error, message) = Classify(export, e, r);
            Answer(r.Cookie, r.Type, error, message, bytes);
        }
        finally
        {
            if (owned) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Whether a whole page inside the read is all zeros (then the answer is sparse).</summary>
    private static bool HasZeroPage(ReadOnlySpan<byte> data, long offset, int pageSize)
    {
        int first = (int)((pageSize - offset % pageSize) % pageSize);
        for (int at = first; at + pageSize <= data.Length; at += pageSize)
            if (data.Slice(at, pageSize).IndexOfAnyExcept((byte)0) < 0) return true;
        return false;
    }

    /// <summary>A structured read answer with holes: runs of all-zero pages as OFFSET_HOLE chunks, the rest as OFFSET_DATA.</summary>
    private void AnswerSparse(in Request r, long offset, ReadOnlySpan<byte> data, int pageSize, long bytes)
    {
        // Chunk boundaries: the unaligned head and tail stay data; whole pages are data or hole.
        var chunks = new List<(int Start, int Length, bool Hole)>();
        int at = 0;
        while (at < data.Length)
        {
            long abs = offset + at;
            int pageEnd = (int)Math.Min(data.Length, at + (pageSize - abs % pageSize));
            bool whole = abs % pageSize == 0 && pageEnd - at == pageSize;
            bool hole = whole && data[at..pageEnd].IndexOfAnyExcept((byte)0) < 0;
            if (chunks.Count > 0 && chunks[^1].Hole == hole && chunks[^1].Start + chunks[^1].Length == at)
                chunks[^1] = (chunks[^1].Start, chunks[^1].Length + (pageEnd - at), hole);
            else
                chunks.Add((at, pageEnd - at, hole));
            at = pageEnd;
        }
        int total = 0;
        foreach (var c in chunks) total += StructuredReplyHeaderSize + (c.Hole ? 12 : 8 + c.Length);
        lock (_outLock)
        {
            var span = AppendLocked(total, out bool queued);
            int w = 0;
            for (int i = 0; i < chunks.Count; i++)
            {
                var c = chunks[i];
                ushort flags = i == chunks.Count - 1 ? ReplyFlagDone : (ushort)0;
                if (c.Hole)
                {
                    WriteChunkHeader(span[w..], flags, ReplyTypeOffsetHole, r.Cookie, 12);
                    BinaryPrimitives.WriteUInt64BigEndian(span[(w + 20)..], (ulong)(offset + c.Start));
                    BinaryPrimitives.WriteUInt32BigEndian(span[(w + 28)..], (uint)c.Length);
                    w += 32;
                }
                else
                {
                    WriteChunkHeader(span[w..], flags, ReplyTypeOffsetData, r.Cookie, 8 + c.Length);
                    BinaryPrimitives.WriteUInt64BigEndian(span[(w + 20)..], (ulong)(offset + c.Start));
                    data.Slice(c.Start, c.Length).CopyTo(span[(w + 28)..]);
                    w += 28 + c.Length;
                }
            }
            _ = queued;
        }
        Answered(0, bytes);
    }

    private async Task BlockStatusAsync(NbdExport export, Request r, long offset)
    {
        var extents = new List<NbdExtent>();
        bool one = (r.Flags & CmdFlagReqOne) != 0;
        await export.BlockStatusAsync(offset, r.Length, one, extents).ConfigureAwait(false);
        if (extents.Count == 0) extents.Add(new NbdExtent(r.Length == 0 ? 1 : r.Length, 0));
        if (one && extents.Count > 1) extents.RemoveRange(1, extents.Count - 1);
        int payload = 4 + 8 * extents.Count;
        lock (_outLock)
        {
            var span = AppendLocked(StructuredReplyHeaderSize + payload, out _);
            WriteChunkHeader(span, ReplyFlagDone, ReplyTypeBlockStatus, r.Cookie, payload);
            BinaryPrimitives.WriteUInt32BigEndian(span[20..], BaseAllocationId);
            for (int i = 0; i < extents.Count; i++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(24 + 8 * i)..], extents[i].Length);
                BinaryPrimitives.WriteUInt32BigEndian(span[(28 + 8 * i)..], extents[i].Flags);
            }
        }
        Answered(0, 0);
    }

    /// <summary>A reply without data: success, or an error with a message when structured replies allow one.</summary>
    private void Answer(ulong cookie, ushort type, uint error, string? message, long bytes = 0)
    {
        if (error != 0 && error != ESHUTDOWN) LogRequestError(_export?.Name ?? "?", Client, Peer, CommandName(type), error, message ?? "");
        // A structured read must not get a simple reply; other answers may (errors with a message are structured).
        bool structured = _structured && (type == CmdRead || type == CmdBlockStatus || error != 0);
        lock (_outLock)
        {
            if (!structured)
            {
                var span = AppendLocked(SimpleReplyHeaderSize, out _);
                WriteSimpleHeader(span, error, cookie);
            }
            else if (error == 0)
            {
                var span = AppendLocked(StructuredReplyHeaderSize, out _);
                WriteChunkHeader(span, ReplyFlagDone, ReplyTypeNone, cookie, 0);
            }
            else
            {
                var text = Encoding.UTF8.GetBytes(message ?? "");
                int n = Math.Min(text.Length, MaxErrorMessageBytes);
                var span = AppendLocked(StructuredReplyHeaderSize + 6 + n, out _);
                WriteChunkHeader(span, ReplyFlagDone, ReplyTypeError, cookie, 6 + n);
                BinaryPrimitives.WriteUInt32BigEndian(span[20..], error);
                BinaryPrimitives.WriteUInt16BigEndian(span[24..], (ushort)n);
                text.AsSpan(0, n).CopyTo(span[26..]);
            }
        }
        Answered(error, bytes);
    }

    private static void WriteSimpleHeader(Span<byte> span, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(span, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
    }

    private static void WriteChunkHeader(Span<byte> span, ushort flags, ushort type, ulong cookie, int length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(span, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(span[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)length);
    }

    // ---- Output ------------------------------------------------------------------------------

    /// <summary>Under the lock: room for <paramref name="length"/> bytes of answers at the end of the queue.</summary>
    private Span<byte> AppendLocked(int length, out bool queued)
    {
        queued = !_broken;
        if (_broken)
            return new byte[length];
        Segment last = _out.Count > 0 ? _out[^1] : default;
        if (_out.Count == 0 || !last.Batch || last.Offset + last.Length + length > last.Buffer.Length)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(BatchBytes, length));
            _out.Add(new Segment(buffer, 0, 0, true));
            last = _out[^1];
        }
        var span = last.Buffer.AsSpan(last.Offset + last.Length, length);
        _out[^1] = last with { Length = last.Length + length };
        Volatile.Write(ref _queuedBytes, _queuedBytes + length);
        _budget.Add(length);
        return span;
    }

    /// <summary>An answer in a buffer of its own (a read's data, not copied); the queue takes the buffer.</summary>
    private void Enqueue(byte[] buffer, int length, long bytes)
    {
        lock (_outLock)
        {
            if (_broken)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            else
            {
                _out.Add(new Segment(buffer, 0, length, false));
                Volatile.Write(ref _queuedBytes, _queuedBytes + length);
                _budget.Add(length);
            }
        }
        Answered(0, bytes);
    }

    /// <summary>An answer was queued: wake a sender if none is at work, end the request's time in flight.</summary>
    private void Answered(uint error, long bytes)
    {
        bool wake;
        lock (_outLock) wake = !_readerFlushes && !_sending && _out.Count > 0;
        if (wake) ScheduleFlush();
        if (error != 0) _metrics.RequestRefused();
        EndRequest(bytes);
    }

    /// <summary>
    /// Answers that completed away from the reader (a commit, a backing-file read) are sent by the
    /// connection's sender thread, started at the first: a send blocks while the client does not
    /// read, and that must hold up only this connection, never a thread-pool thread.
    /// </summary>
    private void ScheduleFlush()
    {
        if (Interlocked.Exchange(ref _flushScheduled, 1) != 0) return;
        if (Volatile.Read(ref _sender) is null)
        {
            lock (_outLock)
            {
                if (_sender is null)
                {
                    var thread = new Thread(static state => ((NbdConnection)state!).SendLoop()) { IsBackground = true, Name = "NBD sender" };
                    thread.UnsafeStart(this);
                    Volatile.Write(ref _sender, thread);
                }
            }
        }
        _flushWanted.Release();
    }

    private void SendLoop()
    {
        while (true)
        {
            _flushWanted.Wait();
            if (Volatile.Read(ref _closed)) return;
            Volatile.Write(ref _flushScheduled, 0);
            Flush(fromReader: false);
        }
    }

    private void BeginReaderBatch()
    {
        lock (_outLock) _readerFlushes = true;
    }

    private void EndReaderBatch()
    {
        bool wake;
        lock (_outLock)
        {
            _readerFlushes = false;
            wake = _out.Count > 0 && !_sending;
        }
        if (wake) ScheduleFlush();
    }

    /// <summary>Sends what is queued (and what is queued meanwhile) until nothing is; returns at once when another sender is at work.</summary>
    private void Flush(bool fromReader)
    {
        List<Segment> batch;
        lock (_outLock)
        {
            if (fromReader) _readerFlushes = false;
            if (_sending || _out.Count == 0 || _broken) return;
            _sending = true;
            batch = _out;
            _out = _spare;
        }
        bool timedOut = false;
        try
        {
            while (true)
            {
                long sent;
                try
                {
                    sent = SendAll(batch);
                }
                catch (SocketException e) when (IsTimeout(e))
                {
                    timedOut = true;
                    throw;
                }
                ReturnAll(batch);
                bool done;
                lock (_outLock)
                {
                    Volatile.Write(ref _queuedBytes, _queuedBytes - sent);
                    _budget.Remove(sent);
                    done = _out.Count == 0 || _broken;
                    if (done)
                    {
                        _sending = false;
                        _spare = batch;
                    }
                    else
                    {
                        var next = _out;
                        _out = batch;
                        batch = next;
                    }
                }
                _drained.Set();
                if (done) return;
            }
        }
        catch (Exception e)
        {
            if (timedOut || (e is SocketException && Volatile.Read(ref _sendStuck)))
                LogSendTimeout(_export?.Name ?? "(handshake)", Client, Peer, (int)SendTimeout.TotalSeconds);
            _broken = true;
            long dropped = 0;
            foreach (var s in batch) dropped += s.Length;
            ReturnAll(batch);
            lock (_outLock)
            {
                Volatile.Write(ref _queuedBytes, _queuedBytes - dropped);
                _budget.Remove(dropped);
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
            }
        }
    }

    /// <summary>
    /// Sends the segments with as few system calls as the socket takes them: one gathered send of
    /// up to <see cref="MaxGather"/> segments (a batch of read answers goes out in one
    /// <c>sendmsg</c>), again for what is left. Blocking, within the socket's send timeout
    /// (<c>SO_SNDTIMEO</c>: a call that sends nothing for <c>SendTimeoutSeconds</c> fails).
    /// Only the one sender at work (<see cref="_sending"/>) calls it.
    /// </summary>
    private long SendAll(List<Segment> batch)
    {
        long total = 0;
        int i = 0;
        int skip = 0; // bytes of batch[i] already sent
        while (i < batch.Count)
        {
            _gather.Clear();
            for (int j = i; j < batch.Count && _gather.Count < MaxGather; j++)
            {
                var s = batch[j];
                int from = j == i ? skip : 0;
                _gather.Add(new ArraySegment<byte>(s.Buffer, s.Offset + from, s.Length - from));
            }
            int n = _socket.Send(_gather, SocketFlags.None);
            Volatile.Write(ref _sentBytes, _sentBytes + n);
            total += n;
            while (n > 0)
            {
                int left = batch[i].Length - skip;
                if (n < left)
                {
                    skip += n;
                    break;
                }
                n -= left;
                i++;
                skip = 0;
            }
        }
        _gather.Clear();
        return total;
    }

    private static void ReturnAll(List<Segment> segments)
    {
        foreach (var s in segments) ArrayPool<byte>.Shared.Return(s.Buffer);
        segments.Clear();
    }

    private void DropOutput()
    {
        lock (_outLock)
        {
            if (_sending) return;
            long dropped = 0;
            foreach (var s in _out) dropped += s.Length;
            ReturnAll(_out);
            Volatile.Write(ref _queuedBytes, _queuedBytes - dropped);
            _budget.Remove(dropped);
        }
    }

    private TimeSpan SendTimeout => TimeSpan.FromSeconds(_stopping.IsCancellationRequested
        ? Math.Min(_serviceOptions.SendTimeoutSeconds, ShutdownSendSeconds)
        : _serviceOptions.SendTimeoutSeconds);

    /// <summary>
    /// The service stops: new sends get the shorter timeout, and a send under way that makes no
    /// progress for <see cref="ShutdownSendSeconds"/> is ended by shutting the socket (a blocking
    /// send keeps the timeout it started with).
    /// </summary>
    private void ShortenSendTimeout()
    {
        try
        {
            _socket.SendTimeout = (int)SendTimeout.TotalMilliseconds;
            long last = -1;
            var timer = new Timer(_ =>
            {
                long sent = Volatile.Read(ref _sentBytes);
                bool stuck;
                lock (_outLock) stuck = _sending && sent == last;
                last = sent;
                if (!stuck) return;
                Volatile.Write(ref _sendStuck, true);
                try
                {
                    _socket.Shutdown(SocketShutdown.Both);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }
            }, null, TimeSpan.FromSeconds(ShutdownSendSeconds), TimeSpan.FromSeconds(ShutdownSendSeconds));
            if (Interlocked.CompareExchange(ref _stopTimer, timer, null) is not null || Volatile.Read(ref _closed)) timer.Dispose();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>A name from a peer as it may be logged: control characters escaped, at most 100 characters.</summary>
    private static string Printable(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in text.Length > 100 ? text[..100] + "..." : text)
            sb.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c);
        return sb.ToString();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "NBD export '{Export}' opened by client {Client} ({Peer}), structured replies {Structured}")]
    private partial void LogOpened(string export, string client, string peer, bool structured);

    [LoggerMessage(Level = LogLevel.Debug, Message = "NBD connection to '{Export}' of client {Client} ({Peer}) closed")]
    private partial void LogClosed(string export, string client, string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closing NBD connection to '{Export}' of client {Client} ({Peer}): an administrator closed it (ClientKill)")]
    private partial void LogKilled(string export, string client, string peer);

    [LoggerMessage(Level = LogLevel.Debug, Message = "NBD client of '{Export}' ({Client}, {Peer}) disconnected (NBD_CMD_DISC)")]
    private partial void LogDisconnect(string export, string client, string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closing NBD connection {Peer} in its handshake: {Reason}")]
    private partial void LogBadHandshake(string peer, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD connection {Peer} (client {Client}) asked for export '{Name}', which it cannot open: {Why}")]
    private partial void LogRefused(string peer, string client, string name, string why);

    [LoggerMessage(Level = LogLevel.Information, Message = "Closing NBD connection to '{Export}' of client {Client} ({Peer}): {Reason}")]
    private partial void LogBadRequest(string export, string client, string peer, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "NBD {Command} on '{Export}' of client {Client} ({Peer}) answered error {Error}: {Message}")]
    private partial void LogRequestError(string export, string client, string peer, string command, uint error, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Closing NBD connection {Peer}: no handshake within {Seconds}s (Tmem:Service:HandshakeTimeoutSeconds)")]
    private partial void LogHandshakeTimeout(string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Closing NBD connection {Peer} in its handshake: the oldest of the connections waiting for theirs (Tmem:Service:MaxUnauthenticatedConnections)")]
    private partial void LogEvicted(string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NBD connection {Peer} refused: {Max} client connections are open (Tmem:Service:MaxConnections)")]
    private partial void LogTooMany(string peer, int max);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the NBD connection to '{Export}' of client {Client} ({Peer}): an answer made no progress for {Seconds}s (Tmem:Service:SendTimeoutSeconds)")]
    private partial void LogSendTimeout(string export, string client, string peer, int seconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "NBD connection {Peer} failed")]
    private partial void LogFailed(Exception exception, string peer);
}
