namespace Tmem.Client.Caching;

/// <summary>
/// How <see cref="TmemDistributedCache"/> keeps its values (<c>services.AddTmemDistributedCache(...)</c>).
/// </summary>
public sealed class TmemDistributedCacheOptions
{
    /// <summary>The shared pool UUID the cache's values live in, unless configured otherwise.</summary>
    public static readonly Guid DefaultPoolUuid = Guid.Parse("7d3c0a1e-5b2f-4e8a-9c61-74f0d2e6b8a3");

    /// <summary>
    /// The shared pool holding the values: every application (of any configured client) that
    /// uses the same UUID shares the same cache, as instances of one application behind a load
    /// balancer should. The service's configuration must allow each client that UUID
    /// (<c>Tmem:Service:Clients:N:SharedPools</c>; the shipped <c>local</c> client allows any).
    /// Default <see cref="DefaultPoolUuid"/>.
    /// </summary>
    public Guid PoolUuid { get; set; } = DefaultPoolUuid;

    /// <summary>
    /// <see cref="PoolKind.Ephemeral"/> (the default): a cache that may forget, whose values the
    /// store evicts under memory pressure and loses at a restart of the service; gets keep the
    /// value (a shared ephemeral pool). <see cref="PoolKind.Persistent"/>: values stay until they
    /// expire (removed when read after that) or are removed, are never evicted, and survive
    /// restarts and crashes of the service (with a data directory); puts wait for the log's
    /// commit. docs/client.md says when to choose which.
    /// </summary>
    public PoolKind PoolKind { get; set; } = PoolKind.Ephemeral;

    /// <summary>
    /// The pool's page size: a value takes as many pages of one object as it needs (48 bytes of
    /// header in its first page, 8 in each other). Larger pages mean fewer requests for large
    /// values; 4 KiB compress as well as any. A power of two from 512 to 65536. Default 4096.
    /// </summary>
    public int PageSize { get; set; } = PoolOptions.DefaultPageSize;

    /// <summary>Prefixed to every key, so several caches can share one pool. Default empty.</summary>
    public string KeyPrefix { get; set; } = "";

    /// <summary>The clock for expirations (tests give a fake one). Default the system clock.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal void Validate()
    {
        if (PoolUuid == Guid.Empty) throw new ArgumentException("PoolUuid must not be all zeros (the cache's pool is a shared pool).", nameof(PoolUuid));
        if (PoolKind is not (PoolKind.Ephemeral or PoolKind.Persistent)) throw new ArgumentOutOfRangeException(nameof(PoolKind), PoolKind, "Ephemeral or Persistent");
        if (PageSize < PoolOptions.MinPageSize || PageSize > PoolOptions.MaxPageSize || (PageSize & (PageSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(PageSize), PageSize, $"a power of two from {PoolOptions.MinPageSize} to {PoolOptions.MaxPageSize}");
        ArgumentNullException.ThrowIfNull(KeyPrefix, nameof(KeyPrefix));
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
