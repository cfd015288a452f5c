namespace Tmem;

/// <summary>How to create (or join) a pool.</summary>
public sealed record PoolOptions
{
    /// <summary>The smallest page size a pool may have.</summary>
    public const int MinPageSize = 512;

    /// <summary>The largest page size a pool may have.</summary>
    public const int MaxPageSize = 65536;

    /// <summary>The default page size (4 KiB).</summary>
    public const int DefaultPageSize = 4096;

    /// <summary>Ephemeral or persistent. Default ephemeral.</summary>
    public PoolKind Kind { get; init; } = PoolKind.Ephemeral;

    /// <summary>
    /// Null for a private pool; otherwise the 128-bit UUID of a shared pool: the first client to
    /// create it makes it, later clients with the same UUID join it (and must ask for the same
    /// kind, page size and get mode).
    /// </summary>
    public Guid? SharedUuid { get; init; }

    /// <summary>Page size in bytes: a power of two from 512 to 65536. Default 4096.</summary>
    public int PageSize { get; init; } = DefaultPageSize;

    /// <summary>
    /// Persistent pools only: a get hit removes the page (frontswap's exclusive-gets mode).
    /// Asking for it on an ephemeral pool is an error,
    /// since their get mode is fixed (exclusive when private, non-exclusive when shared).
    /// </summary>
    public bool ExclusiveGets { get; init; }

    /// <summary>The largest page size a pool with <see cref="StoreIncompressible"/> may have (a stored length is 16 bits).</summary>
    public const int MaxIncompressiblePageSize = 32768;

    /// <summary>
    /// A put never fails for how the page compresses: a page whose LZ4 block would exceed the
    /// store's <c>MaxZsize</c> is stored uncompressed (the page itself, as zram keeps its "huge"
    /// pages), and the persistent mean-size rule does not apply to this pool. For pools that back
    /// a block device, which cannot refuse a write. Page sizes up to
    /// <see cref="MaxIncompressiblePageSize"/>. Default false: such pages are refused
    /// (<see cref="PutStatus.RejectedPoorCompression"/>, <see cref="PutStatus.RejectedMeanCompression"/>).
    /// Other refusals (capacity, persistent limits, a full disk) still apply.
    /// </summary>
    public bool StoreIncompressible { get; init; }

    /// <summary>A private ephemeral pool of 4 KiB pages.</summary>
    public static PoolOptions Ephemeral { get; } = new();

    /// <summary>A private persistent pool of 4 KiB pages.</summary>
    public static PoolOptions Persistent { get; } = new() { Kind = PoolKind.Persistent };

    /// <summary>Checks the options; the store calls this before it creates or joins a pool.</summary>
    /// <exception cref="ArgumentException">A kind, page size, get mode or StoreIncompressible out of range, named.</exception>
    public void Validate()
    {
        if (Kind is not (PoolKind.Ephemeral or PoolKind.Persistent))
            throw new ArgumentException($"Pool kind {(int)Kind} is not Ephemeral or Persistent.", nameof(Kind));
        if (PageSize < MinPageSize || PageSize > MaxPageSize || (PageSize & (PageSize - 1)) != 0)
            throw new ArgumentException($"Page size {PageSize} must be a power of two from {MinPageSize} to {MaxPageSize}.", nameof(PageSize));
        if (ExclusiveGets && Kind != PoolKind.Persistent)
            throw new ArgumentException("ExclusiveGets applies to persistent pools only; ephemeral pools are exclusive when private and non-exclusive when shared.", nameof(ExclusiveGets));
        if (StoreIncompressible && PageSize > MaxIncompressiblePageSize)
            throw new ArgumentException($"StoreIncompressible needs a page size of at most {MaxIncompressiblePageSize} bytes (an uncompressed page's length is kept in 16 bits); this pool asks for {PageSize}.", nameof(StoreIncompressible));
    }
}
