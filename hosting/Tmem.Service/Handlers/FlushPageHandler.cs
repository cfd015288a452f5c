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
        var flush = context.Session!.FlushPageAsync(poolId, objectId, index);
        if (flush.IsCompletedSuccessfully) context.RespondByte((byte)Opcode.FlushPage, id, flush.Result ? (byte)1 : (byte)0);
        else _ = CompleteAsync(context, flush, id, poolId);
    }

    private static async Task CompleteAsync(IRequestContext context, ValueTask<bool> flush, uint id, int poolId)
    {
        bool found;
        try
        {
            found = await flush.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure((byte)Opcode.FlushPage, id, poolId, e);
            return;
        }
        context.RespondByte((byte)Opcode.FlushPage, id, found ? (byte)1 : (byte)0);
    }
}
