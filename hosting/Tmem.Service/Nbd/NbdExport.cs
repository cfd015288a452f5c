using System.Buffers;
using Tmem.Service.Sessions;

namespace Tmem.Service.Nbd;

/// <summary>A request the export could not carry out, with the NBD error and a message for the client.</summary>
internal sealed class NbdException(uint error, string message) : Exception(message)
{
    public uint Error { get; } = error;
}

/// <summary>One extent of a BLOCK_STATUS reply.</summary>
internal readonly record struct NbdExtent(uint Length, uint Flags);

/// <summary>
/// An export: a block device of <see cref="Size"/> bytes kept in one pool of its owner, page by
/// page (<see cref="BlockMap"/>). The connection checks bounds, flags and alignment; the export
/// carries out requests inside the device. Every store operation goes through the owner's
/// <see cref="Session"/>, and durability is the engine's: a put completes when the engine says it
/// is durable. Requests not aligned to the page size read, merge and put whole pages under the
/// page's lock (<see cref="PageLocks"/>). Thread-safe: every connection to the export shares it.
/// </summary>
internal abstract class NbdExport(NbdExportOptions options, Session session, int poolId, long size)
{
    protected static readonly byte[] ZeroPage = new byte[PoolOptions.MaxIncompressiblePageSize];

    public string Name { get; } = options.Name;

    public string Description { get; } = options.Description;

    public NbdExportOptions Options { get; } = options;

    public Session Session { get; } = session;

    public int PoolId { get; } = poolId;

    public long Size { get; } = size;

    public int PageSize { get; } = options.PageSize;

    protected PageLocks Locks { get; } = new();

    /// <summary>What the export supports, as NBD transmission flags (without the ones that depend on the connection).</summary>
    public virtual ushort TransmissionFlags =>
        NbdProtocol.TxHasFlags | NbdProtocol.TxSendFlush | NbdProtocol.TxSendFua | NbdProtocol.TxSendTrim | NbdProtocol.TxSendWriteZeroes
        | NbdProtocol.TxCanMultiConn | NbdProtocol.TxSendCache | NbdProtocol.TxSendFastZero;

    public abstract string ModeName { get; }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>.</summary>
    public abstract ValueTask ReadAsync(long offset, Memory<byte> destination);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; with <paramref name="fua"/>, returns once it is durable.</summary>
    public abstract ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua);

    /// <summary>Zeroes a range; <paramref name="noHole"/>: keep it allocated.</summary>
    public abstract ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua);

    /// <summary>The client no longer needs a range (a hint: whole pages leave the store).</summary>
    public abstract ValueTask TrimAsync(long offset, long length, bool fua);

    /// <summary>Returns once every write completed before the call is durable.</summary>
    public abstract ValueTask FlushAsync();

    /// <summary>The client will read this range soon.</summary>
    public abstract ValueTask CacheAsync(long offset, long length);

    /// <summary>base:allocation extents from <paramref name="offset"/>, covering at most <paramref name="length"/> bytes (at least one extent).</summary>
    public abstract ValueTask BlockStatusAsync(long offset, long length, bool one, List<NbdExtent> extents);

    /// <summary>The service stops: closes what the export holds (its backing file).</summary>
    public virtual void Close()
    {
    }

    protected long PageOf(long offset) => offset / PageSize;

    /// <summary>Pages <paramref name="first"/>..<paramref name="last"/> that a byte range touches.</summary>
    protected (long First, long Last) PagesOf(long offset, long length) => (offset / PageSize, (offset + length - 1) / PageSize);

    /// <summary>A page of the export's page size from the pool, or null on a miss (the buffer is then zeroed).</summary>
    protected async ValueTask<bool> GetPageAsync(long page, Memory<byte> buffer)
    {
        var status = await Session.GetAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), buffer).ConfigureAwait(false);
        if (status == GetStatus.Hit) return true;
        buffer.Span.Clear();
        return false;
    }

    protected static byte[] Rent(int length) => ArrayPool<byte>.Shared.Rent(length);

    protected static void Return(byte[] buffer) => ArrayPool<byte>.Shared.Return(buffer);

    /// <summary>What a refused put means for a block device: no space.</summary>
    protected static NbdException NoSpace(PutStatus status, long page) => new(NbdProtocol.ENOSPC, status switch
    {
        PutStatus.RejectedStorageFull => $"no space: the store's disk is full or failing (page {page} refused)",
        PutStatus.RejectedPersistentLimit => $"no space: the store's persistent page or byte limit is reached (Tmem:MaxPersistentPages, Tmem:MaxPersistentBytes; page {page} refused)",
        PutStatus.RejectedCapacity => $"no space: the store's RAM is full of pages it cannot evict (Tmem:RamBudgetBytes; page {page} refused)",
        _ => $"no space: the store refused page {page} ({status})",
    });
}
