using System.Diagnostics;
using System.Threading.Channels;
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
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
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

    public override void CommitSoon() => _wake.Writer.TryWrite(true);

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

    /// <summary>After a tick: once the commit point covers what was taken, nothing old is pending.</summary>
    private void ClearCovered()
    {
        if (Volatile.Read(ref _inflightSince) != 0 && Log.CommittedUntilAddress >= _inflightTail) Volatile.Write(ref _inflightSince, 0);
    }

    public override async Task RunAsync(CancellationToken token)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(commitIntervalMs));
        // One wait of each kind at a time (a PeriodicTimer allows only one), kept until it completes.
        Task<bool>? tick = null;
        Task<bool>? wake = null;
        try
        {
            while (true)
            {
                tick ??= timer.WaitForNextTickAsync(token).AsTask();
                wake ??= _wake.Reader.WaitToReadAsync(token).AsTask();
                var woke = await Task.WhenAny(tick, wake).ConfigureAwait(false);
                if (!await woke.ConfigureAwait(false)) break;
                if (woke == tick) tick = null;
                else
                {
                    wake = null;
                    _wake.Reader.TryRead(out _);
                }
                try
                {
                    TakePending();
                    if (Log.TailAddress > Log.CommittedUntilAddress)
                    {
                        await Log.CommitAsync(token).ConfigureAwait(false);
                    }
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
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }
}
