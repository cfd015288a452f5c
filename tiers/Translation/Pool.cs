using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using Tmem.Compression;
using Tmem.Diagnostics;
using Tmem.LogTier;
using Tmem.RamTier;
using Tmem.RemoteTier;
using Tmem.Translation.Admission;

namespace Tmem.Translation;

/// <summary>
/// A pool: hash buckets of objects, each bucket under its own lock (no global lock on the data
/// path), and the put/get/flush paths. A shared pool is one instance that several clients map
/// under their own pool ids.
/// <para>
/// A put runs as a pipeline, each step in its own place: encode (same-fill detection, LZ4:
/// <see cref="PageEncoder"/>) and admit (<see cref="PoorCompressionRule"/>,
/// <see cref="MeanCompressionRule"/>) outside any lock; build the log record outside the lock too
/// (<see cref="PutRecord"/>); reserve room in the RAM tier, which may evict (so before the bucket
/// lock: eviction takes bucket locks); then, under the bucket lock, the persistent limits
/// (<see cref="PersistentLimitRule"/>), the append and the install.
/// </para>
/// </summary>
internal sealed class Pool
{
    private readonly Bucket[] _buckets;
    private readonly int _bucketShift;
    private readonly CompressedRamTier _ram;
    private readonly StoreCounters _counters;
    private readonly PersistentLog? _log; // persistent pools of a store with a data directory
    private readonly RemoteBacking? _remote; // ephemeral pools of a store with the remote tier on
    private readonly PoorCompressionRule _poorCompression;
    private readonly MeanCompressionRule _meanCompression;
    private readonly int _meanThresholdBytes;
    private readonly PersistentLimitRule _persistentLimits;
    private volatile bool _destroyed;

    public Pool(int serial, PoolOptions options, StoreContext store)
    {
        Serial = serial;
        Kind = options.Kind;
        PageSize = options.PageSize;
        SharedUuid = options.SharedUuid;
        StoreIncompressible = options.StoreIncompressible;
        // Private ephemeral: exclusive; shared ephemeral: not; persistent: as asked.
        ExclusiveGets = Kind == PoolKind.Persistent ? options.ExclusiveGets : SharedUuid is null;
        Account = new PoolAccount(PageSize, serial);
        _ram = store.Ram;
        _counters = store.Counters;
        _log = Kind == PoolKind.Persistent ? store.Log : null;
        _remote = Kind == PoolKind.Ephemeral ? store.Remote : null;
        _poorCompression = new PoorCompressionRule(store.Options.MaxZsize, PageSize);
        _meanCompression = store.MeanCompression;
        _meanThresholdBytes = _meanCompression.ThresholdBytes(PageSize);
        _persistentLimits = store.PersistentLimits;
        _buckets = new Bucket[store.Options.BucketsPerPool];
        for (int i = 0; i < _buckets.Length; i++) _buckets[i] = new Bucket(this, _ram);
        _bucketShift = 32 - BitOperations.Log2((uint)_buckets.Length);
    }

    /// <summary>The page size and the pages stored now (kept by the RAM tier on install and release).</summary>
    public PoolAccount Account { get; }

    /// <summary>Store-wide number of this pool (for logs and stats; not a client's pool id).</summary>
    public int Serial { get; }

    public PoolKind Kind { get; }

    public int PageSize { get; }

    public Guid? SharedUuid { get; }

    public bool ExclusiveGets { get; }

    /// <summary>Pages that compress poorly are stored uncompressed instead of refused (<see cref="PoolOptions.StoreIncompressible"/>).</summary>
    public bool StoreIncompressible { get; }

    public bool IsDestroyed => _destroyed;

    /// <summary>Clients holding this pool; guarded by the store's pool lock.</summary>
    public int Members { get; set; } = 1;

    /// <summary>
    /// Durable stores: the (client, pool id) members as the log has them, changed under the store's
    /// pool lock in the same step as the record that logs the change, so a checkpoint sees the two agree.
    /// </summary>
    public List<(int ClientId, int PoolId)> LoggedMembers { get; } = new();

    /// <summary>The buckets (for checkpoints, which lock them all).</summary>
    public Bucket[] Buckets => _buckets;

    public bool Matches(PoolOptions options) =>
        options.Kind == Kind && options.PageSize == PageSize && options.ExclusiveGets == (Kind == PoolKind.Persistent && ExclusiveGets)
        && options.StoreIncompressible == StoreIncompressible;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Bucket BucketFor(in ObjectId id) =>
        // Top bits pick the bucket; the dictionary inside uses the whole hash modulo a prime.
        _buckets[_bucketShift == 32 ? 0 : (int)((uint)id.GetHashCode() >> _bucketShift)];

    /// <summary>
    /// Stores a page. For a logged persistent pool, <paramref name="logAddress"/> is the address of
    /// the record that must be durable before the outcome is acknowledged (a Put record, or the
    /// FlushPage tombstone of a refused put over an existing page); otherwise 0.
    /// </summary>
    public PutStatus Put(in ObjectId id, uint index, ReadOnlySpan<byte> page, out long logAddress)
    {
        logAddress = 0;
        if (_log is not null && _log.Health.IsDegraded)
        {
            // The disk is full (only the log's reserve is left) or failing: no new page goes in.
            // The refusal itself removes the old page, with a small record the reserve holds.
            Interlocked.Increment(ref _counters.StorageFullRefused);
            return Refuse(id, index, PutStatus.RejectedStorageFull, out logAddress);
        }
        // Encode and admit before any lock: making room may evict, and eviction takes bucket locks.
        // A pool that backs a block device (StoreIncompressible) keeps a poorly compressing page
        // uncompressed and is exempt from the mean rule: neither refusal applies to it.
        if (!PageEncoder.TryEncode(page, _poorCompression.MaxBytes, StoreIncompressible, out var encoded))
            return Refuse(id, index, PutStatus.RejectedPoorCompression, out logAddress);
        if (Kind == PoolKind.Persistent && !StoreIncompressible && encoded.StoredLength > _meanThresholdBytes && _meanCompression.MeanOverLimit())
            return Refuse(id, index, PutStatus.RejectedMeanCompression, out logAddress);
        var record = _log is null ? default : PutRecord.Build((uint)Serial, id, index, encoded);
        // Throttle on the device before reserving (a put that waits holds no RAM meanwhile, and
        // one whose wait throws has nothing to give back) and outside the lock, never inside it.
        _log?.WaitForRoom();
        if (!TryReserveRoom(encoded, out uint descriptor, out int slotBytes))
            return Refuse(id, index, PutStatus.RejectedCapacity, out logAddress);
        // The slot is taken now, outside the bucket lock, and its memory starts to come into the
        // cache while the handle is mapped; the copy into it then finds it there.
        ulong slot = slotBytes != 0 ? _ram.TakeSlot(encoded.StoredLength) : CompressedRamTier.NoSlot;
        return Install(id, index, encoded, record, descriptor, slotBytes, slot, out logAddress);
    }

    /// <summary>
    /// RAM for the page's slot (evicting if need be). With none, a logged persistent page in Strict
    /// mode is stored below: only in the log (it is acknowledged after its commit anyway, and read
    /// back from the log); <paramref name="slotBytes"/> is then 0.
    /// </summary>
    private bool TryReserveRoom(in EncodedPage page, out uint descriptor, out int slotBytes)
    {
        slotBytes = page.SameFilled ? 0 : SlabAllocator.SlotSizeFor(page.StoredLength);
        if (_ram.TryReserve(slotBytes, out descriptor)) return true;
        if (_log is null || !_log.IsStrict || slotBytes == 0) return false;
        slotBytes = 0;
        return _ram.TryReserve(0, out descriptor);
    }

    /// <summary>The last step of a put, under the bucket lock: persistent limits, the append, the install.</summary>
    private PutStatus Install(in ObjectId id, uint index, in EncodedPage page, ReadOnlySpan<byte> record, uint descriptor, int slotBytes, ulong slot, out long logAddress)
    {
        logAddress = 0;
        bool persistent = Kind == PoolKind.Persistent;
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            if (_destroyed)
            {
                _ram.CancelReservation(descriptor, slotBytes, slot);
                ThrowHelper.ThrowPoolDestroyed();
            }
            if (persistent && bucket.Find(id, index) == 0 && _persistentLimits.Refuses(page.StoredLength))
            {
                // A new page over the persistent limits (a replacement never is): nothing to flush.
                _ram.CancelReservation(descriptor, slotBytes, slot);
                Interlocked.Increment(ref _counters.PersLimitRefused);
                Interlocked.Increment(ref _counters.FailedPersPuts);
                logAddress = ObservedState(); // the handle's emptiness must be durable before this is acknowledged
                return PutStatus.RejectedPersistentLimit;
            }
            if (_log is not null)
            {
                // Appended under the bucket lock: the log orders a handle's records as the
                // translation saw them, which is the order replay must apply them in.
                try
                {
                    logAddress = _log.Append(record);
                }
                catch
                {
                    _ram.CancelReservation(descriptor, slotBytes, slot);
                    throw;
                }
            }
            uint old = MapAndInstall(bucket, id, index, descriptor, slotBytes, page, slotBytes == 0 && !page.SameFilled ? page.StoredLength : -1, logAddress, slot);
            if (old != 0) _ram.Release(old, id, index);
        }
        _ram.MaybeCompactSlabs();
        return PutStatus.Stored;
    }

    /// <summary>
    /// Under the bucket lock: maps the handle to the reserved descriptor and installs the page
    /// there (with a RAM copy, or only below: <paramref name="belowLength"/> stored bytes in the
    /// tier below, when it is not negative); returns the descriptor it
    /// replaced, which the caller releases. A <paramref name="slot"/> taken ahead
    /// (<see cref="CompressedRamTier.TakeSlot"/>) receives the bytes. If the install throws, the
    /// mapping is undone and the reservation given back (the replaced page is released too: a
    /// failed put leaves the handle empty).
    /// </summary>
    private uint MapAndInstall(Bucket bucket, in ObjectId id, uint index, uint descriptor, int slotBytes, in EncodedPage page, int belowLength, long logAddress, ulong slot = CompressedRamTier.NoSlot)
    {
        uint old = bucket.Set(id, index, descriptor, out var owner, out uint ownerIndex);
        try
        {
            if (belowLength >= 0) _ram.InstallBelow(descriptor, owner, ownerIndex, belowLength, logAddress);
            else _ram.Install(descriptor, owner, ownerIndex, page, Kind == PoolKind.Persistent, logAddress, slot);
        }
        catch
        {
            bucket.Remove(id, index);
            _ram.CancelReservation(descriptor, slotBytes, slot);
            if (old != 0) _ram.Release(old, id, index);
            throw;
        }
        return old;
    }

    /// <summary>
    /// Recovery: installs a persistent page from its Put record at <paramref name="logAddress"/>
    /// without logging it again: with a RAM copy while the budget has room (no eviction), else
    /// spilled. Throws when even the page limit is reached: recovery never drops a page.
    /// </summary>
    public void RestorePut(in ObjectId id, uint index, bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload, long logAddress)
    {
        if (uncompressed && payload.Length != PageSize)
            throw new InvalidDataException($"an uncompressed put of {payload.Length} bytes into pool serial {Serial}, whose pages are {PageSize} bytes");
        var page = EncodedPage.FromPayload(sameFilled, uncompressed, payload);
        int slotBytes = sameFilled ? 0 : SlabAllocator.SlotSizeFor(payload.Length);
        bool below = false;
        if (!_ram.TryReserve(slotBytes, out uint descriptor, allowEviction: false))
        {
            if (!_ram.TryReserve(0, out descriptor, allowEviction: false)) ThrowRecoveryOverMaxPages();
            below = true;
        }
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            uint old = MapAndInstall(bucket, id, index, descriptor, below ? 0 : slotBytes, page, below ? page.StoredLength : -1, logAddress);
            if (old != 0) _ram.Release(old, id, index);
        }
    }

    /// <summary>Checkpoint, with every bucket lock of the pool held by the caller: the pages as logged.</summary>
    public List<IndexCheckpoint.PageEntry> CapturePagesLocked()
    {
        var pages = new List<IndexCheckpoint.PageEntry>((int)Math.Max(0, Volatile.Read(ref Account.Pages)));
        foreach (var bucket in _buckets)
        {
            Debug.Assert(bucket.Lock.IsHeldByCurrentThread);
            bucket.ForEachPage((pages, _ram), static (s, objectId, index, descriptor) => s.pages.Add(CheckpointEntry(s._ram.Describe(descriptor), objectId, index)));
        }
        return pages;
    }

    private static IndexCheckpoint.PageEntry CheckpointEntry(in StoredPage page, in ObjectId objectId, uint index) =>
        page.Form == PageForm.Pattern
            ? new IndexCheckpoint.PageEntry(objectId, index, 0, true, page.BackingAddress, page.Pattern)
            : new IndexCheckpoint.PageEntry(objectId, index, (ushort)page.Length, false, page.BackingAddress, 0);
    /// <summary>Recovery: installs a page listed in a checkpoint, spilled (read from the log when got).</summary>
    public void RestoreFromCheckpoint(in IndexCheckpoint.PageEntry page)
    {
        if (!_ram.TryReserve(0, out uint descriptor, allowEviction: false)) ThrowRecoveryOverMaxPages();
        var bucket = BucketFor(page.ObjectId);
        lock (bucket.Lock)
        {
            if (bucket.Find(page.ObjectId, page.Index) != 0)
            {
                _ram.CancelReservation(descriptor, 0);
                throw new InvalidDataException($"the checkpoint lists page {page.ObjectId}/{page.Index} of pool serial {Serial} twice");
            }
            if (page.SameFilled)
                MapAndInstall(bucket, page.ObjectId, page.Index, descriptor, 0, EncodedPage.OfPattern(page.Pattern), -1, page.Address);
            else
                MapAndInstall(bucket, page.ObjectId, page.Index, descriptor, 0, default, page.Length, page.Address);
        }
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowRecoveryOverMaxPages() => throw new InvalidOperationException(
        $"Recovery cannot index the persistent pages: {TmemOptions.SectionName}:{nameof(TmemOptions.MaxPages)} is smaller than their number (now {Volatile.Read(ref _counters.PersPages)} pages). Raise it; nothing was dropped.");

    /// <summary>Recovery: applies a FlushPage tombstone without logging it again.</summary>
    public void RestoreFlushPage(in ObjectId id, uint index)
    {
        var bucket = BucketFor(id);
        lock (bucket.Lock) RemovePage(bucket, id, index);
    }

    /// <summary>Recovery: applies a FlushObject tombstone without logging it again.</summary>
    public void RestoreFlushObject(in ObjectId id)
    {
        var bucket = BucketFor(id);
        lock (bucket.Lock) ReleaseObject(bucket, id);
    }

    /// <summary>A put failed: count it, and flush any older page at the handle (put-put coherency).</summary>
    private PutStatus Refuse(in ObjectId id, uint index, PutStatus status, out long logAddress)
    {
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            if (_destroyed) ThrowHelper.ThrowPoolDestroyed();
            logAddress = RemovePage(bucket, id, index) ? AppendTombstone(LogRecordType.FlushPage, id, index) : ObservedState();
        }
        Interlocked.Increment(ref Kind == PoolKind.Persistent ? ref _counters.FailedPersPuts : ref _counters.FailedEphPuts);
        if (status == PutStatus.RejectedPoorCompression) Interlocked.Increment(ref _counters.CompressPoor);
        else if (status == PutStatus.RejectedMeanCompression) Interlocked.Increment(ref _counters.MeanCompressPoor);
        return status;
    }

    /// <summary>
    /// Under the bucket lock, for a flush or refused put that found nothing: the page may be
    /// absent because of a flush not yet committed (another caller's), so the absence is only
    /// durable once everything appended so far is: the address to wait for, or 0.
    /// </summary>
    private long ObservedState() => _log?.ObservedStateAddress() ?? 0;

    /// <summary>Under the bucket lock: logs a flush of a page or object (0 when the pool is not logged).</summary>
    private long AppendTombstone(LogRecordType type, in ObjectId id, uint index)
    {
        if (_log is null) return 0;
        Span<byte> record = stackalloc byte[LogRecord.HeaderSize];
        LogRecord.Write(record, type, LogRecordFlags.None, (uint)Serial, id, index, default);
        return _log.Append(record);
    }

    /// <summary>What a get's look-up under the bucket lock found, and what is left to do outside it.</summary>
    private enum GetStep : byte
    {
        Hit,
        Miss,
        /// <summary>The page was copied; its Put record must be committed before the hit is answered (Strict).</summary>
        HitOnceCommitted,
        /// <summary>A miss, answered once what was appended before it is durable (Strict: the absence may be an uncommitted flush's).</summary>
        MissOnceDurable,
        /// <summary>An exclusive get found a page whose Put is not committed: wait for it, then look again.</summary>
        RetryOnceCommitted,
        /// <summary>A spilled page: read its record from the log outside the lock (look again if compaction moved it).</summary>
        ReadSpilled,
        /// <summary>An ephemeral page the remote tier holds (shared pool): read it outside the lock; a miss drops the descriptor.</summary>
        ReadRemote,
        /// <summary>An ephemeral page the remote tier holds (private pool): already unmapped under the lock; take it outside.</summary>
        TakeRemote,
    }

    public GetStatus Get(in ObjectId id, uint index, Span<byte> page)
    {
        while (true)
        {
            switch (Lookup(id, index, page, out long address, out int compressedLength))
            {
                case GetStep.Hit:
                    return GetStatus.Hit;
                case GetStep.Miss:
                    return GetStatus.Miss;
                case GetStep.HitOnceCommitted:
                    // Throws NotDurable while the storage fails: no crash can take back what a get returned.
                    _log!.WaitCommitted(address);
                    return GetStatus.Hit;
                case GetStep.MissOnceDurable:
                    _log!.WaitDurable(address);
                    return GetStatus.Miss;
                case GetStep.RetryOnceCommitted:
                    _log!.WaitCommitted(address);
                    continue;
                case GetStep.ReadRemote:
                    if (_remote!.Read(_remote.KeyOf(Serial, id, index, address), take: false, page) == GetStatus.Hit) return GetStatus.Hit;
                    DropRemote(id, index, address);
                    return GetStatus.Miss;
                case GetStep.TakeRemote:
                    return _remote!.Read(_remote.KeyOf(Serial, id, index, address), take: true, page);
                default:
                    if (TryReadSpilled(id, index, address, compressedLength, page)) return GetStatus.Hit;
                    continue;
            }
        }
    }

    /// <summary>
    /// <see cref="Get"/> that waits for commits without holding a thread: completes synchronously
    /// (and allocates nothing) for a RAM hit, a miss or a durable page.
    /// </summary>
    /// <remarks>
    /// <paramref name="cancellationToken"/> ends only the waits before anything is read or taken
    /// (a miss's, a retry's, a spilled read's), so a cancelled get never writes
    /// <paramref name="page"/> later; a hit already copied waits for its commit regardless.
    /// </remarks>
    public async ValueTask<GetStatus> GetAsync(ObjectId id, uint index, Memory<byte> page, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            switch (Lookup(id, index, page.Span, out long address, out int compressedLength))
            {
                case GetStep.Hit:
                    return GetStatus.Hit;
                case GetStep.Miss:
                    return GetStatus.Miss;
                case GetStep.HitOnceCommitted:
                    await _log!.WaitCommittedAsync(address).ConfigureAwait(false);
                    return GetStatus.Hit;
                case GetStep.MissOnceDurable:
                    await _log!.WaitDurableAsync(address).WithCancellation(cancellationToken).ConfigureAwait(false);
                    return GetStatus.Miss;
                case GetStep.RetryOnceCommitted:
                    await _log!.WaitCommittedAsync(address).WithCancellation(cancellationToken).ConfigureAwait(false);
                    continue;
                case GetStep.ReadRemote:
                    if (await _remote!.ReadAsync(_remote.KeyOf(Serial, id, index, address), take: false, page).ConfigureAwait(false) == GetStatus.Hit) return GetStatus.Hit;
                    DropRemote(id, index, address);
                    return GetStatus.Miss;
                case GetStep.TakeRemote:
                    return await _remote!.ReadAsync(_remote.KeyOf(Serial, id, index, address), take: true, page).ConfigureAwait(false);
                default:
                    // The read itself waits only for a record that is not committed yet.
                    await _log!.WaitCommittedAsync(address).WithCancellation(cancellationToken).ConfigureAwait(false);
                    if (TryReadSpilled(id, index, address, compressedLength, page.Span)) return GetStatus.Hit;
                    continue;
            }
        }
    }

    /// <summary>
    /// The look-up of a get, under the bucket lock: copies a RAM-resident page into
    /// <paramref name="page"/> (and takes it, for an exclusive get), and says what is left to do
    /// outside the lock, with the log address it concerns.
    /// </summary>
    private GetStep Lookup(in ObjectId id, uint index, Span<byte> page, out long address, out int compressedLength)
    {
        address = 0;
        compressedLength = 0;
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            if (_destroyed) ThrowHelper.ThrowPoolDestroyed();
            uint descriptor = bucket.Find(id, index);
            if (descriptor == 0)
            {
                // Strict: the page may be missing only through a flush not committed yet; the
                // miss is reported once that is durable, so no crash can bring the page back.
                address = ObservedState();
                return address == 0 ? GetStep.Miss : GetStep.MissOnceDurable;
            }
            bool spilled = _ram.TryGetBelow(descriptor, out long spilledAt, out compressedLength);
            if (spilled && _remote is not null)
            {
                // An ephemeral page only the remote tier holds, at version spilledAt. The fetch
                // runs outside the lock; a private pool's page leaves now (the get takes it).
                address = spilledAt;
                if (!ExclusiveGets) return GetStep.ReadRemote;
                bucket.Remove(id, index);
                _ram.Release(descriptor, id, index, BelowRelease.Taken);
                return GetStep.TakeRemote;
            }
            if (!ExclusiveGets)
            {
                if (spilled)
                {
                    // Read outside the lock: a concurrent flush or replacement after this look-up does
                    // not change the record (records are immutable); the get is ordered before them.
                    address = spilledAt;
                    return GetStep.ReadSpilled;
                }
                _ram.Read(descriptor, page);
                address = PendingRecord(descriptor);
                return address == 0 ? GetStep.Hit : GetStep.HitOnceCommitted;
            }
            if ((address = PendingRecord(descriptor)) != 0)
            {
                // Its Put is not committed yet (Strict): wait for that outside the lock and look
                // again, rather than take away a page whose commit may still fail.
                return GetStep.RetryOnceCommitted;
            }
            // A spilled page is read before it leaves, under the lock: once unlinked, log
            // compaction no longer moves its record, and could truncate it away.
            if (spilled && !TryReadSpilled(id, index, spilledAt, compressedLength, page))
                throw new TmemCorruptionException(spilledAt, $"The log record at address {spilledAt} of a page of pool serial {Serial} is below the log's begin address while the page still points at it.");
            if (!spilled) _ram.Read(descriptor, page);
            // The page leaves now, under the lock, so two exclusive gets never both get it,
            // and its tombstone is ordered before any later put of the handle.
            bucket.Remove(id, index);
            _ram.Release(descriptor, id, index);
            // A persistent page taken by an exclusive get is logged as flushed, so replay does
            // not bring it back. Nobody waits for that commit: the caller holds the page now.
            if (AppendTombstone(LogRecordType.FlushPage, id, index) != 0) _log!.RequestCommit();
            return GetStep.Hit;
        }
    }

    /// <summary>
    /// After a shared pool's remote read missed (no value, a mismatch, a failure or a timeout):
    /// unmaps the page if the handle still holds that version, so every later get misses too
    /// (get-get coherency) rather than finding it once the cluster answers again.
    /// </summary>
    private void DropRemote(in ObjectId id, uint index, long version)
    {
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            if (_destroyed) return;
            uint descriptor = bucket.Find(id, index);
            if (descriptor == 0 || !_ram.TryGetBelow(descriptor, out long at, out _) || at != version) return;
            bucket.Remove(id, index);
            _ram.Release(descriptor, id, index);
        }
    }

    /// <summary>Under the bucket lock: the page's Put record address if a get must wait for its commit (Strict), else 0.</summary>
    private long PendingRecord(uint descriptor) => _log is null ? 0 : _log.UncommittedAddress(_ram.BackingAddressOf(descriptor));

    /// <summary>
    /// Reads and decodes a spilled page's Put record; false when the log no longer holds that
    /// address (compaction truncated it after moving the record).
    /// </summary>
    private bool TryReadSpilled(in ObjectId id, uint index, long logAddress, int compressedLength, Span<byte> page)
    {
        if (!_log!.TryReadRecord(logAddress, LogRecord.SizeOf(compressedLength), page, (Pool: this, Id: id, Index: index, Address: logAddress), DecodeSpilled, out string? error))
            return false;
        if (error is not null) throw new TmemCorruptionException(logAddress, error);
        return true;
    }

    /// <summary>Checks that a record read back is the expected page's Put and decodes it; an error message or null.</summary>
    private static string? DecodeSpilled(ReadOnlySpan<byte> entry, Span<byte> page, (Pool Pool, ObjectId Id, uint Index, long Address) expected)
    {
        var (pool, id, index, address) = expected;
        if (!LogRecord.TryRead(entry, out var put, out string? error) || put.Type != LogRecordType.Put
            || put.PoolSerial != (uint)pool.Serial || put.ObjectId != id || put.Index != index)
            return $"The log record at address {address} is not the Put of pool serial {pool.Serial}, object {id}, index {index}: {error ?? "it names another page"}.";
        if ((put.Flags & LogRecordFlags.Uncompressed) != 0)
        {
            if (put.Payload.Length != page.Length)
                return $"The uncompressed page in the log record at address {address} is {put.Payload.Length} bytes, expected {page.Length}.";
            put.Payload.CopyTo(page);
            return null;
        }
        int decoded = PageCodec.Decompress(put.Payload, page);
        return decoded == page.Length ? null : $"The page in the log record at address {address} decoded to {decoded} bytes, expected {page.Length}.";
    }

    /// <summary>
    /// Log compaction: if the page at the handle is still the one whose Put record is at
    /// <paramref name="from"/>, appends the record again and points the page at the copy.
    /// Under the bucket lock, so the copy is ordered after every earlier record of the handle and
    /// before any later one, and a concurrent put or flush either happens first (no copy) or after.
    /// </summary>
    public bool Relocate(in ObjectId id, uint index, long from, ReadOnlySpan<byte> record)
    {
        var log = _log!;
        log.WaitForRoom();
        var bucket = BucketFor(id);
        lock (bucket.Lock)
        {
            if (_destroyed) return false;
            uint descriptor = bucket.Find(id, index);
            if (descriptor == 0 || _ram.BackingAddressOf(descriptor) != from) return false;
            _ram.MoveBackingAddress(descriptor, log.Append(record));
            return true;
        }
    }

    /// <summary>Removes a page; <paramref name="logAddress"/> as for <see cref="Put"/>.</summary>
    public bool FlushPage(in ObjectId id, uint index, out long logAddress)
    {
        _log?.WaitForRoom(); // a tombstone is an append too (the Relaxed loss bound); outside the lock
        var bucket = BucketFor(id);
        bool found;
        lock (bucket.Lock)
        {
            if (_destroyed) ThrowHelper.ThrowPoolDestroyed();
            found = RemovePage(bucket, id, index);
            logAddress = found ? AppendTombstone(LogRecordType.FlushPage, id, index) : ObservedState();
        }
        Interlocked.Increment(ref _counters.FlushTotal);
        if (found) Interlocked.Increment(ref _counters.FlushFound);
        return found;
    }

    /// <summary>Removes an object's pages; <paramref name="logAddress"/> as for <see cref="Put"/>.</summary>
    public int FlushObject(in ObjectId id, out long logAddress)
    {
        _log?.WaitForRoom();
        var bucket = BucketFor(id);
        int removed = 0;
        lock (bucket.Lock)
        {
            if (_destroyed) ThrowHelper.ThrowPoolDestroyed();
            removed = ReleaseObject(bucket, id);
            logAddress = removed > 0 ? AppendTombstone(LogRecordType.FlushObject, id, 0) : ObservedState();
        }
        Interlocked.Increment(ref _counters.FlobjTotal);
        if (removed > 0) Interlocked.Increment(ref _counters.FlobjFound);
        return removed;
    }

    /// <summary>
    /// Marks the pool destroyed, then empties each bucket under its lock: an operation that holds
    /// a bucket lock finishes first, and every operation that takes one afterwards sees the mark.
    /// </summary>
    public void Destroy()
    {
        _destroyed = true;
        foreach (var bucket in _buckets)
        {
            lock (bucket.Lock)
            {
                if (_remote is null)
                {
                    bucket.DrainAll(_ram, static (ram, id, index, descriptor) => ram.Release(descriptor, id, index));
                    continue;
                }
                // The remote tier deletes each object's values with one command (one key per object).
                var released = new ObjectRelease(_ram, this);
                bucket.DrainAll(released, static (r, id, index, descriptor) => r.Release(descriptor, id, index));
                released.ForgetObjects();
            }
        }
    }

    private bool RemovePage(Bucket bucket, in ObjectId id, uint index)
    {
        Debug.Assert(bucket.Lock.IsHeldByCurrentThread);
        uint descriptor = bucket.Remove(id, index);
        if (descriptor == 0) return false;
        _ram.Release(descriptor, id, index);
        return true;
    }

    /// <summary>Under the bucket lock: unmaps and releases every page of an object; returns how many.</summary>
    private int ReleaseObject(Bucket bucket, in ObjectId id)
    {
        Debug.Assert(bucket.Lock.IsHeldByCurrentThread);
        if (_remote is null)
            return bucket.RemoveObject(id, (_ram, id), static (s, index, descriptor) => s._ram.Release(descriptor, s.id, index));
        // The remote tier deletes the object's values with one command (one key per object).
        var released = new ObjectRelease(_ram, this);
        int count = bucket.RemoveObject(id, (released, id), static (s, index, descriptor) => s.released.Release(descriptor, s.id, index));
        released.ForgetObjects();
        return count;
    }

    /// <summary>
    /// Releases pages with <see cref="BelowRelease.ObjectGone"/>, noting the objects that had a
    /// page below, then has the remote tier forget each of those objects once.
    /// </summary>
    private sealed class ObjectRelease(CompressedRamTier ram, Pool pool)
    {
        private HashSet<ObjectId>? _below;

        public void Release(uint descriptor, in ObjectId id, uint index)
        {
            if (ram.Release(descriptor, id, index, BelowRelease.ObjectGone)) (_below ??= new HashSet<ObjectId>()).Add(id);
        }

        public void ForgetObjects()
        {
            if (_below is null) return;
            foreach (var id in _below) ram.ForgetObject(pool.Serial, id);
        }
    }
}
