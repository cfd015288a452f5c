using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tmem.LogTier;

/// <summary>The production <see cref="IStorageIo"/>: each call is the system call it names.</summary>
internal sealed class NativeStorageIo : IStorageIo
{
    public static readonly NativeStorageIo Instance = new();

    private NativeStorageIo()
    {
    }

    /// <summary>The seam a store opened with <paramref name="options"/> uses: its diagnostics' (tests), else this one.</summary>
    public static IStorageIo For(TmemOptions options) => options.Diagnostics?.StorageIo ?? Instance;

    public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share, FileOptions options = FileOptions.None) =>
        new NativeStorageFile(path, File.OpenHandle(path, mode, access, share, options));

    public void CreateDirectory(string path) => Directory.CreateDirectory(path);

    public void FsyncDirectory(string path) => DirectorySync.Fsync(path);

    public void Move(string source, string destination, bool overwrite) => File.Move(source, destination, overwrite);

    public void Delete(string path) => File.Delete(path);
}

/// <summary>A file of <see cref="NativeStorageIo"/>.</summary>
internal sealed unsafe partial class NativeStorageFile(string path, SafeFileHandle handle) : IStorageFile
{
    private const int MsSync = 4; // <sys/mman.h> on Linux

    public string Path { get; } = path;

    public SafeFileHandle Handle { get; } = handle;

    private int Fd => (int)Handle.DangerousGetHandle();

    public long GetLength() => RandomAccess.GetLength(Handle);

    public int Read(Span<byte> buffer, long offset) => RandomAccess.Read(Handle, buffer, offset);

    public void Write(ReadOnlySpan<byte> buffer, long offset) => RandomAccess.Write(Handle, buffer, offset);

    public int Fsync() => FsyncFd(Fd) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public int Allocate(long offset, long length) => PosixFallocate(Fd, offset, length);

    public int Truncate(long length) => Ftruncate(Fd, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public void CopyToMapping(byte* mapping, long offset, byte* source, long length) =>
        Buffer.MemoryCopy(source, mapping + offset, length, length);

    public int Msync(byte* mapping, long offset, long length) =>
        MsyncRange(mapping + offset, (nuint)length, MsSync) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public void Dispose() => Handle.Dispose();

    [LibraryImport("libc", EntryPoint = "msync", SetLastError = true)]
    private static partial int MsyncRange(void* address, nuint length, int flags);

    /// <summary>Returns the error number itself (it does not set errno).</summary>
    [LibraryImport("libc", EntryPoint = "posix_fallocate")]
    private static partial int PosixFallocate(int fd, long offset, long length);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncFd(int fd);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int Ftruncate(int fd, long length);
}
