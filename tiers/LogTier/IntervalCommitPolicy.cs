using System.Diagnostics;
using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// <see cref="DurabilityMode.Relaxed"/>: operations are acknowledged on append and the loop
/// commits every <see cref="TmemOptions.CommitIntervalMs"/> (what a crash may lose), when
/// anything was appended. Waiters still exist (readers of records not committed yet, checkpoints,
/// compaction) and are completed after each tick. <see cref="CommitSoon"/> commits before the next
/// tick, for a caller that needs durability now (a block device's FLUSH).
/// <para>
/// The loss bound holds when commits fall behind too (an overloaded machine, a slow disk), as
/// Redis's <c>appendfsync everysec</c> does it: the policy knows when the oldest append no
/// completed commit covers was made (<see cref="Appended"/>), and while that is more than
/// <see cref="LagLimitMs"/> ago, <see cref="IsLagging"/> holds appenders back
/// (<see cref="AppendBackpressure"/>) until a commit catches up. So an operation appended more
/// than the limit before another one was appended is durable by then, and a crash loses at most
/// the operations of the last <see cref="LagLimitMs"/> before the last append.
/// </para>
/// </summary>
internal sealed class IntervalCommitPolicy(FasterLog log, CommitWaiters waiters, Action afterCommit, int commitIntervalMs)
    : CommitPolicy(log, waiters, afterCommit)
{
    private readonly AutoResetEvent _wake = new(false);    // CommitSoon: commit before the next tick
    private readonly AutoResetEvent _written = new(false); // a commit's metadata is durable
    private readonly StalledCommitNudge _nudge = new(log);
    private readonly long _lagLimitTicks = LagLimitMs(commitIntervalMs) * Stopwatch.Frequency / 1000;

    // When the oldest append not covered by a completed commit was made (Stopwatch timestamps, 0 =
    // none), in two parts. _pendingSince: the first append since the loop last looked; appenders
    // set it (0 -> now, after their record is in the log), only the loop clears it. _inflightSince:
    // what the loop took from _pendingSince, kept until a commit covers _inflightTail (the tail the
    // loop read after taking it, so above every record marked before). The loop sets _inflightSince
    // before it clears _pendingSince, so a reader of both never sees neither.
    private long _pendingSince;
    private long _inflightSince;
    private long _inflightTail;

    /// <summary>Appends wait while the oldest uncommitted one is older than this: 10 intervals, at least 100 ms.</summary>
    public static int LagLimitMs(int commitIntervalMs) => (int)Math.Min(int.MaxValue, Math.Max(100L, 10L * commitIntervalMs));

    public override DurabilityMode Mode => DurabilityMode.Relaxed;

    /// <summary>Nothing to do: the next tick commits.</summary>
    public override void RequestCommit()
    {
    }

    /// <summary>After a record is in the log: the first since the loop last looked stamps the time.</summary>
    public override void Appended()
    {
        if (Volatile.Read(ref _pendingSince) == 0) Interlocked.CompareExchange(ref _pendingSince, Stopwatch.GetTimestamp(), 0);
    }

    /// <summary>The oldest append no completed commit covers is older than <see cref="LagLimitMs"/>.</summary>
    public override bool IsLagging
    {
        get
        {
            long pending = Volatile.Read(ref _pendingSince);
            long inflight = Volatile.Read(ref _inflightSince);
            long oldest = inflight != 0 && (pending == 0 || inflight < pending) ? inflight : pending;
            return oldest != 0 && Stopwatch.GetTimestamp() - oldest > _lagLimitTicks;
        }
    }

    /// <summary>Before a commit: everything marked so far is what it (or a later one) must cover.</summary>
    private void TakePending()
    {
        long pending = Volatile.Read(ref _pendingSince);
        if (pending == 0) return;
        // A failed or unfinished commit keeps the older stamp: its records are still uncommitted.
        if (Volatile.Read(ref _inflightSince) == 0) Volatile.Write(ref _inflightSince, pending);
        Volatile.Write(ref _pendingSince, 0); // appenders only set it from 0, so nothing was lost
        _inflightTail = Math.Max(_inflightTail, Log.TailAddress); // read after the clear: above every record marked before it
    }

    /// <summary>After a tick: once the commit point covers what was taken, nothing old is pending; appenders held back are woken.</summary>
    private void ClearCovered()
    {
        if (Volatile.Read(ref _inflightSince) != 0 && Log.CommittedUntilAddress >= _inflightTail) Volatile.Write(ref _inflightSince, 0);
        Interlocked.Exchange(ref _progress, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    // Completed (and replaced) after each tick's commit: what held-back appenders wait on, instead
    // of polling (64 async appenders polling every millisecond kept the thread pool so busy that
    // FASTER's own commit work item, which writes the commit's metadata, waited a second for a thread).
    private TaskCompletionSource _progress = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override Task Progress => Volatile.Read(ref _progress).Task;

    /// <summary>
    /// The loop runs on a thread of its own and waits synchronously, never on the thread pool: the
    /// moment commits matter most is when appenders (acknowledged at once) keep every pool thread
    /// busy, and an awaiting loop then queued behind them for seconds (no commit, so a crash lost
    /// everything since the last one). It waits for a commit on <see cref="LogCommitFile.Written"/>'s
    /// signal and the commit point (<see cref="CommitAndWait"/>).
    /// </summary>
    public override Task RunAsync(CancellationToken token)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Run(token);
                done.TrySetResult();
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        }) { IsBackground = true, Name = "Tmem commit" };
        thread.Start();
        return done.Task;
    }

    public override void CommitSoon() => _wake.Set();

    public override void CommitWritten() => _written.Set();

    private void Run(CancellationToken token)
    {
        var wakeOrStop = new WaitHandle[] { _wake, token.WaitHandle };
        long interval = Math.Max(1, commitIntervalMs * Stopwatch.Frequency / 1000);
        long nextTick = Stopwatch.GetTimestamp() + interval;
        while (!token.IsCancellationRequested)
        {
            long now = Stopwatch.GetTimestamp();
            if (now < nextTick)
            {
                int waitMs = (int)Math.Min(int.MaxValue, ((nextTick - now) * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
                if (WaitHandle.WaitAny(wakeOrStop, waitMs) == 1) break;
            }
            now = Stopwatch.GetTimestamp();
            if (now >= nextTick) nextTick = now + interval; // a tick (late ones coalesce, as PeriodicTimer's do)
            try
            {
                TakePending();
                if (Log.TailAddress > Log.CommittedUntilAddress) CommitAndWait(token);
                ClearCovered(); // a truncation's commit may have covered it too
                AfterCommit();
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                // Keep trying on the next tick; whoever waits for a commit (a spilled read,
                // a checkpoint) hears about this one.
                Waiters.Fail(e);
                continue;
            }
            CompleteWaiters(); // readers of spilled pages wait for commits too
        }
    }

    /// <summary>
    /// Commits up to the tail and waits until the commit point is there. FASTER's own
    /// <c>CommitAsync</c> is awaited too, only to hear of a failure: its continuation needs a pool
    /// thread, the commit point does not.
    /// </summary>
    private void CommitAndWait(CancellationToken token)
    {
        long tail = Log.TailAddress;
        var commit = Log.CommitAsync(token).AsTask();
        while (Log.CommittedUntilAddress < tail)
        {
            if (commit.IsCompleted)
            {
                commit.GetAwaiter().GetResult(); // throws the commit's failure
                if (Log.CommittedUntilAddress < tail) throw new InvalidOperationException($"The log's commit completed at {Log.CommittedUntilAddress}, below the tail {tail} it was asked for.");
                return;
            }
            token.ThrowIfCancellationRequested();
            // The commit file signals each durable commit; FASTER moves the commit point just
            // after, so a signal may come a moment early: the wait is bounded and re-checked.
            // A wait that timed out enters and leaves FASTER's epoch once: the commit's flush is
            // an action on the epoch's drain list, which runs only when a thread passes through
            // the epoch, and with every appender held back (the lag limit) none does.
            if (!_written.WaitOne(1)) _nudge.Nudge();
        }
    }
}
