using System.Buffers.Binary;
using System.Text;
using Tmem.Protocol;
using Tmem.Service.Sessions;

namespace Tmem.Service.Handlers;

/// <summary>
/// What a request handler sees of its connection (implemented by the transport,
/// Network/FrameConnection.cs): the session once authenticated, and the one way to answer.
/// </summary>
internal interface IRequestContext
{
    /// <summary>The session, once a Hello succeeded; null before.</summary>
    Session? Session { get; }

    /// <summary>Who is at the other end, for logs (not peer-supplied).</summary>
    string Peer { get; }

    /// <summary>The kernel's word on a Unix socket's peer (SO_PEERCRED); null for TCP.</summary>
    PeerCredentials? Credentials { get; }

    /// <summary>
    /// Hello succeeded: counts the connection as authenticated and switches it to the client's
    /// limits. False when <c>MaxConnections</c> are authenticated already (answer and close).
    /// </summary>
    bool TryAuthenticate(Session session);

    /// <summary>The connection closes once this request's response is sent (an error that closes).</summary>
    void CloseAfterResponse();

    /// <summary>
    /// Queues the response to request <paramref name="id"/> (payload, then <paramref name="more"/>)
    /// and ends its time in flight. Every request gets exactly one, from any thread.
    /// </summary>
    void Respond(byte opcode, uint id, ProtocolStatus status, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> more = default);
}

/// <summary>
/// The handler of one opcode (docs/PROTOCOL.md, "Requests"). <see cref="Handle"/> runs on the
/// connection's reader with the request's payload, which is valid only until it returns: a
/// handler reads what it needs first, then answers at once or later (after an await) through
/// <see cref="IRequestContext.Respond"/>, exactly once. An exception thrown out of
/// <see cref="Handle"/> is answered by the dispatcher (so throw only before answering).
/// </summary>
internal abstract class RequestHandler
{
    /// <summary>The opcode handled.</summary>
    public abstract Opcode Opcode { get; }

    /// <summary>Handles one request of an authenticated connection (Hello: of any connection).</summary>
    public abstract void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload);

    /// <summary>The pool id an error message names: the payload's first field where it has one.</summary>
    public virtual int PoolIdOf(ReadOnlySpan<byte> payload) => payload.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(payload) : -1;

    /// <summary>
    /// Answers the engine's result: at once when <paramref name="pending"/> is done (no
    /// allocation), else when it completes; a failure is answered as what it is
    /// (<see cref="Responses.RespondFailure"/>).
    /// </summary>
    protected void AnswerWhenDone<T>(IRequestContext context, ValueTask<T> pending, uint id, int poolId, Action<IRequestContext, uint, T> answer)
    {
        if (pending.IsCompletedSuccessfully) answer(context, id, pending.Result);
        else _ = AnswerLaterAsync(context, pending, (byte)Opcode, id, poolId, answer);
    }

    private static async Task AnswerLaterAsync<T>(IRequestContext context, ValueTask<T> pending, byte opcode, uint id, int poolId, Action<IRequestContext, uint, T> answer)
    {
        T result;
        try
        {
            result = await pending.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure(opcode, id, poolId, e);
            return;
        }
        answer(context, id, result);
    }

    /// <summary>Requests for administrator clients: false (answered NotPermitted) for others.</summary>
    protected bool CheckAdmin(IRequestContext context, uint id)
    {
        var session = context.Session!;
        if (session.Client.Options.Admin) return true;
        context.RespondError((byte)Opcode, id, ProtocolStatus.NotPermitted,
            $"{Opcode} is for administrator clients; client {session.Name} is not one (Tmem:Service:Clients:N:Admin)");
        return false;
    }

    protected bool CheckLength(IRequestContext context, uint id, ReadOnlySpan<byte> payload, int expected)
    {
        if (payload.Length == expected) return true;
        context.RespondError((byte)Opcode, id, ProtocolStatus.InvalidArgument, $"{Opcode} payload is {payload.Length} bytes; it must be {expected}");
        return false;
    }
}

/// <summary>Answers in the forms every handler uses.</summary>
internal static class Responses
{
    private const int MaxMessageBytes = 1000;

    public static void RespondError(this IRequestContext context, byte opcode, uint id, ProtocolStatus status, string message)
    {
        Span<byte> text = stackalloc byte[MaxMessageBytes];
        int length = Encoding.UTF8.GetByteCount(message) <= MaxMessageBytes
            ? Encoding.UTF8.GetBytes(message, text)
            : Encoding.UTF8.GetBytes(message.AsSpan(0, MaxMessageBytes / 4), text);
        context.Respond(opcode, id, status, text[..length]);
    }

    public static void RespondByte(this IRequestContext context, byte opcode, uint id, byte value)
    {
        ReadOnlySpan<byte> answer = [value];
        context.Respond(opcode, id, ProtocolStatus.Ok, answer);
    }

    public static void RespondInt(this IRequestContext context, byte opcode, uint id, int value)
    {
        Span<byte> answer = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(answer, value);
        context.Respond(opcode, id, ProtocolStatus.Ok, answer);
    }

    /// <summary>Answers a failed operation on <paramref name="poolId"/> with its status and message (an unexpected one is logged by the session).</summary>
    public static void RespondFailure(this IRequestContext context, byte opcode, uint id, int poolId, Exception e)
    {
        var failure = context.Session is { } session
            ? session.Classify(e, poolId, ((Opcode)opcode).ToString(), context.Peer)
            : new Failure(FailureKind.ServerError, $"{e.GetType().Name}: {e.Message}");
        context.RespondError(opcode, id, StatusOf(failure.Kind), failure.Message);
    }

    /// <summary>The wire status of a session failure.</summary>
    public static ProtocolStatus StatusOf(FailureKind kind) => kind switch
    {
        FailureKind.InvalidArgument => ProtocolStatus.InvalidArgument,
        FailureKind.PoolNotFound => ProtocolStatus.PoolNotFound,
        FailureKind.PoolOfAnotherClient => ProtocolStatus.PoolOfAnotherClient,
        FailureKind.PoolLimitReached => ProtocolStatus.PoolLimitReached,
        FailureKind.SharedPoolNotAllowed => ProtocolStatus.SharedPoolNotAllowed,
        FailureKind.SharedPoolMismatch => ProtocolStatus.SharedPoolMismatch,
        FailureKind.SharedPoolAlreadyJoined => ProtocolStatus.SharedPoolAlreadyJoined,
        FailureKind.ShuttingDown => ProtocolStatus.ShuttingDown,
        FailureKind.NotDurable => ProtocolStatus.NotDurable,
        _ => ProtocolStatus.ServerError,
    };
}
