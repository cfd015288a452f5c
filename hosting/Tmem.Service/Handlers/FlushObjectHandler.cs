using System.Buffers.Binary;
using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>FlushObject (0x07): pool id, object id; answers the number of pages removed.</summary>
internal sealed class FlushObjectHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.FlushObject;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, 4 + Wire.ObjectIdSize)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        var objectId = Wire.ReadObjectId(payload[4..]);
        AnswerWhenDone(context, context.Session!.FlushObjectAsync(poolId, objectId), id, poolId,
            static (c, i, removed) => c.RespondInt((byte)Opcode.FlushObject, i, removed));
    }
}
