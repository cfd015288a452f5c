using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Tmem.Service.Sessions;

namespace Tmem.Service.Nbd;

/// <summary>
/// An export in front of a backing file (or block device) that stays authoritative, its pages
/// cached in an ephemeral pool of the owner (cleancache for a block device). The pool is shared
/// (a random UUID of the service's own, so gets keep the page: a private ephemeral pool's hits
/// would remove it) and stores poorly compressing pages uncompressed.
/// <list type="bullet">
/// <item>A read takes pages from the pool; a missing page is read from the file and put (a clean
/// copy), under the page's lock, so a fill never lands after a write to that page.</item>
/// <item>A write goes to the file first, then, under the same lock, replaces the cached page
/// (whole pages) or drops it (partial pages): after a completed write no stale page is cached.
/// A write the file refuses drops the pages it touched.</item>
/// <item>FLUSH and FUA fsync (fdatasync) the file, which covers every write completed before on
/// any connection (they all write the same file).</item>
/// <item>Eviction, or a put the store refuses, only costs a later read from the file.</item>
/// </list>
/// </summary>
internal sealed partial class CacheExport(NbdExportOptions options, Session session, int poolId, long size, SafeFileHandle file)
    : NbdExport(options, session, poolId, size)
{
    private const int FallocKeepSize = 1;
    private const int FallocPunchHole = 2;
    private const int FallocZeroRange = 0x10;
    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int ENXIO = 6;

    /// <summary>Bytes a zeroing without fallocate writes at a time.</summary>
    private const int ZeroChunk = 1 << 20;

    public override string ModeName => "cache";

    public override async ValueTask ReadAsync(long offset, Memory<byte> destination)
    {
        if (destination.Length == 0) return;
        var (first, last) = PagesOf(offset, destination.Length);
        byte[]? scratch = null;
        long missFirst = -1;
        try
        {
            for (long page = first; page <= last; page++)
            {
                bool hit;
                long pageStart = page * PageSize;
                int from = (int)(Math.Max(offset, pageStart) - pageStart);
                int to = (int)(Math.Min(offset + destination.Length, pageStart + PageSize) - pageStart);
                var target = destination.Slice((int)(pageStart + from - offset), to - from);
                if (from == 0 && to == PageSize)
                {
                    hit = await Session.GetAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), target).ConfigureAwait(false) == GetStatus.Hit;
                }
                else
                {
                    scratch ??= Rent(PageSize);
                    hit = await Session.GetAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), scratch.AsMemory(0, PageSize)).ConfigureAwait(false) == GetStatus.Hit;
                    if (hit) scratch.AsSpan(from, to - from).CopyTo(target.Span);
                }
                if (hit)
                {
                    if (missFirst >= 0) await FillAsync(missFirst, page - 1, offset, destination).ConfigureAwait(false);
                    missFirst = -1;
                }
                else if (missFirst < 0)
                {
                    missFirst = page;
                }
            }
            if (missFirst >= 0) await FillAsync(missFirst, last, offset, destination).ConfigureAwait(false);
        }
        finally
        {
            if (scratch is not null) Return(scratch);
        }
    }

    /// <summary>
    /// Pages <paramref name="first"/>..<paramref name="last"/> missed: under their locks, read
    /// them from the file in one read, put each (a clean copy) and copy what the request wants.
    /// </summary>
    private async ValueTask FillAsync(long first, long last, long offset, Memory<byte>? destination)
    {
        int count = (int)(last - first + 1);
        int bytes = count * PageSize;
        var buffer = Rent(bytes);
        try
        {
            using (await Locks.AcquireAsync(first, count).ConfigureAwait(false))
            {
                int read = await ReadFileAsync(buffer.AsMemory(0, bytes), first * PageSize).ConfigureAwait(false);
                buffer.AsSpan(read, bytes - read).Clear(); // past the end of a file whose size is not a page multiple
                for (int i = 0; i < count; i++)
                {
                    long page = first + i;
                    // Ephemeral puts complete at once; a refusal only means the page is not cached.
                    await Session.PutAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), buffer.AsSpan(i * PageSize, PageSize)).ConfigureAwait(false);
                }
            }
            if (destination is { } d)
            {
                long start = Math.Max(offset, first * PageSize);
                long end = Math.Min(offset + d.Length, (last + 1) * PageSize);
                buffer.AsSpan((int)(start - first * PageSize), (int)(end - start)).CopyTo(d.Span[(int)(start - offset)..]);
            }
        }
        finally
        {
            Return(buffer);
        }
    }

    private async ValueTask<int> ReadFileAsync(Memory<byte> buffer, long at)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await RandomAccess.ReadAsync(file, buffer[total..], at + total).ConfigureAwait(false);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        if (data.Length == 0) return;
        var (first, last) = PagesOf(offset, data.Length);
        using (await Locks.AcquireAsync(first, last - first + 1).ConfigureAwait(false))
        {
            try
            {
                await RandomAccess.WriteAsync(file, data, offset).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                await DropAsync(first, last).ConfigureAwait(false);
                throw FileError(e, "write");
            }
            for (long page = first; page <= last; page++)
            {
                long pageStart = page * PageSize;
                if (pageStart >= offset && pageStart + PageSize <= offset + data.Length)
                    await Session.PutAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), data.Span.Slice((int)(pageStart - offset), PageSize)).ConfigureAwait(false);
                else
                    await Session.FlushPageAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page)).ConfigureAwait(false);
            }
        }
        if (fua) await SyncAsync(dataOnly: true).ConfigureAwait(false);
    }

    /// <summary>Drops pages <paramref name="first"/>..<paramref name="last"/> from the cache (under their locks).</summary>
    private async ValueTask DropAsync(long first, long last)
    {
        for (long page = first; page <= last; page++)
            await Session.FlushPageAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page)).ConfigureAwait(false);
    }

    public override async ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua)
    {
        if (length == 0) return;
        var (first, last) = PagesOf(offset, length);
        for (long batch = first; batch <= last; batch += 4096)
        {
            long batchLast = Math.Min(last, batch + 4095);
            long from = Math.Max(offset, batch * PageSize);
            long to = Math.Min(offset + length, (batchLast + 1) * PageSize);
            using (await Locks.AcquireAsync(batch, batchLast - batch + 1).ConfigureAwait(false))
            {
                try
                {
                    await ZeroFileAsync(from, to - from, noHole).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    await DropAsync(batch, batchLast).ConfigureAwait(false);
                    throw FileError(e, "zeroing");
                }
                // Whole pages are cached as zero pages (no bytes); partial ones are dropped.
                for (long page = batch; page <= batchLast; page++)
                {
                    long pageStart = page * PageSize;
                    if (pageStart >= from && pageStart + PageSize <= to)
                        await Session.PutAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), ZeroPage.AsSpan(0, PageSize)).ConfigureAwait(false);
                    else
                        await Session.FlushPageAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page)).ConfigureAwait(false);
                }
            }
        }
        if (fua) await SyncAsync(dataOnly: true).ConfigureAwait(false);
    }

    private async ValueTask ZeroFileAsync(long offset, long length, bool noHole)
    {
        int fd = (int)file.DangerousGetHandle();
        // Punch a hole (or zero the range in place when the client wants it allocated); a file
        // system or device without fallocate gets zeroes written.
        if (Fallocate(fd, FallocKeepSize | (noHole ? FallocZeroRange : FallocPunchHole), offset, length) == 0) return;
        if (noHole && Fallocate(fd, FallocZeroRange, offset, length) == 0) return;
        var zeroes = new byte[(int)Math.Min(ZeroChunk, length)];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(zeroes.Length, length - done);
            await RandomAccess.WriteAsync(file, zeroes.AsMemory(0, n), offset + done).ConfigureAwait(false);
            done += n;
        }
    }

    public override async ValueTask TrimAsync(long offset, long length, bool fua)
    {
        if (length == 0) return;
        var (first, last) = PagesOf(offset, length);
        for (long batch = first; batch <= last; batch += 4096)
        {
            long batchLast = Math.Min(last, batch + 4095);
            long from = Math.Max(offset, batch * PageSize);
            long to = Math.Min(offset + length, (batchLast + 1) * PageSize);
            using (await Locks.AcquireAsync(batch, batchLast - batch + 1).ConfigureAwait(false))
            {
                // A hint: where the file cannot punch holes nothing changes, and the cache stays right.
                if (Fallocate((int)file.DangerousGetHandle(), FallocKeepSize | FallocPunchHole, from, to - from) == 0)
                    await DropAsync(batch, batchLast).ConfigureAwait(false);
            }
        }
        if (fua) await SyncAsync(dataOnly: true).ConfigureAwait(false);
    }

    public override ValueTask FlushAsync() => SyncAsync(dataOnly: false);

    private async ValueTask SyncAsync(bool dataOnly)
    {
        try
        {
            await Task.Run(() =>
            {
                if (dataOnly ? Fdatasync((int)file.DangerousGetHandle()) != 0 : Fsync((int)file.DangerousGetHandle()) != 0)
                    throw new IOException($"{(dataOnly ? "fdatasync" : "fsync")} of {Options.BackingFile} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw new NbdException(NbdProtocol.EIO, e.Message);
        }
    }

    public override async ValueTask CacheAsync(long offset, long length)
    {
        var (first, last) = PagesOf(offset, length);
        var probe = Rent(PageSize);
        try
        {
            long missFirst = -1;
            for (long page = first; page <= last; page++)
            {
                bool hit = await Session.GetAsync(PoolId, BlockMap.ObjectOf(page), BlockMap.IndexOf(page), probe.AsMemory(0, PageSize)).ConfigureAwait(false) == GetStatus.Hit;
                if (!hit && missFirst < 0) missFirst = page;
                bool runEnds = hit || page == last || page - missFirst + 1 >= 256;
                if (missFirst >= 0 && runEnds)
                {
                    await FillAsync(missFirst, hit ? page - 1 : page, offset, null).ConfigureAwait(false);
                    missFirst = -1;
                }
            }
        }
        finally
        {
            Return(probe);
        }
    }

    /// <summary>base:allocation from the file's own holes (SEEK_DATA / SEEK_HOLE); all data where the file cannot tell.</summary>
    public override ValueTask BlockStatusAsync(long offset, long length, bool one, List<NbdExtent> extents)
    {
        int fd = (int)file.DangerousGetHandle();
        long end = offset + length;
        long at = offset;
        while (at < end)
        {
            long data = Lseek(fd, at, SeekData);
            if (data < 0)
            {
                if (Marshal.GetLastPInvokeError() == ENXIO)
                {
                    extents.Add(new NbdExtent((uint)(end - at), NbdProtocol.StateHole | NbdProtocol.StateZero)); // a hole to the end of the file
                    break;
                }
                extents.Add(new NbdExtent((uint)(end - at), 0));
                break;
            }
            if (data > at)
            {
                extents.Add(new NbdExtent((uint)(Math.Min(data, end) - at), NbdProtocol.StateHole | NbdProtocol.StateZero));
                at = Math.Min(data, end);
                if (one || at >= end) break;
            }
            long hole = Lseek(fd, at, SeekHole);
            long dataEnd = hole < 0 ? end : Math.Min(hole, end);
            extents.Add(new NbdExtent((uint)(dataEnd - at), 0));
            at = dataEnd;
            if (one) break;
        }
        return ValueTask.CompletedTask;
    }

    public override void Close() => file.Dispose();

    private NbdException FileError(IOException e, string what)
    {
        // ENOSPC, EDQUOT and EFBIG are "no space" to the client (the NBD specification asks so).
        int errno = e.HResult & 0xFFFF;
        bool noSpace = errno is 28 or 122 or 27 || e.Message.Contains("No space", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("quota", StringComparison.OrdinalIgnoreCase);
        return new NbdException(noSpace ? NbdProtocol.ENOSPC : NbdProtocol.EIO, $"{what} of the backing file {Options.BackingFile} failed: {e.Message}");
    }

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int Fdatasync(int fd);
}
