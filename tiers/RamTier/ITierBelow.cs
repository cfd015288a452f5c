namespace Tmem.RamTier;

/// <summary>
/// A tier below the RAM tier, for one kind of page: where a page goes when eviction takes its
/// RAM copy, and what it holds. The persistent log is one (<c>LogTier.LogBacking</c>): it already
/// has every persistent page's bytes (written through), so it keeps an evicted page as soon as its
/// record is committed. The remote tier (<c>RemoteTier.RemoteBacking</c>) is the other, for ephemeral
/// pages: it copies the compressed bytes out in <see cref="TryKeep"/> and names the copy by the
/// version it returns as the backing address. Gets of <see cref="PageForm.Below"/> pages read from
/// the tier below through the translation (<c>Pool</c>), outside the owner's lock.
/// </summary>
internal interface ITierBelow
{
    /// <summary>
    /// Under the page owner's lock, when the CLOCK hand picks a page that has a RAM copy: true when
    /// this tier keeps the page, so that the RAM copy may go (the page becomes
    /// <see cref="PageForm.Below"/> at <paramref name="backingAddress"/>, which the tier may change);
    /// false leaves the page where it is (a persistent page) or lets it be dropped (an ephemeral one).
    /// <paramref name="backingAddress"/> is the page's copy in this tier so far (0 for none);
    /// <paramref name="bytes"/> the page as the RAM tier holds it (an LZ4 block, or the page itself
    /// when <paramref name="uncompressed"/>); <paramref name="descriptor"/> the page's descriptor (what
    /// a tier that can lose a copy later names to <see cref="OnCopyLost"/>'s callback). Never waits on
    /// anything but leaf locks.
    /// </summary>
    bool TryKeep(uint descriptor, in PageHandle page, bool uncompressed, ref long backingAddress, ReadOnlySpan<byte> bytes);

    /// <summary>
    /// Called once by the RAM tier: <paramref name="lost"/> (descriptor, backing address) is what
    /// to call, outside any lock, when a copy this tier took in <see cref="TryKeep"/> turns out lost
    /// (a remote write that failed): the RAM tier drops the page if the descriptor still holds that
    /// copy, so its gets miss at once and it stops counting as held here. The log never loses one.
    /// </summary>
    void OnCopyLost(Action<uint, long> lost)
    {
    }

    /// <summary>
    /// A page backed by this tier (it has a backing address), stored as a pattern
    /// (<paramref name="pattern"/>) or as <paramref name="storedLength"/> compressed bytes, was
    /// installed (<paramref name="added"/>) or released: for the tier's own accounting (the log
    /// counts the bytes its live records take).
    /// </summary>
    void Account(bool pattern, int storedLength, bool added);

    /// <summary>
    /// Under the owner's lock: a page (<paramref name="page"/>) this tier backs at <paramref name="backingAddress"/> was
    /// released (put over, flushed, taken, evicted, its pool destroyed); <paramref name="how"/>
    /// says who removes the copy. The log keeps its records (compaction drops dead ones).
    /// </summary>
    void Forget(in PageHandle page, long backingAddress, int storedLength, BelowRelease how)
    {
    }

    /// <summary>Under the owner's lock: every page of object <paramref name="id"/> of pool <paramref name="poolSerial"/> was released with <see cref="BelowRelease.ObjectGone"/> (a flush object, a destroyed pool).</summary>
    void ForgetObject(int poolSerial, in ObjectId id)
    {
    }

    /// <summary>True when this tier is nearly full: eviction then also drops pages it holds (least recently used first).</summary>
    bool WantsRoom => false;
}

/// <summary>How a page released from the RAM tier leaves the tier below (<see cref="ITierBelow.Forget"/>).</summary>
internal enum BelowRelease : byte
{
    /// <summary>The tier below deletes its copy.</summary>
    Forget = 0,

    /// <summary>An exclusive get takes the copy itself (it reads and deletes it after releasing the page).</summary>
    Taken = 1,

    /// <summary>The whole object goes; the caller then calls <see cref="ITierBelow.ForgetObject"/> once.</summary>
    ObjectGone = 2,
}
