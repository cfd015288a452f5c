using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>Put (0x04): handle, then the page; answers the put status. The engine decides when it is durable.</summary>
internal sealed class PutHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.Put;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (payload.Length < Wire.HandleSize)
        {
            context.RespondError((byte)Opcode.Put, id, ProtocolStatus.InvalidArgument, $"Put payload is {payload.Length} bytes; it must be the {Wire.HandleSize}-byte handle and then the page");
            return;
        }
        Wire.ReadHandle(payload, out int poolId, out var objectId, out uint index);
        // The engine reads the page before PutAsync returns (the payload is gone after Handle).
        AnswerWhenDone(context, context.Session!.PutAsync(poolId, objectId, index, payload[Wire.HandleSize..]), id, poolId,
            static (c, i, status) => c.RespondByte((byte)Opcode.Put, i, (byte)status));
    }
}
