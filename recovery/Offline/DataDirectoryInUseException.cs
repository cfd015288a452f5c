using Tmem.Durability;

namespace Tmem.Recovery.Offline;

/// <summary>
/// The data directory's lock file (<see cref="DataDirectoryLock"/>) is held by another process,
/// a running service or another tool: the offline tool does nothing to such a directory.
/// </summary>
public sealed class DataDirectoryInUseException : IOException
{
    /// <summary>Creates the exception for <paramref name="dataDirectory"/>.</summary>
    public DataDirectoryInUseException(string dataDirectory, Exception? inner)
        : base($"Data directory {Path.GetFullPath(dataDirectory)} is in use: another process (a running service or tool) holds its lock file {Path.Combine(Path.GetFullPath(dataDirectory), DataDirectoryLock.FileName)}, which names its process id. Stop it first; the offline tool works only on a directory nothing else uses.", inner)
    {
        DataDirectory = Path.GetFullPath(dataDirectory);
    }

    /// <summary>The directory.</summary>
    public string DataDirectory { get; }
}
