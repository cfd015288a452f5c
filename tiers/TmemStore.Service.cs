namespace Tmem;

/// <summary>Members for the long-running service: reclaim ahead of demand, commit lag, pool-id checks.</summary>
public sealed partial class TmemStore
{
    /// <summary>Whether the store has a persistent log (opened by <c>TmemStore.Open</c>).</summary>
    public bool IsDurable => Log is not null;

    /// <summary>
    /// Log bytes appended but not yet committed (0 for a memory-only store). In Relaxed mode this
    /// is what a crash now would lose; it stays near one commit interval's appends while the
    /// log's own commit loop keeps up.
    /// </summary>
    public long UncommittedLogBytes => Log is { } log ? Math.Max(0, log.TailAddress - log.CommittedUntilAddress) : 0;

    /// <summary>
    /// Completes once everything appended to the log before the call is committed (at once for a
    /// memory-only store). In Strict mode this wakes the commit loop; in Relaxed mode it waits
    /// for the loop's next interval commit. For the service's commit watch and for shutdown.
    /// </summary>
    /// <param name="cancellationToken">Ends the wait (not the commit) with <see cref="OperationCanceledException"/>.</param>
    public ValueTask WaitForCommitAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (Log is not { } log) return ValueTask.CompletedTask;
        long tail = log.TailAddress;
        return tail > log.CommittedUntilAddress ? log.WaitCommittedAsync(tail - 1).WithCancellation(cancellationToken) : ValueTask.CompletedTask;
    }

    /// <summary>
    /// Completes once everything appended to the log before the call is committed, and starts
    /// that commit at once in either durability mode (at once for a memory-only store): for a
    /// client that asks for durability now, such as a block device's FLUSH. Unlike
    /// <see cref="WaitForCommitAsync"/>, Relaxed mode does not wait for its next interval commit;
    /// concurrent calls share one commit.
    /// </summary>
    /// <param name="cancellationToken">Ends the wait (not the commit) with <see cref="OperationCanceledException"/>.</param>
    public ValueTask CommitAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        return Log is { } log ? log.CommitSoonAsync().WithCancellation(cancellationToken) : ValueTask.CompletedTask;
    }

    /// <summary>
    /// Evicts ahead of demand until the RAM tier's slot bytes are at most
    /// <paramref name="targetSlotBytes"/>, using the same CLOCK eviction a put uses when the budget
    /// is full (ephemeral pages are dropped; committed persistent pages of a durable store lose
    /// their RAM copy). Holds no lock of its own; puts running meanwhile carry on. Stops early
    /// when nothing evictable is left. Returns the slot bytes freed (0 when already at or under
    /// the target). Targets more than 2 GiB under the budget reclaim only down to budget - 2 GiB.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="targetSlotBytes"/> is negative.</exception>
    public long Reclaim(long targetSlotBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(targetSlotBytes);
        ThrowIfDisposed();
        long before = _ram.SlotBytes;
        if (before <= targetSlotBytes) return 0;
        // Reserving the gap between the target and the budget makes the RAM tier evict until the
        // slot bytes in use fit under the target, exactly as a put that needs that much room
        // would; the reservation is then given back at once.
        int gap = (int)Math.Min(int.MaxValue, _ram.BudgetBytes - targetSlotBytes);
        if (gap > 0 && _ram.TryReserve(gap, out uint id)) _ram.CancelReservation(id, gap);
        return Math.Max(0, before - _ram.SlotBytes);
    }

    /// <summary>
    /// Changes <see cref="TmemOptions.RamBudgetBytes"/> while the store runs (and the page limit
    /// with it when <see cref="TmemOptions.MaxPages"/> is 0). Growing takes effect at once.
    /// Shrinking evicts down to the new budget before it returns, with the same CLOCK eviction a
    /// put uses (ephemeral pages are dropped; committed persistent pages of a durable store lose
    /// their RAM copy and stay readable from the log); puts running meanwhile see the new budget.
    /// What cannot be evicted (persistent pages of a memory-only store, pages being read) stays,
    /// and puts are then refused for capacity until it goes. Returns the slot bytes in use after.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Under 65536 bytes.</exception>
    public long SetRamBudget(long budgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(budgetBytes, 1L << 16);
        ThrowIfDisposed();
        lock (_budgetLock)
        {
            _options.RamBudgetBytes = budgetBytes;
            _ram.SetBudget(budgetBytes);
            // A reservation of nothing evicts until what is in use fits the new budget and page limit.
            if (_ram.SlotBytes > budgetBytes || _ram.Pages > _options.EffectiveMaxPages)
                if (_ram.TryReserve(0, out uint id)) _ram.CancelReservation(id, 0);
            return _ram.SlotBytes;
        }
    }

    private readonly Lock _budgetLock = new();

    /// <summary>
    /// Whether some client other than <paramref name="clientId"/> has a pool under
    /// <paramref name="poolId"/>. The service uses it only to tell a client that an id it does not
    /// own is another client's (which stays unreachable) rather than unknown.
    /// </summary>
    public bool IsPoolIdUsedByAnotherClient(int clientId, int poolId)
    {
        foreach (var (id, client) in _clients)
        {
            if (id == clientId) continue;
            foreach (var pool in client.GetPools())
                if (pool.PoolId == poolId) return true;
        }
        return false;
    }
}
