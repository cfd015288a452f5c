using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>FlushPage (0x06): handle; answers 1 if a page was removed, else 0.</summary>
internal sealed class FlushPageHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.FlushPage;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, Wire.HandleSize)) return;
        Wire.ReadHandle(payload, out int poolId, out var objectId, out uint index);
        AnswerWhenDone(context, context.Session!.FlushPageAsync(poolId, objectId, index), id, poolId,
            static (c, i, found) => c.RespondByte((byte)Opcode.FlushPage, i, found ? (byte)1 : (byte)0));
    }
}
