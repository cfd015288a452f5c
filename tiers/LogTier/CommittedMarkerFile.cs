using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// <c>DATA/log/committed.marker</c>: an empty file written (and fsync'd, with its directory entry)
/// once the log first commits data. Without it, segment data with no commit is a crash before the
/// first commit (nothing was acknowledged, and FASTER writes over it); with it, lost commit metadata.
/// </summary>
internal sealed class CommittedMarkerFile(string logDirectory, bool written)
{
    public const string FileName = DataLayout.CommittedMarker;

    private volatile bool _written = written;

    /// <summary>The file operations it goes through (<see cref="IStorageIo"/>).</summary>
    internal IStorageIo Io { get; init; } = NativeStorageIo.Instance;

    /// <summary>Whether <paramref name="logDirectory"/> holds the marker (the log committed data at some point).</summary>
    public static bool ExistsIn(string logDirectory) => File.Exists(Path.Combine(logDirectory, FileName));

    /// <summary>
    /// Writes the marker unless it is there already or <paramref name="log"/> has nothing
    /// committed. Throws <see cref="IOException"/> when the disk refuses it.
    /// </summary>
    public void WriteOnce(FasterLog log)
    {
        if (_written || log.CommittedUntilAddress <= log.BeginAddress) return;
        string marker = Path.Combine(logDirectory, FileName);
        Io.WriteNewFile(marker, []);
        Io.FsyncDirectory(logDirectory);
        _written = true;
    }
}
