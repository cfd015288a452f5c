using System.Collections.Concurrent;
using Tmem.Diagnostics;
using Tmem.RamTier;
using Tmem.Translation;

namespace Tmem;

/// <summary>
/// A tmem store: clients, their pools, and the compressed RAM tier (DESIGN.md). Thread-safe.
/// <para>
/// Persistent pools in this version live in the RAM tier and are never evicted (a put fails when
/// the budget is full of persistent pages); the FASTER log tier and recovery plug in behind
/// <see cref="Pool"/>'s persistent put and get paths.
/// </para>
/// </summary>
public sealed class TmemStore : IDisposable
{
    private readonly TmemOptions _options;
    private readonly ConcurrentDictionary<int, TmemClient> _clients = new();
    private readonly Lock _poolLock = new();
    private readonly Dictionary<Guid, Pool> _sharedPools = new();
    private readonly StoreCounters _counters = new();
    private readonly CompressedRamTier _ram;
    private readonly TmemMeter _meter;
    private int _poolSerial;
    private long _livePools;
    private volatile bool _disposed;

    private TmemStore(TmemOptions options)
    {
        _options = options;
        _ram = new CompressedRamTier(options, _counters);
        _meter = new TmemMeter(this);
    }

    /// <summary>The settings the store was opened with (a copy; changing it has no effect).</summary>
    public TmemOptions Options => _options.Clone();

    /// <summary>Opens an empty in-memory store.</summary>
    /// <exception cref="ArgumentException">A bad setting, named with its allowed range.</exception>
    public static TmemStore Open(TmemOptions? options = null)
    {
        // A private copy: changing the caller's object later must not bypass validation.
        options = options?.Clone() ?? new TmemOptions();
        options.Validate();
        return new TmemStore(options);
    }

    /// <summary>The client with this id (created on first use).</summary>
    public TmemClient GetClient(int clientId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(clientId);
        ThrowIfDisposed();
        return _clients.GetOrAdd(clientId, static (id, store) => new TmemClient(store, id, store._options.MaxPoolsPerClient), this);
    }

    /// <summary>A snapshot of every counter.</summary>
    public TmemStats GetStats() => new()
    {
        FlushTotal = Volatile.Read(ref _counters.FlushTotal),
        FlushFound = Volatile.Read(ref _counters.FlushFound),
        FlobjTotal = Volatile.Read(ref _counters.FlobjTotal),
        FlobjFound = Volatile.Read(ref _counters.FlobjFound),
        FailedEphPuts = Volatile.Read(ref _counters.FailedEphPuts),
        FailedPersPuts = Volatile.Read(ref _counters.FailedPersPuts),
        CompressPoor = Volatile.Read(ref _counters.CompressPoor),
        MeanCompressPoor = Volatile.Read(ref _counters.MeanCompressPoor),
        ZeroFilledPages = Volatile.Read(ref _counters.ZeroFilledPages),
        EvictedEphPages = Volatile.Read(ref _counters.EvictedEphPages),
        EphPages = Volatile.Read(ref _counters.EphPages),
        PersPages = Volatile.Read(ref _counters.PersPages),
        EphZbytes = Volatile.Read(ref _counters.EphZbytes),
        PersZbytes = Volatile.Read(ref _counters.PersZbytes),
        RamBudgetBytes = _ram.BudgetBytes,
        RamSlotBytes = _ram.SlotBytes,
        RamSlabBytes = _ram.SlabBytes,
        CompactedPages = Volatile.Read(ref _counters.CompactedPages),
        Pools = Volatile.Read(ref _livePools),
    };

    /// <summary>
    /// Runs slab compaction passes (at most <paramref name="maxPasses"/>) until one moves nothing:
    /// sparse slabs are emptied into other slabs of their size class and released. Puts start a
    /// pass on their own when fragmentation passes <see cref="TmemOptions.CompactionThreshold"/>;
    /// this is for a background reclaim loop and for tests. Returns pages moved.
    /// </summary>
    public int Compact(int maxPasses = 4)
    {
        ThrowIfDisposed();
        int moved = 0;
        for (int i = 0; i < maxPasses; i++)
        {
            int step = _ram.Compact();
            if (step == 0) break;
            moved += step;
        }
        return moved;
    }

    internal Pool CreateOrJoinPool(PoolOptions options)
    {
        lock (_poolLock)
        {
            ThrowIfDisposed();
            if (options.SharedUuid is { } uuid && _sharedPools.TryGetValue(uuid, out var existing))
            {
                if (!existing.Matches(options))
                    throw new TmemException(TmemError.SharedPoolMismatch,
                        $"Shared pool {uuid} is {existing.Kind} with {existing.PageSize}-byte pages and exclusive gets {(existing.ExclusiveGets && existing.Kind == PoolKind.Persistent ? "on" : "off")}; the request asked for {options.Kind}, {options.PageSize}-byte pages, exclusive gets {(options.ExclusiveGets ? "on" : "off")}.");
                existing.Members++;
                return existing;
            }
            var pool = new Pool(++_poolSerial, options, _options, _ram, _counters);
            if (options.SharedUuid is { } newUuid) _sharedPools.Add(newUuid, pool);
            _livePools++;
            return pool;
        }
    }

    internal void LeavePool(Pool pool)
    {
        lock (_poolLock)
        {
            if (--pool.Members > 0) return;
            if (pool.SharedUuid is { } uuid) _sharedPools.Remove(uuid);
            _livePools--;
        }
        pool.Destroy();
    }

    internal void ThrowIfDisposed()
    {
        if (_disposed) ThrowHelper.ThrowDisposed();
    }

    /// <summary>Destroys every pool (after operations in flight on them finish) and frees the RAM tier.</summary>
    public void Dispose()
    {
        lock (_poolLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        foreach (var client in _clients.Values) client.LeaveAll();
        _ram.Dispose();
        _meter.Dispose();
    }
}
