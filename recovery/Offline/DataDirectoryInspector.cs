namespace Tmem.Recovery.Offline;

/// <summary>One persistent pool as a client sees it, with what it holds.</summary>
/// <param name="ClientId">The client.</param>
/// <param name="PoolId">The client's id for the pool.</param>
/// <param name="PoolSerial">The store-wide serial in the log records.</param>
/// <param name="PageSize">Bytes per page.</param>
/// <param name="ExclusiveGets">Whether a get removes the page.</param>
/// <param name="SharedUuid">The shared pool's UUID, or null for a private pool.</param>
/// <param name="Members">Every member of the pool (more than one for a shared pool).</param>
/// <param name="Pages">Live pages.</param>
/// <param name="SameFilledPages">Of those, pages stored as an 8-byte pattern.</param>
/// <param name="CompressedBytes">LZ4 bytes of the pages (same-filled ones take none).</param>
/// <param name="LogBytes">Log bytes their records take (FasterLog framing included).</param>
public sealed record PoolSummary(int ClientId, int PoolId, uint PoolSerial, int PageSize, bool ExclusiveGets, Guid? SharedUuid, IReadOnlyList<PoolMember> Members, long Pages, long SameFilledPages, long CompressedBytes, long LogBytes)
{
    /// <summary>Whether the pool stores poorly compressing pages uncompressed (<see cref="PoolOptions.StoreIncompressible"/>).</summary>
    public bool StoreIncompressible { get; init; }

    /// <summary>Of its pages, those stored uncompressed (counted in <see cref="CompressedBytes"/> at their page size).</summary>
    public long UncompressedPages { get; init; }
}

/// <summary>The index checkpoint: what it covers and whether the store would use it.</summary>
/// <param name="Path">The file.</param>
/// <param name="Bytes">Its size.</param>
/// <param name="LastWriteUtc">When it was written.</param>
/// <param name="LogBeginAddress">The log's begin address it was written for (null when damaged).</param>
/// <param name="CoveredUntil">The log address it covers until: replay starts there (null when damaged).</param>
/// <param name="Pools">Pools it lists.</param>
/// <param name="Pages">Pages it lists.</param>
/// <param name="Usable">Whether it is intact, fits the log and agrees with it.</param>
public sealed record CheckpointSummary(string Path, long Bytes, DateTime LastWriteUtc, long? LogBeginAddress, long? CoveredUntil, int Pools, long Pages, bool Usable);

/// <summary>What <see cref="DataDirectoryInspector.Inspect"/> found.</summary>
public sealed record InspectionReport
{
    /// <summary>The data directory (full path).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The layout version from the format file.</summary>
    public required int FormatVersion { get; init; }

    /// <summary>Bytes per segment file.</summary>
    public required long SegmentSize { get; init; }

    /// <summary>The log's begin address (from FASTER's commit metadata; null when it is unreadable).</summary>
    public long? BeginAddress { get; init; }

    /// <summary>The commit point: everything below it was committed (null when unknown).</summary>
    public long? CommittedUntilAddress { get; init; }

    /// <summary>Where the log continues after a restart (the commit point: FASTER drops what was not committed).</summary>
    public long? TailAddress { get; init; }

    /// <summary>The commit metadata file read, if any.</summary>
    public string? CommitMetadataFile { get; init; }

    /// <summary>The segment files of the log, in order (not the space reserve).</summary>
    public required IReadOnlyList<SegmentFile> Segments { get; init; }

    /// <summary>
    /// The store's space reserve: the zero-filled segment file it allocates ahead of the log, so
    /// that a full disk is seen a segment early (docs/storage-format.md). Not log data.
    /// </summary>
    public IReadOnlyList<SegmentFile> ReserveSegments { get; init; } = [];

    /// <summary>Bytes of all segment files on disk, the reserve included (the store's <c>log_disk_bytes</c>).</summary>
    public long SegmentBytes => Segments.Sum(s => s.Bytes) + ReserveSegments.Sum(s => s.Bytes);

    /// <summary>The index checkpoint, or null when there is none.</summary>
    public CheckpointSummary? Checkpoint { get; init; }

    /// <summary>Every persistent pool, per client (a shared pool once per member).</summary>
    public required IReadOnlyList<PoolSummary> Pools { get; init; }

    /// <summary>Clients with at least one persistent pool.</summary>
    public IReadOnlyList<int> Clients => Pools.Select(p => p.ClientId).Distinct().Order().ToArray();

    /// <summary>Live persistent pages (a shared pool's once).</summary>
    public required long LivePages { get; init; }

    /// <summary>Log bytes the live pages' records take.</summary>
    public required long LiveLogBytes { get; init; }

    /// <summary><see cref="LiveLogBytes"/> over the committed log (begin to commit point): what compaction would keep.</summary>
    public required double LiveFraction { get; init; }

    /// <summary>Records read below the commit point.</summary>
    public required long Records { get; init; }

    /// <summary>Problems seen on the way (run verify for the full check).</summary>
    public required IReadOnlyList<DataProblem> Problems { get; init; }
}

/// <summary>Reads a data directory offline and says what is there (the tool's <c>inspect</c>).</summary>
public static class DataDirectoryInspector
{
    /// <summary>Inspects <paramref name="dataDirectory"/> under its lock; changes nothing.</summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">Not a data directory, or its format file is invalid.</exception>
    public static InspectionReport Inspect(string dataDirectory, IProgress<OfflineProgress>? progress = null)
    {
        using var dir = OfflineDirectory.Open(dataDirectory);
        var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
        return Summarize(analysis);
    }

    internal static InspectionReport Summarize(LogAnalysis analysis)
    {
        var dir = analysis.Directory;
        var model = analysis.Model;
        var pools = new List<PoolSummary>();
        foreach (var pool in model.Pools.Values)
        {
            var members = pool.Members.Select(m => new PoolMember(m.ClientId, m.PoolId)).ToArray();
            long sameFilled = pool.Pages.Values.Count(p => p.SameFilled);
            long compressed = pool.Pages.Values.Sum(p => p.SameFilled ? 0L : p.PayloadLength);
            long logBytes = pool.Pages.Values.Sum(p => (long)p.EntryBytes);
            foreach (var member in members)
                pools.Add(new PoolSummary(member.ClientId, member.PoolId, pool.Serial, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, members, pool.Pages.Count, sameFilled, compressed, logBytes)
                {
                    StoreIncompressible = pool.StoreIncompressible,
                    UncompressedPages = pool.Pages.Values.Count(p => p.Uncompressed),
                });
        }
        pools.Sort((a, b) => a.ClientId != b.ClientId ? a.ClientId.CompareTo(b.ClientId) : a.PoolId.CompareTo(b.PoolId));
        CheckpointSummary? checkpoint = null;
        if (File.Exists(dir.CheckpointPath))
        {
            var info = new FileInfo(dir.CheckpointPath);
            var c = analysis.Checkpoint;
            checkpoint = new CheckpointSummary(info.FullName, info.Length, info.LastWriteTimeUtc, c?.LogBeginAddress, c?.CoveredUntil,
                c?.Pools.Count ?? 0, c?.Pools.Sum(p => (long)p.Pages.Count) ?? 0, analysis.CheckpointUsable);
        }
        bool known = analysis.Commit.IsUsable;
        long span = analysis.Committed - analysis.Begin;
        long live = model.LiveEntryBytes;
        return new InspectionReport
        {
            DataDirectory = dir.Path,
            FormatVersion = dir.Format.Version,
            SegmentSize = dir.Format.SegmentSize,
            BeginAddress = known ? analysis.Begin : null,
            CommittedUntilAddress = known ? analysis.Committed : null,
            TailAddress = known ? analysis.Committed : null,
            CommitMetadataFile = analysis.Commit.File,
            Segments = analysis.Segments.Except(analysis.ReserveSegments).ToList(),
            ReserveSegments = analysis.ReserveSegments,
            Checkpoint = checkpoint,
            Pools = pools,
            LivePages = model.PageCount,
            LiveLogBytes = live,
            LiveFraction = span > 0 ? Math.Min(1.0, (double)live / span) : 1.0,
            Records = analysis.Records,
            Problems = analysis.Problems,
        };
    }
}
