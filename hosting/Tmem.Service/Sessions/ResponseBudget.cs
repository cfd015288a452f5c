using Microsoft.Extensions.Options;

namespace Tmem.Service.Sessions;

/// <summary>
/// The one bound on response bytes queued across all connections (<c>MaxQueuedResponseBytes</c>):
/// answers written and not yet taken by the kernel (clients that read slowly or not at all).
/// Each connection also stops reading at its own high-water mark; this bound adds that, when
/// the total is over the limit, a connection holding at least the mean of the connections that
/// hold any stops reading until the total is back under the limit (or its own queue is empty).
/// So the connections holding the most stop first, and one that holds little goes on. Counters
/// are lock-free; only a connection that waits takes the lock.
/// </summary>
internal sealed class ResponseBudget(IOptions<ServiceOptions> options)
{
    private readonly Lock _lock = new();
    private long _queued;
    private int _holders;
    private long _pauses;
    private TaskCompletionSource? _underLimit;

    public long Limit { get; } = options.Value.MaxQueuedResponseBytes;

    /// <summary>Response bytes queued now, all connections.</summary>
    public long Queued => Interlocked.Read(ref _queued);

    /// <summary>How often a connection stopped reading because of this bound.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);

    /// <summary>A connection queued <paramref name="bytes"/>; <paramref name="first"/>: it held none before.</summary>
    public void Add(long bytes, bool first)
    {
        if (first) Interlocked.Increment(ref _holders);
        Interlocked.Add(ref _queued, bytes);
    }

    /// <summary>A connection's bytes were sent or dropped; <paramref name="last"/>: it holds none now.</summary>
    public void Remove(long bytes, bool last)
    {
        if (last) Interlocked.Decrement(ref _holders);
        long queued = Interlocked.Add(ref _queued, -bytes);
        if (queued <= Limit && Volatile.Read(ref _underLimit) is not null) SignalUnderLimit();
    }

    /// <summary>Whether a connection holding <paramref name="mine"/> bytes should stop reading now.</summary>
    public bool ShouldPause(long mine)
    {
        long queued = Interlocked.Read(ref _queued);
        if (queued <= Limit || mine <= 0) return false;
        return mine >= queued / Math.Max(1, Volatile.Read(ref _holders));
    }

    /// <summary>Completes when the total is back under the limit.</summary>
    public Task WaitUnderLimitAsync()
    {
        lock (_lock)
        {
            _pauses++;
            if (Interlocked.Read(ref _queued) <= Limit) return Task.CompletedTask;
            _underLimit ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _underLimit.Task;
        }
    }

    private void SignalUnderLimit()
    {
        TaskCompletionSource? waiters;
        lock (_lock)
        {
            if (Interlocked.Read(ref _queued) > Limit) return;
            waiters = _underLimit;
            _underLimit = null;
        }
        waiters?.TrySetResult();
    }
}
