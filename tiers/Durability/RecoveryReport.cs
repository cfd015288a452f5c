namespace Tmem;

/// <summary>What opening a store found and rebuilt (<see cref="TmemStore.Open(TmemOptions, out RecoveryReport)"/>); all zero for a memory-only store.</summary>
public sealed record RecoveryReport
{
    /// <summary>The data directory (its full path), or null for a memory-only store.</summary>
    public required string? DataDirectory { get; init; }

    /// <summary>First valid log address.</summary>
    public long BeginAddress { get; init; }

    /// <summary>Everything below this address was committed and has been replayed.</summary>
    public long CommittedUntilAddress { get; init; }

    /// <summary>The log address the checkpoint used covers until (replay started there), or null for a full replay.</summary>
    public long? CheckpointCoveredUntil { get; init; }

    /// <summary>Why a checkpoint on disk was not used (damaged, or not fitting the log), or null.</summary>
    public string? CheckpointProblem { get; init; }

    /// <summary>Log records replayed (after the checkpoint, if one was used).</summary>
    public long RecordsReplayed { get; init; }

    /// <summary>Log bytes replayed (record bytes, without FASTER's entry headers).</summary>
    public long BytesReplayed { get; init; }

    /// <summary>Persistent pools rebuilt (a shared pool once).</summary>
    public long PoolsRecovered { get; init; }

    /// <summary>Persistent pages rebuilt.</summary>
    public long PagesRecovered { get; init; }

    /// <summary>Time from opening the log to a ready store.</summary>
    public TimeSpan Elapsed { get; init; }
}
