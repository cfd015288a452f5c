using Tmem.Compression;

namespace Tmem.LogTier;

/// <summary>Builds a page's Put record (header, CRC-32C, payload) outside any lock, in a per-thread buffer.</summary>
internal static class PutRecord
{
    [ThreadStatic]
    private static byte[]? _buffer;

    /// <summary>
    /// The Put record of <paramref name="page"/> at (<paramref name="poolSerial"/>,
    /// <paramref name="objectId"/>, <paramref name="index"/>): the 8-byte pattern as payload for a
    /// same-filled page, the page itself for an uncompressed one, else the LZ4 bytes. Valid until
    /// this thread's next call.
    /// </summary>
    public static ReadOnlySpan<byte> Build(uint poolSerial, in ObjectId objectId, uint index, in EncodedPage page)
    {
        Span<byte> patternBytes = stackalloc byte[sizeof(ulong)];
        BitConverter.TryWriteBytes(patternBytes, page.Pattern);
        var payload = page.SameFilled ? patternBytes : page.Bytes;
        var flags = page.SameFilled ? LogRecordFlags.SameFilled : page.Uncompressed ? LogRecordFlags.Uncompressed : LogRecordFlags.None;
        var buffer = _buffer ??= new byte[LogRecord.SizeOf(PoolOptions.MaxPageSize)];
        int size = LogRecord.SizeOf(payload.Length);
        LogRecord.Write(buffer.AsSpan(0, size), LogRecordType.Put, flags, poolSerial, objectId, index, payload);
        return buffer.AsSpan(0, size);
    }
}
