namespace Tmem.RamTier;

/// <summary>
/// What the RAM tier knows of whoever holds its pages (a translation's object, or a bucket's table
/// of single-page objects): the lock that guards them, the pool account they count in, and how to
/// find, name and unlink a page by its owner index (the page index for an object; the key's hash
/// for the inline table, whose entries move without the descriptors knowing).
/// Every descriptor points at its owner, so eviction and slab compaction work bottom-up (from a
/// slot to its handle) without the RAM tier knowing the translation: they try the owner's lock,
/// check that the owner still maps the index to the descriptor, and only then act.
/// </summary>
internal abstract class PageOwner(PageOwnerGroup group)
{
    /// <summary>
    /// The group the owner belongs to (a translation bucket): its lock and its pool's account.
    /// One reference, not two, because there is one owner per stored object and every byte of
    /// it counts for objects of a single page.
    /// </summary>
    public readonly PageOwnerGroup Group = group;

    /// <summary>Guards this owner's index-to-descriptor map and its pages' descriptors and bytes.</summary>
    public Lock Lock => Group.Lock;

    /// <summary>The pool the pages count in (its page size and page count).</summary>
    public PoolAccount Account => Group.Account;

    /// <summary>
    /// Under <see cref="Lock"/>: whether the owner maps descriptor <paramref name="descriptor"/>
    /// at owner index <paramref name="index"/> (what the descriptor recorded), and if so the
    /// <paramref name="position"/> that names the page to <see cref="HandleAt"/> and
    /// <see cref="Unlink"/> (the page index for an object, where the entry is now for an inline table).
    /// </summary>
    public abstract bool Holds(uint index, uint descriptor, out uint position);

    /// <summary>
    /// Under <see cref="Lock"/>, for a page at <paramref name="position"/> (<see cref="Holds"/>): its
    /// handle (with the pool's serial, what names it in a tier below: the remote tier's keys).
    /// </summary>
    public abstract PageHandle HandleAt(uint position);

    /// <summary>
    /// Under <see cref="Lock"/>, for eviction: unmaps the page at <paramref name="position"/>
    /// (<see cref="Holds"/>; the owner may leave its container when that was its last page). The
    /// caller then releases the descriptor.
    /// </summary>
    public abstract void Unlink(uint position);
}

/// <summary>
/// Owners that share a lock and a pool account (a translation bucket, which derives from this):
/// the lock guards every owner of the group.
/// </summary>
internal abstract class PageOwnerGroup(PoolAccount account)
{
    /// <summary>The group's lock: every owner in it is guarded by it.</summary>
    public Lock Lock { get; } = new();

    /// <summary>The pool account the group's pages count in.</summary>
    public PoolAccount Account { get; } = account;
}

/// <summary>A page's name across tiers: its pool's store-wide serial, object id and page index.</summary>
internal readonly record struct PageHandle(int PoolSerial, ObjectId Id, uint Index);

/// <summary>Per-pool figures the RAM tier keeps up to date: the page size and the pages stored now.</summary>
internal sealed class PoolAccount(int pageSize, int serial = 0)
{
    public int PageSize { get; } = pageSize;

    /// <summary>The pool's store-wide serial (names its pages in a tier below).</summary>
    public int Serial { get; } = serial;

    /// <summary>Pages stored now (changed with <see cref="Interlocked"/> on install and release).</summary>
    public long Pages;
}
