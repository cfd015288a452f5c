namespace Tmem.Service.Nbd;

/// <summary>
/// How an export's pages map to tmem handles (docs/nbd.md, "Blocks and handles"). Page
/// <c>p</c> (byte offset <c>p × PageSize</c>) is index <c>p mod 64</c> of object
/// <c>(p div 64, Tag, 0)</c> in the export's pool: one object per 64 consecutive pages (256 KiB of
/// a 4 KiB-page export). The pool picks a bucket (lock) from the object id's hash, so consecutive
/// extents land in different buckets and one device spreads over all of the pool's
/// <c>Tmem:BucketsPerPool</c> locks, while a sequential request stays within one or two objects.
/// The engine's per-object cost (about 150 bytes) is shared by 64 pages: about 2.3 bytes a page
/// on top of the per-page metadata every tmem page has. The pool holds nothing else but the
/// export's header page (<see cref="HeaderObject"/>, persistent exports only).
/// </summary>
internal static class BlockMap
{
    /// <summary>Pages per object.</summary>
    public const int PagesPerObject = 64;

    private const int Shift = 6;

    /// <summary>Word 1 of every data object id ("NBD" and a zero byte).</summary>
    public const ulong Tag = 0x4E424400;

    /// <summary>The object holding a persistent export's header page (word 1 "NBDH"): never a data object.</summary>
    public static readonly ObjectId HeaderObject = new(0, 0x4E424448, 0);

    public static ObjectId ObjectOf(long page) => new((ulong)page >> Shift, Tag, 0);

    public static uint IndexOf(long page) => (uint)(page & (PagesPerObject - 1));

    /// <summary>The object of extent <paramref name="extent"/> (pages extent × 64 .. + 63).</summary>
    public static ObjectId ObjectOfExtent(long extent) => new((ulong)extent, Tag, 0);
}

/// <summary>
/// Per-page locks for an export, striped: a page's writers (a write, a read-modify-write of part
/// of it, a zeroing, a trim, a cache fill from the backing file) hold its stripe, so that two
/// overlapping requests apply wholly one after the other and a cache fill never puts a page older
/// than a write that completed. Reads of pages in the store take no lock (a get is atomic per
/// page). A request takes the stripes of its pages in ascending order, so two requests never wait
/// for each other in a cycle.
/// </summary>
internal sealed class PageLocks
{
    private readonly SemaphoreSlim[] _stripes;
    private readonly int _mask;

    public PageLocks(int stripes = 1024)
    {
        _stripes = new SemaphoreSlim[stripes];
        for (int i = 0; i < stripes; i++) _stripes[i] = new SemaphoreSlim(1, 1);
        _mask = stripes - 1;
    }

    private int StripeOf(long page) => (int)((ulong)(page * unchecked((long)0x9E3779B97F4A7C15UL)) >> 40) & _mask;

    /// <summary>Takes the stripes of pages <paramref name="first"/> .. <paramref name="first"/> + <paramref name="count"/> - 1.</summary>
    public async ValueTask<Held> AcquireAsync(long first, long count)
    {
        if (count == 1)
        {
            int stripe = StripeOf(first);
            await _stripes[stripe].WaitAsync().ConfigureAwait(false);
            return new Held(this, stripe, null, 0);
        }
        int[] stripes;
        int n;
        if (count >= _stripes.Length)
        {
            stripes = System.Buffers.ArrayPool<int>.Shared.Rent(_stripes.Length);
            for (int i = 0; i < _stripes.Length; i++) stripes[i] = i;
            n = _stripes.Length;
        }
        else
        {
            stripes = System.Buffers.ArrayPool<int>.Shared.Rent((int)count);
            for (int i = 0; i < count; i++) stripes[i] = StripeOf(first + i);
            Array.Sort(stripes, 0, (int)count);
            n = 0;
            for (int i = 0; i < count; i++)
                if (n == 0 || stripes[n - 1] != stripes[i]) stripes[n++] = stripes[i];
        }
        int taken = 0;
        try
        {
            for (; taken < n; taken++) await _stripes[stripes[taken]].WaitAsync().ConfigureAwait(false);
        }
        catch
        {
            for (int i = 0; i < taken; i++) _stripes[stripes[i]].Release();
            System.Buffers.ArrayPool<int>.Shared.Return(stripes);
            throw;
        }
        return new Held(this, -1, stripes, n);
    }

    /// <summary>Stripes held; <see cref="Dispose"/> releases them.</summary>
    public readonly struct Held(PageLocks owner, int single, int[]? many, int count) : IDisposable
    {
        public void Dispose()
        {
            if (many is null)
            {
                owner._stripes[single].Release();
                return;
            }
            for (int i = 0; i < count; i++) owner._stripes[many[i]].Release();
            System.Buffers.ArrayPool<int>.Shared.Return(many);
        }
    }
}
