namespace Tmem.Diagnostics;

/// <summary>
/// Test and benchmark hooks of one durable store, in one object: a test or the benchmark creates
/// it and passes it in through <see cref="TmemOptions.Diagnostics"/> (internal), then reads its
/// counters or changes its switches while the store runs. Production code never sets it: with
/// none (null, the default) no hook runs and nothing is counted.
/// </summary>
internal sealed class StoreDiagnostics
{
    /// <summary>
    /// Wraps the log's device (either kind) in another, such as one that fails chosen writes.
    /// The store puts its retrying layer above what this returns. Read once, when the log opens.
    /// Default null: the device itself.
    /// </summary>
    public Func<FASTER.core.IDevice, FASTER.core.IDevice>? WrapLogDevice { get; set; }

    /// <summary>
    /// The store's own file operations (<see cref="LogTier.IStorageIo"/>: format, commit, checkpoint
    /// and marker files, the mapped device's files and syncs, the space reserve, directory syncs),
    /// such as a model of the disk that fails chosen operations or simulates a power cut. Read
    /// once, when the log opens. Default null: the system calls themselves.
    /// </summary>
    public LogTier.IStorageIo? StorageIo { get; set; }

    /// <summary>
    /// With the mapped device, gets of spilled pages decode straight from the mapping (true, the
    /// default); false sends them through FasterLog's <c>ReadAsync</c> (the benchmark compares
    /// the two). May change while the store runs.
    /// </summary>
    public bool DirectReads { get; set; } = true;

    /// <summary>
    /// Called by log compaction with its stage: "before-truncate" once the copies are committed;
    /// may throw to stop it there (as a crash would). Default null.
    /// </summary>
    public Action<string>? CompactionStageHook { get; set; }

    /// <summary>Called by DestroyPool (the last member leaving a persistent pool) once the pool's pages are gone, before its departure is logged. Default null.</summary>
    public Action? PoolDestroyedHook { get; set; }

    /// <summary>Commits the Strict group-commit loop made (for the benchmark's group-commit figures). Starts at 0.</summary>
    public long CommitCount;

    /// <summary>Reads served from the mapping (racy, approximate: tests only ask whether the mapped path was taken). Starts at 0.</summary>
    public long DirectReadCount;
}
