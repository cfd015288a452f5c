using System.Diagnostics;

namespace Tmem.Recovery.Offline;

/// <summary>What <see cref="OfflineCompactor.Compact"/> did.</summary>
/// <param name="DataDirectory">The data directory (full path).</param>
/// <param name="SegmentBytesBefore">Bytes of the segment files before.</param>
/// <param name="SegmentBytesAfter">Bytes of the segment files after (FASTER's deletions done).</param>
/// <param name="SegmentFilesBefore">Segment files before.</param>
/// <param name="SegmentFilesAfter">Segment files after.</param>
/// <param name="Result">The store's own account (begin addresses, log bytes, records copied).</param>
public sealed record CompactionReport(string DataDirectory, long SegmentBytesBefore, long SegmentBytesAfter, int SegmentFilesBefore, int SegmentFilesAfter, LogCompactionResult Result);

/// <summary>
/// Offline log compaction (the tool's <c>compact</c>): opens the store (recovering it), runs
/// <see cref="TmemStore.CompactLog"/> with force, waits until FASTER has deleted the segment files
/// below the new begin address (it does so asynchronously after the truncation commit), and
/// closes the store, which writes a checkpoint.
/// </summary>
public static class OfflineCompactor
{
    private static readonly TimeSpan DeletionWait = TimeSpan.FromSeconds(30);

    /// <summary>Compacts the log of <paramref name="dataDirectory"/>.</summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">Not a data directory, or it is damaged (run verify and recover first). Nothing was changed.</exception>
    public static CompactionReport Compact(string dataDirectory, IProgress<OfflineProgress>? progress = null)
    {
        var dir = OfflineDirectory.Open(dataDirectory);
        IReadOnlyList<SegmentFile> before;
        long pages;
        try
        {
            var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
            if (analysis.Problems.Any(p => p.Severity == ProblemSeverity.Damage && p.Kind is not (ProblemKind.CheckpointDamaged or ProblemKind.CheckpointMismatch)))
                throw new OfflineRefusedException($"{dir.Path} is damaged ({analysis.Problems.First(p => p.Severity == ProblemSeverity.Damage).Message}); compaction would fail on it. Run verify, then recover, first. Nothing was changed.");
            before = dir.Segments();
            pages = analysis.Model.PageCount;
        }
        finally
        {
            dir.ReleaseLock();
        }
        progress?.Report(new OfflineProgress("compacting", 0, 1));
        TmemStore store;
        try
        {
            store = TmemStore.Open(DataDirectoryRepairer.StoreOptions(dir.Path, pages));
        }
        catch (IOException e) when (e.Message.Contains("in use", StringComparison.Ordinal))
        {
            throw new DataDirectoryInUseException(dir.Path, e);
        }
        LogCompactionResult result;
        using (store)
        {
            result = store.CompactLog(force: true)!;
            long firstKept = result.BeginAfter >> dir.Format.SegmentSizeBits;
            var clock = Stopwatch.StartNew();
            while (dir.Segments().Any(s => s.Index < firstKept) && clock.Elapsed < DeletionWait)
                Thread.Sleep(20);
        }
        progress?.Report(new OfflineProgress("compacting", 1, 1));
        var after = dir.Segments();
        return new CompactionReport(dir.Path, before.Sum(s => s.Bytes), after.Sum(s => s.Bytes), before.Count, after.Count, result);
    }
}
