using System.Buffers.Binary;
using System.IO.Hashing;

namespace Tmem.RemoteTier;

/// <summary>
/// One remote value: a 64-byte header, then the page's bytes as the RAM tier held them (an LZ4
/// block, or the page itself for an uncompressed page). The header names the page completely (the
/// store's incarnation, pool serial, object id, index), carries the version the local descriptor
/// holds (its backing address) and an XxHash64 of header and bytes, so that a value that is not
/// exactly the page the descriptor names (another store's, an older version, a node that came
/// back with old data, a damaged value) is refused and the get misses.
/// <code>
///  0  u32 magic "TMR1"        4  u16 flags (bit 0: uncompressed)   6  u16 byte count
///  8  u64 store incarnation  16  u32 pool serial  20  u32 index    24  u64 version
/// 32  24 bytes object id (three little-endian u64)                 56  u64 XxHash64 (of bytes 0-55 and the page bytes)
/// </code>
/// All integers little-endian.
/// </summary>
internal static class RemoteValue
{
    public const int HeaderSize = 64;
    private const uint Magic = 0x31524D54; // "TMR1"
    private const ushort UncompressedFlag = 1;

    /// <summary>The header and the bytes, ready to send.</summary>
    public static byte[] Build(in RemotePageKey key, bool uncompressed, ReadOnlySpan<byte> bytes)
    {
        var value = new byte[HeaderSize + bytes.Length];
        var span = value.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], uncompressed ? UncompressedFlag : (ushort)0);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], (ushort)bytes.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], key.Object.Incarnation);
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], key.Object.PoolSerial);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], key.Index);
        BinaryPrimitives.WriteInt64LittleEndian(span[24..], key.Version);
        BinaryPrimitives.WriteUInt64LittleEndian(span[32..], key.Object.ObjectId.Word0);
        BinaryPrimitives.WriteUInt64LittleEndian(span[40..], key.Object.ObjectId.Word1);
        BinaryPrimitives.WriteUInt64LittleEndian(span[48..], key.Object.ObjectId.Word2);
        bytes.CopyTo(span[HeaderSize..]);
        BinaryPrimitives.WriteUInt64LittleEndian(span[56..], Checksum(span));
        return value;
    }

    private static ulong Checksum(ReadOnlySpan<byte> value)
    {
        var hash = new XxHash64();
        hash.Append(value[..56]);
        hash.Append(value[HeaderSize..]);
        return hash.GetCurrentHashAsUInt64();
    }

    /// <summary>
    /// Checks that <paramref name="value"/> is exactly the page <paramref name="key"/> names (at
    /// its version) and decodes it into <paramref name="page"/>; false, with the page untouched,
    /// when anything differs (the checksum passes before a byte is decoded).
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> value, in RemotePageKey key, Span<byte> page)
    {
        if (value.Length < HeaderSize
            || BinaryPrimitives.ReadUInt32LittleEndian(value) != Magic
            || BinaryPrimitives.ReadUInt16LittleEndian(value[6..]) != value.Length - HeaderSize
            || BinaryPrimitives.ReadUInt64LittleEndian(value[8..]) != key.Object.Incarnation
            || BinaryPrimitives.ReadUInt32LittleEndian(value[16..]) != key.Object.PoolSerial
            || BinaryPrimitives.ReadUInt32LittleEndian(value[20..]) != key.Index
            || BinaryPrimitives.ReadInt64LittleEndian(value[24..]) != key.Version
            || BinaryPrimitives.ReadUInt64LittleEndian(value[32..]) != key.Object.ObjectId.Word0
            || BinaryPrimitives.ReadUInt64LittleEndian(value[40..]) != key.Object.ObjectId.Word1
            || BinaryPrimitives.ReadUInt64LittleEndian(value[48..]) != key.Object.ObjectId.Word2
            || BinaryPrimitives.ReadUInt64LittleEndian(value[56..]) != Checksum(value))
            return false;
        var bytes = value[HeaderSize..];
        if ((BinaryPrimitives.ReadUInt16LittleEndian(value[4..]) & UncompressedFlag) != 0)
        {
            if (bytes.Length != page.Length) return false;
            bytes.CopyTo(page);
            return true;
        }
        return Compression.PageCodec.Decompress(bytes, page) == page.Length;
    }
}
