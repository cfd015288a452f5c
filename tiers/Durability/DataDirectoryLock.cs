using System.Text;

namespace Tmem.Durability;

/// <summary>
/// <c>DATA/tmem.lock</c>, held open with <see cref="FileShare.None"/> (an exclusive advisory
/// lock on Linux, released by the kernel when the process dies, even by SIGKILL) for as long as
/// a store or a tool uses the directory. It holds the owner's process id, for the error message.
/// </summary>
public sealed class DataDirectoryLock : IDisposable
{
    /// <summary>The lock file's name inside the data directory.</summary>
    public const string FileName = "tmem.lock";

    private readonly FileStream _file;

    private DataDirectoryLock(FileStream file) => _file = file;

    /// <summary>Takes the lock, creating the directory if needed.</summary>
    /// <exception cref="IOException">Another process holds the directory.</exception>
    public static DataDirectoryLock Acquire(string dataDirectory)
    {
        Directory.CreateDirectory(dataDirectory);
        string path = Path.Combine(dataDirectory, FileName);
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException($"Data directory {Path.GetFullPath(dataDirectory)} is in use: another store or tool holds its lock file {path} (the file names the process id). Stop it first; only one may use a data directory at a time.", e);
        }
        file.SetLength(0);
        var pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        file.Write(pid);
        file.Flush(flushToDisk: true);
        return new DataDirectoryLock(file);
    }

    /// <summary>Releases the lock (the file stays; its presence means nothing without the lock).</summary>
    public void Dispose() => _file.Dispose();
}
