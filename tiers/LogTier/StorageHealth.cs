using System.Diagnostics;

namespace Tmem.LogTier;

/// <summary>
/// What the log knows about its storage (see <see cref="StorageState"/>): written by the devices'
/// retry loops (<see cref="RetryingDevice"/>, <see cref="LogCommitFile"/>), by the space reserve
/// (<see cref="SegmentReserve"/>); read
/// on the put path (one volatile read) and by the service. Thread-safe; no locks on the read path.
/// </summary>
internal sealed class StorageHealth
{
    private readonly Lock _lock = new();
    private int _failingWrites;      // writes, syncs or commit-file writes now in a retry loop
    private bool _reserveMissing;    // the next segment could not be allocated
    private volatile int _state;     // StorageState, recomputed under _lock on every change
    private long _sinceTicks = Stopwatch.GetTimestamp();
    private DateTime _since = DateTime.UtcNow;
    private string? _lastError;

    /// <summary>Failed attempts (writes, syncs, allocations, commit-file writes) so far.</summary>
    public long Failures;

    /// <summary>Operations answered <see cref="TmemNotDurableException"/> so far.</summary>
    public long NotDurableAnswers;

    /// <summary>Failed read attempts so far (each also counts in <see cref="Failures"/>); reads do not change the state.</summary>
    public long ReadErrors;

    /// <summary>What the last failed read was (null before any).</summary>
    public string? LastReadError => Volatile.Read(ref _lastReadError);

    private string? _lastReadError;

    /// <summary>A read of the log's files failed (<paramref name="what"/> says how); it may be retried.</summary>
    public void ReadFailed(string what)
    {
        Volatile.Write(ref _lastReadError, what);
        Interlocked.Increment(ref Failures);
        Interlocked.Increment(ref ReadErrors);
    }

    public StorageState State => (StorageState)_state;

    /// <summary>Whether new persistent pages, pools, checkpoints and compactions must wait (any state but healthy).</summary>
    public bool IsDegraded => _state != (int)StorageState.Healthy;

    /// <summary>
    /// Set when the log closes: retry loops stop and hand their error to FASTER, so that a close
    /// while the storage fails ends (the pending tail is then lost, as in a crash).
    /// </summary>
    public volatile bool Closing;

    public StorageStatus Snapshot()
    {
        lock (_lock) return new StorageStatus(State, _since, _lastError);
    }

    /// <summary>How long the store has been failing (zero when it is not).</summary>
    public TimeSpan FailingFor
    {
        get
        {
            if (_state != (int)StorageState.Failing) return TimeSpan.Zero;
            return Stopwatch.GetElapsedTime(Volatile.Read(ref _sinceTicks));
        }
    }

    /// <summary>A write or sync failed and will be retried (<paramref name="firstFailure"/>: this operation was not failing before).</summary>
    public void WriteFailed(string what, bool firstFailure)
    {
        Interlocked.Increment(ref Failures);
        lock (_lock)
        {
            if (firstFailure) _failingWrites++;
            _lastError = what;
            Update();
        }
    }

    /// <summary>A write that had failed went through on a retry.</summary>
    public void WriteRecovered()
    {
        lock (_lock)
        {
            _failingWrites--;
            Update();
        }
    }

    /// <summary>The reserve could not be allocated (<paramref name="what"/> says why), or (null) it is allocated again.</summary>
    public void SetReserveMissing(string? what)
    {
        if (what is not null) Interlocked.Increment(ref Failures);
        lock (_lock)
        {
            if (!_reserveMissing && what is null) return;
            _reserveMissing = what is not null;
            if (what is not null) _lastError = what;
            Update();
        }
    }

    /// <summary>Under <see cref="_lock"/>: the state from its causes; a change restarts <see cref="FailingFor"/>.</summary>
    private void Update()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        var state = _failingWrites > 0 ? StorageState.Failing
            : _reserveMissing ? StorageState.Full
            : StorageState.Healthy;
        if ((int)state == _state) return;
        if (state == StorageState.Healthy) _lastError = null;
        Volatile.Write(ref _sinceTicks, Stopwatch.GetTimestamp());
        _since = DateTime.UtcNow;
        _state = (int)state;
    }
}
