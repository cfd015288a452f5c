namespace Tmem.Recovery.Offline;

/// <summary>What <see cref="DataDirectoryVerifier.Verify"/> found.</summary>
public sealed record VerificationReport
{
    /// <summary>The data directory (full path).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The log's begin address (null when the commit metadata is unreadable).</summary>
    public long? BeginAddress { get; init; }

    /// <summary>The commit point (null when the commit metadata is unreadable).</summary>
    public long? CommittedUntilAddress { get; init; }

    /// <summary>Records read and checked below the commit point.</summary>
    public required long RecordsChecked { get; init; }

    /// <summary>Bytes of those records.</summary>
    public required long BytesChecked { get; init; }

    /// <summary>Whether an index checkpoint was there and was checked against the log.</summary>
    public required bool CheckpointChecked { get; init; }

    /// <summary>Every problem, in log order (checkpoint problems last).</summary>
    public required IReadOnlyList<DataProblem> Problems { get; init; }

    /// <summary>No damage (notices such as a torn tail may remain).</summary>
    public bool IsClean => Problems.All(p => p.Severity != ProblemSeverity.Damage);

    /// <summary>Where <c>recover --truncate-at-first-corruption</c> would cut the log, or null.</summary>
    public long? FirstCorruptionAddress { get; init; }
}

/// <summary>
/// Checks a data directory offline (the tool's <c>verify</c>): every record below the commit
/// point (FasterLog framing, CRC-32C, version, type, length, and that it fits the records before
/// it), the segment files the commit point needs, the commit metadata, and the index checkpoint
/// (intact, fitting the log, and listing exactly the pools, members and page addresses the log
/// gives at the address it covers). Reports every problem with its address and goes on.
/// </summary>
public static class DataDirectoryVerifier
{
    /// <summary>Verifies <paramref name="dataDirectory"/> under its lock; changes nothing.</summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">Not a data directory, or its format file is invalid.</exception>
    public static VerificationReport Verify(string dataDirectory, IProgress<OfflineProgress>? progress = null)
    {
        using var dir = OfflineDirectory.Open(dataDirectory);
        var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
        bool known = analysis.Commit.IsUsable;
        return new VerificationReport
        {
            DataDirectory = dir.Path,
            BeginAddress = known ? analysis.Begin : null,
            CommittedUntilAddress = known ? analysis.Committed : null,
            RecordsChecked = analysis.Records,
            BytesChecked = analysis.RecordBytes,
            CheckpointChecked = File.Exists(dir.CheckpointPath),
            Problems = analysis.Problems,
            FirstCorruptionAddress = known ? analysis.CutAddress : null,
        };
    }
}
