using System.Collections.Concurrent;
using System.Diagnostics;
using Tmem.Diagnostics;
using Tmem.LogTier;
using Tmem.RamTier;
using Tmem.RemoteTier;
using Tmem.Translation;

namespace Tmem;

/// <summary>
/// A tmem store: clients, their pools (translation), the compressed RAM tier and, with a data
/// directory, the persistent log under it. Thread-safe.
/// <para>
/// Ephemeral pages live in the RAM tier and are evicted when it is full. Persistent pages of a
/// memory-only store live there too and are never evicted (a put fails when the budget is full
/// of them); in a durable store they are written through to the log, whose copy lets eviction
/// drop their RAM copy, and they come back after a restart. docs/architecture.md shows the parts.
/// </para>
/// </summary>
public sealed partial class TmemStore : IDisposable, IAsyncDisposable
{
    private readonly TmemOptions _options;
    private readonly ConcurrentDictionary<int, TmemClient> _clients = new();
    private readonly Lock _poolLock = new();
    private readonly Dictionary<Guid, Pool> _sharedPools = new();
    private readonly StoreCounters _counters = new();
    private readonly CompressedRamTier _ram;
    private readonly StoreContext _context;
    private readonly TmemMeter _meter;
    private readonly IDisposable? _directoryLock;
    private readonly Dictionary<int, Pool> _persistentPools = new(); // by serial; durable stores only
    private int _poolsBeingDestroyed; // under _poolLock: between a last member's Destroy and the departure record
    private int _poolSerial;
    private long _livePools;
    private volatile bool _disposed;
    private volatile bool _recovered; // durable stores: replay finished
    private readonly DateTime _openedAt = DateTime.UtcNow;

    private readonly Durability.Checkpointer? _checkpointer; // durable stores
    private readonly Durability.LogCompactor? _compactor;    // durable stores

    private TmemStore(TmemOptions options, PersistentLog? log, IDisposable? directoryLock)
    {
        _options = options;
        Log = log;
        if (log is not null)
        {
            _checkpointer = new Durability.Checkpointer(this, log, options.DataDirectory!);
            _compactor = new Durability.LogCompactor(this, log, _checkpointer, options, _counters, options.Diagnostics);
            log.Committed = _compactor.MaybeStart;
        }
        _directoryLock = directoryLock;
        // Evicted ephemeral pages go to the remote tier when it is on; persistent pages never do.
        Remote = options.RemoteTier is { Enabled: true } remote && options.RemotePageStoreFactory is { } factory
            ? new RemoteBacking(remote, factory(remote), _counters)
            : null;
        _ram = new CompressedRamTier(options, _counters, log is null ? null : new LogBacking(log, _counters), Remote);
        _context = new StoreContext(options, _ram, _counters, log, Remote);
        _meter = new TmemMeter(this);
    }

    /// <summary>The persistent log of a durable store; null for a memory-only store.</summary>
    internal PersistentLog? Log { get; }

    /// <summary>The remote tier for evicted ephemeral pages; null when it is off.</summary>
    internal RemoteBacking? Remote { get; }

    /// <summary>
    /// The remote tier's state (see <see cref="RemoteTierState"/>), with when it began and the last
    /// failure; <see cref="RemoteTierState.Off"/> without one. The service logs its changes. The
    /// tier leaves a degraded state by itself once the cluster answers again.
    /// </summary>
    public RemoteTierStatus RemoteTier => Remote?.Status ?? new RemoteTierStatus(RemoteTierState.Off, _openedAt, null);

    /// <summary>The test and benchmark hooks it was opened with (<see cref="TmemOptions.Diagnostics"/>); null in production.</summary>
    internal StoreDiagnostics? Diagnostics => _options.Diagnostics;

    /// <summary>The settings the store was opened with (a copy; changing it has no effect).</summary>
    public TmemOptions Options => _options.Clone();

    /// <summary>
    /// Opens a store. Without <see cref="TmemOptions.DataDirectory"/> it is memory-only and empty:
    /// its persistent pools last as long as the process. With one, it is durable: the directory
    /// is locked, its log recovered and replayed, and every persistent pool comes back under its
    /// client and pool ids (ephemeral pools do not); <see cref="Open(TmemOptions, out RecoveryReport)"/>
    /// also says what recovery did.
    /// </summary>
    /// <exception cref="ArgumentException">A bad setting, named with its allowed range.</exception>
    /// <exception cref="IOException">The data directory is in use by another process.</exception>
    /// <exception cref="TmemCorruptionException">Damaged data below the log's commit point (nothing was changed).</exception>
    public static TmemStore Open(TmemOptions? options = null) => Open(options, out _);

    /// <summary>
    /// <see cref="Open(TmemOptions)"/>, reporting what recovery did: for a memory-only store an
    /// empty report (<see cref="RecoveryReport.DataDirectory"/> null).
    /// </summary>
    /// <exception cref="ArgumentException">A bad setting, named with its allowed range.</exception>
    /// <exception cref="IOException">The data directory is in use by another process.</exception>
    /// <exception cref="TmemCorruptionException">Damaged data below the log's commit point (nothing was changed).</exception>
    public static TmemStore Open(TmemOptions? options, out RecoveryReport report)
    {
        // A private copy: changing the caller's object later must not bypass validation.
        options = options?.Clone() ?? new TmemOptions();
        options.Validate();
        if (options.DataDirectory is not null) return Durability.StoreRecovery.Open(options, out report);
        report = new RecoveryReport { DataDirectory = null };
        return new TmemStore(options, null, null);
    }

    /// <summary>Recovery: a store over an opened log, empty until the log is replayed into it.</summary>
    internal static TmemStore CreateDurable(TmemOptions options, PersistentLog log, IDisposable directoryLock) =>
        new(options.Clone(), log, directoryLock);

    /// <summary>Blocks until the record at <paramref name="logAddress"/> is durable (per the mode).</summary>
    internal void WaitDurable(long logAddress) => Log!.WaitDurable(logAddress);

    /// <summary>The client with this id (created on first use).</summary>
    public TmemClient GetClient(int clientId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(clientId);
        ThrowIfDisposed();
        return _clients.GetOrAdd(clientId, static (id, store) => new TmemClient(store, id, store._options.MaxPoolsPerClient), this);
    }

    /// <summary>A snapshot of every counter.</summary>
    public TmemStats GetStats()
    {
        var disk = Log?.DiskBytes() ?? default;
        return new()
        {
        FlushTotal = Volatile.Read(ref _counters.FlushTotal),
        FlushFound = Volatile.Read(ref _counters.FlushFound),
        FlobjTotal = Volatile.Read(ref _counters.FlobjTotal),
        FlobjFound = Volatile.Read(ref _counters.FlobjFound),
        FailedEphPuts = Volatile.Read(ref _counters.FailedEphPuts),
        FailedPersPuts = Volatile.Read(ref _counters.FailedPersPuts),
        CompressPoor = Volatile.Read(ref _counters.CompressPoor),
        MeanCompressPoor = Volatile.Read(ref _counters.MeanCompressPoor),
        PersLimitRefused = Volatile.Read(ref _counters.PersLimitRefused),
        ZeroFilledPages = Volatile.Read(ref _counters.ZeroFilledPages),
        EvictedEphPages = Volatile.Read(ref _counters.EvictedEphPages),
        EphPages = Volatile.Read(ref _counters.EphPages),
        PersPages = Volatile.Read(ref _counters.PersPages),
        EphZbytes = Volatile.Read(ref _counters.EphZbytes),
        PersZbytes = Volatile.Read(ref _counters.PersZbytes),
        PersSpilledPages = Volatile.Read(ref _counters.PersSpilledPages),
        RamBudgetBytes = _ram.BudgetBytes,
        RamSlotBytes = _ram.SlotBytes,
        RamSlabBytes = _ram.SlabBytes,
        SlabCompactedPages = Volatile.Read(ref _counters.SlabCompactedPages),
        ReclaimFailures = Volatile.Read(ref _counters.ReclaimFailures),
        Pools = Volatile.Read(ref _livePools),
        LogBytes = Log is null ? 0 : Log.TailAddress - Log.BeginAddress,
        LogDiskBytes = disk.Log,
        LogReserveBytes = disk.Reserve,
        LogLiveBytes = Volatile.Read(ref _counters.PersLogBytes),
        LogCompactions = Volatile.Read(ref _counters.LogCompactions),
        LogCompactionCopiedBytes = Volatile.Read(ref _counters.LogCompactionCopiedBytes),
        LogTruncatedBytes = Volatile.Read(ref _counters.LogTruncatedBytes),
        LogCompactionFailures = Volatile.Read(ref _counters.LogCompactionFailures),
        StorageState = (long)(Log?.Health.State ?? StorageState.Healthy),
        StorageFullRefused = Volatile.Read(ref _counters.StorageFullRefused),
        StorageFailures = Log is null ? 0 : Volatile.Read(ref Log.Health.Failures),
        NotDurable = Log is null ? 0 : Volatile.Read(ref Log.Health.NotDurableAnswers),
        RemoteState = (long)(Remote?.Status.State ?? RemoteTierState.Off),
        RemotePages = Volatile.Read(ref _counters.RemotePages),
        RemoteBytes = Volatile.Read(ref _counters.RemoteBytes),
        RemoteQueueBytes = Volatile.Read(ref _counters.RemoteQueueBytes),
        RemoteWrites = Volatile.Read(ref _counters.RemoteWrites),
        RemoteWriteDrops = Volatile.Read(ref _counters.RemoteWriteDrops),
        RemoteWriteFailures = Volatile.Read(ref _counters.RemoteWriteFailures),
        RemoteHits = Volatile.Read(ref _counters.RemoteHits),
        RemoteQueueHits = Volatile.Read(ref _counters.RemoteQueueHits),
        RemoteMisses = Volatile.Read(ref _counters.RemoteMisses),
        RemoteMismatches = Volatile.Read(ref _counters.RemoteMismatches),
        RemoteTimeouts = Volatile.Read(ref _counters.RemoteTimeouts),
        RemoteFailures = Volatile.Read(ref _counters.RemoteFailures),
        RemoteEvictedPages = Volatile.Read(ref _counters.RemoteEvictedPages),
        };
    }

    /// <summary>
    /// Whether the store evicts ahead of demand by itself now: <see cref="TmemOptions.BackgroundReclaim"/>
    /// on and the current budget 8 MiB or more.
    /// </summary>
    public bool ReclaimsAhead => _ram.ReclaimAhead;

    /// <summary>
    /// The state of the data directory's storage (see <see cref="StorageState"/>), with when it
    /// began and the last failure; always healthy for a memory-only store. The service logs its
    /// changes. The store leaves a degraded state by itself once the disk allows.
    /// </summary>
    public StorageStatus Storage => Log?.Health.Snapshot() ?? new StorageStatus(StorageState.Healthy, _openedAt, null);

    /// <summary>
    /// Runs slab compaction passes (at most <paramref name="maxPasses"/>) until one moves nothing:
    /// sparse slabs are emptied into other slabs of their size class and released. Puts start a
    /// pass on their own when fragmentation passes <see cref="TmemOptions.SlabCompactionThreshold"/>;
    /// this is for a background reclaim loop and for tests. Returns pages moved.
    /// </summary>
    public int CompactSlabs(int maxPasses = 4)
    {
        ThrowIfDisposed();
        int moved = 0;
        for (int i = 0; i < maxPasses; i++)
        {
            int step = _ram.CompactSlabs();
            if (step == 0) break;
            moved += step;
        }
        return moved;
    }

    /// <summary>For tests: returns once no background reclaim pass is queued or running (one starts again only on a put).</summary>
    internal void WaitForBackgroundReclaim() => _ram.WaitForReclaimPass();

    /// <summary>
    /// Durable stores: writes an index checkpoint (every persistent pool, its members, and where
    /// each page's record is in the log), so the next open replays only what comes after it.
    /// Persistent operations pause while the index is copied (every bucket lock of every
    /// persistent pool is held for that copy, which is what makes it consistent with one log
    /// address); the file is then written atomically once the log is committed that far.
    /// Called on disposal and by the service's checkpoint loop. Returns the pages it lists.
    /// </summary>
    /// <exception cref="InvalidOperationException">A memory-only store, or one whose recovery has not finished.</exception>
    /// <exception cref="IOException">The checkpoint could not be written (the storage is full or failing); the log stays authoritative.</exception>
    public long Checkpoint()
    {
        ThrowIfDisposed();
        var checkpointer = _checkpointer ?? throw new InvalidOperationException("A memory-only store (no DataDirectory) has no checkpoint.");
        if (!_recovered) throw new InvalidOperationException("The store's recovery has not finished.");
        return checkpointer.Write();
    }

    /// <summary>
    /// Log compaction: compacts the persistent log now when it is due (its live fraction under
    /// <see cref="TmemOptions.LogCompactionLiveFraction"/>), or always with
    /// <paramref name="force"/>. Returns null when it was not due. Durable stores start
    /// compactions on their own after commits; this is for tools, the service and tests. One
    /// compaction runs at a time, and checkpoints wait for it.
    /// </summary>
    /// <exception cref="InvalidOperationException">A memory-only store, or one whose recovery has not finished.</exception>
    /// <exception cref="TmemCorruptionException">A damaged record below the commit point; nothing was truncated.</exception>
    /// <exception cref="IOException">The storage is full or failing; nothing was truncated.</exception>
    public LogCompactionResult? CompactLog(bool force = false, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        var compactor = _compactor ?? throw new InvalidOperationException("A memory-only store (no DataDirectory) has no log to compact.");
        if (!_recovered) throw new InvalidOperationException("The store's recovery has not finished.");
        return compactor.Compact(force, cancellationToken);
    }

    /// <summary>The error that stopped the last background log compaction, or null; the service logs it.</summary>
    public Exception? LastLogCompactionError => _compactor?.LastError;

    /// <summary>Durability module: the store's pool lock (persistent records are appended under it or a bucket lock).</summary>
    internal Lock PoolLock => _poolLock;

    /// <summary>Durability module, under <see cref="PoolLock"/>: pools whose pages are being removed and whose departure is not logged yet (a checkpoint waits for none).</summary>
    internal int PoolsBeingDestroyedLocked => _poolsBeingDestroyed;

    /// <summary>Durability module, under <see cref="PoolLock"/>: the live persistent pools.</summary>
    internal IReadOnlyCollection<Pool> PersistentPoolsLocked()
    {
        Debug.Assert(_poolLock.IsHeldByCurrentThread);
        return _persistentPools.Values;
    }

    /// <summary>Durability module, under <see cref="PoolLock"/>: the highest pool serial handed out.</summary>
    internal int PoolSerialLocked
    {
        get
        {
            Debug.Assert(_poolLock.IsHeldByCurrentThread);
            return _poolSerial;
        }
    }

    /// <summary>Replay finished (the index is complete).</summary>
    internal bool IsRecovered => _recovered;

    /// <summary>Disposal has begun.</summary>
    internal bool IsClosing => _disposed;

    /// <summary>Recovery finished: the store's index is complete and may be checkpointed.</summary>
    internal void MarkRecovered()
    {
        _recovered = true;
        Log?.StartReserve();
    }

    /// <summary>Recovery from a checkpoint: pool serials continue after the checkpoint's.</summary>
    internal void RaisePoolSerial(int serial)
    {
        lock (_poolLock) _poolSerial = Math.Max(_poolSerial, serial);
    }

    /// <summary>
    /// Creates or joins a pool in memory and logs it; <paramref name="logAddress"/> is the record
    /// the caller waits to be durable before handing the id out (0 when nothing was logged).
    /// </summary>
    internal Pool CreateOrJoinPool(PoolOptions options, int clientId, int poolId, out long logAddress)
    {
        logAddress = 0;
        Pool pool;
        lock (_poolLock)
        {
            ThrowIfDisposed();
            if (options.SharedUuid is { } uuid && _sharedPools.TryGetValue(uuid, out var existing))
            {
                if (!existing.Matches(options))
                    throw new TmemException(TmemError.SharedPoolMismatch,
                        $"Shared pool {uuid} is {existing.Kind} with {existing.PageSize}-byte pages, exclusive gets {(existing.ExclusiveGets && existing.Kind == PoolKind.Persistent ? "on" : "off")} and store incompressible {(existing.StoreIncompressible ? "on" : "off")}; the request asked for {options.Kind}, {options.PageSize}-byte pages, exclusive gets {(options.ExclusiveGets ? "on" : "off")}, store incompressible {(options.StoreIncompressible ? "on" : "off")}.");
                existing.Members++;
                pool = existing;
                logAddress = AppendPoolRecord(LogRecordType.PoolJoin, pool, clientId, poolId);
            }
            else
            {
                pool = new Pool(++_poolSerial, options, _context);
                if (options.SharedUuid is { } newUuid) _sharedPools.Add(newUuid, pool);
                _livePools++;
                logAddress = AppendPoolRecord(LogRecordType.PoolCreate, pool, clientId, poolId);
            }
        }
        return pool;
    }

    /// <summary>
    /// A member leaves a pool; the pool goes with its last member. With <paramref name="durable"/>
    /// (a client's DestroyPool) a persistent pool of a durable store logs the departure and
    /// returns once it is durable; store disposal passes false and logs nothing.
    /// </summary>
    internal void LeavePool(Pool pool, int clientId, int poolId, bool durable)
    {
        bool last;
        lock (_poolLock)
        {
            last = --pool.Members == 0;
            if (last)
            {
                if (pool.SharedUuid is { } uuid) _sharedPools.Remove(uuid);
                _livePools--;
                if (pool.Kind == PoolKind.Persistent) _poolsBeingDestroyed++;
            }
        }
        // Destroy first: every operation in flight on the pool finishes (its record precedes the
        // departure in the log) or fails; then the departure is logged. In between, the pool's
        // pages are gone from memory but not from the log: a checkpoint waits
        // (PoolsBeingDestroyedLocked), or it would list the pool without the pages the log still
        // holds at its address, and a power cut before the departure is durable would leave the
        // pool with none of its acknowledged pages.
        if (last) pool.Destroy();
        if (last && durable) Diagnostics?.PoolDestroyedHook?.Invoke();
        long logAddress = 0;
        lock (_poolLock)
        {
            if (last && pool.Kind == PoolKind.Persistent) _poolsBeingDestroyed--;
            if (durable) logAddress = AppendPoolRecord(LogRecordType.PoolLeave, pool, clientId, poolId);
            if (last) _persistentPools.Remove(pool.Serial);
        }
        if (logAddress != 0) WaitDurable(logAddress);
    }

    /// <summary>Under the pool lock: logs a persistent pool's membership change (0 when not logged).</summary>
    private long AppendPoolRecord(LogRecordType type, Pool pool, int clientId, int poolId)
    {
        Debug.Assert(_poolLock.IsHeldByCurrentThread);
        if (Log is null || pool.Kind != PoolKind.Persistent) return 0;
        if (type == LogRecordType.PoolCreate) _persistentPools[pool.Serial] = pool;
        if (type == LogRecordType.PoolLeave) pool.LoggedMembers.Remove((clientId, poolId));
        else pool.LoggedMembers.Add((clientId, poolId));
        Span<byte> record = stackalloc byte[LogRecord.SizeOf(PoolRecord.Size)];
        Span<byte> payload = stackalloc byte[PoolRecord.Size];
        new PoolRecord(clientId, poolId, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, pool.StoreIncompressible).Write(payload);
        LogRecord.Write(record, type, LogRecordFlags.None, (uint)pool.Serial, default, 0, payload);
        return Log.Append(record);
    }

    /// <summary>Recovery: re-creates a persistent pool under its serial, mapped for its first member.</summary>
    /// <remarks>
    /// A <paramref name="restated"/> create (from a compaction base record) of a pool that is already
    /// live only checks that it agrees, or adds the member if it is missing.
    /// </remarks>
    internal void RestorePool(uint serial, in PoolRecord record, bool restated = false)
    {
        var options = new PoolOptions { Kind = PoolKind.Persistent, PageSize = record.PageSize, ExclusiveGets = record.ExclusiveGets, SharedUuid = record.SharedUuid, StoreIncompressible = record.StoreIncompressible };
        options.Validate();
        lock (_poolLock)
        {
            if (restated && _persistentPools.TryGetValue((int)serial, out var live))
            {
                if (!live.Matches(options) || live.SharedUuid != record.SharedUuid)
                    throw new InvalidDataException($"the compaction base restates pool serial {serial}, which does not match the live pool of that serial");
                if (!live.LoggedMembers.Contains((record.ClientId, record.PoolId))) RestoreJoin(serial, record);
                return;
            }
            if (_persistentPools.ContainsKey((int)serial))
                throw new InvalidDataException($"pool serial {serial} is created twice");
            if (record.SharedUuid is { } uuid && _sharedPools.ContainsKey(uuid))
                throw new InvalidDataException($"shared pool {uuid} is created while it exists");
            var pool = new Pool((int)serial, options, _context);
            GetClient(record.ClientId).RestorePool(record.PoolId, pool);
            pool.LoggedMembers.Add((record.ClientId, record.PoolId));
            _persistentPools.Add((int)serial, pool);
            if (record.SharedUuid is { } shared) _sharedPools.Add(shared, pool);
            _poolSerial = Math.Max(_poolSerial, (int)serial);
            _livePools++;
        }
    }

    /// <summary>Recovery: a client joins a recovered shared pool.</summary>
    internal void RestoreJoin(uint serial, in PoolRecord record, bool restated = false)
    {
        lock (_poolLock)
        {
            var pool = RestoredPool(serial);
            if (restated && pool.LoggedMembers.Contains((record.ClientId, record.PoolId))) return;
            GetClient(record.ClientId).RestorePool(record.PoolId, pool);
            pool.LoggedMembers.Add((record.ClientId, record.PoolId));
            pool.Members++;
        }
    }

    /// <summary>Recovery: a member leaves; the pool goes with its last member.</summary>
    internal void RestoreLeave(uint serial, in PoolRecord record)
    {
        Pool pool;
        lock (_poolLock)
        {
            pool = RestoredPool(serial);
            if (!ReferenceEquals(GetClient(record.ClientId).ForgetPool(record.PoolId), pool))
                throw new InvalidDataException($"client {record.ClientId} leaves pool id {record.PoolId}, which is not pool serial {serial}");
            pool.LoggedMembers.Remove((record.ClientId, record.PoolId));
        }
        LeavePool(pool, record.ClientId, record.PoolId, durable: false);
    }

    /// <summary>Recovery: the live persistent pool with this serial.</summary>
    internal Pool RestoredPool(uint serial)
    {
        lock (_poolLock)
        {
            return _persistentPools.TryGetValue((int)serial, out var pool)
                ? pool
                : throw new InvalidDataException($"pool serial {serial} is not a live persistent pool here");
        }
    }

    internal void ThrowIfDisposed()
    {
        if (_disposed) ThrowHelper.ThrowDisposed();
    }

    /// <summary>
    /// <see cref="Dispose"/> without blocking the caller's thread: the checkpoint and the last
    /// commit of a durable store run on the thread pool (<c>await using var store = TmemStore.Open(...)</c>).
    /// </summary>
    public ValueTask DisposeAsync() => _disposed ? ValueTask.CompletedTask : new ValueTask(Task.Run(Dispose));

    /// <summary>
    /// Closes the store: every pool is dropped from memory (after operations in flight on them
    /// finish) and the RAM tier is freed. A durable store commits its log first and logs no
    /// destruction, so its persistent pools come back on the next open.
    /// </summary>
    public void Dispose()
    {
        lock (_poolLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _compactor?.Stop();
        // A checkpoint on the way out makes the next open fast. It is only an index over the log,
        // which stays authoritative: if writing it fails, the next open replays the whole log.
        // Never for a store whose recovery did not finish: its index is incomplete.
        if (Log is not null && _recovered)
        {
            try
            {
                _checkpointer!.Write();
            }
            catch (IOException)
            {
            }
        }
        foreach (var client in _clients.Values) client.LeaveAll();
        // Commit what was appended (Relaxed mode's last window) and close the log, then let go
        // of the directory. Nothing is logged on the way out: persistent pools stay in the log.
        if (_recovered) Log?.Dispose();
        else Log?.Abandon(); // a failed recovery leaves the directory as it found it
        _directoryLock?.Dispose();
        Remote?.Dispose(); // bounded: a dead or paused node cannot hold the close
        _ram.Dispose();
        _meter.Dispose();
    }
}
