using System.Buffers.Binary;
using Tmem.Protocol;

namespace Tmem.Service.Handlers;

/// <summary>CreatePool (0x02): kind, flags, page size, UUID; answers the client's pool id.</summary>
internal sealed class CreatePoolHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.CreatePool;

    public override int PoolIdOf(ReadOnlySpan<byte> payload) => -1;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        const byte op = (byte)Opcode.CreatePool;
        if (!CheckLength(context, id, payload, Wire.CreatePoolSize)) return;
        var options = Wire.ReadCreatePool(payload, out string? error);
        if (options is null)
        {
            context.RespondError(op, id, ProtocolStatus.InvalidArgument, error!);
            return;
        }
        var session = context.Session!;
        int maxFrame = session.Client.Options.MaxFrameBytes;
        if (options.PageSize <= PoolOptions.MaxPageSize && Wire.PutFrameSize(options.PageSize) > maxFrame)
        {
            context.RespondError(op, id, ProtocolStatus.InvalidArgument,
                $"a put of a {options.PageSize}-byte page needs a {Wire.PutFrameSize(options.PageSize)}-byte frame, over this client's MaxFrameBytes ({maxFrame})");
            return;
        }
        _ = CompleteAsync(context, session.CreatePoolAsync(options), id);
    }

    private static async Task CompleteAsync(IRequestContext context, Task<int> create, uint id)
    {
        int poolId;
        try
        {
            poolId = await create.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure((byte)Opcode.CreatePool, id, -1, e);
            return;
        }
        context.RespondInt((byte)Opcode.CreatePool, id, poolId);
    }
}

/// <summary>DestroyPool (0x03): pool id; answers an empty payload.</summary>
internal sealed class DestroyPoolHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.DestroyPool;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, 4)) return;
        int poolId = BinaryPrimitives.ReadInt32LittleEndian(payload);
        _ = CompleteAsync(context, context.Session!.DestroyPoolAsync(poolId), id, poolId);
    }

    private static async Task CompleteAsync(IRequestContext context, Task destroy, uint id, int poolId)
    {
        try
        {
            await destroy.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.RespondFailure((byte)Opcode.DestroyPool, id, poolId, e);
            return;
        }
        context.Respond((byte)Opcode.DestroyPool, id, ProtocolStatus.Ok, []);
    }
}

/// <summary>ListPools (0x09): answers this client's pools, each as CreatePool would make it.</summary>
internal sealed class ListPoolsHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.ListPools;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, 0)) return;
        var pools = context.Session!.GetPools();
        var answer = new byte[2 + pools.Count * Wire.PoolEntrySize];
        BinaryPrimitives.WriteUInt16LittleEndian(answer, (ushort)pools.Count);
        for (int i = 0; i < pools.Count; i++) Wire.WritePoolEntry(answer.AsSpan(2 + i * Wire.PoolEntrySize), pools[i]);
        context.Respond((byte)Opcode.ListPools, id, ProtocolStatus.Ok, answer);
    }
}

/// <summary>Stats (0x08): answers the store's counters and the service's, as (name, value).</summary>
internal sealed class StatsHandler : RequestHandler
{
    public override Opcode Opcode => Opcode.Stats;

    public override void Handle(IRequestContext context, uint id, ReadOnlySpan<byte> payload)
    {
        if (!CheckLength(context, id, payload, 0)) return;
        var counters = context.Session!.GetStats();
        var answer = new byte[Wire.StatsSize(counters)];
        Wire.WriteStats(answer, counters);
        context.Respond((byte)Opcode.Stats, id, ProtocolStatus.Ok, answer);
    }
}
