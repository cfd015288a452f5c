namespace Tmem;

/// <summary>Allocation-free pool look-ups for the service's request path.</summary>
public sealed partial class TmemClient
{
    /// <summary>The page size of this client's pool <paramref name="poolId"/>.</summary>
    /// <exception cref="TmemException">No such pool (<see cref="TmemError.PoolNotFound"/>).</exception>
    public int GetPageSize(int poolId) => Resolve(poolId).PageSize;

    /// <summary>The kind of this client's pool <paramref name="poolId"/>.</summary>
    /// <exception cref="TmemException">No such pool (<see cref="TmemError.PoolNotFound"/>).</exception>
    public PoolKind GetPoolKind(int poolId) => Resolve(poolId).Kind;
}
