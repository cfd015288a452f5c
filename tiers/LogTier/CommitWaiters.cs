using System.Diagnostics;
using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// Everyone waiting for the log's commit point to pass an address (Strict acknowledgements,
/// gets of records not committed yet, checkpoints, compaction), in one list that the commit
/// loop (<see cref="CommitPolicy"/>) completes after each commit and fails when a commit fails.
/// FasterLog's own waits never start a commit, so the store keeps its waiters here.
/// <para>
/// Also the NotDurable timeout: once the storage has been failing for
/// <see cref="TmemOptions.DurabilityTimeoutMs"/>, nobody waits for it any more. The watchdog
/// (<see cref="RunWatchdogAsync"/>) fails the waiters then, later waits fail at once, and
/// appenders waiting for room (<see cref="AppendBackpressure"/>) give up.
/// </para>
/// </summary>
internal sealed class CommitWaiters
{
    private readonly FasterLog _log;
    private readonly StorageHealth _health;
    private readonly long _durabilityTimeoutTicks;
    private readonly Lock _lock = new();
    private readonly List<(long Address, TaskCompletionSource Done)> _waiters = new();
    private bool _closed;

    /// <summary>Ticked by the watchdog: unsticks a commit FASTER's epoch left waiting (see <see cref="StalledCommitNudge"/>).</summary>
    internal StalledCommitNudge Stall { get; }

    public CommitWaiters(FasterLog log, StorageHealth health, int durabilityTimeoutMs)
    {
        _log = log;
        _health = health;
        _durabilityTimeoutTicks = durabilityTimeoutMs * Stopwatch.Frequency / 1000;
        Stall = new StalledCommitNudge(log);
    }

    /// <summary>How long an operation waits for a commit on a failing disk (<see cref="TmemOptions.DurabilityTimeoutMs"/>).</summary>
    public TimeSpan DurabilityTimeout => TimeSpan.FromTicks(_durabilityTimeoutTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency);

    /// <summary>Whether the log is closing or closed: nothing new waits (read without the lock by waits that poll).</summary>
    public bool IsClosed => Volatile.Read(ref _closed);

    /// <summary>
    /// <paramref name="wait"/> completes once everything below <paramref name="address"/> + 1 is
    /// committed, whatever the mode: at once when it already is, or (while the storage has failed
    /// for too long) failing with NotDurable at once; otherwise a waiter is added and the result is
    /// true (the caller then wakes the commit loop). Throws <see cref="ObjectDisposedException"/>
    /// (naming <paramref name="owner"/>) once the log is closed.
    /// </summary>
    public bool TryAdd(long address, object owner, out ValueTask wait)
    {
        wait = ValueTask.CompletedTask;
        if (_log.CommittedUntilAddress > address) return false;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_log.CommittedUntilAddress > address) return false;
            ObjectDisposedException.ThrowIf(_closed, owner);
            if (FailedTooLong)
            {
                wait = ValueTask.FromException(Answered(NotDurable()));
                return false;
            }
            _waiters.Add((address, done));
        }
        wait = new ValueTask(done.Task);
        return true;
    }

    /// <summary>Completes the waiters whose address is below <paramref name="committedUntil"/>; returns whether any are left.</summary>
    public bool Complete(long committedUntil)
    {
        lock (_lock)
        {
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Address < committedUntil)
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
            return _waiters.Count > 0;
        }
    }

    /// <summary>Fails every waiter with NotDurable (<paramref name="e"/> itself when it is one, else wrapping it).</summary>
    public void Fail(Exception e)
    {
        lock (_lock)
        {
            var failure = e as TmemNotDurableException ?? NotDurable(e);
            foreach (var (_, done) in _waiters)
                if (done.TrySetException(failure)) Interlocked.Increment(ref _health.NotDurableAnswers);
            _waiters.Clear();
        }
    }

    /// <summary>Marks the log closed, so that no new waiter is added; false when it already was.</summary>
    public bool Close()
    {
        lock (_lock)
        {
            if (_closed) return false;
            Volatile.Write(ref _closed, true);
            return true;
        }
    }

    /// <summary>
    /// While the storage has been failing for <see cref="TmemOptions.DurabilityTimeoutMs"/>, nothing
    /// waits for it any more: throws <see cref="TmemNotDurableException"/>.
    /// </summary>
    public void ThrowIfFailedTooLong()
    {
        if (FailedTooLong) throw Answered(NotDurable());
    }

    private bool FailedTooLong => _health.State == StorageState.Failing && _health.FailingFor.Ticks * Stopwatch.Frequency / TimeSpan.TicksPerSecond >= _durabilityTimeoutTicks;

    /// <summary>The exception for an operation the failing storage could not make durable.</summary>
    public TmemNotDurableException NotDurable(Exception? inner = null) => new(
        $"The persistent log could not make this operation durable: its storage is failing ({_health.Snapshot().LastError ?? inner?.Message ?? "no detail"}). " +
        "The operation's effect is in memory and in the log, and becomes durable once the storage recovers; a crash or stop before then loses it.", inner);

    /// <summary>Counts one operation answered NotDurable (counter <c>not_durable</c>) and returns its exception.</summary>
    private TmemNotDurableException Answered(TmemNotDurableException e)
    {
        Interlocked.Increment(ref _health.NotDurableAnswers);
        return e;
    }

    /// <summary>
    /// Every 1/4 of <see cref="TmemOptions.DurabilityTimeoutMs"/>: once the storage has been failing
    /// for that long, every waiter answers NotDurable. (A slow commit is not a failure: on a loaded
    /// machine commits can take seconds; the service warns about those.) Also nudges a commit that
    /// has not moved since the last tick (<see cref="StalledCommitNudge"/>).
    /// </summary>
    public async Task RunWatchdogAsync(CancellationToken token)
    {
        long timeoutMs = _durabilityTimeoutTicks * 1000 / Stopwatch.Frequency;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(timeoutMs / 4, 10, 250)));
        try
        {
            while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false))
            {
                if (FailedTooLong) Fail(NotDurable());
                Stall.Tick();
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }
}
