using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// Unsticks a FasterLog commit that FASTER's epoch left waiting. FasterLog starts a commit's flush
/// with an action on its epoch's drain list, which runs once every thread that was inside the
/// epoch has left it; FASTER 2.6.5 can leave that action pending when the last thread leaves (the
/// class of bug of microsoft/FASTER#199, fixed there for one case), and it then runs only when some
/// thread next enters the epoch. In Strict mode every appender waits for that commit, so none
/// does: the store hangs. (Seen by the power-cut tests: writers and a checkpoint waited for twenty
/// minutes; the dump showed <c>ShiftReadOnlyToTail</c>'s action on the drain list one epoch ahead
/// of the safe epoch, and no thread in the epoch.)
/// <para>
/// The commit watchdog calls <see cref="Tick"/> a few times a second: when something is appended
/// but not committed and the commit point has not moved since the last tick, it enters and leaves
/// the epoch once (a read of the tail address, which FasterLog answers at once), which drains what
/// is pending. On a healthy log that costs one epoch entry per tick of a slow commit, nothing else.
/// </para>
/// </summary>
internal sealed class StalledCommitNudge(FasterLog log)
{
    private long _lastCommitted = -1;

    /// <summary>Nudges made (tests).</summary>
    public long Nudges;

    public void Tick()
    {
        long committed = log.CommittedUntilAddress;
        if (log.TailAddress > committed && committed == _lastCommitted) Nudge();
        _lastCommitted = committed;
    }

    /// <summary>Enters and leaves FasterLog's epoch (its <c>ReadAsync</c> of an uncommitted address returns at once).</summary>
    public void Nudge()
    {
        Interlocked.Increment(ref Nudges);
        var read = log.ReadAsync(log.TailAddress);
        if (!read.IsCompleted) _ = read.AsTask(); // never: the address is not committed
    }
}
