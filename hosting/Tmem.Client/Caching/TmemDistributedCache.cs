using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Options;
using Tmem.Protocol;

namespace Tmem.Client.Caching;

/// <summary>
/// <see cref="IDistributedCache"/> and <see cref="IBufferDistributedCache"/> on a Tmem service,
/// so that <c>HybridCache</c> (or anything written against those interfaces) can use Tmem as its
/// distributed (L2) cache. Register it with <c>services.AddTmemDistributedCache(...)</c>.
/// <para>
/// <b>Layout.</b> A key is hashed (SHA-256 of <see cref="TmemDistributedCacheOptions.KeyPrefix"/>
/// and the key) to an object id in the cache's shared pool; its value spans pages 0, 1, ... of
/// that object. Page 0 starts with a header (format, length, expirations); every page starts with
/// the same random stamp, written anew by each set, so a reader that meets pages of two different
/// sets (a concurrent set, or an ephemeral page evicted and another written) sees a miss, never a
/// mixture. A value with a sliding expiration keeps its deadline in one more page (index
/// <see cref="uint.MaxValue"/>), so a refresh rewrites 16 bytes and never the value.
/// </para>
/// <para>
/// <b>Expiry</b>, as the interface requires: absolute (<see cref="DistributedCacheEntryOptions.AbsoluteExpiration"/>
/// or relative to now) and sliding expirations are kept with the value; a get, refresh or
/// buffer get at or after the deadline answers a miss and removes the value; a get or refresh
/// before it moves a sliding deadline on (never past the absolute one).
/// </para>
/// <para>
/// <b>Refusals.</b> A tmem store may refuse any put (a value that does not compress, a full
/// store). A set whose pages are refused stores nothing (what was stored is removed) and does
/// not throw: like an eviction, the next get misses. <see cref="RefusedSets"/> counts them.
/// Failures to reach the service throw <see cref="IOException"/>; the connection is reopened
/// with back-off by <see cref="TmemConnectionFactory"/>.
/// </para>
/// <para>
/// Concurrent sets of one key leave one of the values or, when their pages interleave, none (a
/// miss); a get returns a whole value or null. Thread-safe.
/// </para>
/// </summary>
public sealed class TmemDistributedCache : IBufferDistributedCache
{
    private const uint Magic = 0x31434454; // "TDC1"
    private const byte Version = 1;
    private const byte SlidingFlag = 1;
    private const int StampSize = 8;
    internal const int HeaderSize = 48;
    private const uint DeadlineIndex = uint.MaxValue;

    private readonly TmemConnectionFactory _connections;
    private readonly TmemDistributedCacheOptions _options;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _poolGate = new(1, 1);
    private volatile int _poolId = -1;
    private long _refusedSets;

    /// <summary>A cache on the connections of <paramref name="connections"/>.</summary>
    public TmemDistributedCache(TmemConnectionFactory connections, IOptions<TmemDistributedCacheOptions> options)
    {
        ArgumentNullException.ThrowIfNull(connections);
        ArgumentNullException.ThrowIfNull(options);
        _connections = connections;
        _options = options.Value;
        _options.Validate();
        _time = _options.TimeProvider;
    }

    /// <summary>Sets whose pages the store refused (nothing of those values was kept).</summary>
    public long RefusedSets => Interlocked.Read(ref _refusedSets);

    /// <summary>The largest value one page holds (more spans more pages).</summary>
    public int FirstPageCapacity => _options.PageSize - HeaderSize;

    /// <inheritdoc />
    public byte[]? Get(string key) => GetAsync(key).GetAwaiter().GetResult();

    /// <inheritdoc />
    public async Task<byte[]?> GetAsync(string key, CancellationToken token = default)
    {
        var writer = new ArrayBufferWriter<byte>();
        return await ReadAsync(key, writer, token).ConfigureAwait(false) ? writer.WrittenSpan.ToArray() : null;
    }

    /// <inheritdoc />
    public bool TryGet(string key, IBufferWriter<byte> destination) => TryGetAsync(key, destination).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public async ValueTask<bool> TryGetAsync(string key, IBufferWriter<byte> destination, CancellationToken token = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        return await ReadAsync(key, destination, token).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Set(string key, byte[] value, DistributedCacheEntryOptions options) => SetAsync(key, value, options).GetAwaiter().GetResult();

    /// <inheritdoc />
    public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default)
    {
        ArgumentNullException.ThrowIfNull(value);
        return WriteAsync(key, new ReadOnlySequence<byte>(value), options, token).AsTask();
    }

    /// <inheritdoc />
    public void Set(string key, ReadOnlySequence<byte> value, DistributedCacheEntryOptions options) => WriteAsync(key, value, options, default).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public ValueTask SetAsync(string key, ReadOnlySequence<byte> value, DistributedCacheEntryOptions options, CancellationToken token = default) =>
        WriteAsync(key, value, options, token);

    /// <inheritdoc />
    public void Refresh(string key) => RefreshAsync(key).GetAwaiter().GetResult();

    /// <inheritdoc />
    public Task RefreshAsync(string key, CancellationToken token = default) => WithPoolAsync(async (connection, pool) =>
    {
        var oid = ObjectIdOf(key);
        byte[] first = ArrayPool<byte>.Shared.Rent(_options.PageSize);
        try
        {
            var page0 = first.AsMemory(0, _options.PageSize);
            if (await connection.GetAsync(pool, oid, 0, page0, token).ConfigureAwait(false) != GetStatus.Hit) return true;
            if (!Header.TryRead(page0.Span, out var header)) return true;
            long now = Now();
            if (header.AbsoluteMs != 0 && now >= header.AbsoluteMs)
            {
                await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
                return true;
            }
            if (header.SlidingMs == 0) return true;
            long deadline = await ReadDeadlineAsync(connection, pool, oid, header, token).ConfigureAwait(false);
            if (now >= deadline) await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
            else await WriteDeadlineAsync(connection, pool, oid, header, now, token).ConfigureAwait(false);
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(first);
        }
    }, token);

    /// <inheritdoc />
    public void Remove(string key) => RemoveAsync(key).GetAwaiter().GetResult();

    /// <inheritdoc />
    public Task RemoveAsync(string key, CancellationToken token = default) => WithPoolAsync(async (connection, pool) =>
    {
        await connection.FlushObjectAsync(pool, ObjectIdOf(key), token).ConfigureAwait(false);
        return true;
    }, token);

    private async ValueTask<bool> ReadAsync(string key, IBufferWriter<byte> destination, CancellationToken token) => await WithPoolAsync(async (connection, pool) =>
    {
        var oid = ObjectIdOf(key);
        int pageSize = _options.PageSize;
        byte[] first = ArrayPool<byte>.Shared.Rent(pageSize);
        byte[][]? rest = null;
        try
        {
            var page0 = first.AsMemory(0, pageSize);
            if (await connection.GetAsync(pool, oid, 0, page0, token).ConfigureAwait(false) != GetStatus.Hit) return false;
            if (!Header.TryRead(page0.Span, out var header)) return false;
            long now = Now();
            if (header.AbsoluteMs != 0 && now >= header.AbsoluteMs)
            {
                await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
                return false;
            }
            int pages = PagesFor(header.Length);
            // The other pages and the sliding deadline, pipelined.
            rest = new byte[pages - 1][];
            var gets = new Task<GetStatus>[pages - 1];
            for (int i = 1; i < pages; i++)
            {
                rest[i - 1] = ArrayPool<byte>.Shared.Rent(pageSize);
                gets[i - 1] = connection.GetAsync(pool, oid, (uint)i, rest[i - 1].AsMemory(0, pageSize), token).AsTask();
            }
            var deadline = header.SlidingMs != 0 ? ReadDeadlineAsync(connection, pool, oid, header, token) : Task.FromResult(long.MaxValue);
            var results = await AllAsync(gets).ConfigureAwait(false); // every buffer untouched by the connection before they go back
            bool whole = true;
            for (int i = 0; i < results.Length; i++)
                whole &= results[i] == GetStatus.Hit && BinaryPrimitives.ReadUInt64LittleEndian(rest[i]) == header.Stamp;
            long until = await deadline.ConfigureAwait(false);
            if (!whole)
            {
                // A page evicted (ephemeral pools) or written by another set: not a value; a set
                // in progress writes it whole again.
                return false;
            }
            if (now >= until)
            {
                await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
                return false;
            }
            int left = header.Length;
            Copy(first.AsSpan(HeaderSize, Math.Min(left, pageSize - HeaderSize)), destination, ref left);
            for (int i = 0; i < rest.Length; i++) Copy(rest[i].AsSpan(StampSize, Math.Min(left, pageSize - StampSize)), destination, ref left);
            if (header.SlidingMs != 0) await WriteDeadlineAsync(connection, pool, oid, header, now, token).ConfigureAwait(false);
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(first);
            if (rest is not null)
                foreach (var page in rest)
                    if (page is not null) ArrayPool<byte>.Shared.Return(page);
        }
    }, token).ConfigureAwait(false);

    /// <summary>
    /// Waits for every one of <paramref name="tasks"/>, then gives their results or the first
    /// failure: the pages they read into or send from may only go back to the pool after all of them.
    /// </summary>
    private static async Task<T[]> AllAsync<T>(IReadOnlyList<Task<T>> tasks)
    {
        try
        {
            return await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        catch
        {
            foreach (var task in tasks)
                if (task.IsFaulted || task.IsCanceled) await task.ConfigureAwait(false); // the first failure, unwrapped
            throw;
        }
    }

    private static void Copy(ReadOnlySpan<byte> from, IBufferWriter<byte> destination, ref int left)
    {
        destination.Write(from);
        left -= from.Length;
    }

    private async ValueTask WriteAsync(string key, ReadOnlySequence<byte> value, DistributedCacheEntryOptions entry, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (value.Length > int.MaxValue - HeaderSize) throw new ArgumentOutOfRangeException(nameof(value), value.Length, "a cached value must be under 2 GiB");
        long now = Now();
        long absolute = entry.AbsoluteExpiration is { } at ? at.ToUnixTimeMilliseconds()
            : entry.AbsoluteExpirationRelativeToNow is { } relative ? now + (long)relative.TotalMilliseconds : 0;
        if (entry.AbsoluteExpirationRelativeToNow is { } r && r <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(entry), r, "The relative expiration value must be positive.");
        if (entry.SlidingExpiration is { } s && s <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(entry), s, "The sliding expiration value must be positive.");
        if (absolute != 0 && absolute <= now)
            throw new ArgumentOutOfRangeException(nameof(entry), entry.AbsoluteExpiration, "The absolute expiration value must be in the future.");
        var header = new Header(NewStamp(), (int)value.Length, absolute, (long)(entry.SlidingExpiration?.TotalMilliseconds ?? 0), now);
        await WithPoolAsync(async (connection, pool) =>
        {
            var oid = ObjectIdOf(key);
            int pageSize = _options.PageSize;
            int pages = PagesFor(header.Length);
            // The old value (and its deadline page) goes first, so no page of it outlives it.
            await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
            var buffers = new byte[pages][];
            var puts = new List<Task<PutStatus>>(pages + 1);
            try
            {
                var reader = new SequenceReader<byte>(value);
                for (int i = 0; i < pages; i++)
                {
                    var page = buffers[i] = ArrayPool<byte>.Shared.Rent(pageSize);
                    var span = page.AsSpan(0, pageSize);
                    span.Clear();
                    int at = i == 0 ? HeaderSize : StampSize;
                    if (i == 0) header.Write(span);
                    else BinaryPrimitives.WriteUInt64LittleEndian(span, header.Stamp);
                    int take = (int)Math.Min(pageSize - at, reader.Remaining);
                    reader.TryCopyTo(span.Slice(at, take));
                    reader.Advance(take);
                    puts.Add(connection.PutAsync(pool, oid, (uint)i, page.AsMemory(0, pageSize), token).AsTask()); // pipelined
                }
                if (header.SlidingMs != 0) puts.Add(WriteDeadlineAsync(connection, pool, oid, header, now, token));
                bool stored = (await AllAsync(puts).ConfigureAwait(false)).All(r => r == PutStatus.Stored);
                if (!stored)
                {
                    Interlocked.Increment(ref _refusedSets);
                    await connection.FlushObjectAsync(pool, oid, token).ConfigureAwait(false);
                }
            }
            finally
            {
                foreach (var page in buffers)
                    if (page is not null) ArrayPool<byte>.Shared.Return(page);
            }
            return true;
        }, token).ConfigureAwait(false);
    }

    /// <summary>The sliding deadline: the deadline page's if it belongs to this value, else the one the set gave.</summary>
    private async Task<long> ReadDeadlineAsync(TmemConnection connection, int pool, ObjectId oid, Header header, CancellationToken token)
    {
        long initial = Deadline(header, header.WrittenMs);
        byte[] page = ArrayPool<byte>.Shared.Rent(_options.PageSize);
        try
        {
            if (await connection.GetAsync(pool, oid, DeadlineIndex, page.AsMemory(0, _options.PageSize), token).ConfigureAwait(false) != GetStatus.Hit) return initial;
            return BinaryPrimitives.ReadUInt64LittleEndian(page) == header.Stamp ? BinaryPrimitives.ReadInt64LittleEndian(page.AsSpan(StampSize)) : initial;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(page);
        }
    }

    private async Task<PutStatus> WriteDeadlineAsync(TmemConnection connection, int pool, ObjectId oid, Header header, long now, CancellationToken token)
    {
        byte[] page = ArrayPool<byte>.Shared.Rent(_options.PageSize);
        try
        {
            var span = page.AsSpan(0, _options.PageSize);
            span.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(span, header.Stamp);
            BinaryPrimitives.WriteInt64LittleEndian(span[StampSize..], Deadline(header, now));
            return await connection.PutAsync(pool, oid, DeadlineIndex, page.AsMemory(0, _options.PageSize), token).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(page);
        }
    }

    private static long Deadline(in Header header, long from)
    {
        long sliding = from + header.SlidingMs;
        return header.AbsoluteMs != 0 ? Math.Min(sliding, header.AbsoluteMs) : sliding;
    }

    private int PagesFor(int length)
    {
        int first = _options.PageSize - HeaderSize;
        return length <= first ? 1 : 1 + (int)((length - first + (long)_options.PageSize - StampSize - 1) / (_options.PageSize - StampSize));
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static ulong NewStamp()
    {
        ulong stamp;
        do
        {
            stamp = (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue);
        }
        while (stamp == 0);
        return stamp;
    }

    /// <summary>The object a key's value lives under: 192 bits of SHA-256 of the prefix and the key.</summary>
    internal ObjectId ObjectIdOf(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        string full = _options.KeyPrefix + key;
        byte[] utf8 = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(full.Length));
        try
        {
            Span<byte> hash = stackalloc byte[32];
            SHA256.HashData(utf8.AsSpan(0, Encoding.UTF8.GetBytes(full, utf8)), hash);
            ulong w0 = BinaryPrimitives.ReadUInt64LittleEndian(hash);
            ulong w1 = BinaryPrimitives.ReadUInt64LittleEndian(hash[8..]);
            ulong w2 = BinaryPrimitives.ReadUInt64LittleEndian(hash[16..]);
            return (w0 & w1 & w2) == ulong.MaxValue ? new ObjectId(w0, w1, w2 - 1) : new ObjectId(w0, w1, w2);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(utf8);
        }
    }

    /// <summary>Runs an operation on the cache's pool; a pool gone with a restart of the service is found (or made) again once.</summary>
    private async Task<T> WithPoolAsync<T>(Func<TmemConnection, int, Task<T>> operation, CancellationToken token)
    {
        for (int attempt = 0; ; attempt++)
        {
            var connection = await _connections.GetConnectionAsync(token).ConfigureAwait(false);
            int pool = await PoolIdAsync(connection, token).ConfigureAwait(false);
            try
            {
                return await operation(connection, pool).ConfigureAwait(false);
            }
            catch (TmemRemoteException e) when (e.Status == ProtocolStatus.PoolNotFound && attempt == 0)
            {
                Interlocked.CompareExchange(ref _poolId, -1, pool);
            }
        }
    }

    private async ValueTask<int> PoolIdAsync(TmemConnection connection, CancellationToken token)
    {
        int known = _poolId;
        if (known >= 0) return known;
        await _poolGate.WaitAsync(token).ConfigureAwait(false);
        try
        {
            if (_poolId >= 0) return _poolId;
            var wanted = new PoolOptions { Kind = _options.PoolKind, PageSize = _options.PageSize, SharedUuid = _options.PoolUuid };
            for (int attempt = 0; ; attempt++)
            {
                var existing = (await connection.GetPoolsAsync(token).ConfigureAwait(false)).FirstOrDefault(p => p.SharedUuid == _options.PoolUuid);
                if (existing is not null)
                {
                    if (existing.Kind != wanted.Kind || existing.PageSize != wanted.PageSize || existing.ExclusiveGets)
                        throw new InvalidOperationException($"Shared pool {_options.PoolUuid} is a {existing.Kind} pool of {existing.PageSize}-byte pages{(existing.ExclusiveGets ? " with exclusive gets" : "")}; this cache is configured for a {wanted.Kind} pool of {wanted.PageSize}-byte pages (TmemDistributedCacheOptions).");
                    return _poolId = existing.PoolId;
                }
                try
                {
                    return _poolId = await connection.CreatePoolAsync(wanted, token).ConfigureAwait(false);
                }
                catch (TmemRemoteException e) when (e.Status == ProtocolStatus.SharedPoolAlreadyJoined && attempt == 0)
                {
                    // Joined meanwhile by another connection of this client: list again.
                }
                catch (TmemRemoteException e) when (e.Status == ProtocolStatus.SharedPoolMismatch)
                {
                    throw new InvalidOperationException($"Shared pool {_options.PoolUuid} exists with another kind or page size than this cache's {wanted.Kind} pool of {wanted.PageSize}-byte pages: {e.ServerMessage}", e);
                }
            }
        }
        finally
        {
            _poolGate.Release();
        }
    }

    /// <summary>Page 0's header.</summary>
    private readonly record struct Header(ulong Stamp, int Length, long AbsoluteMs, long SlidingMs, long WrittenMs)
    {
        public void Write(Span<byte> page)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(page, Stamp);
            BinaryPrimitives.WriteUInt32LittleEndian(page[8..], Magic);
            page[12] = Version;
            page[13] = SlidingMs != 0 ? SlidingFlag : (byte)0;
            BinaryPrimitives.WriteInt32LittleEndian(page[16..], Length);
            BinaryPrimitives.WriteInt64LittleEndian(page[24..], AbsoluteMs);
            BinaryPrimitives.WriteInt64LittleEndian(page[32..], SlidingMs);
            BinaryPrimitives.WriteInt64LittleEndian(page[40..], WrittenMs);
        }

        public static bool TryRead(ReadOnlySpan<byte> page, out Header header)
        {
            header = new Header(BinaryPrimitives.ReadUInt64LittleEndian(page), BinaryPrimitives.ReadInt32LittleEndian(page[16..]),
                BinaryPrimitives.ReadInt64LittleEndian(page[24..]), BinaryPrimitives.ReadInt64LittleEndian(page[32..]), BinaryPrimitives.ReadInt64LittleEndian(page[40..]));
            return BinaryPrimitives.ReadUInt32LittleEndian(page[8..]) == Magic && page[12] == Version && header.Length >= 0 && header.SlidingMs >= 0;
        }
    }
}
