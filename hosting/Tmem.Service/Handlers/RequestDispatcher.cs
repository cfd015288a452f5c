using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>
/// Routes each request frame to the handler of its opcode, after the checks every request gets
/// (header bytes 5-7, the handshake first, a known opcode); answers what a handler throws.
/// </summary>
internal sealed class RequestDispatcher
{
    private readonly RequestHandler?[] _handlers = new RequestHandler?[256];

    public RequestDispatcher(IEnumerable<RequestHandler> handlers)
    {
        foreach (var handler in handlers)
        {
            if (_handlers[(byte)handler.Opcode] is not null) throw new InvalidOperationException($"two handlers for {handler.Opcode}");
            _handlers[(byte)handler.Opcode] = handler;
        }
    }

    /// <summary>One whole request frame (header included). Every path ends in exactly one response, now or later.</summary>
    public void Dispatch(IRequestContext context, ReadOnlySpan<byte> frame)
    {
        byte opcode = frame[4];
        uint id = Wire.ReadRequestId(frame);
        if (frame[5] != 0 || frame[6] != 0 || frame[7] != 0)
        {
            context.RespondError(opcode, id, ProtocolStatus.MalformedFrame, "request bytes 5-7 (status, reserved) must be 0");
            context.CloseAfterResponse();
            return;
        }
        if (context.Session is null && opcode != (byte)Opcode.Hello)
        {
            context.RespondError(opcode, id, ProtocolStatus.HandshakeRequired, $"the first frame must be Hello (opcode 0x01), not opcode 0x{opcode:x2}");
            context.CloseAfterResponse();
            return;
        }
        var handler = _handlers[opcode];
        if (handler is null)
        {
            context.RespondError(opcode, id, ProtocolStatus.UnknownOpcode, $"opcode 0x{opcode:x2} is not a request this server knows");
            return;
        }
        var payload = frame[Wire.HeaderSize..];
        try
        {
            handler.Handle(context, id, payload);
        }
        catch (Exception e)
        {
            context.RespondFailure(opcode, id, handler.PoolIdOf(payload), e);
        }
    }
}
