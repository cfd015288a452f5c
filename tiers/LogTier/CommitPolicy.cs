using FASTER.core;
using Tmem.Diagnostics;

namespace Tmem.LogTier;

/// <summary>
/// When the log commits: the loop that turns appends into durable commits, one per
/// <see cref="DurabilityMode"/> (<see cref="For"/>). <see cref="DurabilityMode.Strict"/> is
/// <see cref="GroupCommitPolicy"/> (a commit whenever someone waits, shared by everyone who
/// arrived meanwhile); <see cref="DurabilityMode.Relaxed"/> is <see cref="IntervalCommitPolicy"/>
/// (a commit every <see cref="TmemOptions.CommitIntervalMs"/>, nobody waits). Both complete the
/// log's <see cref="CommitWaiters"/> after each commit and fail them when a commit fails, and run
/// the log's after-commit work (the committed marker, <see cref="PersistentLog.Committed"/>) on
/// the loop.
/// </summary>
internal abstract class CommitPolicy
{
    private readonly Action _afterCommit;

    protected CommitPolicy(FasterLog log, CommitWaiters waiters, Action afterCommit)
    {
        Log = log;
        Waiters = waiters;
        _afterCommit = afterCommit;
    }

    protected FasterLog Log { get; }

    protected CommitWaiters Waiters { get; }

    /// <summary>The mode this policy implements.</summary>
    public abstract DurabilityMode Mode { get; }

    /// <summary>
    /// The policy for <paramref name="mode"/> over <paramref name="log"/> and its
    /// <paramref name="waiters"/> (Relaxed commits every <paramref name="commitIntervalMs"/>; Strict
    /// counts its commits in <paramref name="diagnostics"/>, when given). Its loop starts with
    /// <see cref="RunAsync"/>; <paramref name="afterCommit"/> runs on the loop after each commit and
    /// must be quick and must not wait for a commit.
    /// </summary>
    public static CommitPolicy For(DurabilityMode mode, int commitIntervalMs, FasterLog log, CommitWaiters waiters, Action afterCommit, StoreDiagnostics? diagnostics) =>
        mode == DurabilityMode.Strict
            ? new GroupCommitPolicy(log, waiters, afterCommit, diagnostics)
            : new IntervalCommitPolicy(log, waiters, afterCommit, commitIntervalMs);

    /// <summary>
    /// Asks the loop for a commit without waiting for it: someone waits (or a record whose
    /// durability nobody awaits was appended). Strict wakes its loop; Relaxed commits on its
    /// interval anyway.
    /// </summary>
    public abstract void RequestCommit();

    /// <summary>
    /// Asks the loop for a commit now, not at its next interval: someone needs durability at once
    /// (a block device's FLUSH). Strict: the same as <see cref="RequestCommit"/>; Relaxed: the loop
    /// commits without waiting for its tick (the interval still bounds what a crash may lose).
    /// </summary>
    public virtual void CommitSoon() => RequestCommit();

    /// <summary>Called when a commit's metadata is durable (<see cref="LogCommitFile.Written"/>).</summary>
    public virtual void CommitWritten()
    {
    }

    /// <summary>Called after each append. Relaxed tracks the oldest uncommitted append (see <see cref="IsLagging"/>).</summary>
    public virtual void Appended()
    {
    }

    /// <summary>
    /// Relaxed: commits have fallen so far behind that appenders must wait for one (the loss bound,
    /// <see cref="IntervalCommitPolicy.LagLimitMs"/>). Strict: never (acknowledgements wait instead).
    /// </summary>
    public virtual bool IsLagging => false;

    /// <summary>Completes after the loop's next commit (Relaxed; appenders held back by <see cref="IsLagging"/> wait on it). Strict: a completed task.</summary>
    public virtual Task Progress => Task.CompletedTask;

    /// <summary>The commit loop, until <paramref name="token"/> is cancelled (the log closes).</summary>
    public abstract Task RunAsync(CancellationToken token);

    /// <summary>After a commit (or an interval's tick): the log's after-commit work.</summary>
    protected void AfterCommit() => _afterCommit();

    /// <summary>Completes the waiters the commit point now covers; asks for another commit while some are left.</summary>
    protected void CompleteWaiters()
    {
        if (Waiters.Complete(Log.CommittedUntilAddress)) RequestCommit();
    }
}
