namespace Tmem;

/// <summary>What the store promises about a pool's pages.</summary>
public enum PoolKind
{
    /// <summary>
    /// Cleancache-like: pages may be refused and may vanish at any moment (eviction).
    /// Private ephemeral pools have exclusive gets (a hit removes the page); shared ones keep it.
    /// </summary>
    Ephemeral = 0,

    /// <summary>
    /// Frontswap-like: once a put is accepted the page stays until flushed or the pool is destroyed.
    /// Gets keep the page unless the pool was created with <see cref="PoolOptions.ExclusiveGets"/>.
    /// </summary>
    Persistent = 1,
}
