using System.Threading.Channels;
using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// <see cref="DurabilityMode.Relaxed"/>: operations are acknowledged on append and the loop
/// commits every <see cref="TmemOptions.CommitIntervalMs"/> (what a crash may lose), when
/// anything was appended. Waiters still exist (readers of records not committed yet, checkpoints,
/// compaction) and are completed after each tick. <see cref="CommitSoon"/> commits before the next
/// tick, for a caller that needs durability now (a block device's FLUSH).
/// </summary>
internal sealed class IntervalCommitPolicy(FasterLog log, CommitWaiters waiters, Action afterCommit, int commitIntervalMs)
    : CommitPolicy(log, waiters, afterCommit)
{
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public override DurabilityMode Mode => DurabilityMode.Relaxed;

    public override void CommitSoon() => _wake.Writer.TryWrite(true);

    /// <summary>Nothing to do: the next tick commits.</summary>
    public override void RequestCommit()
    {
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
