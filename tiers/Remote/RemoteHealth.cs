namespace Tmem.Remote;

/// <summary>
/// The remote tier's state, judged once a second (<see cref="Judge"/>) from what the requests of
/// that second reported and from a ping of every node: healthy when every node answered and no
/// request failed, down when no node answered, degraded otherwise. A state changes only at a
/// judgement, so one node that keeps failing while the others work reads as one steady
/// <see cref="RemoteTierState.Degraded"/>, not a flapping state (one log line per change).
/// </summary>
internal sealed class RemoteHealth
{
    private long _failures; // in the current second
    private string? _lastError;
    private volatile RemoteTierStatus _status = new(RemoteTierState.Down, DateTime.UtcNow, "not connected yet");

    public RemoteTierStatus Status => _status;

    public RemoteTierState State => _status.State;

    /// <summary>A request failed or timed out.</summary>
    public void Failed(string error)
    {
        Interlocked.Increment(ref _failures);
        _lastError = error;
    }

    /// <summary>Once a second: <paramref name="answering"/> of <paramref name="nodes"/> nodes answered a ping.</summary>
    public void Judge(int nodes, int answering, string? pingError)
    {
        long failures = Interlocked.Exchange(ref _failures, 0);
        var state = nodes == 0 || answering == 0 ? RemoteTierState.Down
            : answering < nodes || failures > 0 ? RemoteTierState.Degraded
            : RemoteTierState.Healthy;
        string? error = state == RemoteTierState.Healthy ? null : pingError ?? _lastError ?? "no node reached";
        if (state != _status.State) _status = new RemoteTierStatus(state, DateTime.UtcNow, error);
        else if (state != RemoteTierState.Healthy && error != _status.LastError) _status = _status with { LastError = error };
    }
}
