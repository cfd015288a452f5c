namespace Tmem.RamTier;

/// <summary>
/// What the RAM tier knows of whoever holds its pages (a translation's object): the lock that
/// guards them, the pool account they count in, and how to find and unlink a page by index.
/// Every descriptor points at its owner, so eviction and slab compaction work bottom-up (from a
/// slot to its handle) without the RAM tier knowing the translation: they try the owner's lock,
/// check that the owner still maps the index to the descriptor, and only then act.
/// </summary>
internal abstract class PageOwner(Lock @lock, PoolAccount account)
{
    /// <summary>Guards this owner's index-to-descriptor map and its pages' descriptors and bytes.</summary>
    public readonly Lock Lock = @lock;

    /// <summary>The pool the pages count in (its page size and page count).</summary>
    public readonly PoolAccount Account = account;

    /// <summary>Under <see cref="Lock"/>: the descriptor id mapped at <paramref name="index"/>, or 0.</summary>
    public abstract uint Find(uint index);

    /// <summary>
    /// Under <see cref="Lock"/>, for eviction: unmaps <paramref name="index"/> (the owner may leave
    /// its container when that was its last page). The caller then releases the descriptor.
    /// </summary>
    public abstract void Unlink(uint index);
}

/// <summary>Per-pool figures the RAM tier keeps up to date: the page size and the pages stored now.</summary>
internal sealed class PoolAccount(int pageSize)
{
    public int PageSize { get; } = pageSize;

    /// <summary>Pages stored now (changed with <see cref="Interlocked"/> on install and release).</summary>
    public long Pages;
}
