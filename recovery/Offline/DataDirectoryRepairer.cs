using System.Globalization;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>What <see cref="DataDirectoryRepairer.Repair"/> may do beyond the repairs that lose nothing.</summary>
public sealed record RepairOptions
{
    /// <summary>
    /// Cut the log before its first corrupt record below the commit point (a bad record, a cut or
    /// missing segment): everything before it replays, everything from it on is dropped and
    /// listed in the report. Off by default: without it, such damage is only reported.
    /// </summary>
    public bool TruncateAtFirstCorruption { get; init; }

    /// <summary>
    /// When FASTER's commit metadata is missing or damaged: write a new commit spanning the
    /// likeliest begin address (a readable commit's, the checkpoint's, address 64, or the first
    /// compaction base) to the end of the whole, valid records. Nothing written is dropped, but
    /// records written after the last real commit (never acknowledged in Strict mode) may come
    /// back with it. Off by default.
    /// </summary>
    public bool RebuildCommitMetadata { get; init; }

    /// <summary>
    /// When the commit metadata is damaged but one commit can still be read (the other slot of the
    /// commit file is damaged or zeroed, or the index checkpoint shows later commits): go back to
    /// that commit, cutting the log at its commit point. The changes after it are listed; commits
    /// after it may have been acknowledged, which the tool cannot know. Off by default; not with
    /// <see cref="RebuildCommitMetadata"/>.
    /// </summary>
    public bool RollbackToOlderCommit { get; init; }
}

/// <summary>What <see cref="DataDirectoryRepairer.Repair"/> found, did, and lost.</summary>
public sealed record RepairReport
{
    /// <summary>The data directory (full path).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Problems found before repairing.</summary>
    public required IReadOnlyList<DataProblem> ProblemsFound { get; init; }

    /// <summary>What was done, in order, one sentence each (empty when nothing was changed).</summary>
    public required IReadOnlyList<string> Actions { get; init; }

    /// <summary>Where the files that were changed or removed were copied or moved first, or null when nothing was changed.</summary>
    public string? BackupDirectory { get; init; }

    /// <summary>Where the log was (or, without the flag, would be) cut; null when it has no corruption below its commit point.</summary>
    public long? CutAddress { get; init; }

    /// <summary>Whether the log was cut (<see cref="RepairOptions.TruncateAtFirstCorruption"/>).</summary>
    public bool Truncated { get; init; }

    /// <summary>
    /// The pages the cut loses or changes (when <see cref="Truncated"/>), or would (without the
    /// flag: a preview, nothing was dropped).
    /// </summary>
    public required IReadOnlyList<PageLoss> LostPages { get; init; }

    /// <summary>The pool changes the cut loses (or would).</summary>
    public required IReadOnlyList<PoolLoss> LostPools { get; init; }

    /// <summary>
    /// Whether <see cref="LostPages"/> and <see cref="LostPools"/> are exact. When false, the records
    /// in <see cref="UnknownRanges"/> are unreadable or gone, and the pages and pools they changed
    /// (beyond what later records or the index checkpoint show) are not listed.
    /// </summary>
    public bool LossListComplete => UnknownRanges.Count == 0;

    /// <summary>Log addresses after the cut whose records are unknown (empty when the loss lists are exact).</summary>
    public IReadOnlyList<UnknownLogRange> UnknownRanges { get; init; } = [];

    /// <summary>The commit the log was rolled back to (<see cref="RepairOptions.RollbackToOlderCommit"/>), or null.</summary>
    public long? RolledBackToCommit { get; init; }

    /// <summary>
    /// When the commit metadata may have lost commits and an older commit can be read: that commit.
    /// Without a flag the report's loss lists then preview what rolling back to it would undo (at <see cref="CutAddress"/>).
    /// </summary>
    public long? OlderCommit { get; init; }

    /// <summary>Log bytes dropped: the cut-off part below the old commit point plus the torn tail.</summary>
    public long DroppedLogBytes { get; init; }

    /// <summary>Problems still there after the repair (with <see cref="Advice"/> on what would fix them).</summary>
    public required IReadOnlyList<DataProblem> Unrepaired { get; init; }

    /// <summary>What to do next when problems remain, or null.</summary>
    public string? Advice { get; init; }

    /// <summary>Whether the store opened after the repair (it was opened, replayed and closed, writing a fresh checkpoint).</summary>
    public bool Openable { get; init; }

    /// <summary>Persistent pages the store recovered after the repair (null when it was not opened).</summary>
    public long? PagesAfter { get; init; }

    /// <summary>Persistent pools the store recovered after the repair (null when it was not opened).</summary>
    public long? PoolsAfter { get; init; }
}

/// <summary>
/// Makes a damaged data directory openable again, losing as little as possible (the tool's
/// <c>recover</c>). Always, since they lose nothing acknowledged: drops a torn tail (whole records
/// past the commit point are zeroed) and replaces a damaged, misfitting or disagreeing index
/// checkpoint by one rebuilt from a full replay. Only with
/// <see cref="RepairOptions.TruncateAtFirstCorruption"/>: cuts the log before its first corrupt
/// record (FASTER's commit metadata is rewritten with that commit point; the bytes after it are
/// zeroed and later segment files removed) and reports every handle that loses its newest state,
/// exactly or with the ranges of unknown records (<see cref="RepairReport.UnknownRanges"/>). When
/// the commit metadata may have lost commits, it changes nothing without
/// <see cref="RepairOptions.RebuildCommitMetadata"/> (a commit up to the last whole record) or
/// <see cref="RepairOptions.RollbackToOlderCommit"/> (back to the commit it can read, listing what
/// that undoes). Every file it changes is first copied, and every file it removes moved, into
/// <c>DATA/backup-TIMESTAMP/</c>; it refuses when the disk has no room for the copies.
/// </summary>
public static class DataDirectoryRepairer
{
    private const long FreeSpaceMargin = 16L << 20;

    /// <summary>Repairs <paramref name="dataDirectory"/> under its lock.</summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">Not a data directory, its format file is invalid, or no room for the backup. Nothing was changed.</exception>
    public static RepairReport Repair(string dataDirectory, RepairOptions? options = null, IProgress<OfflineProgress>? progress = null)
    {
        options ??= new RepairOptions();
        if (options.RebuildCommitMetadata && options.RollbackToOlderCommit)
            throw new ArgumentException("Rebuilding the commit metadata and rolling back to an older commit exclude each other: give one.", nameof(options));
        var dir = OfflineDirectory.Open(dataDirectory);
        try
        {
            return RepairCore(dir, options, progress);
        }
        finally
        {
            dir.Dispose();
        }
    }

    private static RepairReport RepairCore(OfflineDirectory dir, RepairOptions options, IProgress<OfflineProgress>? progress)
    {
        var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
        var found = analysis.Problems.ToList();
        var fallback = analysis.Commit.Fallback;
        bool canRollback = !analysis.Commit.IsUsable && fallback is not null && analysis.AfterFallback is not null;
        if (!analysis.Commit.IsUsable && !options.RebuildCommitMetadata && !(options.RollbackToOlderCommit && canRollback))
        {
            var preview = canRollback ? analysis.AfterFallback!.Losses() : LossList.None;
            return new RepairReport
            {
                DataDirectory = dir.Path, ProblemsFound = found, Actions = [], CutAddress = canRollback ? fallback!.CommittedUntil : null, OlderCommit = canRollback ? fallback!.Number : null,
                LostPages = preview.Pages, LostPools = preview.Pools, UnknownRanges = preview.UnknownRanges,
                Unrepaired = found.Where(p => p.Severity == ProblemSeverity.Damage).ToList(),
                Advice = CommitAdvice(analysis, preview, options.RollbackToOlderCommit),
            };
        }
        bool rollback = !analysis.Commit.IsUsable && !options.RebuildCommitMetadata && options.RollbackToOlderCommit;
        bool rebuildCommit = !analysis.Commit.IsUsable && !rollback;

        long? cut = rollback ? fallback!.CommittedUntil : analysis.CutAddress;
        bool truncate = rollback || (cut is not null && options.TruncateAtFirstCorruption);
        var losses = rollback ? analysis.AfterFallback!.Losses() : analysis.Losses();
        var (lostPages, lostPools) = (losses.Pages, losses.Pools);
        var tail = analysis.UncommittedTail;
        bool dropTail = tail.Records > 0;
        bool checkpointExists = File.Exists(dir.CheckpointPath);
        bool checkpointBad = checkpointExists && (!analysis.CheckpointUsable || (truncate && analysis.Checkpoint!.CoveredUntil > cut));
        // Without the flag, log damage stays; the checkpoint cannot be rebuilt (the store will not open).
        bool rebuildCheckpoint = checkpointBad && (cut is null || truncate);
        var unrepaired = new List<DataProblem>();
        string? advice = null;
        if (cut is not null && !truncate)
        {
            unrepaired.AddRange(found.Where(p => p.Severity == ProblemSeverity.Damage));
            advice = string.Create(CultureInfo.InvariantCulture,
                $"The log is damaged below its commit point, first at address {cut}. Run recover again with --truncate-at-first-corruption to cut the log there: " +
                $"{lostPages.Count} page(s) and {lostPools.Count} pool change(s), listed in this report, would be lost{Incompleteness(losses)}; everything before the cut is kept. Or restore the damaged files from a backup.");
        }

        if (!dropTail && !truncate && !rebuildCheckpoint && !rebuildCommit)
        {
            return new RepairReport
            {
                DataDirectory = dir.Path, ProblemsFound = found, Actions = [], CutAddress = cut, LostPages = lostPages, LostPools = lostPools, UnknownRanges = losses.UnknownRanges,
                Unrepaired = unrepaired, Advice = advice ?? (found.Count == 0 ? null : "Nothing needed repairing."), Openable = cut is null,
            };
        }

        // Plan the file changes, back them up, then make them.
        long segmentSize = dir.Format.SegmentSize;
        long newCommitted = truncate ? cut!.Value : analysis.Committed;
        long zeroFrom = newCommitted;
        long zeroUntil = Math.Max(truncate ? analysis.Committed : newCommitted, tail.Records > 0 ? tail.End : newCommitted);
        var segments = dir.Segments();
        var toCopy = new List<string>();
        var toMove = new List<string>();
        if (zeroUntil > zeroFrom)
        {
            foreach (var segment in segments)
            {
                long first = segment.FirstAddress, end = first + segmentSize;
                if (end <= zeroFrom) continue;
                if (truncate && first > zeroFrom) toMove.Add(segment.Path);           // wholly after the cut: removed
                else if (first < zeroUntil) toCopy.Add(segment.Path);                  // partly zeroed
            }
        }
        var commitFiles = Directory.Exists(dir.CommitDirectory) ? Directory.GetFiles(dir.CommitDirectory, "*", SearchOption.AllDirectories).ToList() : [];
        if (truncate || rebuildCommit) toCopy.AddRange(commitFiles);
        var strays = rebuildCommit ? analysis.StraySegments.Where(st => st.FirstAddress >= newCommitted).Select(st => st.Path).ToList() : [];
        toMove.AddRange(strays);
        if (rebuildCheckpoint) toMove.Add(dir.CheckpointPath);
        // Cut at the begin address: the log is empty, and the marker would make the store read
        // "segment data but nothing committed" as lost commit metadata.
        string marker = Path.Combine(dir.LogDirectory, DataLayout.CommittedMarker);
        bool emptied = truncate && newCommitted <= analysis.Begin && File.Exists(marker);
        if (emptied) toMove.Add(marker);

        long needed = toCopy.Sum(f => File.Exists(f) ? new FileInfo(f).Length : 0);
        long free = new DriveInfo(dir.Path).AvailableFreeSpace;
        if (free < needed + FreeSpaceMargin)
            throw new OfflineRefusedException(string.Create(CultureInfo.InvariantCulture,
                $"Recover needs {needed + FreeSpaceMargin} bytes free on the disk of {dir.Path} to back up what it changes ({needed} bytes of files plus a {FreeSpaceMargin}-byte margin), but {free} are free. Nothing was changed; free some space and run it again."));

        string backup = Path.Combine(dir.Path, "backup-" + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture));
        Directory.CreateDirectory(backup);
        var actions = new List<string>();
        var manifest = new List<string>();
        foreach (var file in toCopy)
        {
            string target = Path.Combine(backup, Path.GetRelativePath(dir.Path, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            try
            {
                File.Copy(file, target);
            }
            catch (FileNotFoundException) when (commitFiles.Contains(file))
            {
                // FASTER removes an outdated commit file in the background after a commit; one
                // the last store's close made outdated can go after the listing.
                manifest.Add($"gone before it could be copied (an outdated commit file FASTER removed): {Path.GetRelativePath(dir.Path, file)}");
                continue;
            }
            FsyncFile(target);
            manifest.Add($"copied {Path.GetRelativePath(dir.Path, file)}");
        }
        // Files to remove are moved (renamed: the backup is on the same file system) when they go.
        foreach (var file in toMove) manifest.Add($"moved {Path.GetRelativePath(dir.Path, file)}");
        File.WriteAllLines(Path.Combine(backup, "MANIFEST.txt"), manifest);
        FsyncTree(backup);
        actions.Add($"backed up {toCopy.Count} file(s) by copy ({needed} bytes) to {backup}{(toMove.Count > 0 ? $"; the {toMove.Count} file(s) it removes are moved there" : "")}");
        void MoveToBackup(string file)
        {
            string target = Path.Combine(backup, Path.GetRelativePath(dir.Path, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Move(file, target);
            DirectorySync.Fsync(Path.GetDirectoryName(target)!);
            DirectorySync.Fsync(Path.GetDirectoryName(file)!);
        }

        // Order, so that a crash of the tool at any step leaves a directory the store opens or the
        // tool repairs again: the checkpoint goes first (without it the store replays the log; one
        // left covering past a new commit point would be refused); then the new commit (after it,
        // the bytes past the cut are an uncommitted tail the store ignores); then those bytes are
        // zeroed and the segment files after the cut removed.
        if (rebuildCheckpoint)
        {
            MoveToBackup(dir.CheckpointPath);
            actions.Add($"moved the index checkpoint {dir.CheckpointPath} aside ({(analysis.CheckpointUsable ? "it covers past the cut" : "damaged or not agreeing with the log")})");
        }
        if (rebuildCommit && !truncate)
        {
            CommitState.WriteCommit(dir.CommitDirectory, analysis.Begin, newCommitted, Math.Max(analysis.Commit.HighestNumber, -1));
            actions.Add(string.Create(CultureInfo.InvariantCulture, $"rebuilt FASTER's commit metadata from the records: begin {analysis.Begin}, commit point {newCommitted} ({analysis.Records} records)"));
        }
        if (truncate)
        {
            CommitState.WriteCommit(dir.CommitDirectory, analysis.Begin, newCommitted, analysis.Commit.HighestNumber);
            actions.Add(string.Create(CultureInfo.InvariantCulture, $"rewrote FASTER's commit metadata: begin {analysis.Begin}, commit point {newCommitted}"));
        }
        if (zeroUntil > zeroFrom)
        {
            long zeroed = ZeroRange(dir, segments, zeroFrom, zeroUntil, truncate);
            if (rollback)
                actions.Add(string.Create(CultureInfo.InvariantCulture, $"rolled back the log to commit {fallback!.Number}: cut it at that commit's point, address {cut}, dropping the {analysis.RecordsAfterFallback} record(s) after it (up to {analysis.Committed}); zeroed {zeroed} byte(s) from there"));
            else if (truncate)
                actions.Add(string.Create(CultureInfo.InvariantCulture, $"cut the log at address {cut} (its commit point was {analysis.Committed}): zeroed {zeroed} byte(s) from there"));
            if (tail.Records > 0)
                actions.Add(string.Create(CultureInfo.InvariantCulture, $"dropped the torn tail: {tail.Records} uncommitted record(s) at addresses {tail.Start} to {tail.End}"));
        }
        else if (rollback)
            actions.Add(string.Create(CultureInfo.InvariantCulture, $"rolled back the log to commit {fallback!.Number} (its commit point {cut}; no records were written after it)"));
        foreach (var file in toMove.Where(f => f != dir.CheckpointPath && f != marker))
        {
            MoveToBackup(file);
            actions.Add(strays.Contains(file)
                ? $"moved the data-less segment file {file} (made by FasterLog from the damaged commit metadata) into the backup"
                : $"removed segment file {file} (wholly after the cut; kept in the backup)");
        }
        if (emptied)
        {
            MoveToBackup(marker);
            actions.Add("the cut leaves the log empty: removed its committed.marker (kept in the backup)");
        }
        DirectorySync.Fsync(dir.LogDirectory);
        DirectorySync.Fsync(dir.Path);

        if (cut is not null && !truncate)
        {
            return new RepairReport
            {
                DataDirectory = dir.Path, ProblemsFound = found, Actions = actions, BackupDirectory = backup, CutAddress = cut,
                LostPages = lostPages, LostPools = lostPools, UnknownRanges = losses.UnknownRanges, DroppedLogBytes = tail.End - tail.Start, Unrepaired = unrepaired, Advice = advice, Openable = false,
            };
        }

        // Open the store: it replays the log (no checkpoint, or one that still fits) and, closing,
        // writes a fresh checkpoint. That proves the directory opens.
        long expectedPages = rollback ? analysis.AfterFallback!.AtCut.PageCount : (truncate ? analysis.AtCut! : analysis.Model).PageCount;
        dir.ReleaseLock();
        long pagesAfter, poolsAfter;
        try
        {
            using var store = TmemStore.Open(StoreOptions(dir.Path, expectedPages), out var report);
            pagesAfter = report.PagesRecovered;
            poolsAfter = report.PoolsRecovered;
            store.Checkpoint();
        }
        catch (IOException e) when (e.Message.Contains("in use", StringComparison.Ordinal))
        {
            throw new DataDirectoryInUseException(dir.Path, e);
        }
        catch (Exception e) when (e is TmemCorruptionException or InvalidOperationException or IOException)
        {
            unrepaired.Add(new DataProblem(ProblemKind.CommitMetadata, ProblemSeverity.Damage, null, null, $"the store still does not open after the repair: {e.Message}"));
            return new RepairReport
            {
                DataDirectory = dir.Path, ProblemsFound = found, Actions = actions, BackupDirectory = backup, CutAddress = cut, Truncated = truncate,
                LostPages = lostPages, LostPools = lostPools, UnknownRanges = losses.UnknownRanges, Unrepaired = unrepaired, Openable = false,
                RolledBackToCommit = rollback ? fallback!.Number : null,
                Advice = $"The repair did not make the directory openable; the files it changed are in {backup} (see MANIFEST.txt). Report this with the output of verify.",
            };
        }
        actions.Add(string.Create(CultureInfo.InvariantCulture, $"opened the store: {poolsAfter} pool(s) and {pagesAfter} page(s) recovered by replay; wrote a fresh index checkpoint"));
        if (pagesAfter != expectedPages)
            unrepaired.Add(new DataProblem(ProblemKind.InconsistentRecord, ProblemSeverity.Damage, null, null,
                $"the store recovered {pagesAfter} pages, but the log read offline gives {expectedPages}"));
        if (rollback)
            advice = string.Create(CultureInfo.InvariantCulture,
                $"The log was rolled back to commit {fallback!.Number}. Whether the changes listed were acknowledged cannot be known: commits after {fallback.Number} were lost from the commit metadata{(analysis.Checkpoint is { } c && c.CoveredUntil > cut ? $", and the index checkpoint showed the log committed until at least {c.CoveredUntil}, so those before it were" : "")}.");
        return new RepairReport
        {
            DataDirectory = dir.Path, ProblemsFound = found, Actions = actions, BackupDirectory = backup, CutAddress = cut, Truncated = truncate,
            LostPages = lostPages, LostPools = lostPools, UnknownRanges = losses.UnknownRanges,
            DroppedLogBytes = (truncate ? analysis.Committed - cut!.Value : 0) + (tail.End - tail.Start),
            Unrepaired = unrepaired, Advice = advice, Openable = cut is null || truncate, PagesAfter = pagesAfter, PoolsAfter = poolsAfter,
            RolledBackToCommit = rollback ? fallback!.Number : null,
        };
    }

    /// <summary>" (incomplete: ...)" when the loss list is not exact, naming the ranges it cannot see into; else empty.</summary>
    private static string Incompleteness(LossList losses) => losses.Complete ? "" : string.Create(CultureInfo.InvariantCulture,
        $" (the list is incomplete: the records at log addresses {string.Join(", ", losses.UnknownRanges.Select(r => $"{r.From} to {r.Until}"))} are unreadable or gone, and the pages and pools they changed cannot be listed)");

    /// <summary>What to do about unusable commit metadata: what is known, and what each flag would do.</summary>
    private static string CommitAdvice(LogAnalysis analysis, LossList rollback, bool rollbackAsked)
    {
        var fallback = analysis.Commit.Fallback;
        if (fallback is null)
            return string.Create(CultureInfo.InvariantCulture,
                $"FASTER's commit metadata is missing or damaged{(rollbackAsked ? ", and no commit in it can be read to roll back to" : "")}. Restore the commits/ folder from a backup, or run recover again with --rebuild-commit-metadata to write a commit for log addresses {analysis.Begin} to {analysis.Committed} ({analysis.Records} whole records holding {analysis.Model.PageCount} pages; records written after the last real commit may come back with them). Nothing was changed.");
        var known = new List<string>
        {
            string.Create(CultureInfo.InvariantCulture, $"The commit metadata is damaged ({analysis.Commit.Problem}). The newest commit that can be read is commit {fallback.Number} (log addresses {fallback.BeginAddress} to {fallback.CommittedUntil}): commits after {fallback.Number} may be lost."),
        };
        if (analysis.AfterFallback is null)
        {
            known.Add(string.Create(CultureInfo.InvariantCulture,
                $"The whole records end at address {analysis.Committed}, before that commit's point at address {fallback.CommittedUntil}: the log is damaged too, and cannot be rolled back to it. Run recover again with --rebuild-commit-metadata to write a commit for log addresses {analysis.Begin} to {analysis.Committed} (then --truncate-at-first-corruption applies to what remains damaged), or restore the files from a backup. Nothing was changed."));
            return string.Join(" ", known);
        }
        string acknowledged = LogAnalysis.Acknowledged(fallback.CommittedUntil, analysis.Committed, analysis.Checkpoint);
        known.Add(string.Create(CultureInfo.InvariantCulture,
            $"{analysis.RecordsAfterFallback} whole record(s) at log addresses {fallback.CommittedUntil} to {analysis.Committed} were written after it; {acknowledged}. " +
            $"Run recover again with one of: --rebuild-commit-metadata, to write a commit for log addresses {analysis.Begin} to {analysis.Committed} keeping every one of those records (records never acknowledged may come back with them); " +
            $"or --rollback-to-older-commit, to go back to commit {fallback.Number} by cutting the log at address {fallback.CommittedUntil}, which undoes {rollback.Pages.Count} page change(s) and {rollback.Pools.Count} pool change(s), listed in this report. Nothing was changed."));
        return string.Join(" ", known);
    }

    /// <summary>Options for opening a directory offline: room for every page the log holds.</summary>
    internal static TmemOptions StoreOptions(string dataDirectory, long pages) => new()
    {
        DataDirectory = dataDirectory,
        MaxPages = Math.Min(uint.MaxValue / 2, Math.Max(1L << 20, pages * 2)),
    };

    /// <summary>Writes zeros over log addresses [from, until) where segment files hold them; returns bytes zeroed.</summary>
    private static long ZeroRange(OfflineDirectory dir, IReadOnlyList<SegmentFile> segments, long from, long until, bool truncate)
    {
        long segmentSize = dir.Format.SegmentSize, zeroed = 0;
        var zeros = new byte[1 << 20];
        foreach (var segment in segments)
        {
            long first = segment.FirstAddress;
            long start = Math.Max(from, first), end = Math.Min(until, first + segmentSize);
            if (start >= end) continue;
            if (truncate && first > from) continue; // removed whole
            using var file = new FileStream(segment.Path, FileMode.Open, FileAccess.Write, FileShare.None);
            long offset = start - first, stop = Math.Min(end - first, file.Length);
            for (long at = offset; at < stop; at += zeros.Length)
            {
                int n = (int)Math.Min(zeros.Length, stop - at);
                RandomAccess.Write(file.SafeFileHandle, zeros.AsSpan(0, n), at);
                zeroed += n;
            }
            file.Flush(flushToDisk: true);
        }
        return zeroed;
    }

    private static void FsyncFile(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        file.Flush(flushToDisk: true);
    }

    private static void FsyncTree(string root)
    {
        foreach (var d in Directory.GetDirectories(root, "*", SearchOption.AllDirectories)) DirectorySync.Fsync(d);
        DirectorySync.Fsync(root);
        DirectorySync.Fsync(Path.GetDirectoryName(root)!);
    }
}
