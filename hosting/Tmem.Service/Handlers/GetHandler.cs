using System.Buffers;
using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>Get (0x05): handle; answers the get status and, on a hit, the page.</summary>
internal sealed class GetHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.Get;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, Wire.HandleSize)) return;
        Wire.ReadHandle(payload, out int poolId, out var objectId, out uint index);
        var session = context.Session!;
        int pageSize = session.GetPageSize(poolId);
        // A pooled page for the engine to fill: it may complete later (a page read back from the
        // log), so the destination cannot be the connection's output buffer.
        byte[] page = ArrayPool<byte>.Shared.Rent(pageSize);
        ValueTask<GetStatus> get;
        try
        {
            get = session.GetAsync(poolId, objectId, index, page.AsMemory(0, pageSize));
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(page);
            throw;
        }
        if (get.IsCompletedSuccessfully) Answer(context, id, get.Result, page, pageSize);
        else _ = CompleteAsync(context, get, id, poolId, page, pageSize);
    }

    private static void Answer(IRequestContext context, uint id, GetStatus status, byte[] page, int pageSize)
    {
        try
        {
            ReadOnlySpan<byte> hit = [(byte)GetStatus.Hit];
            if (status == GetStatus.Hit) context.Respond((byte)Opcode.Get, id, ProtocolStatus.Ok, hit, page.AsSpan(0, pageSize));
            else context.RespondByte((byte)Opcode.Get, id, (byte)GetStatus.Miss);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(page);
        }
    }

    private static async Task CompleteAsync(IRequestContext context, ValueTask<GetStatus> get, uint id, int poolId, byte[] page, int pageSize)
    {
        GetStatus status;
        try
        {
            status = await get.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            ArrayPool<byte>.Shared.Return(page);
            context.RespondFailure((byte)Opcode.Get, id, poolId, e);
            return;
        }
        Answer(context, id, status, page, pageSize);
    }
}
