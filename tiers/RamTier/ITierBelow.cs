namespace Tmem.RamTier;

/// <summary>
/// A tier below the RAM tier, for one kind of page: where a page goes when eviction takes its
/// RAM copy, and what it holds. The persistent log is one (<c>LogTier.LogBacking</c>): it already
/// has every persistent page's bytes (written through), so it keeps an evicted page as soon as its
/// record is committed. A remote tier for evicted ephemeral pages would be another: it would copy
/// the compressed bytes out in <see cref="TryKeep"/> and name the copy by the backing address it
/// returns. Gets of <see cref="PageForm.Below"/> pages read from the tier below through the
/// translation (<c>Pool</c>), outside the owner's lock.
/// </summary>
internal interface ITierBelow
{
    /// <summary>
    /// Under the page owner's lock, when the CLOCK hand picks a page that has a RAM copy: true when
    /// this tier keeps the page, so that the RAM copy may go (the page becomes
    /// <see cref="PageForm.Below"/> at <paramref name="backingAddress"/>, which the tier may change);
    /// false leaves the page where it is (a persistent page) or lets it be dropped (an ephemeral one).
    /// <paramref name="backingAddress"/> is the page's copy in this tier so far (0 for none).
    /// </summary>
    bool TryKeep(ref long backingAddress, ReadOnlySpan<byte> compressed);

    /// <summary>
    /// A page backed by this tier (it has a backing address), stored as a pattern
    /// (<paramref name="pattern"/>) or as <paramref name="storedLength"/> compressed bytes, was
    /// installed (<paramref name="added"/>) or released: for the tier's own accounting (the log
    /// counts the bytes its live records take).
    /// </summary>
    void Account(bool pattern, int storedLength, bool added);
}
