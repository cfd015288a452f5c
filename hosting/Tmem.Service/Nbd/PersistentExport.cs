using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Tmem.Service.Sessions;

namespace Tmem.Service.Nbd;

/// <summary>
/// An export whose pages are a persistent pool of its owner (with
/// <see cref="PoolOptions.StoreIncompressible"/>, so no write is refused for its contents): a page
/// not in the pool reads as zeros (a hole). Durability is the store's: in Strict mode a write
/// completes once its log commit is durable, in Relaxed mode once it is appended; FLUSH commits
/// everything appended so far at once (one group commit, not the next interval's), which covers
/// every write completed before it on any connection; FUA in Relaxed mode does the same after its
/// write.
/// </summary>
internal sealed class PersistentExport(NbdExportOptions options, Session session, int poolId, long size, bool relaxed, StorageProbe storage)
    : NbdExport(options, session, poolId, size)
{
    /// <summary>Pages one request puts or flushes before it awaits them (group commit) and takes the next batch's locks.</summary>
    private const int Batch = 256;

    /// <summary>Pages one BLOCK_STATUS looks at (4096 gets of pages in RAM take a few milliseconds).</summary>
    private const int StatusPages = 4096;

    public override string ModeName => "persistent";

    public override async ValueTask ReadAsync(long offset, Memory<byte> destination)
    {
        if (destination.Length == 0) return;
        var (first, last) = PagesOf(offset, destination.Length);
        byte[]? scratch = null;
        try
        {
            for (long page = first; page <= last; page++)
            {
                long pageStart = page * PageSize;
                int from = (int)(Math.Max(offset, pageStart) - pageStart);
                int to = (int)(Math.Min(offset + destination.Length, pageStart + PageSize) - pageStart);
                var target = destination.Slice((int)(pageStart + from - offset), to - from);
                if (from == 0 && to == PageSize)
                {
                    await GetPageAsync(page, target).ConfigureAwait(false);
                    continue;
                }
                scratch ??= Rent(PageSize);
                await GetPageAsync(page, scratch.AsMemory(0, PageSize)).ConfigureAwait(false);
                scratch.AsSpan(from, to - from).CopyTo(target.Span);
            }
        }
        finally
        {
            if (scratch is not null) Return(scratch);
        }
    }

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        if (data.Length == 0) return;
        storage.ThrowIfFull();
        var (first, last) = PagesOf(offset, data.Length);
        for (long batch = first; batch <= last; batch += Batch)
        {
            long end = Math.Min(last, batch + Batch - 1);
            using (await Locks.AcquireAsync(batch, end - batch + 1).ConfigureAwait(false))
                await PutPagesAsync(batch, end, page => Merge(page, offset, data)).ConfigureAwait(false);
        }
        if (fua) await CommitIfRelaxedAsync().ConfigureAwait(false);
    }

    /// <summary>What a write puts at <paramref name="page"/>: a whole page of its data, or (unaligned) the page as stored with its part merged in.</summary>
    private PagePlan Merge(long page, long offset, ReadOnlyMemory<byte> data)
    {
        long pageStart = page * PageSize;
        int from = (int)(Math.Max(offset, pageStart) - pageStart);
        int to = (int)(Math.Min(offset + data.Length, pageStart + PageSize) - pageStart);
        var part = data.Slice((int)(pageStart + from - offset), to - from);
        return from == 0 && to == PageSize ? PagePlan.Whole(part) : PagePlan.Partial(from, part);
    }

    public override async ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua)
    {
        if (length == 0) return;
        storage.ThrowIfFull(); // zeroes put as pages need room too (a flush would not, but the client asked for the write)
        await ZeroOrTrimAsync(offset, length, noHole ? ZeroMode.ZeroPages : ZeroMode.Holes).ConfigureAwait(false);
        if (fua) await CommitIfRelaxedAsync().ConfigureAwait(false);
    }

    public override async ValueTask TrimAsync(long offset, long length, bool fua)
    {
        if (length == 0) return;
        await ZeroOrTrimAsync(offset, length, ZeroMode.TrimWholePages).ConfigureAwait(false);
        if (fua) await CommitIfRelaxedAsync().ConfigureAwait(false);
    }

    private enum ZeroMode { Holes, ZeroPages, TrimWholePages }

    /// <summary>
    /// Whole pages leave the store (holes, read as zeros) or become zero pages (no bytes, only a
    /// page slot); partial pages at the ends are zeroed by read-modify-write (trim leaves them).
    /// Whole 64-page objects go with one flush-object.
    /// </summary>
    private async ValueTask ZeroOrTrimAsync(long offset, long length, ZeroMode mode)
    {
        var (first, last) = PagesOf(offset, length);
        long end = offset + length;
        for (long batch = first; batch <= last; batch += Batch)
        {
            long batchEnd = Math.Min(last, batch + Batch - 1);
            using (await Locks.AcquireAsync(batch, batchEnd - batch + 1).ConfigureAwait(false))
            {
                var flushes = new List<ValueTask>();
                var zeroPages = new List<long>();
                var partial = new List<long>();
                for (long page = batch; page <= batchEnd; page++)
                {
                    long pageStart = page * PageSize;
                    bool whole = pageStart >= offset && pageStart + PageSize <= end;
                    if (!whole)
                    {
                        if (mode != ZeroMode.TrimWholePages) partial.Add(page);
                        continue;
                    }
                    if (mode == ZeroMode.ZeroPages)
                    {
                        zeroPages.Add(page);
                        continue;
                    }
                    // A whole object in range: one flush-object for its 64 pages.
                    if (BlockMap.IndexOf(page) == 0 && page + BlockMap.PagesPerObject - 1 <= batchEnd
                        && (page + BlockMap.PagesPerObject) * PageSize <= end)
                    {
                        flushes.Add(AsValueTask(Session.FlushObjectAsync(PoolId, BlockMap.ObjectOf(page))));
                        page += BlockMap.PagesPerObject - 1;
                        continue;
                    }
                    flushes.Add(AsValueTask(Session.FlushPageAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page))));
                }
                foreach (var flush in flushes) await flush.ConfigureAwait(false);
                // The whole pages of a batch are consecutive: zero pages (no bytes, a page slot each).
                if (zeroPages.Count > 0)
                    await PutPagesAsync(zeroPages[0], zeroPages[^1], _ => PagePlan.Whole(ZeroPage.AsMemory(0, PageSize))).ConfigureAwait(false);
                foreach (long page in partial)
                {
                    long pageStart = page * PageSize;
                    int from = (int)(Math.Max(offset, pageStart) - pageStart);
                    int to = (int)(Math.Min(end, pageStart + PageSize) - pageStart);
                    await PutPagesAsync(page, page, _ => PagePlan.Partial(from, ZeroPage.AsMemory(0, to - from)), skipIfAbsent: true).ConfigureAwait(false);
                }
            }
        }
    }

    private static async ValueTask AsValueTask<T>(ValueTask<T> task) => await task.ConfigureAwait(false);

    /// <summary>What to put at a page.</summary>
    private readonly record struct PagePlan(int From, ReadOnlyMemory<byte> Data, bool IsWhole)
    {
        public static PagePlan Whole(ReadOnlyMemory<byte> page) => new(0, page, true);

        public static PagePlan Partial(int from, ReadOnlyMemory<byte> part) => new(from, part, false);
    }

    /// <summary>
    /// Under the pages' locks: puts pages <paramref name="first"/>..<paramref name="last"/> and awaits them all (one group commit in Strict mode).
    /// A partial page is read, merged and put; with <paramref name="skipIfAbsent"/> an absent one
    /// is left absent (zeroing part of a hole changes nothing). A refused put is ENOSPC.
    /// </summary>
    private async ValueTask PutPagesAsync(long first, long last, Func<long, PagePlan> plan, bool skipIfAbsent = false)
    {
        int count = (int)(last - first + 1);
        var puts = ArrayPool<(long Page, ValueTask<PutStatus> Put)>.Shared.Rent(count);
        int issued = 0;
        byte[]? merge = null;
        try
        {
            for (long page = first; page <= last; page++)
            {
                var p = plan(page);
                ValueTask<PutStatus> put;
                if (p.IsWhole)
                {
                    put = Session.PutAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), p.Data.Span);
                }
                else
                {
                    merge ??= Rent(PageSize);
                    var buffer = merge.AsMemory(0, PageSize);
                    bool present = await GetPageAsync(page, buffer).ConfigureAwait(false);
                    if (!present && skipIfAbsent) continue;
                    p.Data.Span.CopyTo(buffer.Span[p.From..]);
                    put = Session.PutAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), buffer.Span);
                }
                puts[issued++] = (page, put);
            }
        }
        catch
        {
            for (int i = 0; i < issued; i++)
            {
                try
                {
                    await puts[i].Put.ConfigureAwait(false);
                }
                catch
                {
                    // the first failure is the one reported
                }
            }
            throw;
        }
        finally
        {
            if (merge is not null) Return(merge);
        }
        PutStatus refused = PutStatus.Stored;
        long refusedPage = -1;
        Exception? failure = null;
        for (int i = 0; i < issued; i++)
        {
            try
            {
                var status = await puts[i].Put.ConfigureAwait(false);
                if (status != PutStatus.Stored && refusedPage < 0) (refused, refusedPage) = (status, puts[i].Page);
            }
            catch (Exception e)
            {
                failure ??= e;
            }
        }
        Array.Clear(puts, 0, issued);
        ArrayPool<(long, ValueTask<PutStatus>)>.Shared.Return(puts);
        if (failure is not null) throw failure;
        if (refusedPage >= 0) throw NoSpace(refused, refusedPage);
    }

    public override ValueTask FlushAsync() => Session.CommitAsync();

    private ValueTask CommitIfRelaxedAsync() => relaxed ? Session.CommitAsync() : ValueTask.CompletedTask;

    public override ValueTask CacheAsync(long offset, long length) => ValueTask.CompletedTask; // pages are in RAM or read from the log's mapping

    public override async ValueTask BlockStatusAsync(long offset, long length, bool one, List<NbdExtent> extents)
    {
        var (first, last) = PagesOf(offset, length);
        last = Math.Min(last, first + StatusPages - 1);
        var scratch = Rent(PageSize);
        try
        {
            long at = offset;
            long end = Math.Min(offset + length, (last + 1) * PageSize);
            uint current = 0;
            long runStart = at;
            for (long page = first; page <= last; page++)
            {
                var buffer = scratch.AsMemory(0, PageSize);
                bool present = await GetPageAsync(page, buffer).ConfigureAwait(false);
                uint flags = !present ? NbdProtocol.StateHole | NbdProtocol.StateZero
                    : buffer.Span.IndexOfAnyExcept((byte)0) < 0 ? NbdProtocol.StateZero : 0;
                long pageEnd = Math.Min(end, (page + 1) * PageSize);
                if (page == first)
                {
                    current = flags;
                }
                else if (flags != current)
                {
                    extents.Add(new NbdExtent((uint)(at - runStart), current));
                    if (one) return;
                    runStart = at;
                    current = flags;
                }
                at = pageEnd;
            }
            extents.Add(new NbdExtent((uint)(at - runStart), current));
        }
        finally
        {
            Return(scratch);
        }
    }

    // ---- The header page: which pool holds which export --------------------------------------

    private static readonly byte[] HeaderMagic = "TMEMNBD1"u8.ToArray();

    /// <summary>
    /// The export's header page (index 0 of <see cref="BlockMap.HeaderObject"/>): magic
    /// <c>TMEMNBD1</c>, u32 version 1, u32 page size, u64 size, u16 name length, the name (UTF-8),
    /// big-endian. It names the pool's export across restarts.
    /// </summary>
    public static byte[] Header(string name, int pageSize, long size)
    {
        var page = new byte[pageSize];
        HeaderMagic.CopyTo(page, 0);
        BinaryPrimitives.WriteUInt32BigEndian(page.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32BigEndian(page.AsSpan(12), (uint)pageSize);
        BinaryPrimitives.WriteInt64BigEndian(page.AsSpan(16), size);
        int length = Encoding.UTF8.GetBytes(name, page.AsSpan(26));
        BinaryPrimitives.WriteUInt16BigEndian(page.AsSpan(24), (ushort)length);
        return page;
    }

    /// <summary>Reads a header page; null when it is not one.</summary>
    public static (string Name, int PageSize, long Size)? ReadHeader(ReadOnlySpan<byte> page)
    {
        if (page.Length < 26 || !page[..8].SequenceEqual(HeaderMagic) || BinaryPrimitives.ReadUInt32BigEndian(page[8..]) != 1) return null;
        int length = BinaryPrimitives.ReadUInt16BigEndian(page[24..]);
        if (26 + length > page.Length) return null;
        return (Encoding.UTF8.GetString(page.Slice(26, length)), (int)BinaryPrimitives.ReadUInt32BigEndian(page[12..]), BinaryPrimitives.ReadInt64BigEndian(page[16..]));
    }
}
