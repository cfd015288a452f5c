using System.Buffers.Binary;
using K4os.Compression.LZ4;

namespace Tmem.Tests;

/// <summary>Page builders and measuring helpers shared by the tests.</summary>
internal static class TestPages
{
    public const ulong NonZeroWord = 0x0102030405060708UL;

    /// <summary>LZ4 (fast level, the library's codec) size of the page, with unlimited room.</summary>
    public static int Lz4Length(ReadOnlySpan<byte> page)
    {
        var target = new byte[LZ4Codec.MaximumOutputSize(page.Length)];
        return LZ4Codec.Encode(page, target, LZ4Level.L00_FAST);
    }

    /// <summary>The 16-byte size class slot a compressed length occupies.</summary>
    public static int SlotSize(int compressedLength) => (compressedLength + 15) & ~15;

    /// <summary>
    /// The first <paramref name="randomFraction"/> of the page is random (seeded), the rest a short
    /// repeating (not same-filled) pattern: compresses to about that fraction of the page.
    /// </summary>
    public static byte[] WithRandomPrefix(int size, double randomFraction, int seed)
    {
        var page = new byte[size];
        int n = (int)(size * randomFraction);
        new Random(seed).NextBytes(page.AsSpan(0, n));
        for (int i = n; i < size; i++) page[i] = (byte)((i % 7) + seed);
        return page;
    }

    /// <summary>A page that compresses well (about a quarter of its size).</summary>
    public static byte[] Compressible(int size, int seed) => WithRandomPrefix(size, 0.25, seed);

    /// <summary>A whole page of random bytes: LZ4 cannot shrink it (poor compression).</summary>
    public static byte[] Random(int size, int seed)
    {
        var page = new byte[size];
        new Random(seed).NextBytes(page);
        return page;
    }

    /// <summary>
    /// Bytes of a log segment file up to its last non-zero byte: the data in it, whether the
    /// device grew the file as it wrote (File) or preallocated it whole (Mapped).
    /// </summary>
    public static long DataLength(string segmentFile)
    {
        var bytes = File.ReadAllBytes(segmentFile);
        return bytes.AsSpan().LastIndexOfAnyExcept((byte)0) + 1;
    }

    /// <summary>One 8-byte word repeated over the page.</summary>
    public static byte[] SameFilled(int size, ulong word)
    {
        var page = new byte[size];
        for (int i = 0; i < size; i += 8) BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(i), word);
        return page;
    }

    /// <summary>
    /// A page whose LZ4 size lies in [<paramref name="minFraction"/>, <paramref name="maxFraction"/>]
    /// of the page size, found by trying random-prefix fractions; throws if none fits.
    /// </summary>
    public static byte[] CompressingTo(int size, double minFraction, double maxFraction, int seed)
    {
        double target = (minFraction + maxFraction) / 2;
        for (double f = target - 0.05; f <= target + 0.05; f += 0.0025)
        {
            var page = WithRandomPrefix(size, f, seed);
            int length = Lz4Length(page);
            if (length >= size * minFraction && length <= size * maxFraction) return page;
        }
        throw new InvalidOperationException($"No page of {size} bytes compresses into [{minFraction}, {maxFraction}].");
    }

    public static byte[] Filled(int size, byte value)
    {
        var page = new byte[size];
        page.AsSpan().Fill(value);
        return page;
    }

    public static ObjectId Oid(int n) => new((ulong)n, 0x5A5A, 7);
}

/// <summary>Opening stores and pools tersely.</summary>
internal static class Stores
{
    public static readonly PoolOptions PrivateEphemeral = PoolOptions.Ephemeral;
    public static readonly PoolOptions Persistent = PoolOptions.Persistent;
    public static readonly PoolOptions PersistentExclusive = new() { Kind = PoolKind.Persistent, ExclusiveGets = true };

    public static PoolOptions SharedEphemeral(Guid uuid, int pageSize = PoolOptions.DefaultPageSize) =>
        new() { SharedUuid = uuid, PageSize = pageSize };

    public static TmemStore Open(long budgetBytes = 256L << 20, Action<TmemOptions>? configure = null)
    {
        var options = new TmemOptions { RamBudgetBytes = budgetBytes };
        configure?.Invoke(options);
        return TmemStore.Open(options);
    }

    /// <summary>Every page gauge, the RAM tier's slot bytes and the pool count are zero.</summary>
    public static void AssertHoldsNothing(TmemStats stats)
    {
        Assert.Equal(0, stats.EphPages);
        Assert.Equal(0, stats.PersPages);
        Assert.Equal(0, stats.ZeroFilledPages);
        Assert.Equal(0, stats.EphZbytes);
        Assert.Equal(0, stats.PersZbytes);
        Assert.Equal(0, stats.RamSlotBytes);
        Assert.Equal(0, stats.Pools);
    }
}
