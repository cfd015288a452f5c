using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// Keeps appenders from outrunning the device: while more than half of FasterLog's in-memory
/// buffer is unflushed, appenders wait before they take a bucket lock. FasterLog's own enqueue
/// would otherwise spin for room inside the bucket lock; with acknowledgement on append (Relaxed)
/// enough such spinners starve the thread pool that completes the very writes they wait for (seen
/// as a hang with 16 writers on two cores). Waiting stops when the log closes, and gives up with
/// <see cref="TmemNotDurableException"/> once the storage has failed for too long
/// (<see cref="CommitWaiters.ThrowIfFailedTooLong"/>).
/// <para>
/// In Relaxed mode appenders also wait while the commits lag too far behind
/// (<see cref="CommitPolicy.IsLagging"/>: that is what keeps a crash's loss bounded when the
/// machine is overloaded), unless the storage is full or failing: then the commits cannot catch
/// up, the state is reported (<see cref="StorageHealth"/>), and waiting would only stop the store.
/// </para>
/// </summary>
internal sealed class AppendBackpressure(FasterLog log, CommitWaiters waiters, CommitPolicy policy, StorageHealth health)
{
    /// <summary>Unflushed log bytes over which appenders wait (outside any lock) for the device to catch up.</summary>
    public const long BacklogLimit = PersistentLog.MemorySize / 2;

    /// <summary>Whether an appender would have to wait for room now.</summary>
    public bool IsBacklogged => log.TailAddress - log.FlushedUntilAddress > BacklogLimit || IsLagging;

    /// <summary>Called by appenders before they take a bucket lock: while the log is backlogged, sleeps.</summary>
    public void WaitForRoom()
    {
        if (!IsBacklogged) return;
        policy.CommitSoon(); // a lagging loop idle until its tick commits at once
        var spinner = new SpinWait();
        while (IsBacklogged && !waiters.IsClosed)
        {
            waiters.ThrowIfFailedTooLong();
            if (IsLagging) policy.Progress.Wait(LagRecheckMs); // until the next commit, not a poll
            else if (spinner.NextSpinWillYield) Thread.Sleep(1);
            else spinner.SpinOnce();
        }
    }

    /// <summary>Held back by the commit lag (not by unflushed bytes, which the device's writes clear).</summary>
    private bool IsLagging => policy.IsLagging && !health.IsDegraded;

    /// <summary>How long a lag wait sleeps at most before it looks again (the next commit usually ends it first).</summary>
    private const int LagRecheckMs = 10;

    /// <summary>
    /// <see cref="WaitForRoom"/> for async callers: waits without holding a thread, so the
    /// thread pool keeps the threads that complete the device writes being waited for.
    /// </summary>
    public async ValueTask WaitForRoomAsync()
    {
        if (IsBacklogged) policy.CommitSoon();
        while (IsBacklogged && !waiters.IsClosed)
        {
            waiters.ThrowIfFailedTooLong();
            if (IsLagging)
            {
                var progress = policy.Progress;
                if (!progress.IsCompleted) await Task.WhenAny(progress, Task.Delay(LagRecheckMs)).ConfigureAwait(false);
            }
            else await Task.Delay(1).ConfigureAwait(false);
        }
    }
}
