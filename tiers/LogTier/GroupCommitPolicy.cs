using System.Threading.Channels;
using FASTER.core;
using Tmem.Diagnostics;

namespace Tmem.LogTier;

/// <summary>
/// <see cref="DurabilityMode.Strict"/>: group commit. An operation acknowledged only once durable
/// waits in <see cref="CommitWaiters"/> until <see cref="FasterLog.CommittedUntilAddress"/> passes
/// its record; one loop serves all waiters, because FasterLog's own waits never start a commit.
/// A waiter wakes the loop, which commits; everyone who arrived while a commit ran shares the next.
/// </summary>
internal sealed class GroupCommitPolicy(FasterLog log, CommitWaiters waiters, Action afterCommit, StoreDiagnostics? diagnostics)
    : CommitPolicy(log, waiters, afterCommit)
{
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public override DurabilityMode Mode => DurabilityMode.Strict;

    public override void RequestCommit() => _wake.Writer.TryWrite(true);

    public override async Task RunAsync(CancellationToken token)
    {
        try
        {
            while (await _wake.Reader.WaitToReadAsync(token).ConfigureAwait(false))
            {
                _wake.Reader.TryRead(out _);
                // Everyone who arrived while the previous commit ran shares this one.
                try
                {
                    await Log.CommitAsync(token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception e)
                {
                    Waiters.Fail(e);
                    continue;
                }
                if (diagnostics is not null) diagnostics.CommitCount++;
                AfterCommit();
                CompleteWaiters();
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }
}
