using System.Diagnostics;

namespace Tmem.Recovery.Offline;

/// <summary>What <see cref="OfflineCompactor.Compact"/> did.</summary>
/// <param name="DataDirectory">The data directory (full path).</param>
/// <param name="SegmentBytesBefore">Bytes of the segment files before.</param>
/// <param name="SegmentBytesAfter">Bytes of the segment files after (FASTER's deletions done).</param>
/// <param name="SegmentFilesBefore">Segment files before.</param>
/// <param name="SegmentFilesAfter">Segment files after.</param>
/// <param name="Result">The store's own account (begin addresses, log bytes, records copied); null when skipped.</param>
/// <param name="Skipped">Whether compaction was not run because it would free no segment file (<paramref name="Reason"/> says why); nothing was changed.</param>
/// <param name="Reason">Why it was skipped, else null.</param>
/// <param name="LiveBytes">The live records' bytes, which compaction copies to the log's tail.</param>
/// <param name="SegmentFilesExpected">The segment files expected after compacting, the space reserve's included (the estimate the decision used).</param>
public sealed record CompactionReport(string DataDirectory, long SegmentBytesBefore, long SegmentBytesAfter, int SegmentFilesBefore, int SegmentFilesAfter,
    LogCompactionResult? Result, bool Skipped = false, string? Reason = null, long LiveBytes = 0, int SegmentFilesExpected = 0);

/// <summary>
/// Offline log compaction (the tool's <c>compact</c>): opens the store (recovering it), runs
/// <see cref="TmemStore.CompactLog"/> with force, waits until FASTER has deleted the segment files
/// below the new begin address (it does so asynchronously after the truncation commit), and
/// closes the store, which writes a checkpoint.
/// <para>
/// Compaction copies every live record to the log's tail before it releases the segments below,
/// so the log after it spans the live bytes starting in the tail's segment. When that would not
/// take fewer segment files than the log spans now (a log whose records are nearly all live), it
/// would only rewrite, and for a while grow, the directory: then nothing is done and the report
/// says so (<see cref="CompactionReport.Skipped"/>). The estimate allows 2% and 1 MiB for the
/// base record and FASTER's page framing, so a compaction that runs never leaves more segment files.
/// </para>
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
        long liveBytes;
        int expected;
        try
        {
            var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
            if (analysis.Problems.Any(p => p.Severity == ProblemSeverity.Damage && p.Kind is not (ProblemKind.CheckpointDamaged or ProblemKind.CheckpointMismatch)))
                throw new OfflineRefusedException($"{dir.Path} is damaged ({analysis.Problems.First(p => p.Severity == ProblemSeverity.Damage).Message}); compaction would fail on it. Run verify, then recover, first. Nothing was changed.");
            before = dir.Segments();
            pages = analysis.Model.PageCount;
            long segment = dir.Format.SegmentSize;
            long begin = analysis.Begin, tail = analysis.Committed, live = analysis.Model.LiveEntryBytes;
            int spanNow = tail > begin ? (int)((tail - 1) / segment - begin / segment + 1) : 0;
            long end = tail + live + live / 50 + (1L << 20);
            int spanAfter = (int)((end - 1) / segment - tail / segment + 1);
            int filesAfter = before.Count - spanNow + spanAfter; // the space reserve's segment file stays either way
            if (spanAfter >= spanNow)
            {
                long bytes = before.Sum(s => s.Bytes);
                string reason = $"compacting would not shrink {dir.Path}: its live records ({live} bytes, {(tail > begin ? 100.0 * live / (tail - begin) : 100):0.#}% of the log) copied to the tail would span {spanAfter} segment file(s), and the log spans {spanNow} now. Nothing was changed.";
                return new CompactionReport(dir.Path, bytes, bytes, before.Count, before.Count, null, Skipped: true, Reason: reason, LiveBytes: live, SegmentFilesExpected: filesAfter);
            }
            liveBytes = live;
            expected = filesAfter;
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
        return new CompactionReport(dir.Path, before.Sum(s => s.Bytes), after.Sum(s => s.Bytes), before.Count, after.Count, result, LiveBytes: liveBytes, SegmentFilesExpected: expected);
    }
}
