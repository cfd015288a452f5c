using FASTER.core;
using Tmem.Diagnostics;

namespace Tmem.LogTier;

/// <summary>
/// The persistent tier's log: a FASTER <see cref="FasterLog"/> in <c>DATA/log/</c> (segment files)
/// with its commit metadata in <c>DATA/commits/</c> (<see cref="LogCommitFile"/>). This type opens
/// and lays out the log, appends, truncates and closes it; the other jobs have types of their own:
/// <list type="bullet">
/// <item><see cref="LogFraming"/>: FasterLog's on-disk framing (entry sizes, page padding);</item>
/// <item><see cref="CommitPolicy"/>: the commit loop, by <see cref="DurabilityMode"/> (Strict group
/// commit, <see cref="GroupCommitPolicy"/>; Relaxed interval commit, <see cref="IntervalCommitPolicy"/>);</item>
/// <item><see cref="CommitWaiters"/>: everyone waiting for a commit, and the NotDurable timeout;</item>
/// <item><see cref="AppendBackpressure"/>: appenders wait for the device outside their locks;</item>
/// <item><see cref="LogRecordReader"/>: single records read back (mapped or through FasterLog);</item>
/// <item><see cref="LogScanner"/>: the committed log scanned in order, with its integrity checks;</item>
/// <item><see cref="CommittedMarkerFile"/>: the marker of a log that ever committed data;</item>
/// <item><see cref="SegmentReserve"/>, <see cref="RetryingDevice"/>, <see cref="StorageHealth"/>:
/// a full or failing disk.</item>
/// </list>
/// </summary>
internal sealed class PersistentLog : IDisposable
{

    /// <summary>FasterLog's in-memory log buffer, in bits: 16 MiB.</summary>
    internal const int MemorySizeBits = 24;

    /// <summary>FasterLog's in-memory log buffer in bytes.</summary>
    internal const long MemorySize = 1L << MemorySizeBits;

    private readonly FasterLog _log;
    private readonly IDevice _device;
    private readonly LogCommitFile _commits;
    private readonly StorageHealth _health;
    private readonly SegmentReserve _reserve;
    private readonly string _logDirectory;
    private readonly int _segmentSizeBits;
    private readonly CommittedMarkerFile _marker;
    private readonly CommitWaiters _waiters;
    private readonly CommitPolicy _policy;
    private readonly bool _strict;
    private readonly AppendBackpressure _backpressure;
    private readonly LogRecordReader _reader;
    private readonly LogScanner _scanner;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _committer;
    private readonly Task _watchdog;

    private PersistentLog(FasterLog log, IDevice device, MappedLogDevice? mapped, LogCommitFile commits, StorageHealth health, SegmentReserve reserve,
        string logDirectory, int segmentSizeBits, bool everCommitted, TmemOptions options)
    {
        _log = log;
        _device = device;
        _commits = commits;
        _health = health;
        _reserve = reserve;
        _logDirectory = logDirectory;
        _segmentSizeBits = segmentSizeBits;
        Diagnostics = options.Diagnostics;
        Io = NativeStorageIo.For(options);
        _marker = new CommittedMarkerFile(logDirectory, everCommitted) { Io = Io };
        _waiters = new CommitWaiters(log, health, options.DurabilityTimeoutMs);
        _policy = CommitPolicy.For(options.Durability, options.CommitIntervalMs, log, _waiters, AfterCommit, Diagnostics);
        commits.Written = _policy.CommitWritten;
        _strict = _policy.Mode == DurabilityMode.Strict;
        _backpressure = new AppendBackpressure(log, _waiters, _policy, health);
        _reader = new LogRecordReader(log, mapped, Diagnostics, health);
        _scanner = new LogScanner(log, logDirectory, segmentSizeBits);
        var token = _stop.Token;
        // Relaxed's loop starts a thread of its own (IntervalCommitPolicy.RunAsync); Strict's awaits on the pool.
        _committer = _strict ? Task.Run(() => _policy.RunAsync(token)) : _policy.RunAsync(token);
        _watchdog = Task.Run(() => _waiters.RunWatchdogAsync(token));
    }

    /// <summary>
    /// Recovery finished: from now on the segment after the tail's is kept allocated ahead of the
    /// log (<see cref="SegmentReserve"/>). Not before, so that a store refused as damaged changes
    /// nothing and no allocated file can hide a missing or short one below the commit point.
    /// </summary>
    public void StartReserve() => _reserve.Start(_log.TailAddress);

    /// <summary>The state of the log's storage (full, failing), shared with its devices and reserve.</summary>
    public StorageHealth Health => _health;

    /// <summary>The store's test and benchmark hooks (<see cref="TmemOptions.Diagnostics"/>); null in production.</summary>
    internal StoreDiagnostics? Diagnostics { get; }

    /// <summary>The file operations of the store's own files (<see cref="IStorageIo"/>; checkpoints are written through it too).</summary>
    internal IStorageIo Io { get; }

    /// <summary><see cref="LogFraming.EntrySize"/>.</summary>
    public static int EntrySize(int payloadLength) => LogFraming.EntrySize(payloadLength);

    /// <summary><see cref="LogFraming.EntrySizeOfRecord"/>.</summary>
    public static int EntrySizeOfRecord(int recordLength) => LogFraming.EntrySizeOfRecord(recordLength);

    public long BeginAddress => _log.BeginAddress;

    public long TailAddress => _log.TailAddress;

    public long CommittedUntilAddress => _log.CommittedUntilAddress;

    /// <summary>
    /// Opens the log in <paramref name="dataDirectory"/> and recovers it explicitly, so errors
    /// surface (FasterLog's <c>TryRecoverLatest</c> swallows them and hands back an empty log).
    /// FasterLog still falls back to an empty log when no commit metadata can be read; that is
    /// refused here when the directory holds commit files or segment data.
    /// </summary>
    public static PersistentLog Open(string dataDirectory, TmemOptions options)
    {
        string logDir = Path.Combine(dataDirectory, DataLayout.LogFolder);
        string commitDir = Path.Combine(dataDirectory, DataLayout.CommitFolder);
        var io = NativeStorageIo.For(options);
        // Every open makes the directory's skeleton durable before anything is acknowledged, whatever
        // created it (the lock file creates DATA) and whatever an earlier open that failed half-way left
        // unsynced: DATA's entry in its parent, the format file, log/ and commits/ in DATA
        // (IStorageIo.CreateDirectoryDurably), and below, the commit file in commits/.
        io.CreateDirectoryDurably(dataDirectory);
        var format = DataFormat.OpenOrCreate(dataDirectory, logDir, options.LogSegmentSizeBytes, io);
        io.CreateDirectoryDurably(logDir);
        io.CreateDirectoryDurably(commitDir);
        bool hadSegments = Directory.EnumerateFiles(logDir).Any(f => new FileInfo(f).Length > 0);

        string baseName = Path.Combine(logDir, DataLayout.SegmentBaseName);
        var health = new StorageHealth();
        var mapped = options.LogDevice == LogDeviceKind.Mapped ? new MappedLogDevice(baseName, format.SegmentSize) { Io = io } : null;
        IDevice inner = mapped ?? Devices.CreateLogDevice(baseName, preallocateFile: false, deleteOnClose: false);
        if (options.Diagnostics?.WrapLogDevice is { } wrap) inner = wrap(inner);
        // FasterLog sees no failed write: they are retried below it (see RetryingDevice).
        IDevice device = new RetryingDevice(inner, health);
        FasterLog? log = null;
        LogCommitFile? commits = null;
        SegmentReserve? reserve = null;
        try
        {
            commits = new LogCommitFile(commitDir, create: !hadSegments, io) { Health = health };
            io.FsyncDirectory(commitDir);
            log = new FasterLog(new FasterLogSettings
            {
                LogDevice = device,
                PageSizeBits = LogFraming.LogPageSizeBits,
                MemorySizeBits = MemorySizeBits,
                SegmentSizeBits = format.SegmentSizeBits,
                LogCommitManager = commits,
                TryRecoverLatest = false,
            });
            log.Recover();
            // Segment data with nothing committed: either the process died before the log's first
            // commit (nothing was acknowledged, and FASTER writes over it), or the commit metadata
            // was lost; the marker written after the first commit tells them apart.
            bool everCommitted = CommittedMarkerFile.ExistsIn(logDir);
            if (hadSegments && everCommitted && log.CommittedUntilAddress <= log.BeginAddress)
                throw new TmemCorruptionException(0,
                    $"The log in {dataDirectory} has segment data but FASTER recovered no committed data: its commit metadata in {commitDir} is missing or unreadable. " +
                    "Nothing was changed; inspect the directory with the offline recovery tool before opening it.");
            // The space reserve (started once recovery has checked the files; see StartReserve).
            reserve = new SegmentReserve(baseName, format.SegmentSizeBits, health) { Io = io };
            return new PersistentLog(log, device, mapped, commits, health, reserve, logDir, format.SegmentSizeBits, everCommitted, options);
        }
        catch
        {
            reserve?.Dispose();
            log?.Dispose();
            commits?.Dispose();
            device.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Called by appenders before they take a bucket lock: while more than half of the log's
    /// memory buffer is unflushed, sleeps (see <see cref="AppendBackpressure"/>).
    /// </summary>
    public void WaitForRoom() => _backpressure.WaitForRoom();

    /// <summary>Whether an appender would have to wait for room now.</summary>
    public bool IsBacklogged => _backpressure.IsBacklogged;

    /// <summary>
    /// <see cref="WaitForRoom"/> for async callers: waits without holding a thread, so the
    /// thread pool keeps the threads that complete the device writes being waited for.
    /// </summary>
    public ValueTask WaitForRoomAsync() => _backpressure.WaitForRoomAsync();

    /// <summary>Appends a record (in memory; see <see cref="WaitDurableAsync"/>). Returns its address.</summary>
    public long Append(ReadOnlySpan<byte> record)
    {
        ObjectDisposedException.ThrowIf(_waiters.IsClosed, this);
        long address = _log.Enqueue(record);
        _policy.Appended();
        _reserve.TailMovedTo(address + record.Length);
        return address;
    }

    /// <summary>
    /// Strict mode: <paramref name="recordAddress"/> if that record is not committed yet (a get that
    /// saw its page must wait for the commit before it answers, so that no reader sees a state
    /// a crash could undo); else 0.
    /// </summary>
    public long UncommittedAddress(long recordAddress) =>
        _strict && recordAddress >= _log.CommittedUntilAddress ? recordAddress : 0;

    /// <summary>
    /// Completes when the record at <paramref name="address"/> is as durable as the mode promises:
    /// committed in Strict mode, appended (already true) in Relaxed mode.
    /// </summary>
    public ValueTask WaitDurableAsync(long address) =>
        !_strict ? ValueTask.CompletedTask : WaitCommittedAsync(address);

    /// <summary><see cref="WaitDurableAsync"/>, blocking: for the synchronous API.</summary>
    public void WaitDurable(long address) => Block(WaitDurableAsync(address));

    /// <summary><see cref="WaitCommittedAsync"/>, blocking.</summary>
    public void WaitCommitted(long address) => Block(WaitCommittedAsync(address));

    private static void Block(ValueTask wait)
    {
        if (!wait.IsCompletedSuccessfully) wait.AsTask().GetAwaiter().GetResult();
    }

    /// <summary>
    /// For an operation that changed nothing but observed the state (a flush that found no
    /// page): the address to wait for so that what it observed is durable, i.e. everything
    /// appended so far; 0 when all of it is committed or the mode is Relaxed.
    /// </summary>
    public long ObservedStateAddress()
    {
        if (!_strict) return 0;
        long tail = _log.TailAddress;
        return tail > _log.CommittedUntilAddress ? tail - 1 : 0;
    }

    /// <summary>Whether the store acknowledges only committed operations.</summary>
    public bool IsStrict => _strict;

    /// <summary>
    /// Reads the record at <paramref name="address"/> (of <paramref name="length"/> bytes) back from
    /// the log, waiting first for its commit if needed (FasterLog reads committed data only), and
    /// hands it to <paramref name="decode"/>, whose result comes back in <paramref name="error"/>.
    /// Returns false when the address is below the log's begin address (compaction truncated it
    /// after moving the record: the caller looks the page up again). Blocks; used for gets of
    /// spilled pages (see <see cref="LogRecordReader"/>).
    /// </summary>
    public bool TryReadRecord<TState>(long address, int length, Span<byte> destination, TState state, RecordDecoder<TState> decode, out string? error)
    {
        if (_log.CommittedUntilAddress <= address) WaitCommitted(address);
        return _reader.TryRead(address, length, destination, state, decode, out error);
    }

    /// <summary>Waits until everything below <paramref name="address"/> + 1 is committed, whatever the mode.</summary>
    public ValueTask WaitCommittedAsync(long address)
    {
        if (_waiters.TryAdd(address, this, out var wait)) _policy.RequestCommit();
        return wait;
    }

    /// <summary>
    /// Completes once everything appended before the call is committed, starting the commit at
    /// once in either mode (Relaxed does not wait for its interval).
    /// </summary>
    public ValueTask CommitSoonAsync()
    {
        long tail = _log.TailAddress;
        if (tail <= _log.CommittedUntilAddress) return ValueTask.CompletedTask;
        if (_waiters.TryAdd(tail - 1, this, out var wait)) _policy.CommitSoon();
        return wait;
    }

    /// <summary>
    /// Asks the commit loop for a commit without waiting for it: for records whose durability
    /// nobody awaits (an exclusive get's removal). Relaxed mode commits on its interval anyway.
    /// </summary>
    public void RequestCommit() => _policy.RequestCommit();

    /// <summary>
    /// Committed records from <paramref name="from"/> (at least the begin address) to
    /// <paramref name="until"/> (at most the commit point), in order: (address, bytes), each a copy.
    /// For callers that block or append while they go (compaction). Damage is thrown as for
    /// <see cref="ForEachCommitted"/> (see <see cref="LogScanner"/>).
    /// </summary>
    public IEnumerable<(long Address, byte[] Entry)> ScanCommitted(long from = 0, long until = long.MaxValue) =>
        _scanner.ScanCommitted(from, until);

    /// <summary>
    /// Recovery's scan: visits every committed record from <paramref name="from"/> in order, straight
    /// from FasterLog's buffers (no copy per record). The visitor must not block or append to the
    /// log: it runs under FASTER's epoch protection. Throws <see cref="TmemCorruptionException"/>
    /// when segment files under the commit point are missing, or the records end before it
    /// (see <see cref="LogScanner"/>). Returns the records visited.
    /// </summary>
    public long ForEachCommitted<TState>(long from, EntryVisitor<TState> visit, TState state) =>
        _scanner.ForEachCommitted(from, visit, state);

    /// <summary>Bytes of the segment files on disk: the log's, and the space reserve's (segments past the tail's).</summary>
    public (long Log, long Reserve) DiskBytes()
    {
        // Files past the tail's segment are the space reserve (allocated ahead, no data yet).
        long tailSegment = _log.TailAddress >> _segmentSizeBits;
        long log = 0, reserve = 0;
        try
        {
            foreach (var file in new DirectoryInfo(_logDirectory).EnumerateFiles(DataLayout.SegmentBaseName + ".*"))
            {
                if (long.TryParse(file.Extension.AsSpan(1), out long segment) && segment > tailSegment) reserve += file.Length;
                else log += file.Length;
            }
        }
        catch (IOException)
        {
            // A segment deleted (truncation) or the directory removed while counting: a counter
            // read must not throw (the meter calls this); the next read is exact again.
        }
        return (log, reserve);
    }

    /// <summary>
    /// Moves the log's begin address to <paramref name="address"/> (a record boundary, committed)
    /// and commits that, after which FASTER deletes the segment files wholly below it. Returns
    /// once the commit holding the new begin address is durable; the files go shortly after.
    /// </summary>
    public async Task TruncateUntilAsync(long address, CancellationToken cancellationToken)
    {
        if (address > _log.CommittedUntilAddress)
            throw new InvalidOperationException($"Truncating the log until {address}, above its commit point {_log.CommittedUntilAddress}.");
        _log.TruncateUntil(address);
        await _log.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Called on the commit loop after each commit; must be quick and must not wait for a commit.</summary>
    public Action? Committed { get; set; }

    /// <summary>Bytes per segment file.</summary>
    public long SegmentSize => 1L << _segmentSizeBits;

    /// <summary>After a commit: the first one with data leaves the marker (once); then <see cref="Committed"/>.</summary>
    private void AfterCommit()
    {
        try
        {
            _marker.WriteOnce(_log);
        }
        catch (IOException)
        {
            // A full disk may refuse the marker's directory entry: tried again after the next commit.
        }
        try
        {
            Committed?.Invoke();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The store's after-commit work (starting a log compaction) must never end the commit
            // loop: every later Strict acknowledgement would wait for ever. It tries again after
            // the next commit; a failing compaction counts its own failures.
        }
    }

    /// <summary>Stops the commit loop, commits what was appended, and closes the log.</summary>
    public void Dispose() => Close(commit: true);

    /// <summary>
    /// Closes the log without a last commit: for a store whose recovery failed, so that refusing
    /// a damaged directory changes nothing in it (a commit would record what recovery read).
    /// </summary>
    public void Abandon() => Close(commit: false);

    private void Close(bool commit)
    {
        if (!_waiters.Close()) return;
        _stop.Cancel();
        try
        {
            Task.WaitAll(_committer, _watchdog);
        }
        catch (AggregateException)
        {
        }
        _reserve.Dispose();
        if (commit && FinalCommit())
        {
            try
            {
                _marker.WriteOnce(_log);
            }
            catch (IOException)
            {
                // The commit is in the commit file; the marker only helps a later diagnosis.
            }
        }
        // Whatever the final commit did not cover is not durable, and never will be now.
        _health.Closing = true;
        _waiters.Complete(_log.CommittedUntilAddress);
        _waiters.Fail(_waiters.NotDurable());
        _log.Dispose();
        _commits.Dispose(); // FasterLog disposes only a commit manager it made itself
        _device.Dispose();
        _stop.Dispose();
    }

    /// <summary>
    /// Commits what was appended (Relaxed mode's last window, records nobody waited for). While the
    /// storage fails this is bounded: after <see cref="TmemOptions.DurabilityTimeoutMs"/> the retry
    /// loops give up (<see cref="StorageHealth.Closing"/>) and the uncommitted tail is left, as a
    /// crash would leave it: nothing acknowledged in Strict mode is in it. True when it committed.
    /// </summary>
    private bool FinalCommit()
    {
        if (_log.TailAddress <= _log.CommittedUntilAddress) return true;
        var timeout = _waiters.DurabilityTimeout;
        try
        {
            var commit = _log.CommitAsync().AsTask();
            if (!commit.Wait(timeout))
            {
                _health.Closing = true;
                commit.Wait(TimeSpan.FromSeconds(2)); // a retry backs off at most 1 s, then hands FASTER the error
            }
            return commit.IsCompletedSuccessfully && _log.CommittedUntilAddress >= _log.TailAddress;
        }
        catch (Exception e) when (e is AggregateException or CommitFailureException or IOException)
        {
            return false;
        }
    }
}
