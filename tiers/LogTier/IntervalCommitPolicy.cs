using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// <see cref="DurabilityMode.Relaxed"/>: operations are acknowledged on append and the loop
/// commits every <see cref="TmemOptions.CommitIntervalMs"/> (what a crash may lose), when
/// anything was appended. Waiters still exist (readers of records not committed yet, checkpoints,
/// compaction) and are completed after each tick.
/// </summary>
internal sealed class IntervalCommitPolicy(FasterLog log, CommitWaiters waiters, Action afterCommit, int commitIntervalMs)
    : CommitPolicy(log, waiters, afterCommit)
{
    public override DurabilityMode Mode => DurabilityMode.Relaxed;

    /// <summary>Nothing to do: the next tick commits.</summary>
    public override void RequestCommit()
    {
    }

    public override async Task RunAsync(CancellationToken token)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(commitIntervalMs));
        try
        {
            while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false))
            {
                try
                {
                    if (Log.TailAddress > Log.CommittedUntilAddress)
                    {
                        await Log.CommitAsync(token).ConfigureAwait(false);
                    }
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
