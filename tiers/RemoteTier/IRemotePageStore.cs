using System.Buffers;

namespace Tmem;

/// <summary>
/// The client of a remote tier's cluster: what the engine's remote tier (which owns versions,
/// headers, checks, the writeback queue and the counters) asks of the network. Tmem.Remote's
/// <c>RedisRemotePageStore</c> implements it over a Redis-protocol cluster (Garnet); the store
/// takes one through <see cref="TmemOptions.UseRemotePageStore"/> and disposes it when it closes.
/// <para>
/// Every method is called from the engine's own threads (the writer, or a get outside any lock)
/// and must neither throw for a failure of the cluster nor block past its request timeout: a
/// failure is reported as a status, and the engine makes it a miss or a dropped page.
/// </para>
/// </summary>
public interface IRemotePageStore : IDisposable
{
    /// <summary>The cluster's state as this client judges it (for the stats and the service's log).</summary>
    RemoteTierStatus Status { get; }

    /// <summary>
    /// Stores each of <paramref name="writes"/> (a value as its page), sent together rather than one
    /// round trip each; completes within the request timeout with one status per write, in order.
    /// The values stay untouched until it completes.
    /// </summary>
    Task<RemoteWriteStatus[]> WriteAsync(IReadOnlyList<RemotePageWrite> writes);

    /// <summary>
    /// Fetches the value of <paramref name="page"/> (and, when <paramref name="take"/>, deletes it
    /// too); completes within the request timeout. The caller disposes the result.
    /// </summary>
    ValueTask<RemoteRead> ReadAsync(RemotePageKey page, bool take);

    /// <summary>
    /// <see cref="ReadAsync"/> for a synchronous get: waits on the caller's thread, within the
    /// request timeout, without needing another thread to run a continuation (a caller blocked
    /// here must not wait for the thread pool, which such callers may be the ones keeping busy).
    /// </summary>
    RemoteRead Read(RemotePageKey page, bool take);

    /// <summary>Deletes one page's value without waiting for the reply (only gives memory back).</summary>
    void Delete(RemotePageKey page);

    /// <summary>Deletes every value of one object without waiting for the reply (a flush object, a destroyed pool).</summary>
    void DeleteObject(RemoteObjectKey obj);
}

/// <summary>One tmem object of one open of a store, as the remote tier names it.</summary>
/// <param name="Incarnation">Random per open of the store (never 0): no open sees another's values.</param>
/// <param name="PoolSerial">The pool's store-wide serial.</param>
/// <param name="ObjectId">The object id.</param>
public readonly record struct RemoteObjectKey(ulong Incarnation, uint PoolSerial, ObjectId ObjectId);

/// <summary>One version of one page: its object, its index and the version the local descriptor holds.</summary>
/// <param name="Object">The page's object.</param>
/// <param name="Index">The page's index in the object.</param>
/// <param name="Version">Unique per open of the store: a value is written under a version once, never changed.</param>
public readonly record struct RemotePageKey(RemoteObjectKey Object, uint Index, long Version);

/// <summary>One remote write: the value to store as a page.</summary>
/// <param name="Page">The page and version the value is stored as.</param>
/// <param name="Value">The remote value (header and bytes).</param>
public readonly record struct RemotePageWrite(RemotePageKey Page, ReadOnlyMemory<byte> Value);

/// <summary>How a remote write ended.</summary>
public enum RemoteWriteStatus : byte
{
    /// <summary>The cluster acknowledged the write.</summary>
    Written,

    /// <summary>No acknowledgement within the request timeout (the value may or may not be there).</summary>
    TimedOut,

    /// <summary>The cluster refused it, or could not be reached.</summary>
    Failed,
}

/// <summary>How a remote read ended.</summary>
public enum RemoteReadStatus : byte
{
    /// <summary>A value came back (the engine still checks that it is the page asked for).</summary>
    Found,

    /// <summary>The cluster has no such value.</summary>
    Absent,

    /// <summary>No answer within the request timeout.</summary>
    TimedOut,

    /// <summary>The cluster refused the read, or could not be reached.</summary>
    Failed,
}

/// <summary>The outcome of <see cref="IRemotePageStore.ReadAsync"/>: a status and, when found, the value (disposed by the caller).</summary>
public readonly struct RemoteRead(RemoteReadStatus status, IMemoryOwner<byte>? value = null, int length = 0) : IDisposable
{
    /// <summary>Found, absent, timed out or failed.</summary>
    public RemoteReadStatus Status { get; } = status;

    /// <summary>The value's bytes when <see cref="Status"/> is <see cref="RemoteReadStatus.Found"/>, else empty.</summary>
    public ReadOnlySpan<byte> Value => value is null ? default : value.Memory.Span[..length];

    /// <summary>Returns the value's buffer.</summary>
    public void Dispose() => value?.Dispose();
}
