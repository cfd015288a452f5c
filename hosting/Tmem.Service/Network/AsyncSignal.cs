namespace Tmem.Service.Network;

/// <summary>
/// An auto-reset event for one kind of waiter at a time (a connection's reader, or its close):
/// <see cref="Set"/> wakes the current wait or, when none is waiting, the next one. Holds no task
/// while nobody waits, so an idle connection pays a few bytes for it.
/// </summary>
internal sealed class AsyncSignal
{
    private readonly Lock _lock = new();
    private TaskCompletionSource? _waiter;
    private bool _set;

    public void Set()
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            waiter = _waiter;
            _waiter = null;
            if (waiter is null) _set = true;
        }
        waiter?.TrySetResult();
    }

    /// <summary>Completes at the next <see cref="Set"/> (at once if one came since the last wait).</summary>
    public Task WaitAsync(CancellationToken cancellationToken)
    {
        Task task;
        lock (_lock)
        {
            if (_set)
            {
                _set = false;
                return Task.CompletedTask;
            }
            _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            task = _waiter.Task;
        }
        return cancellationToken.CanBeCanceled ? task.WaitAsync(cancellationToken) : task;
    }
}
