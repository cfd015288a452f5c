using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Tmem.Service.Tests;

/// <summary>
/// A bare NBD client over a Unix socket, for what the real clients (nbdinfo, nbdcopy, qemu-io,
/// fio, nbdsh) never send: garbage, bad lengths, unknown options and commands; and for a few
/// exact checks (error numbers, reply shapes). Every integer is big-endian (doc/proto.md).
/// </summary>
public sealed class NbdWire : IDisposable
{
    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdCache = 5, CmdWriteZeroes = 6, CmdBlockStatus = 7;
    public const ushort FlagFua = 1, FlagNoHole = 2, FlagDf = 4, FlagReqOne = 8, FlagFastZero = 16;
    public const uint EINVAL = 22, ENOSPC = 28, EOVERFLOW = 75, ESHUTDOWN = 108, EIO = 5;
    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7, OptStructuredReply = 8, OptListMeta = 9, OptSetMeta = 10;
    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001, RepErrPolicy = 0x80000002, RepErrInvalid = 0x80000003, RepErrUnknown = 0x80000006, RepErrTooBig = 0x80000009;

    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private ulong _cookie = 1;

    public NbdWire(string path)
    {
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _socket.ReceiveTimeout = 20_000;
        _socket.SendTimeout = 20_000;
    }

    public Socket Socket => _socket;

    public bool Structured { get; private set; }

    public ulong Size { get; private set; }

    public ushort TransmissionFlags { get; private set; }

    public void Send(ReadOnlySpan<byte> bytes) => _socket.Send(bytes);

    public byte[] ReceiveExactly(int count)
    {
        var buffer = new byte[count];
        int have = 0;
        while (have < count)
        {
            int n = _socket.Receive(buffer, have, count - have, SocketFlags.None);
            if (n == 0) throw new EndOfStreamException($"the server closed the connection after {have} of {count} bytes");
            have += n;
        }
        return buffer;
    }

    /// <summary>True when the server closes the connection (within the receive timeout), reading and dropping anything before.</summary>
    public bool ClosedByServer()
    {
        var sink = new byte[65536];
        try
        {
            while (_socket.Receive(sink) > 0)
            {
            }
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        catch (SocketException)
        {
            return false; // timed out: still open
        }
    }

    // ---- Handshake ---------------------------------------------------------------------------

    /// <summary>Reads the server's greeting and sends the client flags (fixed newstyle, no zeroes).</summary>
    public ushort Greet(uint clientFlags = 3)
    {
        var greeting = ReceiveExactly(18);
        Assert.Equal(0x4e42444d41474943UL, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(0x49484156454F5054UL, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
        Send(flags);
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public void SendOption(uint option, ReadOnlySpan<byte> data)
    {
        var header = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(header, 0x49484156454F5054UL);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)data.Length);
        Send([.. header, .. data]);
    }

    /// <summary>One option reply: (option, type, data).</summary>
    public (uint Option, uint Type, byte[] Data) ReceiveOptionReply()
    {
        var header = ReceiveExactly(20);
        Assert.Equal(0x3e889045565a9UL, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.InRange(length, 0u, 1u << 20);
        return (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), ReceiveExactly((int)length));
    }

    /// <summary>An option answered by one error reply: its message.</summary>
    public string ExpectOptionError(uint option, uint error)
    {
        var (o, type, data) = ReceiveOptionReply();
        string message = Encoding.UTF8.GetString(data);
        Assert.True(o == option && type == error, $"expected error 0x{error:x8} to option {option}, got type 0x{type:x8} to option {o}: {message}");
        return message;
    }

    public static byte[] GoData(string name, params ushort[] infos)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var data = new byte[4 + n.Length + 2 + 2 * infos.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)n.Length);
        n.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + n.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + n.Length + 2 * i), infos[i]);
        return data;
    }

    public static byte[] MetaData(string name, params string[] queries)
    {
        var parts = new List<byte>();
        var n = Encoding.UTF8.GetBytes(name);
        parts.AddRange(BigEndian32((uint)n.Length));
        parts.AddRange(n);
        parts.AddRange(BigEndian32((uint)queries.Length));
        foreach (var q in queries)
        {
            var b = Encoding.UTF8.GetBytes(q);
            parts.AddRange(BigEndian32((uint)b.Length));
            parts.AddRange(b);
        }
        return [.. parts];
    }

    public static byte[] BigEndian32(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        return b;
    }

    /// <summary>The whole handshake: structured replies and base:allocation (when asked), then GO.</summary>
    public void Open(string export, bool structured = true, bool meta = true)
    {
        Greet();
        if (structured)
        {
            SendOption(OptStructuredReply, []);
            Assert.Equal(RepAck, ReceiveOptionReply().Type);
            Structured = true;
            if (meta)
            {
                SendOption(OptSetMeta, MetaData(export, "base:allocation"));
                var (_, type, data) = ReceiveOptionReply();
                Assert.Equal(RepMetaContext, type);
                Assert.Equal("base:allocation", Encoding.ASCII.GetString(data, 4, data.Length - 4));
                Assert.Equal(RepAck, ReceiveOptionReply().Type);
            }
        }
        SendOption(OptGo, GoData(export, 3));
        while (true)
        {
            var (_, type, data) = ReceiveOptionReply();
            if (type == RepAck) break;
            Assert.True(type == RepInfo, $"GO {export}: reply type 0x{type:x8}: {Encoding.UTF8.GetString(data)}");
            if (BinaryPrimitives.ReadUInt16BigEndian(data) == 0)
            {
                Size = BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
            }
        }
    }

    // ---- Transmission ------------------------------------------------------------------------

    public ulong SendRequest(ushort type, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default, ulong? cookie = null)
    {
        ulong c = cookie ?? _cookie++;
        var header = new byte[28 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(header, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), c);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), length);
        payload.CopyTo(header.AsSpan(28));
        Send(header);
        return c;
    }

    /// <summary>A reply, simple or structured (all of its chunks): cookie, error, message, read data (holes filled), extents.</summary>
    public sealed record Reply(ulong Cookie, uint Error, string Message, byte[]? Data, List<(uint Length, uint Flags)> Extents, int Holes);

    /// <summary>Receives one reply; <paramref name="readLengths"/> tells the length of reads by cookie (simple replies carry no length).</summary>
    public Reply ReceiveReply(IReadOnlyDictionary<ulong, (ulong Offset, uint Length)>? reads = null)
    {
        var first = ReceiveExactly(4);
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(first);
        if (magic == 0x67446698)
        {
            var rest = ReceiveExactly(12);
            uint error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
            byte[]? data = null;
            if (error == 0 && reads is not null && reads.TryGetValue(cookie, out var read)) data = ReceiveExactly((int)read.Length);
            return new Reply(cookie, error, "", data, [], 0);
        }
        Assert.Equal(0x668e33efu, magic);
        ulong chunkCookie = 0;
        uint chunkError = 0;
        string message = "";
        byte[]? buffer = null;
        var extents = new List<(uint, uint)>();
        int holes = 0;
        bool firstChunk = true;
        while (true)
        {
            byte[] h = firstChunk ? [.. first, .. ReceiveExactly(16)] : ReceiveExactly(20);
            firstChunk = false;
            Assert.Equal(0x668e33efu, BinaryPrimitives.ReadUInt32BigEndian(h));
            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4));
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6));
            chunkCookie = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
            var payload = ReceiveExactly((int)length);
            (ulong Offset, uint Length) request = default;
            bool isRead = reads is not null && reads.TryGetValue(chunkCookie, out request);
            if (isRead && buffer is null) buffer = new byte[request.Length];
            switch (type)
            {
                case 0:
                    break;
                case 1:
                {
                    ulong offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
                    Assert.True(isRead, "OFFSET_DATA to a request that is not a read");
                    Assert.InRange(offset, request.Offset, request.Offset + request.Length - (ulong)(payload.Length - 8));
                    payload.AsSpan(8).CopyTo(buffer.AsSpan((int)(offset - request.Offset)));
                    break;
                }
                case 2:
                {
                    ulong offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
                    uint size = BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8));
                    Assert.True(isRead, "OFFSET_HOLE to a request that is not a read");
                    Assert.InRange(offset + size, request.Offset, request.Offset + request.Length);
                    holes++;
                    break;
                }
                case 5:
                    for (int at = 4; at < payload.Length; at += 8)
                        extents.Add((BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at + 4))));
                    break;
                default:
                    Assert.True((type & 0x8000) != 0, $"unknown chunk type {type}");
                    chunkError = BinaryPrimitives.ReadUInt32BigEndian(payload);
                    int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4));
                    message = Encoding.UTF8.GetString(payload, 6, messageLength);
                    break;
            }
            if ((flags & 1) != 0) break;
        }
        return new Reply(chunkCookie, chunkError, message, chunkError == 0 ? buffer : null, extents, holes);
    }

    /// <summary>Sends a request and receives its reply (no other request in flight).</summary>
    public Reply Call(ushort type, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default)
    {
        ulong cookie = SendRequest(type, offset, length, flags, payload);
        var reply = ReceiveReply(type == CmdRead ? new Dictionary<ulong, (ulong, uint)> { [cookie] = (offset, length) } : null);
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    public byte[] Read(ulong offset, uint length)
    {
        var reply = Call(CmdRead, offset, length);
        Assert.True(reply.Error == 0, $"READ {length} at {offset}: error {reply.Error} {reply.Message}");
        return reply.Data!;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data, ushort flags = 0)
    {
        var reply = Call(CmdWrite, offset, (uint)data.Length, flags, data);
        Assert.True(reply.Error == 0, $"WRITE {data.Length} at {offset}: error {reply.Error} {reply.Message}");
    }

    public void Dispose() => _socket.Dispose();
}
