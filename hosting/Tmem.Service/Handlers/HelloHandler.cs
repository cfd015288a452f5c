using System.Buffers.Binary;
using System.Text;
using Tmem.Protocol;
using Tmem.Service.Sessions;

namespace Tmem.Service.Handlers;

/// <summary>Hello (0x01): version, client name, secret; authenticates the connection as a configured client.</summary>
internal sealed partial class HelloHandler(SessionManager sessions, ILogger<HelloHandler> logger) : RequestHandler
{
    private readonly ILogger _logger = logger;

    public override Opcode Opcode => Opcode.Hello;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        const byte op = (byte)Opcode.Hello;
        if (context.Session is { } current)
        {
            context.RespondError(op, id, ProtocolStatus.AlreadyAuthenticated, $"this connection is already authenticated as {current.Name}");
            return;
        }
        if (payload.Length < 2)
        {
            Refuse(context, id, ProtocolStatus.MalformedFrame, "Hello payload is shorter than its version field");
            return;
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        if (version != Wire.Version)
        {
            Refuse(context, id, ProtocolStatus.UnsupportedVersion, $"this server speaks protocol version {Wire.Version}; the Hello asked for {version}");
            return;
        }
        int nameLength = payload.Length > 2 ? payload[2] : -1;
        int secretAt = 3 + nameLength;
        if (nameLength < 1 || payload.Length < secretAt + 1 || payload.Length != secretAt + 1 + payload[secretAt])
        {
            Refuse(context, id, ProtocolStatus.MalformedFrame, "Hello payload must be version (2 bytes), name length (1..255), name, secret length, secret, and nothing after");
            return;
        }
        string name = Encoding.UTF8.GetString(payload.Slice(3, nameLength));
        var session = sessions.Authenticate(name, payload.Slice(secretAt + 1, payload[secretAt]), context.Credentials);
        if (session is null)
        {
            LogAuthenticationFailed(LogText.Escape(name), context.Peer);
            Refuse(context, id, ProtocolStatus.AuthenticationFailed, "unknown client name or wrong secret");
            return;
        }
        if (!context.TryAuthenticate(session))
        {
            LogTooManyConnections(session.Name, context.Peer, sessions.Governor.Authenticated);
            Refuse(context, id, ProtocolStatus.TooManyConnections,
                $"the service serves as many authenticated connections as it may ({sessions.Governor.Authenticated}, Tmem:Service:MaxConnections); try again later");
            return;
        }
        var o = session.Client.Options;
        Span<byte> answer = stackalloc byte[Wire.HelloResponseSize];
        answer.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(answer, Wire.Version);
        BinaryPrimitives.WriteInt32LittleEndian(answer[4..], o.Id);
        BinaryPrimitives.WriteInt32LittleEndian(answer[8..], o.MaxFrameBytes);
        BinaryPrimitives.WriteInt32LittleEndian(answer[12..], o.MaxInFlight);
        BinaryPrimitives.WriteInt32LittleEndian(answer[16..], session.Client.MaxPools);
        LogClientConnected(o.Name, o.Id, context.Peer);
        context.Respond(op, id, ProtocolStatus.Ok, answer);
    }

    /// <summary>A failed handshake: the answer, then the connection closes.</summary>
    private static void Refuse(IRequestContext context, uint id, ProtocolStatus status, string message)
    {
        context.CloseAfterResponse();
        context.RespondError((byte)Opcode.Hello, id, status, message);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {Name} (id {Id}) connected from {Peer}")]
    private partial void LogClientConnected(string name, int id, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handshake refused for client name {Name} from {Peer}: unknown name or wrong secret")]
    private partial void LogAuthenticationFailed(string name, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handshake of client {Name} from {Peer} refused: {Count} connections are authenticated (Tmem:Service:MaxConnections)")]
    private partial void LogTooManyConnections(string name, string peer, int count);
}
