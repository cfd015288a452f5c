using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Tmem.LogTier;

namespace Tmem.Tests.Faults;

/// <summary>The kinds of I/O operation a <see cref="SimulatedDisk"/> counts and can fail.</summary>
[Flags]
internal enum IoKind
{
    None = 0,

    /// <summary>Opening or creating a file; creating a directory.</summary>
    Open = 1,

    /// <summary>pread, a device read.</summary>
    Read = 2,

    /// <summary>pwrite, a device write (the File device's writes are write-through).</summary>
    Write = 4,

    /// <summary>fsync, msync of a range, fsync of a directory.</summary>
    Sync = 8,

    /// <summary>posix_fallocate, ftruncate.</summary>
    Allocate = 16,

    /// <summary>rename.</summary>
    Rename = 32,

    /// <summary>unlink (including FASTER's removal of a segment file).</summary>
    Delete = 64,

    All = 127,
}

/// <summary>What a power cut does with the writes that were not made durable (<see cref="SimulatedDisk.Restore"/>).</summary>
internal enum CutMode
{
    /// <summary>Every unsynced sector keeps its durable (old) contents; every file its durable length.</summary>
    Old,

    /// <summary>Every write issued before the cut reached the disk, none of the syncs that did not return: each file as it was at the cut.</summary>
    New,

    /// <summary>Each unsynced 512-byte sector old or new at random (a write torn at sector boundaries, writes reordered), each file's length old or new.</summary>
    MixedSectors,

    /// <summary>As <see cref="MixedSectors"/> in 4 KiB pages (the page cache writes back whole pages).</summary>
    MixedPages,

    /// <summary>Files keep the length they had at the cut, but what lies past their durable length reads as zeros (a size made durable before the data, as ext4 data=writeback can leave); the rest mixed per sector.</summary>
    ZeroedTails,

    /// <summary>
    /// Beyond what a sector-atomic disk does: as <see cref="MixedSectors"/>, and some unsynced sectors
    /// are torn inside (a prefix new, the rest old) or zeroed even where they held synced data.
    /// Recovery may refuse such a directory, but only with a corruption report.
    /// </summary>
    Torn,
}

/// <summary>What a <see cref="SimulatedDisk.Restore"/> changed.</summary>
internal sealed class CutReport
{
    public CutMode Mode { get; init; }
    public string? CutOperation { get; set; }
    public int FilesVanished { get; set; }
    public int FilesRestoredFromUnlink { get; set; }
    public int DirectoriesVanished { get; set; }
    public int FilesCut { get; set; }
    public long SectorsOld { get; set; }
    public long SectorsNew { get; set; }
    public long SectorsZeroed { get; set; }
    public long SectorsTorn { get; set; }
    public List<string> Details { get; } = new();

    /// <summary>Whether the cut stayed within what a power cut on a sector-atomic disk can leave.</summary>
    public bool WithinPowerLossModel => Mode != CutMode.Torn;

    public override string ToString() =>
        $"{Mode} cut at [{CutOperation}]: {FilesVanished} file(s) and {DirectoriesVanished} dir(s) vanished, {FilesRestoredFromUnlink} unlinked file(s) back, " +
        $"{FilesCut} length(s) changed, sectors {SectorsOld} old / {SectorsNew} new / {SectorsZeroed} zeroed / {SectorsTorn} torn";
}

/// <summary>
/// A model of the disk under a data directory, in the store's own file I/O (<see cref="IStorageIo"/>,
/// through <c>StoreDiagnostics.StorageIo</c>) and, for FASTER's File device, at the device level
/// (<see cref="SimulatedDiskDevice"/>). After SQLite's crash and ioerr VFS shims and RocksDB's
/// FaultInjectionTestFS. Two jobs:
/// <list type="bullet">
/// <item><b>Failing the Nth operation.</b> Every operation is numbered (<see cref="Operations"/>);
/// the one numbered <see cref="FailAt"/> (or, with <see cref="FailFromThereOn"/>, every one from it
/// on) whose kind is in <see cref="FailKinds"/> fails with <see cref="FailErrno"/>, as the system
/// call would: an <see cref="IOException"/> whose HResult is the errno, or the errno returned.</item>
/// <item><b>Power cuts.</b> It keeps what is durable: per file, the contents each unsynced
/// 512-byte sector had when it was last durable (captured before the first write after a sync), the
/// file's durable length, and per directory the entries as of its last fsync. Writes made durable
/// on return (O_DSYNC/write-through, the File device's completed writes) and syncs that return
/// (fsync, msync of a range, a directory fsync) move the durable state; a mapped range is durable
/// only once msync returned for it. <see cref="Cut"/> (or <see cref="CutAt"/>, inside the
/// operation with that number) is the moment power is lost: from then on nothing becomes durable
/// (later operations still run, so that the store can be closed normally; none of their effects
/// survive). <see cref="Restore"/>, once the store is closed, replaces every file by a state the
/// disk could have after the cut (<see cref="CutMode"/>): unsynced sectors old, new or mixed,
/// lengths old or new; names whose directory entry was never synced vanish (with everything in
/// them), unlinked or renamed-over files whose removal was not synced come back.</item>
/// </list>
/// Real syncs are not issued (the model decides what is durable), so the tests cost no disk flushes.
/// Everything under <c>root</c> is modelled; it is taken as durable when the disk is created.
/// </summary>
internal sealed unsafe partial class SimulatedDisk : IStorageIo, IDisposable
{
    public const int SectorSize = 512;
    public const int PageSize = 4096;
    public const int Eio = 5;
    public const int Enospc = 28;

    private readonly Lock _lock = new();
    private readonly string _root;
    private readonly string _grave;
    private readonly Dictionary<string, Node> _current = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, Node>> _durableEntries = new(StringComparer.Ordinal);
    private readonly List<Node> _nodes = new();
    private int _nextId;
    private volatile bool _frozen;
    private long _operations;
    private long _failed;
    private string? _cutOperation;
    private bool _restored;

    public SimulatedDisk(string root)
    {
        _root = Path.GetFullPath(root).TrimEnd('/');
        Directory.CreateDirectory(_root);
        _grave = _root + ".grave";
        if (Directory.Exists(_grave)) Directory.Delete(_grave, recursive: true);
        Directory.CreateDirectory(_grave);
        lock (_lock) AdoptDurable(_root);
    }

    /// <summary>Operations numbered so far (all kinds).</summary>
    public long Operations => Volatile.Read(ref _operations);

    /// <summary>Operations failed so far.</summary>
    public long FailedOperations => Volatile.Read(ref _failed);

    /// <summary>Per kind, the operations numbered so far.</summary>
    public ConcurrentDictionary<IoKind, long> OperationsByKind { get; } = new();

    /// <summary>The operation number to fail (1-based, over all kinds); 0: none.</summary>
    public long FailAt { get; set; }

    /// <summary>With <see cref="FailAt"/>: every operation of <see cref="FailKinds"/> from that number on fails (until <see cref="FailAt"/> is set to 0).</summary>
    public bool FailFromThereOn { get; set; }

    public IoKind FailKinds { get; set; } = IoKind.All;

    public int FailErrno { get; set; } = Eio;

    /// <summary>Fails every operation this says to (kind, description), whatever its number; null: none.</summary>
    public Func<IoKind, string, bool>? FailIf { get; set; }

    /// <summary>The failures injected: "#N kind what: errno".</summary>
    public ConcurrentQueue<string> Failures { get; } = new();

    /// <summary>The power cut happens inside the operation with this number (0: none): before it runs, or after (<see cref="CutAfterOperation"/>).</summary>
    public long CutAt { get; set; }

    /// <summary>Whether <see cref="CutAt"/> cuts after that operation took effect (a sync that returned counts) rather than before it.</summary>
    public bool CutAfterOperation { get; set; }

    /// <summary>
    /// Called at the cut, under the disk's lock, before anything stops being durable: no
    /// operation completes meanwhile, so whatever the test recorded as acknowledged by then was
    /// made durable before the cut.
    /// </summary>
    public Action? OnCut { get; set; }

    /// <summary>Whether the power is cut (nothing becomes durable any more).</summary>
    public bool IsCut => _frozen;

    /// <summary>The operation the cut happened in ("by hand" for <see cref="Cut"/>).</summary>
    public string? CutOperation => _cutOperation;

    /// <summary>Called with a description of every operation as it begins (for tests that look for one).</summary>
    public Action<long, IoKind, string>? Observe { get; set; }

    // ---- the cut ----------------------------------------------------------------------------

    /// <summary>The power is lost now: nothing becomes durable from here on.</summary>
    public void Cut(string where = "by hand")
    {
        lock (_lock) CutLocked(where);
    }

    private void CutLocked(string where)
    {
        if (_frozen) return;
        OnCut?.Invoke();
        _cutOperation = where;
        _frozen = true;
    }

    // ---- operation numbering and failures ---------------------------------------------------

    /// <summary>Numbers an operation, cuts the power when it is <see cref="CutAt"/> (before), and says whether it fails (with the errno).</summary>
    private long Begin(IoKind kind, string what, out int errno)
    {
        long n = Interlocked.Increment(ref _operations);
        OperationsByKind.AddOrUpdate(kind, 1, (_, c) => c + 1);
        Observe?.Invoke(n, kind, what);
        if (n == CutAt && !CutAfterOperation) Cut($"#{n} before {kind} {what}");
        errno = 0;
        long at = FailAt;
        if ((at != 0 && (FailKinds & kind) != 0 && (n == at || (FailFromThereOn && n > at))) || FailIf?.Invoke(kind, what) == true)
        {
            errno = FailErrno;
            Interlocked.Increment(ref _failed);
            Failures.Enqueue($"#{n} {kind} {what}: errno {errno}");
        }
        return n;
    }

    /// <summary>The end of operation <paramref name="n"/>: the cut, when it is <see cref="CutAt"/> and cuts after.</summary>
    private void End(long n, IoKind kind, string what)
    {
        if (n == CutAt && CutAfterOperation) Cut($"#{n} after {kind} {what}");
    }

    private static IOException Error(int errno, string what) =>
        new($"{what} failed (injected: errno {errno}, {Marshal.GetPInvokeErrorMessage(errno)})", errno);

    // ---- the model ----------------------------------------------------------------------------

    private Node NewNode(bool isDirectory, string path, long durableLength = 0)
    {
        var node = new Node(_nextId++, isDirectory) { Path = path, DurableLength = durableLength };
        _nodes.Add(node);
        return node;
    }

    private sealed class Node(int id, bool isDirectory)
    {
        public int Id { get; } = id;
        public bool IsDirectory { get; } = isDirectory;
        public string? Path;            // where it is now (null once unlinked)
        public string? GravePath;       // a hard link that keeps it while a durable entry may still name it
        public long DurableLength;
        public long? LengthAtCut;       // its length when the power was cut, once it changed since
        public readonly Dictionary<long, Sector> Dirty = new();
        public SafeFileHandle? Reader;  // for capturing contents (the inode, whatever its name)
    }

    /// <summary>A sector written since it was last durable: the durable bytes, the bytes at the cut (once changed after it), writes in flight.</summary>
    private sealed class Sector(byte[] durable)
    {
        public byte[] Durable = durable;
        public byte[]? AtCut;
        public int InFlight;
        public bool Unsynced;           // written by a plain write, durable only after an fsync
        public bool Poisoned;           // a sync of it failed: Linux marks such pages clean, so later syncs skip it until it is written again
    }

    private string Full(string path) => Path.GetFullPath(path).TrimEnd('/');

    private bool Governed(string path) => path.StartsWith(_root + "/", StringComparison.Ordinal);

    private string Rel(string path) => Governed(path) ? path[(_root.Length + 1)..] : path;

    private static string Parent(string path) => Path.GetDirectoryName(path)!;

    private void AdoptDurable(string directory)
    {
        if (directory == _root) _current[_root] = NewNode(true, _root);
        var entries = new Dictionary<string, Node>(StringComparer.Ordinal);
        foreach (var sub in Directory.EnumerateDirectories(directory))
        {
            var node = NewNode(true, sub);
            _current[sub] = node;
            entries[Path.GetFileName(sub)] = node;
            AdoptDurable(sub);
        }
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            var node = NewNode(false, file, new FileInfo(file).Length);
            _current[file] = node;
            entries[Path.GetFileName(file)] = node;
        }
        _durableEntries[directory] = entries;
    }

    /// <summary>Under the lock: the node at a governed path, registering a file nobody told the model about (created outside it: not durable).</summary>
    private Node Known(string path)
    {
        if (_current.TryGetValue(path, out var node)) return node;
        node = NewNode(false, path);
        _current[path] = node;
        return node;
    }

    private bool DurablyNamed(Node node)
    {
        foreach (var entries in _durableEntries.Values)
            if (entries.ContainsValue(node)) return true;
        return false;
    }

    /// <summary>Under the lock, before <paramref name="node"/>'s name goes: keep the inode if a durable entry still names it.</summary>
    private void BuryIfDurable(Node node)
    {
        if (node.GravePath is not null || node.Path is null || !DurablyNamed(node)) return;
        string grave = Path.Combine(_grave, node.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (Link(node.Path, grave) != 0) throw new IOException($"link {node.Path} {grave} failed (errno {Marshal.GetLastPInvokeError()})");
        node.GravePath = grave;
    }

    private SafeFileHandle? ReaderOf(Node node)
    {
        if (node.Reader is { IsClosed: false } reader) return reader;
        string? path = node.GravePath ?? node.Path;
        if (path is null || !File.Exists(path)) return null;
        // open(2) itself: .NET's FileShare emulation (flock) would refuse a file the store holds with FileShare.None.
        int fd = OpenFd(path, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"open {path} failed (errno {Marshal.GetLastPInvokeError()})");
        node.Reader = new SafeFileHandle(fd, ownsHandle: true);
        return node.Reader;
    }

    /// <summary>Reads the current bytes of a sector-aligned range of a file (zeros past its end).</summary>
    private void ReadFile(Node node, long offset, Span<byte> into)
    {
        into.Clear();
        var reader = ReaderOf(node);
        if (reader is null) return;
        int total = 0;
        while (total < into.Length)
        {
            int n = RandomAccess.Read(reader, into[total..], offset + total);
            if (n == 0) break;
            total += n;
        }
    }

    /// <summary>
    /// Under the lock, before a write of [offset, offset + length): each sector not yet tracked
    /// keeps its current (durable) bytes; after the cut, each keeps its bytes at the cut too.
    /// </summary>
    private void Track(Node node, long offset, long length, byte* mapping, bool inFlight, bool unsynced)
    {
        if (length <= 0) return;
        long first = offset / SectorSize, last = (offset + length - 1) / SectorSize;
        byte[]? range = null;
        for (long s = first; s <= last; s++)
        {
            bool known = node.Dirty.TryGetValue(s, out var sector);
            if (!known || (_frozen && sector!.AtCut is null))
            {
                if (mapping is null && range is null)
                {
                    range = new byte[(last - first + 1) * SectorSize];
                    ReadFile(node, first * SectorSize, range);
                }
                var bytes = mapping is not null
                    ? new ReadOnlySpan<byte>(mapping + s * SectorSize, SectorSize).ToArray()
                    : range.AsSpan((int)((s - first) * SectorSize), SectorSize).ToArray();
                if (!known)
                {
                    sector = new Sector(bytes);
                    node.Dirty[s] = sector;
                }
                if (_frozen) sector!.AtCut = bytes;
            }
            if (inFlight) sector!.InFlight++;
            if (unsynced) sector!.Unsynced = true;
            sector!.Poisoned = false;
        }
    }

    /// <summary>Under the lock: a write-through write of <paramref name="data"/> at <paramref name="offset"/> completed (durable unless the power is cut).</summary>
    private void Completed(Node node, long offset, ReadOnlySpan<byte> data, bool succeeded)
    {
        if (data.Length == 0) return;
        long first = offset / SectorSize, last = (offset + data.Length - 1) / SectorSize;
        for (long s = first; s <= last; s++)
        {
            var sector = node.Dirty[s];
            sector.InFlight--;
            if (!succeeded || _frozen) continue;
            long start = Math.Max(offset, s * SectorSize), end = Math.Min(offset + data.Length, (s + 1) * SectorSize);
            data[(int)(start - offset)..(int)(end - offset)].CopyTo(sector.Durable.AsSpan((int)(start - s * SectorSize)));
            if (sector.InFlight == 0 && !sector.Unsynced) node.Dirty.Remove(s); // the file holds exactly the durable bytes
        }
        if (succeeded && !_frozen) node.DurableLength = Math.Max(node.DurableLength, Math.Max(offset + data.Length, CurrentLength(node)));
    }

    /// <summary>An O_DSYNC write or an msync is fdatasync for its range: the file's size is made durable with it (needed to read the data back).</summary>
    private long CurrentLength(Node node)
    {
        var reader = ReaderOf(node);
        return reader is null ? 0 : RandomAccess.GetLength(reader);
    }

    /// <summary>Under the lock: a sync that failed leaves the dirty sectors of the range behind for good (fsyncgate), until they are written again.</summary>
    private void SyncFailed(Node node, long offset, long length)
    {
        foreach (var (s, sector) in node.Dirty)
            if (s * SectorSize < offset + length && (s + 1) * SectorSize > offset && sector.InFlight == 0) sector.Poisoned = true;
    }

    private void LengthChanging(Node node, long currentLength)
    {
        if (_frozen) node.LengthAtCut ??= currentLength;
    }

    // ---- IStorageIo -------------------------------------------------------------------------

    public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share, FileOptions options = FileOptions.None)
    {
        path = Full(path);
        string what = $"open {Rel(path)} ({mode})";
        long n = Begin(IoKind.Open, what, out int errno);
        if (errno != 0) throw Error(errno, what);
        try
        {
            lock (_lock)
            {
                bool existed = File.Exists(path);
                bool governed = Governed(path);
                Node? node = null;
                if (governed && existed)
                {
                    node = Known(path);
                    if (mode is FileMode.Create or FileMode.Truncate)
                    {
                        long length = new FileInfo(path).Length;
                        Track(node, 0, length, null, inFlight: false, unsynced: true);
                        LengthChanging(node, length);
                    }
                }
                var handle = File.OpenHandle(path, mode, access, share, options & ~FileOptions.WriteThrough);
                if (governed && !existed) node = Known(path);
                return new SimFile(this, node, handle, path, (options & FileOptions.WriteThrough) != 0);
            }
        }
        finally
        {
            End(n, IoKind.Open, what);
        }
    }

    public void CreateDirectory(string path)
    {
        path = Full(path);
        string what = $"mkdir {Rel(path)}";
        long n = Begin(IoKind.Open, what, out int errno);
        if (errno != 0) throw Error(errno, what);
        lock (_lock)
        {
            if (!Governed(path) && path != _root)
            {
                Directory.CreateDirectory(path);
            }
            else
            {
                var missing = new Stack<string>();
                for (string p = path; p != _root && !Directory.Exists(p); p = Parent(p)) missing.Push(p);
                while (missing.TryPop(out var dir))
                {
                    Directory.CreateDirectory(dir);
                    _current[dir] = NewNode(true, dir);
                }
            }
        }
        End(n, IoKind.Open, what);
    }

    public void FsyncDirectory(string path)
    {
        path = Full(path);
        string what = $"fsync directory {Rel(path)}";
        long n = Begin(IoKind.Sync, what, out int errno);
        if (errno != 0) throw Error(errno, what);
        lock (_lock)
        {
            if (!_frozen && (path == _root || Governed(path)) && Directory.Exists(path))
            {
                // Entries made outside the model (the lock file and the directory it creates, files
                // FASTER's File device opens) are learnt here: not durable before this sync.
                if (!_current.ContainsKey(path)) _current[path] = NewNode(true, path);
                foreach (var sub in Directory.EnumerateDirectories(path)) if (!_current.ContainsKey(sub)) _current[sub] = NewNode(true, sub);
                foreach (var file in Directory.EnumerateFiles(path)) if (!_current.ContainsKey(file)) _current[file] = NewNode(false, file);
                var entries = new Dictionary<string, Node>(StringComparer.Ordinal);
                foreach (var (p, node) in _current)
                {
                    if (p != _root && Parent(p) == path && (node.IsDirectory ? Directory.Exists(p) : File.Exists(p)))
                        entries[Path.GetFileName(p)] = node;
                }
                _durableEntries[path] = entries;
            }
        }
        End(n, IoKind.Sync, what);
    }

    public void Move(string source, string destination, bool overwrite)
    {
        source = Full(source);
        destination = Full(destination);
        string what = $"rename {Rel(source)} {Rel(destination)}";
        long n = Begin(IoKind.Rename, what, out int errno);
        if (errno != 0) throw Error(errno, what);
        lock (_lock)
        {
            if (overwrite && _current.TryGetValue(destination, out var replaced) && File.Exists(destination)) BuryIfDurable(replaced);
            File.Move(source, destination, overwrite);
            if (_current.Remove(source, out var moved))
            {
                if (_current.TryGetValue(destination, out var old)) old.Path = null;
                moved.Path = destination;
                _current[destination] = moved;
            }
        }
        End(n, IoKind.Rename, what);
    }

    public void Delete(string path)
    {
        path = Full(path);
        string what = $"unlink {Rel(path)}";
        long n = Begin(IoKind.Delete, what, out int errno);
        if (errno != 0) throw Error(errno, what);
        lock (_lock) DeleteLocked(path);
        End(n, IoKind.Delete, what);
    }

    private void DeleteLocked(string path)
    {
        if (_current.TryGetValue(path, out var node) && File.Exists(path)) BuryIfDurable(node);
        File.Delete(path);
        if (_current.Remove(path, out node)) node.Path = null;
    }

    // ---- the File device (through SimulatedDiskDevice) --------------------------------------

    /// <summary>A device write in flight.</summary>
    internal sealed class DeviceWrite
    {
        private readonly object? _node;

        private DeviceWrite(object? node, long offset, int length, long number, string what)
        {
            _node = node;
            Offset = offset;
            Length = length;
            Number = number;
            What = what;
        }

        internal static DeviceWrite For(object? node, long offset, int length, long number, string what) => new(node, offset, length, number, what);

        internal object? Node => _node;
        public long Offset { get; }
        public int Length { get; }
        public long Number { get; }
        public string What { get; }
    }

    /// <summary>FASTER's File device is about to write (write-through) into a segment file: null with the errno when the write fails.</summary>
    public DeviceWrite? BeginDeviceWrite(string path, long offset, int length, out int errno)
    {
        path = Full(path);
        string what = $"device write {Rel(path)} [{offset}, +{length})";
        long n = Begin(IoKind.Write, what, out errno);
        if (errno != 0)
        {
            End(n, IoKind.Write, what);
            return null;
        }
        Node? node = null;
        lock (_lock)
        {
            if (Governed(path))
            {
                node = Known(path);
                long length0 = File.Exists(path) ? new FileInfo(path).Length : 0;
                if (offset + length > length0) LengthChanging(node, length0);
                Track(node, offset, length, null, inFlight: true, unsynced: false);
            }
        }
        return DeviceWrite.For(node, offset, length, n, what);
    }

    /// <summary>The device write completed (<paramref name="succeeded"/>: without error): durable unless the power is cut.</summary>
    public void EndDeviceWrite(DeviceWrite write, IntPtr source, bool succeeded)
    {
        lock (_lock)
        {
            if (write.Node is Node node)
                Completed(node, write.Offset, new ReadOnlySpan<byte>((void*)source, write.Length), succeeded);
        }
        End(write.Number, IoKind.Write, write.What);
    }

    /// <summary>A device read: the errno it fails with, or 0.</summary>
    public int DeviceRead(string path, long offset, long length)
    {
        string what = $"device read {Rel(Full(path))} [{offset}, +{length})";
        long n = Begin(IoKind.Read, what, out int errno);
        End(n, IoKind.Read, what);
        return errno;
    }

    /// <summary>FASTER's File device is about to delete a segment file: false when the removal fails (the file stays).</summary>
    public bool DeviceDelete(string path)
    {
        path = Full(path);
        string what = $"device unlink {Rel(path)}";
        long n = Begin(IoKind.Delete, what, out int errno);
        if (errno == 0)
        {
            lock (_lock)
            {
                if (_current.TryGetValue(path, out var node) && File.Exists(path)) BuryIfDurable(node);
                if (_current.Remove(path, out node)) node.Path = null;
            }
        }
        End(n, IoKind.Delete, what);
        return errno == 0;
    }

    // ---- the file -----------------------------------------------------------------------------

    private sealed class SimFile(SimulatedDisk disk, Node? node, SafeFileHandle handle, string path, bool writeThrough) : IStorageFile
    {
        public string Path { get; } = path;

        public SafeFileHandle Handle { get; } = handle;

        public long GetLength() => RandomAccess.GetLength(Handle);

        public int Read(Span<byte> buffer, long offset)
        {
            string what = $"read {disk.Rel(Path)} [{offset}, +{buffer.Length})";
            long n = disk.Begin(IoKind.Read, what, out int errno);
            if (errno != 0) throw Error(errno, what);
            int read = RandomAccess.Read(Handle, buffer, offset);
            disk.End(n, IoKind.Read, what);
            return read;
        }

        public void Write(ReadOnlySpan<byte> buffer, long offset)
        {
            string what = $"write {disk.Rel(Path)} [{offset}, +{buffer.Length}){(writeThrough ? " O_DSYNC" : "")}";
            long n = disk.Begin(IoKind.Write, what, out int errno);
            if (errno != 0) throw Error(errno, what);
            if (node is not null)
            {
                lock (disk._lock)
                {
                    long length = RandomAccess.GetLength(Handle);
                    if (offset + buffer.Length > length) disk.LengthChanging(node, length);
                    disk.Track(node, offset, buffer.Length, null, inFlight: writeThrough, unsynced: !writeThrough);
                }
            }
            // Outside the lock: a cut meanwhile leaves this write in flight (torn, at sector boundaries).
            RandomAccess.Write(Handle, buffer, offset);
            if (node is not null && writeThrough)
            {
                lock (disk._lock) disk.Completed(node, offset, buffer, succeeded: true);
            }
            disk.End(n, IoKind.Write, what);
        }

        public int Fsync()
        {
            string what = $"fsync {disk.Rel(Path)}";
            long n = disk.Begin(IoKind.Sync, what, out int errno);
            if (errno != 0)
            {
                if (node is not null)
                {
                    lock (disk._lock) disk.SyncFailed(node, 0, long.MaxValue / 2);
                }
                return errno;
            }
            if (node is not null)
            {
                lock (disk._lock)
                {
                    if (!disk._frozen)
                    {
                        foreach (var (s, sector) in node.Dirty.ToArray())
                        {
                            if (sector.InFlight == 0 && !sector.Poisoned) node.Dirty.Remove(s);
                        }
                        node.DurableLength = RandomAccess.GetLength(Handle);
                    }
                }
            }
            disk.End(n, IoKind.Sync, what);
            return 0;
        }

        public int Allocate(long offset, long length)
        {
            string what = $"fallocate {disk.Rel(Path)} [{offset}, +{length})";
            long n = disk.Begin(IoKind.Allocate, what, out int errno);
            if (errno != 0) return errno;
            lock (disk._lock)
            {
                long current = RandomAccess.GetLength(Handle);
                if (node is not null && offset + length > current) disk.LengthChanging(node, current);
                errno = PosixFallocate((int)Handle.DangerousGetHandle(), offset, length);
            }
            disk.End(n, IoKind.Allocate, what);
            return errno;
        }

        public int Truncate(long length)
        {
            string what = $"ftruncate {disk.Rel(Path)} {length}";
            long n = disk.Begin(IoKind.Allocate, what, out int errno);
            if (errno != 0) return errno;
            lock (disk._lock)
            {
                long current = RandomAccess.GetLength(Handle);
                if (node is not null && length != current)
                {
                    if (length < current) disk.Track(node, length, current - length, null, inFlight: false, unsynced: true);
                    disk.LengthChanging(node, current);
                }
                RandomAccess.SetLength(Handle, length);
            }
            disk.End(n, IoKind.Allocate, what);
            return 0;
        }

        public void CopyToMapping(byte* mapping, long offset, byte* source, long length)
        {
            if (node is not null)
            {
                lock (disk._lock) disk.Track(node, offset, length, mapping, inFlight: true, unsynced: false);
            }
            Buffer.MemoryCopy(source, mapping + offset, length, length);
            if (node is not null)
            {
                lock (disk._lock)
                {
                    for (long s = offset / SectorSize; s <= (offset + length - 1) / SectorSize; s++) node.Dirty[s].InFlight--;
                }
            }
        }

        public int Msync(byte* mapping, long offset, long length)
        {
            string what = $"msync {disk.Rel(Path)} [{offset}, +{length})";
            long n = disk.Begin(IoKind.Sync, what, out int errno);
            if (errno != 0)
            {
                if (node is not null)
                {
                    lock (disk._lock) disk.SyncFailed(node, offset, length);
                }
                return errno;
            }
            if (node is not null)
            {
                lock (disk._lock)
                {
                    if (!disk._frozen)
                    {
                        // msync writes back every dirty page of the range; a sector another write is
                        // still copying into stays as it was durable (it may or may not have made it).
                        for (long s = offset / SectorSize; s <= (offset + length - 1) / SectorSize; s++)
                        {
                            if (node.Dirty.TryGetValue(s, out var sector) && sector.InFlight == 0 && !sector.Poisoned) node.Dirty.Remove(s);
                        }
                        node.DurableLength = Math.Max(node.DurableLength, RandomAccess.GetLength(Handle));
                    }
                }
            }
            disk.End(n, IoKind.Sync, what);
            return 0;
        }

        public void Dispose() => Handle.Dispose();
    }

    // ---- after the cut: the durable state ---------------------------------------------------

    /// <summary>
    /// Once the store is closed: cuts the power if that has not happened yet, then replaces
    /// everything under the root by a state the disk could be in after the cut (see
    /// <see cref="CutMode"/>). Single use.
    /// </summary>
    public CutReport Restore(CutMode mode, Random rng)
    {
        lock (_lock)
        {
            if (_restored) throw new InvalidOperationException("Restore runs once.");
            _restored = true;
            CutLocked("at restore");
            var report = new CutReport { Mode = mode, CutOperation = _cutOperation };
            foreach (var node in _nodes) node.Reader?.Dispose();

            // What survives: the directory tree as its synced entries name it, from the root down.
            var files = new Dictionary<string, Node>(StringComparer.Ordinal);
            var dirs = new HashSet<string>(StringComparer.Ordinal) { _root };
            void Walk(string dir)
            {
                if (!_durableEntries.TryGetValue(dir, out var entries)) return;
                foreach (var (name, node) in entries)
                {
                    string p = dir + "/" + name;
                    if (node.IsDirectory)
                    {
                        dirs.Add(p);
                        Walk(p);
                    }
                    else if (node.GravePath is not null || (node.Path is not null && File.Exists(node.Path)))
                    {
                        files[p] = node;
                    }
                }
            }
            Walk(_root);

            // Keep every surviving file's inode, then rebuild the tree from those links.
            var survivors = files.Values.Distinct().ToList();
            foreach (var node in survivors)
            {
                if (node.GravePath is not null) continue;
                if (node.Path is null) throw new InvalidOperationException($"node {node.Id} is durably named but was unlinked without being kept");
                string grave = Path.Combine(_grave, node.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (Link(node.Path, grave) != 0) throw new IOException($"link {node.Path} {grave} failed (errno {Marshal.GetLastPInvokeError()})");
                node.GravePath = grave;
            }
            foreach (var file in Directory.EnumerateFiles(_root, "*", SearchOption.AllDirectories).ToList())
            {
                if (!files.TryGetValue(file, out var node) || node.Path != file)
                {
                    report.FilesVanished++;
                    report.Details.Add($"gone: {Rel(file)}");
                }
                File.Delete(file);
            }
            foreach (var dir in Directory.EnumerateDirectories(_root, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).ToList())
            {
                if (dirs.Contains(dir) || !Directory.Exists(dir)) continue;
                report.DirectoriesVanished++;
                report.Details.Add($"gone: {Rel(dir)}/");
                Directory.Delete(dir, recursive: true);
            }
            foreach (var dir in dirs) Directory.CreateDirectory(dir);
            foreach (var (path, node) in files)
            {
                if (node.Path != path)
                {
                    report.FilesRestoredFromUnlink++;
                    report.Details.Add($"back: {Rel(path)}");
                }
                if (Link(node.GravePath!, path) != 0) throw new IOException($"link {node.GravePath} {path} failed (errno {Marshal.GetLastPInvokeError()})");
            }
            foreach (var node in survivors) ApplyDurableContents(node, mode, rng, report);
            Directory.Delete(_grave, recursive: true);
            return report;
        }
    }

    /// <summary>Writes the chosen contents of every sector written since it was durable, and the chosen length.</summary>
    private void ApplyDurableContents(Node node, CutMode mode, Random rng, CutReport report)
    {
        using var file = File.OpenHandle(node.GravePath!, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        long real = RandomAccess.GetLength(file);
        long atCut = node.LengthAtCut ?? real;
        long durable = node.DurableLength;
        long length = mode switch
        {
            CutMode.Old => durable,
            CutMode.New or CutMode.ZeroedTails => atCut,
            _ => rng.Next(2) == 0 ? durable : atCut,
        };
        if (length != real)
        {
            report.FilesCut++;
            report.Details.Add($"length {Rel(node.Path ?? node.GravePath!)}: {real} -> {length} (durable {durable}, at the cut {atCut})");
        }
        // The bytes at the cut of sectors written after it, and of every sector past the durable
        // length, are needed before the file is cut or written.
        var current = new byte[SectorSize];
        bool pageOld = false;
        long page = -1;
        foreach (var (s, sector) in node.Dirty.OrderBy(p => p.Key))
        {
            long offset = s * SectorSize;
            if (offset >= length) continue;
            byte[] newBytes;
            if (sector.AtCut is not null)
            {
                newBytes = sector.AtCut;
            }
            else
            {
                Array.Clear(current);
                RandomAccess.Read(file, current, offset);
                newBytes = (byte[])current.Clone();
            }
            byte[] oldBytes = offset >= durable ? new byte[SectorSize] : sector.Durable;
            if (oldBytes.AsSpan().SequenceEqual(newBytes))
            {
                // Nothing to choose; but the file may hold a write made after the cut.
                if (sector.AtCut is not null) RandomAccess.Write(file, oldBytes.AsSpan(0, (int)Math.Min(SectorSize, length - offset)), offset);
                continue;
            }
            byte[] chosen;
            switch (mode)
            {
                case CutMode.Old:
                    chosen = oldBytes;
                    break;
                case CutMode.New:
                    chosen = newBytes;
                    break;
                case CutMode.MixedPages:
                    if (offset / PageSize != page)
                    {
                        page = offset / PageSize;
                        pageOld = rng.Next(2) == 0;
                    }
                    chosen = pageOld ? oldBytes : newBytes;
                    break;
                case CutMode.ZeroedTails when offset >= durable:
                    chosen = new byte[SectorSize];
                    break;
                case CutMode.Torn when rng.Next(4) == 0:
                    chosen = (byte[])oldBytes.Clone();
                    if (rng.Next(2) == 0)
                    {
                        Array.Clear(chosen);
                    }
                    else
                    {
                        int cut = rng.Next(1, SectorSize);
                        newBytes.AsSpan(0, cut).CopyTo(chosen);
                    }
                    break;
                default:
                    chosen = rng.Next(2) == 0 ? oldBytes : newBytes;
                    break;
            }
            if (ReferenceEquals(chosen, oldBytes)) report.SectorsOld++;
            else if (ReferenceEquals(chosen, newBytes)) report.SectorsNew++;
            else if (!chosen.AsSpan().ContainsAnyExcept((byte)0)) report.SectorsZeroed++;
            else report.SectorsTorn++;
            RandomAccess.Write(file, chosen.AsSpan(0, (int)Math.Min(SectorSize, length - offset)), offset);
        }
        if (length != real) RandomAccess.SetLength(file, length);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var node in _nodes) node.Reader?.Dispose();
        }
        try
        {
            if (Directory.Exists(_grave)) Directory.Delete(_grave, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenFd(string path, int flags);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string oldPath, string newPath);

    /// <summary>Returns the error number itself.</summary>
    [LibraryImport("libc", EntryPoint = "posix_fallocate")]
    private static partial int PosixFallocate(int fd, long offset, long length);
}
