using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using K4os.Compression.LZ4;

namespace Tmem.Compression;

/// <summary>LZ4 (K4os, fast level) plus same-filled page detection, over spans, allocation-free.</summary>
public static class PageCodec
{
    /// <summary>True when the page is one 8-byte word repeated (all-zero pages included).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryGetFillPattern(ReadOnlySpan<byte> page, out ulong pattern)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(page);
        pattern = words[0];
        return words.IndexOfAnyExcept(pattern) < 0; // vectorized; stops at the first other word
    }

    /// <summary>Writes <paramref name="pattern"/> over the whole page.</summary>
    public static void Fill(Span<byte> page, ulong pattern) => MemoryMarshal.Cast<byte, ulong>(page).Fill(pattern);

    /// <summary>
    /// Compresses into <paramref name="target"/>; its length is the largest size accepted.
    /// Returns the compressed length, or 0 when the page does not fit (poor compression).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Compress(ReadOnlySpan<byte> page, Span<byte> target)
    {
        int length = LZ4Codec.Encode(page, target, LZ4Level.L00_FAST);
        return length > 0 ? length : 0;
    }

    /// <summary>Decompresses; returns the decoded length (negative on malformed input).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Decompress(ReadOnlySpan<byte> compressed, Span<byte> page) => LZ4Codec.Decode(compressed, page);
}
