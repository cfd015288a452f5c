using System.Runtime.CompilerServices;
using Tmem.Translation;

namespace Tmem;

/// <summary>
/// A tenant of the store. Pool ids are this client's own small integers (first free slot);
/// another client's ids name nothing here (isolation). Thread-safe.
/// </summary>
public sealed partial class TmemClient
{
    private readonly TmemStore _store;
    private readonly Lock _lock = new();
    private readonly Pool?[] _pools;

    internal TmemClient(TmemStore store, int id, int maxPools)
    {
        _store = store;
        Id = id;
        _pools = new Pool?[maxPools];
    }

    /// <summary>The client id.</summary>
    public int Id { get; }

    /// <summary>
    /// Creates a pool, or joins the shared pool with <see cref="PoolOptions.SharedUuid"/> if one
    /// exists, and returns this client's id for it (the lowest free id).
    /// </summary>
    /// <exception cref="ArgumentException">Bad options.</exception>
    /// <exception cref="TmemException">Too many pools, or a shared pool with other settings or already joined.</exception>
    public int CreatePool(PoolOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        lock (_lock)
        {
            _store.ThrowIfDisposed();
            int slot = Array.IndexOf(_pools, null);
            if (slot < 0)
                throw new TmemException(TmemError.PoolLimitReached,
                    $"Client {Id} already has {_pools.Length} pools (the limit, {TmemOptions.SectionName}:{nameof(TmemOptions.MaxPoolsPerClient)}).");
            if (options.SharedUuid is { } uuid && Array.Exists(_pools, p => p?.SharedUuid == uuid))
                throw new TmemException(TmemError.SharedPoolAlreadyJoined, $"Client {Id} is already a member of shared pool {uuid}.");
            var pool = _store.CreateOrJoinPool(options, Id, slot, out long logAddress);
            // The client holds the pool before its record is durable: when that wait answers
            // NotDurable the pool exists in memory and in the log all the same (as every
            // NotDurable effect), and its id must not be handed out a second time.
            Volatile.Write(ref _pools[slot], pool);
            if (logAddress != 0) _store.WaitDurable(logAddress);
            return slot;
        }
    }

    /// <summary>
    /// Destroys a pool once operations in flight on it finish; its pages are gone. For a shared
    /// pool this client leaves it, and the pool goes when its last member leaves. For a
    /// persistent pool of a durable store this returns once the destruction is durable.
    /// </summary>
    /// <exception cref="TmemException">No such pool.</exception>
    public void DestroyPool(int poolId)
    {
        Pool pool;
        lock (_lock)
        {
            pool = Resolve(poolId);
            Volatile.Write(ref _pools[poolId], null);
        }
        _store.LeavePool(pool, Id, poolId, durable: true);
    }

    /// <summary>This client's pools.</summary>
    public IReadOnlyList<PoolInfo> GetPools()
    {
        var list = new List<PoolInfo>();
        for (int i = 0; i < _pools.Length; i++)
        {
            var pool = Volatile.Read(ref _pools[i]);
            if (pool is not null)
                list.Add(new PoolInfo(i, pool.Kind, pool.PageSize, pool.SharedUuid, pool.ExclusiveGets, Volatile.Read(ref pool.Account.Pages)) { StoreIncompressible = pool.StoreIncompressible });
        }
        return list;
    }

    /// <summary>
    /// Stores a copy of <paramref name="page"/> (exactly the pool's page size) under the handle,
    /// replacing any page there. May fail; when it fails the old page is gone too.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong page length or invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    /// <remarks>
    /// In a persistent pool of a durable store this blocks until the outcome is as durable as
    /// <see cref="TmemOptions.Durability"/> promises; <see cref="PutAsync"/> awaits instead.
    /// </remarks>
    public PutStatus Put(int poolId, in ObjectId objectId, uint index, ReadOnlySpan<byte> page)
    {
        var pool = Resolve(poolId);
        CheckHandle(pool, objectId, page.Length, nameof(page));
        var status = pool.Put(objectId, index, page, out long logAddress);
        if (logAddress != 0) _store.WaitDurable(logAddress);
        return status;
    }

    /// <summary>
    /// <see cref="Put"/>, completing when the outcome is durable: in a persistent pool of a
    /// durable store in <see cref="DurabilityMode.Strict"/> mode, once the log commit covering it
    /// is on disk (group commit); otherwise at once (an ephemeral put completes synchronously).
    /// The page is read before this returns, so the caller may reuse its buffer at once.
    /// Cancelling <paramref name="cancellationToken"/> ends the wait with
    /// <see cref="OperationCanceledException"/>: before the put, while the log device is behind
    /// (then nothing was put), or after it, while its commit is awaited (then it was carried out
    /// and becomes durable as any other; only its acknowledgement is not awaited).
    /// </summary>
    /// <exception cref="ArgumentException">Wrong page length or invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    public ValueTask<PutStatus> PutAsync(int poolId, ObjectId objectId, uint index, ReadOnlySpan<byte> page, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pool = Resolve(poolId);
        CheckHandle(pool, objectId, page.Length, nameof(page));
        // When the log device is behind, wait for it here without holding a thread (the
        // synchronous path inside Put would block one).
        if (pool.Kind == PoolKind.Persistent && _store.Log is { IsBacklogged: true } log)
            return PutAfterRoomAsync(log, pool, objectId, index, CopyOf(page), page.Length, cancellationToken);
        var status = pool.Put(objectId, index, page, out long logAddress);
        return logAddress == 0 ? ValueTask.FromResult(status) : AwaitDurable(logAddress, status, cancellationToken);
    }

    /// <summary>A pooled copy of the page, for a put that waits before it reads it.</summary>
    private static byte[] CopyOf(ReadOnlySpan<byte> page)
    {
        byte[] copy = System.Buffers.ArrayPool<byte>.Shared.Rent(page.Length);
        page.CopyTo(copy);
        return copy;
    }

    private async ValueTask<PutStatus> PutAfterRoomAsync(LogTier.PersistentLog log, Pool pool, ObjectId objectId, uint index, byte[] copy, int length, CancellationToken cancellationToken)
    {
        // The caller may reuse its buffer as soon as PutAsync returns (the page is consumed
        // before the first await): the copy is what waits for the device.
        long logAddress;
        PutStatus status;
        try
        {
            await log.WaitForRoomAsync().WithCancellation(cancellationToken).ConfigureAwait(false);
            status = pool.Put(objectId, index, copy.AsSpan(0, length), out logAddress);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(copy);
        }
        if (logAddress != 0) await _store.Log!.WaitDurableAsync(logAddress).WithCancellation(cancellationToken).ConfigureAwait(false);
        return status;
    }

    /// <summary><see cref="FlushPage"/>, completing when the flush is durable (as <see cref="PutAsync"/>; cancelling ends the wait for the commit, not the flush).</summary>
    public ValueTask<bool> FlushPageAsync(int poolId, ObjectId objectId, uint index, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pool = Resolve(poolId);
        if (!objectId.IsValid) ThrowHelper.ThrowInvalidObjectId(nameof(objectId));
        if (pool.Kind == PoolKind.Persistent && _store.Log is { IsBacklogged: true } log)
            return AfterRoomAsync(log, () => (pool.FlushPage(objectId, index, out long address), address), cancellationToken);
        bool found = pool.FlushPage(objectId, index, out long logAddress);
        return logAddress == 0 ? ValueTask.FromResult(found) : AwaitDurable(logAddress, found, cancellationToken);
    }

    /// <summary><see cref="FlushObject"/>, completing when the flush is durable (as <see cref="PutAsync"/>; cancelling ends the wait for the commit, not the flush).</summary>
    public ValueTask<int> FlushObjectAsync(int poolId, ObjectId objectId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pool = Resolve(poolId);
        if (!objectId.IsValid) ThrowHelper.ThrowInvalidObjectId(nameof(objectId));
        if (pool.Kind == PoolKind.Persistent && _store.Log is { IsBacklogged: true } log)
            return AfterRoomAsync(log, () => (pool.FlushObject(objectId, out long address), address), cancellationToken);
        int removed = pool.FlushObject(objectId, out long logAddress);
        return logAddress == 0 ? ValueTask.FromResult(removed) : AwaitDurable(logAddress, removed, cancellationToken);
    }

    private async ValueTask<T> AwaitDurable<T>(long logAddress, T result, CancellationToken cancellationToken)
    {
        await _store.Log!.WaitDurableAsync(logAddress).WithCancellation(cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>A flush that waits for the log's room first (as <see cref="PutAfterRoomAsync"/>) without holding a thread.</summary>
    private async ValueTask<T> AfterRoomAsync<T>(LogTier.PersistentLog log, Func<(T Result, long LogAddress)> flush, CancellationToken cancellationToken)
    {
        await log.WaitForRoomAsync().WithCancellation(cancellationToken).ConfigureAwait(false);
        var (result, logAddress) = flush();
        if (logAddress != 0) await log.WaitDurableAsync(logAddress).WithCancellation(cancellationToken).ConfigureAwait(false);
        return result;
    }

    /// <summary>
    /// Copies the page under the handle into <paramref name="page"/> (exactly the pool's page
    /// size). A hit in a private ephemeral pool, or in a persistent pool with exclusive gets,
    /// removes the page. On a miss <paramref name="page"/> is untouched.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong page length or invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    public GetStatus Get(int poolId, in ObjectId objectId, uint index, Span<byte> page)
    {
        var pool = Resolve(poolId);
        CheckHandle(pool, objectId, page.Length, nameof(page));
        return pool.Get(objectId, index, page);
    }

    /// <summary>
    /// <see cref="Get"/> for callers that must not block a thread (front ends): completes
    /// synchronously, allocating nothing, for a RAM hit, a miss or a durable page, and waits
    /// without a thread for a commit the sync path would block on (Strict mode: a page or a
    /// flush that is not committed yet, or a spilled page whose record is that new).
    /// Cancelling <paramref name="cancellationToken"/> ends a wait that comes before the page is
    /// read (a commit the look-up or the read of a spilled page waits for) with
    /// <see cref="OperationCanceledException"/>, and then nothing was read or taken and
    /// <paramref name="page"/> is not written afterwards; a hit already copied into
    /// <paramref name="page"/> that waits only for its commit completes regardless.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong page length or invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    public ValueTask<GetStatus> GetAsync(int poolId, ObjectId objectId, uint index, Memory<byte> page, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pool = Resolve(poolId);
        CheckHandle(pool, objectId, page.Length, nameof(page));
        return pool.GetAsync(objectId, index, page, cancellationToken);
    }

    /// <summary>Removes the page under the handle; true if there was one.</summary>
    /// <exception cref="ArgumentException">Invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    public bool FlushPage(int poolId, in ObjectId objectId, uint index)
    {
        var pool = Resolve(poolId);
        if (!objectId.IsValid) ThrowHelper.ThrowInvalidObjectId(nameof(objectId));
        bool found = pool.FlushPage(objectId, index, out long logAddress);
        if (logAddress != 0) _store.WaitDurable(logAddress);
        return found;
    }

    /// <summary>Removes every page of the object; returns how many there were.</summary>
    /// <exception cref="ArgumentException">Invalid object id.</exception>
    /// <exception cref="TmemException">No such pool.</exception>
    public int FlushObject(int poolId, in ObjectId objectId)
    {
        var pool = Resolve(poolId);
        if (!objectId.IsValid) ThrowHelper.ThrowInvalidObjectId(nameof(objectId));
        int removed = pool.FlushObject(objectId, out long logAddress);
        if (logAddress != 0) _store.WaitDurable(logAddress);
        return removed;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckHandle(Pool pool, in ObjectId objectId, int length, string pageParam)
    {
        if (length != pool.PageSize) ThrowHelper.ThrowPageLength(pageParam, length, pool.PageSize);
        if (!objectId.IsValid) ThrowHelper.ThrowInvalidObjectId(nameof(objectId));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Pool Resolve(int poolId)
    {
        var pools = _pools;
        Pool? pool = (uint)poolId < (uint)pools.Length ? Volatile.Read(ref pools[poolId]) : null;
        if (pool is null)
        {
            _store.ThrowIfDisposed();
            ThrowHelper.ThrowPoolNotFound(Id, poolId);
        }
        return pool;
    }

    /// <summary>
    /// Store disposal: drops every pool from memory without logging anything, so a durable
    /// store's persistent pools come back when it is reopened.
    /// </summary>
    internal void LeaveAll()
    {
        lock (_lock)
        {
            for (int i = 0; i < _pools.Length; i++)
            {
                if (_pools[i] is { } pool)
                {
                    _pools[i] = null;
                    _store.LeavePool(pool, Id, i, durable: false);
                }
            }
        }
    }

    /// <summary>Recovery: maps <paramref name="poolId"/> to a recovered persistent pool.</summary>
    internal void RestorePool(int poolId, Pool pool)
    {
        lock (_lock)
        {
            if ((uint)poolId >= (uint)_pools.Length)
                throw new TmemOptionsMismatchException($"{TmemOptions.SectionName}:{nameof(TmemOptions.MaxPoolsPerClient)}",
                    $"The store holds pool id {poolId} of client {Id}, over {TmemOptions.SectionName}:{nameof(TmemOptions.MaxPoolsPerClient)} ({_pools.Length}); raise it to at least {poolId + 1} to open this store.");
            if (_pools[poolId] is not null)
                throw new InvalidDataException($"The log maps client {Id} pool id {poolId} twice.");
            _pools[poolId] = pool;
        }
    }

    /// <summary>Recovery: unmaps a pool id; returns the pool it named.</summary>
    internal Pool? ForgetPool(int poolId)
    {
        lock (_lock)
        {
            if ((uint)poolId >= (uint)_pools.Length) return null;
            var pool = _pools[poolId];
            _pools[poolId] = null;
            return pool;
        }
    }
}
