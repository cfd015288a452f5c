using K4os.Compression.LZ4;

namespace Tmem.Compression;

/// <summary>
/// A page as the store keeps it: the 8-byte word it repeats (same-filled: no bytes), its LZ4
/// bytes, or (in a pool with <see cref="PoolOptions.StoreIncompressible"/>, for a page that
/// compresses poorly) the page itself, uncompressed. Made by <see cref="PageEncoder"/> before any
/// lock is taken; the bytes live in the caller's scratch buffer, the caller's page or a log
/// record's payload, and must be copied before that is reused.
/// </summary>
internal readonly ref struct EncodedPage
{
    private EncodedPage(bool sameFilled, bool uncompressed, ulong pattern, ReadOnlySpan<byte> bytes)
    {
        SameFilled = sameFilled;
        Uncompressed = uncompressed;
        Pattern = pattern;
        Bytes = bytes;
    }

    /// <summary>One 8-byte word repeated over the whole page (zero pages included).</summary>
    public bool SameFilled { get; }

    /// <summary><see cref="Bytes"/> is the page itself, not an LZ4 block.</summary>
    public bool Uncompressed { get; }

    /// <summary>The repeated word of a same-filled page.</summary>
    public ulong Pattern { get; }

    /// <summary>The bytes stored: the LZ4 block, or the page when <see cref="Uncompressed"/>; empty for a same-filled page.</summary>
    public ReadOnlySpan<byte> Bytes { get; }

    /// <summary>Bytes stored: the compressed length (the page size when uncompressed), 0 for a same-filled page.</summary>
    public int StoredLength => Bytes.Length;

    public static EncodedPage OfPattern(ulong pattern) => new(true, false, pattern, default);

    public static EncodedPage OfCompressed(ReadOnlySpan<byte> compressed) => new(false, false, 0, compressed);

    public static EncodedPage OfUncompressed(ReadOnlySpan<byte> page) => new(false, true, 0, page);

    /// <summary>
    /// A page as a Put record carries it: the 8-byte pattern for a same-filled page, the page
    /// itself for an uncompressed one, else the LZ4 bytes.
    /// </summary>
    public static EncodedPage FromPayload(bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload) =>
        sameFilled ? OfPattern(BitConverter.ToUInt64(payload)) : uncompressed ? OfUncompressed(payload) : OfCompressed(payload);
}

/// <summary>The first step of a put: same-fill detection, then LZ4 into a bounded scratch buffer, outside any lock.</summary>
internal static class PageEncoder
{
    [ThreadStatic]
    private static byte[]? _scratch;

    /// <summary>
    /// Encodes <paramref name="page"/>; false when its LZ4 bytes would exceed
    /// <paramref name="maxCompressedBytes"/> (poor compression), unless
    /// <paramref name="storeIncompressible"/>: then such a page is encoded as itself, uncompressed.
    /// The result's bytes are valid until this thread's next call (or, uncompressed, as long as
    /// <paramref name="page"/>).
    /// </summary>
    public static bool TryEncode(ReadOnlySpan<byte> page, int maxCompressedBytes, bool storeIncompressible, out EncodedPage encoded)
    {
        if (PageCodec.TryGetFillPattern(page, out ulong pattern))
        {
            encoded = EncodedPage.OfPattern(pattern);
            return true;
        }
        // Room for LZ4's worst case, so that the encoder runs without its output-bound checks
        // (about 2% faster over the corpus than bounding it at maxCompressedBytes, same bytes);
        // a page over the bound is refused after the encode.
        var scratch = _scratch ??= new byte[LZ4Codec.MaximumOutputSize(PoolOptions.MaxPageSize)];
        int length = PageCodec.Compress(page, scratch.AsSpan(0, LZ4Codec.MaximumOutputSize(page.Length)));
        if (length != 0 && length <= maxCompressedBytes)
        {
            encoded = EncodedPage.OfCompressed(scratch.AsSpan(0, length));
            return true;
        }
        encoded = storeIncompressible ? EncodedPage.OfUncompressed(page) : default;
        return storeIncompressible;
    }
}
