using Tmem.Diagnostics;
using Tmem.RamTier;

namespace Tmem.LogTier;

/// <summary>
/// The persistent log as the tier below the RAM tier for persistent pages. It holds every
/// logged page already (puts write through), so it keeps an evicted page as soon as the page's
/// Put record is committed: FasterLog reads committed data only, so an uncommitted record could
/// not be read back. It counts what its live records take (<c>log_live_bytes</c>).
/// </summary>
internal sealed class LogBacking(PersistentLog log, StoreCounters counters) : ITierBelow
{
    public bool TryKeep(uint descriptor, in PageHandle page, bool uncompressed, ref long backingAddress, ReadOnlySpan<byte> bytes) =>
        backingAddress != 0 && backingAddress < log.CommittedUntilAddress;

    public void Account(bool pattern, int storedLength, bool added) =>
        Interlocked.Add(ref counters.PersLogBytes, (added ? 1 : -1) * PersistentLog.EntrySize(pattern ? sizeof(ulong) : storedLength));
}
