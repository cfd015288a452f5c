using Tmem.Durability;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>A segment file of the log.</summary>
/// <param name="Index">Its number N (<c>log/segment.N</c>).</param>
/// <param name="Path">Its path.</param>
/// <param name="Bytes">Its length on disk.</param>
/// <param name="FirstAddress">The first log address it holds.</param>
public sealed record SegmentFile(long Index, string Path, long Bytes, long FirstAddress);

/// <summary>
/// A data directory opened by the offline tool: its lock held (every command takes it, read-only
/// ones too), its format read without creating anything, its files located.
/// </summary>
internal sealed class OfflineDirectory : IDisposable
{
    private DataDirectoryLock? _lock;

    private OfflineDirectory(string path, DataFormat format, DataDirectoryLock directoryLock)
    {
        Path = path;
        Format = format;
        _lock = directoryLock;
    }

    public string Path { get; }

    public DataFormat Format { get; }

    public string LogDirectory => System.IO.Path.Combine(Path, DataLayout.LogFolder);

    public string CommitDirectory => System.IO.Path.Combine(Path, DataLayout.CommitFolder);

    public string CheckpointPath => IndexCheckpoint.PathIn(Path);

    /// <summary>Takes the directory's lock, or throws <see cref="DataDirectoryInUseException"/>.</summary>
    public static DataDirectoryLock Lock(string dataDirectory)
    {
        try
        {
            return DataDirectoryLock.Acquire(dataDirectory);
        }
        catch (IOException e)
        {
            throw new DataDirectoryInUseException(dataDirectory, e);
        }
    }

    /// <summary>Opens a data directory: it must exist and hold a log or a format file.</summary>
    public static OfflineDirectory Open(string dataDirectory)
    {
        string path = System.IO.Path.GetFullPath(dataDirectory);
        if (!Directory.Exists(path))
            throw new OfflineRefusedException($"{path} does not exist: give the data directory of a stopped service (Tmem:DataDirectory).");
        var directoryLock = Lock(path);
        try
        {
            string logDirectory = System.IO.Path.Combine(path, DataLayout.LogFolder);
            DataFormat? format;
            try
            {
                format = DataFormat.TryRead(path);
            }
            catch (TmemCorruptionException e)
            {
                throw new OfflineRefusedException($"{e.Message} Restore the format file (two lines: 'format 1' and 'segment_size BYTES', the segment size the log was written with) and run the tool again.", e);
            }
            bool hasSegments = Directory.Exists(logDirectory) && Directory.EnumerateFiles(logDirectory, DataLayout.SegmentBaseName + ".*").Any();
            if (format is null && !hasSegments)
                throw new OfflineRefusedException($"{path} is not a data directory: it has no format file and no log segments ({logDirectory}).");
            if (format is null)
                throw new OfflineRefusedException($"{path} has log segments but no format file, so the segment size the log was written with is unknown. Restore the format file (two lines: 'format 1' and 'segment_size BYTES') and run the tool again.");
            return new OfflineDirectory(path, format, directoryLock);
        }
        catch
        {
            directoryLock.Dispose();
            throw;
        }
    }

    /// <summary>Whether the directory has a format file (always, once opened).</summary>
    public bool HasFormatFile => File.Exists(System.IO.Path.Combine(Path, DataFormat.FileName));

    public IReadOnlyList<SegmentFile> Segments()
    {
        var list = new List<SegmentFile>();
        if (!Directory.Exists(LogDirectory)) return list;
        foreach (var file in new DirectoryInfo(LogDirectory).EnumerateFiles(DataLayout.SegmentBaseName + ".*"))
            if (long.TryParse(file.Extension.AsSpan(1), out long index))
                list.Add(new SegmentFile(index, file.FullName, file.Length, index << Format.SegmentSizeBits));
        list.Sort((a, b) => a.Index.CompareTo(b.Index));
        return list;
    }

    /// <summary>
    /// Lets go of the lock so that <see cref="TmemStore.Open(TmemOptions)"/> (which takes it
    /// itself) can open the directory; if another process takes it meanwhile, that open fails
    /// with "in use", and nothing is changed.
    /// </summary>
    public void ReleaseLock()
    {
        _lock?.Dispose();
        _lock = null;
    }

    public void Dispose() => ReleaseLock();
}
