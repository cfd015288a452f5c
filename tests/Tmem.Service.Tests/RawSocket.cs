using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>A bare Unix socket to the service, for sending frames the client library never would.</summary>
public sealed class RawSocket : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public RawSocket(string path)
    {
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _socket.ReceiveTimeout = 10_000;
    }

    public Socket Socket => _socket;

    public void Send(ReadOnlySpan<byte> bytes) => _socket.Send(bytes);

    public static byte[] Frame(byte opcode, uint requestId, ReadOnlySpan<byte> payload, byte status = 0)
    {
        var frame = new byte[Wire.HeaderSize + payload.Length];
        Wire.WriteHeader(frame, frame.Length, opcode, (ProtocolStatus)status, requestId);
        payload.CopyTo(frame.AsSpan(Wire.HeaderSize));
        return frame;
    }

    public static byte[] Hello(string name, string secret, ushort version = Wire.Version)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var s = Encoding.UTF8.GetBytes(secret);
        var payload = new byte[2 + 1 + n.Length + 1 + s.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(payload, version);
        payload[2] = (byte)n.Length;
        n.CopyTo(payload, 3);
        payload[3 + n.Length] = (byte)s.Length;
        s.CopyTo(payload, 4 + n.Length);
        return Frame((byte)Opcode.Hello, 0, payload);
    }

    /// <summary>Reads one response frame: (opcode, status, request id, payload).</summary>
    public (byte Opcode, ProtocolStatus Status, uint RequestId, byte[] Payload) Receive()
    {
        var header = ReceiveExactly(Wire.HeaderSize);
        int length = Wire.ReadLength(header);
        Assert.InRange(length, Wire.HeaderSize, 1 << 20);
        var payload = ReceiveExactly(length - Wire.HeaderSize);
        return (header[4], (ProtocolStatus)header[5], Wire.ReadRequestId(header), payload);
    }

    public string ReceiveError(ProtocolStatus expected)
    {
        var (_, status, _, payload) = Receive();
        string message = Encoding.UTF8.GetString(payload);
        Assert.True(status == expected, $"expected {expected}, got {status}: {message}");
        return message;
    }

    /// <summary>True if the server has closed the connection (reads EOF or a reset within the timeout).</summary>
    public bool IsClosedByServer()
    {
        var sink = new byte[65536];
        try
        {
            while (true)
            {
                int n = _socket.Receive(sink);
                if (n == 0) return true;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut || e.SocketErrorCode == SocketError.WouldBlock)
        {
            return false;
        }
    }

    private byte[] ReceiveExactly(int count)
    {
        var buffer = new byte[count];
        int at = 0;
        while (at < count)
        {
            int n = _socket.Receive(buffer, at, count - at, SocketFlags.None);
            if (n == 0) throw new IOException($"the server closed the connection after {at} of {count} bytes");
            at += n;
        }
        return buffer;
    }

    public void Dispose() => _socket.Dispose();
}
