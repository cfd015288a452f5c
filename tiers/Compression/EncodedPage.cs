namespace Tmem.Compression;

/// <summary>
/// A page as the store keeps it: either the 8-byte word it repeats (same-filled: no bytes) or its
/// LZ4 bytes. Made by <see cref="PageEncoder"/> before any lock is taken; the bytes live in the
/// caller's scratch buffer (or a log record's payload) and must be copied before it is reused.
/// </summary>
internal readonly ref struct EncodedPage
{
    private EncodedPage(bool sameFilled, ulong pattern, ReadOnlySpan<byte> compressed)
    {
        SameFilled = sameFilled;
        Pattern = pattern;
        Compressed = compressed;
    }

    /// <summary>One 8-byte word repeated over the whole page (zero pages included).</summary>
    public bool SameFilled { get; }

    /// <summary>The repeated word of a same-filled page.</summary>
    public ulong Pattern { get; }

    /// <summary>The LZ4 bytes of any other page.</summary>
    public ReadOnlySpan<byte> Compressed { get; }

    /// <summary>Bytes stored: the compressed length, 0 for a same-filled page.</summary>
    public int StoredLength => Compressed.Length;

    public static EncodedPage OfPattern(ulong pattern) => new(true, pattern, default);

    public static EncodedPage OfCompressed(ReadOnlySpan<byte> compressed) => new(false, 0, compressed);

    /// <summary>
    /// A page as a Put record carries it: the 8-byte pattern for a same-filled page, else the LZ4 bytes.
    /// </summary>
    public static EncodedPage FromPayload(bool sameFilled, ReadOnlySpan<byte> payload) =>
        sameFilled ? OfPattern(BitConverter.ToUInt64(payload)) : OfCompressed(payload);
}

/// <summary>The first step of a put: same-fill detection, then LZ4 into a bounded scratch buffer, outside any lock.</summary>
internal static class PageEncoder
{
    [ThreadStatic]
    private static byte[]? _scratch;

    /// <summary>
    /// Encodes <paramref name="page"/>; false when its LZ4 bytes would exceed
    /// <paramref name="maxCompressedBytes"/> (poor compression). The result's bytes are valid until
    /// this thread's next call.
    /// </summary>
    public static bool TryEncode(ReadOnlySpan<byte> page, int maxCompressedBytes, out EncodedPage encoded)
    {
        if (PageCodec.TryGetFillPattern(page, out ulong pattern))
        {
            encoded = EncodedPage.OfPattern(pattern);
            return true;
        }
        var scratch = _scratch ??= new byte[PoolOptions.MaxPageSize];
        int length = PageCodec.Compress(page, scratch.AsSpan(0, maxCompressedBytes));
        encoded = length == 0 ? default : EncodedPage.OfCompressed(scratch.AsSpan(0, length));
        return length != 0;
    }
}
