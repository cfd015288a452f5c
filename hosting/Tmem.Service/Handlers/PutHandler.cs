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
        var put = context.Session!.PutAsync(poolId, objectId, index, payload[Wire.HandleSize..]);
        if (put.IsCompletedSuccessfully) context.RespondByte((byte)Opcode.Put, id, (byte)put.Result);
        else _ = CompleteAsync(context, put, id, poolId);
    }

    private static async Task CompleteAsync(IRequestContext context, ValueTask<PutStatus> put, uint id, int poolId)
    {
        PutStatus status;
        try
        {
            status = await put.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure((byte)Opcode.Put, id, poolId, e);
            return;
        }
        context.RespondByte((byte)Opcode.Put, id, (byte)status);
    }
}
