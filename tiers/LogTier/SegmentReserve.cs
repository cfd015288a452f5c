namespace Tmem.LogTier;

/// <summary>
/// Keeps the log's space reserve: the segment file after the tail's is allocated (created,
/// <c>posix_fallocate</c>d to the whole segment, fsync'd with its directory entry) before the
/// log needs it, so that a full disk shows up as a failed allocation one segment ahead
/// (<see cref="StorageState.Full"/>) rather than as a failed write of acknowledged-to-be data.
/// While the reserve is missing the store admits only what the rest of the allocated segments
/// can hold: flushes and refusals (small records), never new pages; it retries the allocation
/// every second and on every segment the tail enters, and is healthy again once it succeeds.
/// <para>
/// Both devices write into a file allocated here: the mapped device finds it full-size and maps
/// it; FASTER's file device opens it with <c>OpenOrCreate</c> and writes into allocated blocks.
/// A failed allocation truncates a file it created back to zero bytes instead of deleting it:
/// a device may have opened it meanwhile (the tail reached it), and writes into a deleted file
/// would be lost. A zero-length file past the tail holds nothing and is read as absent data.
/// </para>
/// </summary>
internal sealed partial class SegmentReserve : IDisposable
{
    private const int RetryIntervalMs = 1000;

    private readonly string _baseName;
    private readonly string _directory;
    private readonly int _segmentSizeBits;
    private readonly StorageHealth _health;
    private readonly SemaphoreSlim _signal = new(0);
    private readonly CancellationTokenSource _stop = new();
    private long _allocatedThrough = -1; // the highest segment known allocated (by this process)
    private long _wanted;                // the highest segment that should be allocated
    private Task? _loop;

    public SegmentReserve(string baseName, int segmentSizeBits, StorageHealth health)
    {
        _baseName = baseName;
        _directory = Path.GetDirectoryName(Path.GetFullPath(baseName))!;
        _segmentSizeBits = segmentSizeBits;
        _health = health;
    }

    /// <summary>The file operations it goes through (<see cref="IStorageIo"/>).</summary>
    internal IStorageIo Io { get; init; } = NativeStorageIo.Instance;

    /// <summary>
    /// Allocates the segment after <paramref name="tailAddress"/>'s now (a full disk leaves the
    /// store <see cref="StorageState.Full"/>, not a failed open), then keeps doing so in the
    /// background. Called once recovery has checked the files: the reserve only ever creates
    /// segments past the tail's, so it never stands in for a missing or short file below it.
    /// </summary>
    public void Start(long tailAddress)
    {
        _allocatedThrough = tailAddress >> _segmentSizeBits;
        _wanted = _allocatedThrough + 1;
        AllocateWanted();
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>On the append path (cheap): the tail is at <paramref name="tailAddress"/>; wake the allocator when it entered a new segment.</summary>
    public void TailMovedTo(long tailAddress)
    {
        long wanted = (tailAddress >> _segmentSizeBits) + 1;
        long current = Volatile.Read(ref _wanted);
        if (wanted <= current) return;
        if (Interlocked.CompareExchange(ref _wanted, wanted, current) == current) _signal.Release();
    }

    private async Task LoopAsync()
    {
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                // Woken by the tail, or every second while the reserve is missing (the disk may have room again).
                bool missing = Volatile.Read(ref _allocatedThrough) < Volatile.Read(ref _wanted);
                await _signal.WaitAsync(missing ? RetryIntervalMs : Timeout.Infinite, token).ConfigureAwait(false);
                AllocateWanted();
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    private void AllocateWanted()
    {
        long wanted = Volatile.Read(ref _wanted);
        for (long segment = Volatile.Read(ref _allocatedThrough) + 1; segment <= wanted; segment++)
        {
            if (_stop.IsCancellationRequested) return;
            if (TryAllocate(segment, out string? error))
            {
                Volatile.Write(ref _allocatedThrough, segment);
                continue;
            }
            _health.SetReserveMissing(error);
            return;
        }
        _health.SetReserveMissing(null);
    }

    /// <summary>Creates (or opens) the segment file and allocates it whole; false with the reason when the disk refuses.</summary>
    private bool TryAllocate(long segment, out string? error)
    {
        error = null;
        string path = $"{_baseName}.{segment}";
        IStorageFile handle;
        bool created;
        try
        {
            created = !File.Exists(path);
            handle = Io.Open(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"creating log segment file {path} for the space reserve failed ({e.Message})";
            return false;
        }
        using (handle)
        {
            long size = 1L << _segmentSizeBits;
            long length = handle.GetLength();
            if (length > size) return true; // another segment size: the device refuses it on use
            int errno = handle.Allocate(0, size);
            // fsync even when the file is already whole: the attempt that allocated it may have
            // failed in its fsync, and a failed fsync is not retried as if it had succeeded.
            if (errno == 0) errno = handle.Fsync();
            if (errno != 0)
            {
                // Give the blocks back (see the class remarks for why the file stays).
                if (created || length == 0) handle.Truncate(0);
                error = $"allocating {size} bytes for log segment file {path} failed ({RetryingDevice.Describe((uint)errno)}): the disk of the data directory is full or failing";
                return false;
            }
        }
        // The directory entry every time, not only when this call created the file: an earlier
        // attempt may have created it and failed (in the allocation, or in this very sync), and
        // a retry that skipped the sync left a name that a power cut takes away, with every page
        // the log then acknowledged in the file.
        try
        {
            Io.FsyncDirectory(_directory);
        }
        catch (IOException e)
        {
            error = e.Message;
            return false;
        }
        return true;
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _loop?.Wait();
        }
        catch (AggregateException)
        {
        }
        _stop.Dispose();
        _signal.Dispose();
    }
}
