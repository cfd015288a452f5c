using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace Tmem.LogTier;

/// <summary>Reads mapped log bytes for <see cref="MappedLogDevice.TryRead{TState, TResult}"/>; the span is valid only during the call.</summary>
internal delegate TResult MappedReader<TState, TResult>(ReadOnlySpan<byte> bytes, TState state)
    where TState : allows ref struct;

/// <summary>
/// A FASTER <see cref="IDevice"/> over preallocated, memory-mapped segment files, plus a direct
/// read path (<see cref="TryRead{TState, TResult}"/>, <see cref="TryAcquire"/>) that hands the
/// store the committed bytes straight from the mapping, without FasterLog's read machinery or a copy.
/// <para>
/// <b>File layout</b> is <see cref="ManagedLocalStorageDevice"/>'s: segment <c>N</c> is the file
/// <c>{baseName}.N</c>, and the byte at log address <c>A</c> is at offset
/// <c>A &amp; (segmentSize - 1)</c> of segment <c>A &gt;&gt; log2(segmentSize)</c>. The only
/// difference on disk is that every segment file this device touches is allocated to the full
/// segment size (zeros past the data), which is also what FASTER's own <c>preallocateFile: true</c>
/// produces; so a data directory can switch between the two devices across restarts.
/// </para>
/// <para>
/// <b>Preallocation.</b> A segment file is created on the first write into it and
/// <c>posix_fallocate</c>d to the whole segment before it is mapped, so a full disk fails that write
/// (with ENOSPC to FASTER) instead of raising SIGBUS on a page fault in the mapping later; an
/// existing, shorter file (written by <see cref="ManagedLocalStorageDevice"/> without
/// preallocation) is extended the same way when first opened. A new file and its directory entry
/// are fsync'd before the first write into it completes.
/// </para>
/// <para>
/// <b>Durability.</b> A write copies into the shared mapping and then calls
/// <c>msync(MS_SYNC)</c> on exactly the touched range, rounded out to OS pages; only then is
/// FASTER's callback invoked. On Linux, <c>msync(MS_SYNC)</c> of a shared file mapping is
/// <c>vfs_fsync_range(file, range, datasync: 1)</c>: it writes back the dirty pages of the range,
/// waits for them (including writeback someone else started), and commits the metadata needed
/// to read them back (the unwritten-to-written extent conversion of the fallocated blocks; the
/// file size never changes after creation) plus a device cache flush: the guarantee of
/// <c>fdatasync</c> for those bytes, which is what <see cref="ManagedLocalStorageDevice"/>'s
/// <c>WriteThrough</c> (O_SYNC/O_DSYNC) writes give. A completed write is therefore as durable
/// as with FASTER's own device, so FasterLog's commit (which writes its metadata only after the
/// data writes complete) keeps its meaning.
/// </para>
/// <para>
/// <b>Completion.</b> Writes complete off-thread (a thread-pool work item copies, msyncs and
/// calls back), like <see cref="ManagedLocalStorageDevice"/>: FASTER issues page flushes from
/// whichever thread drains its epoch, often an enqueuing thread inside the store's bucket lock,
/// and an inline msync stalls it for the disk's latency. Measured (64 writers, group commit,
/// 4 MiB pages, ext4 on virtio, 2 shared cores): with inline completion 64-103 of ~40k Enqueue
/// calls per 3 s run took over 1 ms, the longest 44-113 ms; off-thread 2-3 did, the longest
/// 2-4 ms; throughput differed by less than the (large) run-to-run noise. Reads complete
/// inline: they are a copy from the page cache and every FASTER read path waits for them anyway.
/// </para>
/// <para>
/// <b>Lifetime.</b> Every access to a segment's mapping (FASTER's reads and writes, direct reads)
/// holds a reference on the segment (one interlocked increment and decrement, no lock). Removal
/// (FASTER's truncation, <see cref="Reset"/>, <see cref="Dispose"/>) first unpublishes the
/// segment and marks it closed, then waits for the references to drain before it unmaps; an
/// accessor that increments after the mark sees it and backs out (Dekker-style: both sides
/// write, fence, then read the other's flag). Deleting a mapped file is fine on Linux; only the
/// munmap has to wait. Slots change only under <see cref="_lock"/>, which the fast path never takes.
/// </para>
/// <para>
/// Linux only (<c>msync</c>, <c>posix_fallocate</c>). An I/O error while faulting in a page of an
/// existing file, or another process truncating a mapped file, raises SIGBUS: the price of reading
/// from a mapping, which the store accepts for its own data directory.
/// </para>
/// </summary>
internal sealed unsafe partial class MappedLogDevice : StorageDeviceBase
{
    /// <summary>The sector size FASTER aligns to: what <see cref="ManagedLocalStorageDevice"/> reports on Linux, so FasterLog issues identical I/O.</summary>
    public const uint DeviceSectorSize = 512;

    private const int Einval = 22;
    private const int Efbig = 27;
    private const int Eio = 5;

    private readonly long _segmentSize;
    private readonly int _segmentSizeBits;
    private readonly long _pageMask;
    private readonly string _directory;
    private readonly bool _completeWritesInline;
    private readonly Lock _lock = new();
    private Segment?[] _segments = new Segment?[16];
    private bool _disposed;

    /// <summary>Creates the device; no file is touched until a segment is first read or written.</summary>
    /// <param name="baseName">Path prefix of the segment files, as given to <see cref="Devices.CreateLogDevice"/>.</param>
    /// <param name="segmentSize">Segment size: a power of two, equal to FasterLog's <c>1 &lt;&lt; SegmentSizeBits</c>.</param>
    /// <param name="capacity">As for FASTER's devices: oldest segments are truncated past it.</param>
    /// <param name="completeWritesInline">Copy, msync and call back on the calling thread (for measurement; see the class remarks).</param>
    public MappedLogDevice(string baseName, long segmentSize, long capacity = Devices.CAPACITY_UNSPECIFIED, bool completeWritesInline = false)
        : base(baseName, DeviceSectorSize, capacity)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("MappedLogDevice needs Linux (msync, posix_fallocate).");
        if (segmentSize < Environment.SystemPageSize || (segmentSize & (segmentSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(segmentSize), segmentSize, "The segment size must be a power of two of at least one OS page.");
        _segmentSize = segmentSize;
        _segmentSizeBits = System.Numerics.BitOperations.Log2((ulong)segmentSize);
        _pageMask = Environment.SystemPageSize - 1;
        _completeWritesInline = completeWritesInline;
        _directory = Path.GetDirectoryName(Path.GetFullPath(baseName)) ?? throw new ArgumentException("The base name has no directory.", nameof(baseName));
        Directory.CreateDirectory(_directory);
        Initialize(segmentSize); // usable (direct reads, device tests) before FasterLog initializes it again with its epoch
    }

    /// <summary>The file operations it goes through (<see cref="IStorageIo"/>); the system calls unless a test sets another.</summary>
    internal IStorageIo Io { get; init; } = NativeStorageIo.Instance;

    /// <inheritdoc/>
    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        if (segmentSize != _segmentSize)
            throw new FasterException($"MappedLogDevice was created for {_segmentSize}-byte segments, but the log uses {segmentSize}-byte segments (SegmentSizeBits).");
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    /// <inheritdoc/>
    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        HandleCapacity(segmentId);
        if (_completeWritesInline)
        {
            uint error = Write(sourceAddress, segmentId, destinationAddress, numBytesToWrite);
            callback(error, error == 0 ? numBytesToWrite : 0, context);
            return;
        }
        ThreadPool.UnsafeQueueUserWorkItem(new WriteOperation(this, sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context), preferLocal: false);
    }

    /// <summary>
    /// Copies from the mapping and completes inline. Past the segment's end, or for a segment
    /// with no file, the destination is zero-filled and <paramref name="callback"/> gets error 0
    /// with fewer (or no) bytes, as <see cref="ManagedLocalStorageDevice"/> reports a short or
    /// missing file (it reads 0 bytes from the empty file its OpenOrCreate leaves behind; this
    /// device creates no file, so a missing segment stays visibly missing).
    /// </summary>
    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
    {
        uint error = 0, read = 0;
        try
        {
            var destination = new Span<byte>((void*)destinationAddress, checked((int)readLength));
            long available = sourceAddress < (ulong)_segmentSize ? _segmentSize - (long)sourceAddress : 0;
            int openError = 0;
            var segment = available > 0 ? Acquire(segmentId, create: false, out openError) : null;
            if (segment is null && openError == 0 && available > 0)
            {
                read = ReadShort(segmentId, (long)sourceAddress, destination[..(int)Math.Min(readLength, available)]);
                destination[(int)read..].Clear();
            }
            else if (segment is null)
            {
                destination.Clear();
                error = (uint)openError;
            }
            else
            {
                try
                {
                    read = (uint)Math.Min(readLength, available);
                    new ReadOnlySpan<byte>(segment.Pointer + sourceAddress, (int)read).CopyTo(destination);
                    destination[(int)read..].Clear();
                }
                finally
                {
                    segment.Release();
                }
            }
        }
        catch (Exception e)
        {
            error = ErrorCode(e);
            read = 0;
        }
        callback(error, read, context);
    }

    /// <summary>
    /// Reads from a segment file that is not mapped because it is shorter than a segment (or
    /// missing: 0 bytes): the bytes the file has, as FASTER's own device would read them.
    /// </summary>
    private uint ReadShort(int segmentId, long offset, Span<byte> destination)
    {
        string path = SegmentPath(segmentId);
        if (!File.Exists(path)) return 0;
        using var file = Io.Open(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        int total = 0;
        while (total < destination.Length)
        {
            int n = file.Read(destination[total..], offset + total);
            if (n == 0) break;
            total += n;
        }
        return (uint)total;
    }

    /// <inheritdoc/>
    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        RemoveSegment(segment);
        callback(result);
    }

    /// <summary>
    /// Unpublishes the segment, deletes its file, then waits for accessors (direct readers) still
    /// inside it and unmaps it. A missing segment is a no-op, as for FASTER's devices.
    /// </summary>
    public override void RemoveSegment(int segment)
    {
        Segment? removed;
        lock (_lock)
        {
            removed = Unpublish(segment);
            // Under the lock, so a concurrent first access cannot reopen the file being removed.
            try
            {
                Io.Delete(SegmentPath(segment));
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        removed?.Close();
    }

    /// <summary>Unmaps every segment (files stay); they are reopened on their next access. For FASTER's log reset, which runs quiesced.</summary>
    public override void Reset()
    {
        foreach (var segment in UnpublishAll(dispose: false)) segment.Close();
    }

    /// <summary>Unmaps every segment and closes its file, after the accessors inside drain. Later accesses fail (FASTER gets an error code, direct reads false). Idempotent.</summary>
    public override void Dispose()
    {
        foreach (var segment in UnpublishAll(dispose: true)) segment.Close();
    }

    /// <summary>
    /// Runs <paramref name="reader"/> over the <paramref name="length"/> mapped bytes at
    /// <paramref name="logAddress"/>, which the caller knows to be committed (or at least flushed).
    /// The segment cannot be unmapped while the reader runs. Returns false, without running it,
    /// when the address's segment is gone (truncated, or the device disposed): the caller retries
    /// its lookup. The range must lie within one segment (a FasterLog entry never spans a page).
    /// </summary>
    public bool TryRead<TState, TResult>(long logAddress, int length, TState state, MappedReader<TState, TResult> reader, out TResult result)
        where TState : allows ref struct
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (!TryAcquire(logAddress, length, out var read))
        {
            result = default!;
            return false;
        }
        using (read)
            result = reader(read.Bytes, state);
        return true;
    }

    /// <summary>
    /// <see cref="TryRead{TState, TResult}"/> for the FasterLog entry whose header is at
    /// <paramref name="entryAddress"/> (the address <see cref="FasterLog.Enqueue(ReadOnlySpan{byte})"/>
    /// returned): the reader gets the entry's payload, whose length is taken from the header.
    /// Throws <see cref="InvalidDataException"/> when the header's length cannot be an entry's
    /// (the address is not a committed entry's).
    /// </summary>
    public bool TryReadEntry<TState, TResult>(long entryAddress, TState state, MappedReader<TState, TResult> reader, out TResult result)
        where TState : allows ref struct
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (!TryAcquire(entryAddress, LogFraming.EntryHeaderSize, out var read))
        {
            result = default!;
            return false;
        }
        using (read)
        {
            int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(read.Bytes);
            long offset = (entryAddress & (_segmentSize - 1)) + LogFraming.EntryHeaderSize;
            if (length < 0 || length > _segmentSize - offset)
                throw new InvalidDataException($"The FasterLog entry header at log address {entryAddress} holds length {length}: not a committed entry.");
            result = reader(new ReadOnlySpan<byte>(read.Segment!.Pointer + offset, length), state);
        }
        return true;
    }

    /// <summary>
    /// Low-level form of <see cref="TryRead{TState, TResult}"/>: on true, <paramref name="read"/>
    /// pins the segment until it is disposed, which must happen exactly once and soon (removal of
    /// the segment waits for it). Prefer <c>using var</c>.
    /// </summary>
    public bool TryAcquire(long logAddress, int length, out MappedRead read)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(logAddress);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long offset = logAddress & (_segmentSize - 1);
        if (length > _segmentSize - offset)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"{length} bytes at log address {logAddress} cross the end of a {_segmentSize}-byte segment.");
        long segmentId = logAddress >> _segmentSizeBits;
        if (segmentId > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(logAddress), logAddress, "The log address is past the last segment.");
        var segment = Acquire((int)segmentId, create: false, out int openError);
        if (segment is null)
        {
            if (openError != 0)
                throw new IOException($"Opening segment file {SegmentPath((int)segmentId)} for a direct read failed (errno {openError}).");
            read = default;
            return false;
        }
        read = new MappedRead(segment, new ReadOnlySpan<byte>(segment.Pointer + offset, length));
        return true;
    }

    /// <summary>A pinned range of a mapped segment; see <see cref="TryAcquire"/>.</summary>
    public readonly ref struct MappedRead
    {
        internal MappedRead(Segment segment, ReadOnlySpan<byte> bytes)
        {
            Segment = segment;
            Bytes = bytes;
        }

        internal Segment? Segment { get; }

        /// <summary>The mapped bytes; valid until <see cref="Dispose"/>.</summary>
        public ReadOnlySpan<byte> Bytes { get; }

        /// <summary>Lets the segment be unmapped again.</summary>
        public void Dispose() => Segment?.Release();
    }

    private string SegmentPath(int segmentId) => GetSegmentFilename(FileName, segmentId);

    private uint Write(IntPtr source, int segmentId, ulong destinationAddress, uint length)
    {
        try
        {
            if (destinationAddress > (ulong)_segmentSize || length > (ulong)_segmentSize - destinationAddress) return Einval;
            var segment = Acquire(segmentId, create: true, out int openError);
            if (segment is null) return openError != 0 ? (uint)openError : Eio;
            try
            {
                if (length == 0) return 0;
                long offset = (long)destinationAddress;
                segment.File.CopyToMapping(segment.Pointer, offset, (byte*)source, length);
                // msync wants a page-aligned start; the length it rounds up itself.
                long start = offset & ~_pageMask;
                return (uint)segment.File.Msync(segment.Pointer, start, offset + length - start);
            }
            finally
            {
                segment.Release();
            }
        }
        catch (Exception e)
        {
            return ErrorCode(e);
        }
    }

    /// <summary>
    /// The segment with a reference taken, opening (or with <paramref name="create"/>, creating)
    /// its file on first access; null when it has no file (<paramref name="openError"/> 0) or
    /// could not be opened (<paramref name="openError"/> its errno), or the device is disposed.
    /// </summary>
    private Segment? Acquire(int segmentId, bool create, out int openError)
    {
        openError = 0;
        var segments = Volatile.Read(ref _segments);
        if ((uint)segmentId < (uint)segments.Length)
        {
            var segment = Volatile.Read(ref segments[segmentId]);
            if (segment is not null && segment.TryAddRef()) return segment;
        }
        lock (_lock)
        {
            if (_disposed) return null;
            segments = _segments;
            if (segmentId >= segments.Length)
            {
                Array.Resize(ref segments, Math.Max(segmentId + 1, segments.Length * 2));
                Volatile.Write(ref _segments, segments);
            }
            var segment = segments[segmentId];
            if (segment is null || !segment.TryAddRef())
            {
                // Not open (or closed by Reset, or being removed: then its file is gone by now).
                segment = Open(segmentId, create, out openError);
                if (segment is null) return null;
                segment.TryAddRef();
                Volatile.Write(ref segments[segmentId], segment);
            }
            return segment;
        }
    }

    /// <summary>
    /// Opens and maps a segment file, allocated to the full segment size; null with
    /// <paramref name="error"/> 0 when it has no file and <paramref name="create"/> is false, or
    /// with the errno (<see cref="uint.MaxValue"/> when unknown) when it fails. Under <see cref="_lock"/>.
    /// </summary>
    private Segment? Open(int segmentId, bool create, out int error)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        error = 0;
        string path = SegmentPath(segmentId);
        bool exists = File.Exists(path);
        if (!exists && !create) return null;
        IStorageFile? handle = null;
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            handle = Io.Open(path, exists ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            long length = handle.GetLength();
            if (length > _segmentSize)
            {
                error = Efbig;
                throw new IOException($"Segment file {path} is {length} bytes, longer than the log's {_segmentSize}-byte segments: it was written with another segment size.");
            }
            if (exists && !create && length < _segmentSize)
            {
                // A short file (FASTER's own device grows files as it writes) is not extended for a
                // read: that would change a directory that is only being read (or refused as
                // damaged), and zeros past a truncation would look like page padding. Reads of it
                // go through pread (ReadShort) until a write maps it.
                handle.Dispose();
                return null;
            }
            // Real block allocation (glibc falls back to writing zeros where the file system cannot
            // fallocate): a full disk fails here, with ENOSPC, not as SIGBUS in a mapped write.
            if (length < _segmentSize && (error = handle.Allocate(0, _segmentSize)) != 0)
                throw new IOException($"Allocating {_segmentSize} bytes for segment file {path} failed (errno {error}).");
            if (!exists || length < _segmentSize)
            {
                // The new file's size and its directory entry are durable before any data written
                // into it is acknowledged (msync's datasync covers data, not the name).
                if ((error = handle.Fsync()) != 0)
                    throw new IOException($"fsync of new segment file {path} failed (errno {error}).");
                if (!exists) Io.FsyncDirectory(_directory);
            }
            map = MemoryMappedFile.CreateFromFile(handle.Handle, null, _segmentSize, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: true);
            view = map.CreateViewAccessor(0, _segmentSize, MemoryMappedFileAccess.ReadWrite);
            return new Segment(handle, map, view);
        }
        catch (Exception e)
        {
            view?.Dispose();
            map?.Dispose();
            handle?.Dispose();
            if (!exists && handle is not null)
            {
                try
                {
                    Io.Delete(path); // no half-allocated segment left behind for the next attempt
                }
                catch (IOException)
                {
                }
            }
            if (error == 0) error = unchecked((int)ErrorCode(e));
            return null;
        }
    }

    /// <summary>Under <see cref="_lock"/>: empties the segment's slot; returns what it held, for the caller to close.</summary>
    private Segment? Unpublish(int segmentId)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        var segments = _segments;
        if ((uint)segmentId >= (uint)segments.Length) return null;
        var segment = segments[segmentId];
        Volatile.Write(ref segments[segmentId], null);
        return segment;
    }

    private List<Segment> UnpublishAll(bool dispose)
    {
        var all = new List<Segment>();
        lock (_lock)
        {
            if (_disposed) return all;
            if (dispose) _disposed = true;
            for (int i = 0; i < _segments.Length; i++)
                if (Unpublish(i) is { } segment) all.Add(segment);
        }
        return all;
    }

    private static uint ErrorCode(Exception e) =>
        e is IOException { HResult: > 0 and < 4096 } io ? (uint)io.HResult : uint.MaxValue;

    /// <summary>One mapped segment file and the count of accessors inside it.</summary>
    internal sealed class Segment
    {
        private readonly MemoryMappedFile _map;
        private readonly MemoryMappedViewAccessor _view;
        private int _references;
        private int _closed;

        public Segment(IStorageFile file, MemoryMappedFile map, MemoryMappedViewAccessor view)
        {
            File = file;
            _map = map;
            _view = view;
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            Pointer = pointer + view.PointerOffset;
        }

        /// <summary>The mapping's first byte (segment offset 0); valid while a reference is held.</summary>
        public byte* Pointer { get; }

        /// <summary>The mapped file (writes into the mapping and their msync go through it).</summary>
        public IStorageFile File { get; }

        /// <summary>Takes a reference unless the segment is closing.</summary>
        public bool TryAddRef()
        {
            Interlocked.Increment(ref _references); // a full fence: the read of _closed below cannot move above it
            if (Volatile.Read(ref _closed) == 0) return true;
            Interlocked.Decrement(ref _references);
            return false;
        }

        public void Release() => Interlocked.Decrement(ref _references);

        /// <summary>Marks the segment closing, waits for the references taken before the mark, and unmaps. Once, by whoever unpublished it.</summary>
        public void Close()
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0) return; // the exchange is the fence before reading _references
            var spinner = new SpinWait();
            while (Volatile.Read(ref _references) != 0) spinner.SpinOnce();
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _map.Dispose();
            File.Dispose();
        }
    }

    /// <summary>A write run on the thread pool: copy, msync, call back.</summary>
    private sealed class WriteOperation(MappedLogDevice device, IntPtr source, int segmentId, ulong destination, uint length, DeviceIOCompletionCallback callback, object context)
        : IThreadPoolWorkItem
    {
        public void Execute()
        {
            uint error = device.Write(source, segmentId, destination, length);
            callback(error, error == 0 ? length : 0, context);
        }
    }
}
