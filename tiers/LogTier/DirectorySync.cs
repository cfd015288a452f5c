using System.Runtime.InteropServices;

namespace Tmem.LogTier;

/// <summary>fsync of a directory, so that a rename into it survives a power loss (Linux; a no-op elsewhere).</summary>
public static partial class DirectorySync
{
    /// <summary>fsyncs <paramref name="directory"/>, so that names created or renamed in it are durable; throws <see cref="IOException"/> when it cannot.</summary>
    public static void Fsync(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"Cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (FsyncFd(fd) != 0) throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncFd(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
