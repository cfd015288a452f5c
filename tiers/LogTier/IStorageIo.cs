using Microsoft.Win32.SafeHandles;

namespace Tmem.LogTier;

/// <summary>
/// The store's own file operations on its data directory, in one seam: the format, commit,
/// checkpoint and marker files, the mapped device's segment files (open, allocate, sync, the copy
/// into the mapping and its <c>msync</c>), the space reserve, renames, deletions and directory
/// syncs. Production code uses <see cref="NativeStorageIo"/>, a pass-through to the system calls;
/// tests put a fault-injecting model of the disk in its place
/// (<see cref="Tmem.Diagnostics.StoreDiagnostics.StorageIo"/>) to fail chosen operations and to
/// simulate a power cut. FASTER's own file device is not behind it (it opens its files itself);
/// tests wrap that one at the device level (<see cref="Tmem.Diagnostics.StoreDiagnostics.WrapLogDevice"/>).
/// <para>
/// Errors: <see cref="Open"/>, <see cref="IStorageFile.Read"/> and <see cref="IStorageFile.Write"/>
/// and the namespace operations throw <see cref="IOException"/> (whose <see cref="Exception.HResult"/>
/// is the errno where one is known); the sync, allocation and truncation calls return the errno
/// (0 on success), as the system calls they stand for.
/// </para>
/// </summary>
internal interface IStorageIo
{
    /// <summary>Opens or creates a file (<see cref="File.OpenHandle"/>'s arguments).</summary>
    IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share, FileOptions options = FileOptions.None);

    /// <summary>Creates a directory and any missing parents (<see cref="Directory.CreateDirectory(string)"/>); no directory is synced.</summary>
    void CreateDirectory(string path);

    /// <summary>fsync of a directory: makes the entries created, renamed or removed in it durable.</summary>
    void FsyncDirectory(string path);

    /// <summary>rename(2) (<see cref="File.Move(string, string, bool)"/>); durable once the directory is synced.</summary>
    void Move(string source, string destination, bool overwrite);

    /// <summary>unlink(2) (<see cref="File.Delete"/>: nothing when the file is missing); durable once the directory is synced.</summary>
    void Delete(string path);
}

/// <summary>An open file of <see cref="IStorageIo"/>.</summary>
internal unsafe interface IStorageFile : IDisposable
{
    /// <summary>The path it was opened under.</summary>
    string Path { get; }

    /// <summary>The descriptor (for a memory mapping of the file, which <see cref="CopyToMapping"/> and <see cref="Msync"/> then write and sync).</summary>
    SafeFileHandle Handle { get; }

    long GetLength();

    /// <summary>pread(2); returns the bytes read (0 at the end of the file).</summary>
    int Read(Span<byte> buffer, long offset);

    /// <summary>pwrite(2) of all of <paramref name="buffer"/>; durable on return when the file was opened with <see cref="FileOptions.WriteThrough"/>, else after <see cref="Fsync"/>.</summary>
    void Write(ReadOnlySpan<byte> buffer, long offset);

    /// <summary>fsync(2): the file's data and size are durable. Returns the errno, 0 on success.</summary>
    int Fsync();

    /// <summary>posix_fallocate(3). Returns the errno, 0 on success.</summary>
    int Allocate(long offset, long length);

    /// <summary>ftruncate(2). Returns the errno, 0 on success.</summary>
    int Truncate(long length);

    /// <summary>
    /// Copies <paramref name="length"/> bytes from <paramref name="source"/> into a shared mapping of
    /// the whole file (<paramref name="mapping"/> is its first byte) at file offset
    /// <paramref name="offset"/>: the store's "write" into a mapped file, durable only once
    /// <see cref="Msync"/> returned for the range.
    /// </summary>
    void CopyToMapping(byte* mapping, long offset, byte* source, long length);

    /// <summary>msync(MS_SYNC) of the mapped range at file offset <paramref name="offset"/> (page-aligned). Returns the errno, 0 on success.</summary>
    int Msync(byte* mapping, long offset, long length);
}

/// <summary>Helpers over <see cref="IStorageIo"/> for the small files written whole.</summary>
internal static class StorageIoExtensions
{
    /// <summary>fsync, throwing <see cref="IOException"/> (HResult the errno) when it fails.</summary>
    public static void FsyncOrThrow(this IStorageFile file)
    {
        int errno = file.Fsync();
        if (errno != 0) throw new IOException($"fsync of {file.Path} failed ({RetryingDevice.Describe((uint)errno)}).", errno);
    }

    /// <summary>
    /// Creates (or truncates) <paramref name="path"/>, writes <paramref name="bytes"/> and fsyncs
    /// it: the first half of an atomic replacement (a rename and a directory sync follow).
    /// </summary>
    public static void WriteNewFile(this IStorageIo io, string path, ReadOnlySpan<byte> bytes)
    {
        using var file = io.Open(path, FileMode.Create, FileAccess.Write, FileShare.None);
        file.Write(bytes, 0);
        file.FsyncOrThrow();
    }

    /// <summary>
    /// Creates <paramref name="path"/> and any missing parents, and makes each new directory's entry
    /// durable (an fsync of the directory that holds it) before returning: a directory whose entry
    /// was never synced may vanish in a power cut, with every file written into it since, however
    /// well those files were synced themselves. The entry of <paramref name="path"/> itself is synced
    /// even when the directory exists already: an earlier attempt may have created it and then
    /// failed to sync it.
    /// </summary>
    public static void CreateDirectoryDurably(this IStorageIo io, string path)
    {
        path = Path.GetFullPath(path);
        var created = new List<string>();
        for (string? p = path; p is not null && !Directory.Exists(p); p = Path.GetDirectoryName(p)) created.Add(p);
        if (created.Count > 0) io.CreateDirectory(path);
        if (created.Count == 0 || created[0] != path) created.Insert(0, path);
        foreach (string? directory in created.Select(Path.GetDirectoryName).Distinct())
            if (directory is not null) io.FsyncDirectory(directory);
    }

    /// <summary>The whole file, read through the seam.</summary>
    public static byte[] ReadAllBytes(this IStorageIo io, string path)
    {
        using var file = io.Open(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var bytes = new byte[checked((int)file.GetLength())];
        int total = 0;
        while (total < bytes.Length)
        {
            int n = file.Read(bytes.AsSpan(total), total);
            if (n == 0) return bytes[..total];
            total += n;
        }
        return bytes;
    }
}
