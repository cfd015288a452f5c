namespace Tmem;

/// <summary>What a client sees of one of its pools.</summary>
/// <param name="PoolId">The client's id for the pool.</param>
/// <param name="Kind">Ephemeral or persistent.</param>
/// <param name="PageSize">Page size in bytes.</param>
/// <param name="SharedUuid">The shared pool's UUID, or null for a private pool.</param>
/// <param name="ExclusiveGets">Whether a get hit removes the page.</param>
/// <param name="Pages">Pages stored now.</param>
public sealed record PoolInfo(int PoolId, PoolKind Kind, int PageSize, Guid? SharedUuid, bool ExclusiveGets, long Pages)
{
    /// <summary>Whether the pool stores pages that compress poorly uncompressed instead of refusing them (<see cref="PoolOptions.StoreIncompressible"/>).</summary>
    public bool StoreIncompressible { get; init; }
}
