namespace Tmem.LogTier;

/// <summary>
/// The names in a data directory (docs/storage-format.md lays out every file): for the store and
/// for tools that read a directory offline.
/// </summary>
public static class DataLayout
{
    /// <summary>The folder of FasterLog's segment files.</summary>
    public const string LogFolder = "log";

    /// <summary>The folder of the commit file.</summary>
    public const string CommitFolder = "commits";

    /// <summary>Segment files are <c>log/segment.N</c>.</summary>
    public const string SegmentBaseName = "segment";

    /// <summary>
    /// <c>log/committed.marker</c>: written (and fsync'd) once the log first commits data. Without
    /// it, segment data with no commit is a crash before the first commit (nothing was
    /// acknowledged); with it, lost commit metadata.
    /// </summary>
    public const string CommittedMarker = "committed.marker";

    /// <summary>The path of segment <paramref name="segment"/>'s file in <paramref name="logDirectory"/>.</summary>
    public static string SegmentPath(string logDirectory, long segment) => Path.Combine(logDirectory, $"{SegmentBaseName}.{segment}");
}
