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
        var flush = context.Session!.FlushObjectAsync(poolId, objectId);
        if (flush.IsCompletedSuccessfully) context.RespondInt((byte)Opcode.FlushObject, id, flush.Result);
        else _ = CompleteAsync(context, flush, id, poolId);
    }

    private static async Task CompleteAsync(IRequestContext context, ValueTask<int> flush, uint id, int poolId)
    {
        int removed;
        try
        {
            removed = await flush.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure((byte)Opcode.FlushObject, id, poolId, e);
            return;
        }
        context.RespondInt((byte)Opcode.FlushObject, id, removed);
    }
}
