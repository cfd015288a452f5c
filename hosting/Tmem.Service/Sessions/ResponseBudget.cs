using Microsoft.Extensions.Options;

namespace Tmem.Service.Sessions;

/// <summary>
/// The one bound on response bytes queued across all connections (<c>MaxQueuedResponseBytes</c>):
/// answers written and not yet taken by the kernel (clients that read slowly or not at all).
/// Each connection also stops reading at its own high-water mark; this bound adds that, while
/// the total is over the limit, every connection that holds queued responses stops reading
/// until the total is back under the limit or its own queue is empty. The connections that
/// hold the most (clients that do not read) therefore stay stopped, while one that reads its
/// answers empties its queue after each batch and goes on, one batch at a time; the total stays
/// within the limit plus one response per connection. Counters are lock-free; only a
/// connection that waits takes the lock.
/// </summary>
internal sealed class ResponseBudget(IOptions<ServiceOptions> options)
{
    private readonly Lock _lock = new();
    private long _queued;
    private long _pauses;
    private TaskCompletionSource? _underLimit;

    public long Limit { get; } = options.Value.MaxQueuedResponseBytes;

    /// <summary>Response bytes queued now, all connections.</summary>
    public long Queued => Interlocked.Read(ref _queued);

    /// <summary>How often a connection stopped reading because of this bound.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);

    /// <summary>A connection queued <paramref name="bytes"/>.</summary>
    public void Add(long bytes) => Interlocked.Add(ref _queued, bytes);

    /// <summary>A connection's bytes were sent or dropped.</summary>
    public void Remove(long bytes)
    {
        long queued = Interlocked.Add(ref _queued, -bytes);
        if (queued <= Limit && Volatile.Read(ref _underLimit) is not null) SignalUnderLimit();
    }

    /// <summary>Whether a connection holding <paramref name="mine"/> bytes should stop reading now.</summary>
    public bool ShouldPause(long mine)
    {
        return mine > 0 && Interlocked.Read(ref _queued) > Limit;
    }

    /// <summary>A connection stopped reading because of this bound.</summary>
    public void CountPause() => Interlocked.Increment(ref _pauses);

    /// <summary>Completes when the total is back under the limit.</summary>
    public Task WaitUnderLimitAsync()
    {
        lock (_lock)
        {
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
