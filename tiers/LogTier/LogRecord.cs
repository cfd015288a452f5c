using System.Buffers.Binary;

namespace Tmem.LogTier;

/// <summary>
/// The log record format, version 1 (docs/storage-format.md). Little-endian:
/// <code>
///  0  u32  crc32c of bytes [4, 48 + payload length)
///  4  u8   version (1)
///  5  u8   type (LogRecordType)
///  6  u16  flags (LogRecordFlags)
///  8  u32  pool serial (store-wide, never reused)
/// 12  u32  index
/// 16  u64  object id word 0
/// 24  u64  object id word 1
/// 32  u64  object id word 2
/// 40  u32  payload length
/// 44  u32  reserved, 0
/// 48  ...  payload
/// </code>
/// </summary>
public readonly ref struct LogRecord
{
    /// <summary>Bytes of the header before the payload.</summary>
    public const int HeaderSize = 48;
    /// <summary>The record version this build writes.</summary>
    public const byte CurrentVersion = 1;

    private LogRecord(LogRecordType type, LogRecordFlags flags, uint poolSerial, ObjectId objectId, uint index, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        PoolSerial = poolSerial;
        ObjectId = objectId;
        Index = index;
        Payload = payload;
    }

    /// <summary>What the record logs.</summary>
    public LogRecordType Type { get; }

    /// <summary>Type-specific flags (a Put: same-filled).</summary>
    public LogRecordFlags Flags { get; }

    /// <summary>The store-wide serial of the pool it concerns (0 for a compaction base).</summary>
    public uint PoolSerial { get; }

    /// <summary>The object id (Put, FlushPage, FlushObject).</summary>
    public ObjectId ObjectId { get; }

    /// <summary>The page index (Put, FlushPage).</summary>
    public uint Index { get; }

    /// <summary>The payload, a view into the bytes the record was read from (no copy).</summary>
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>Bytes a record with <paramref name="payloadLength"/> payload bytes takes.</summary>
    public static int SizeOf(int payloadLength) => HeaderSize + payloadLength;

    /// <summary>Writes a record into <paramref name="destination"/> (exactly <see cref="SizeOf"/> bytes).</summary>
    public static void Write(Span<byte> destination, LogRecordType type, LogRecordFlags flags, uint poolSerial, in ObjectId objectId, uint index, ReadOnlySpan<byte> payload)
    {
        destination[4] = CurrentVersion;
        destination[5] = (byte)type;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], (ushort)flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], poolSerial);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], objectId.Word0);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], objectId.Word1);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[32..], objectId.Word2);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[40..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[44..], 0);
        payload.CopyTo(destination[HeaderSize..]);
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Crc32C(destination[4..(HeaderSize + payload.Length)]));
    }

    /// <summary>
    /// Parses and checks one record. Returns false with <paramref name="error"/> set when the bytes
    /// are not a valid record (bad checksum, version, type or length).
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> entry, out LogRecord record, out string? error)
    {
        error = null;
        record = default;
        if (entry.Length < HeaderSize)
        {
            error = $"entry of {entry.Length} bytes is shorter than the {HeaderSize}-byte record header";
            return false;
        }
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(entry[40..]);
        if (length != entry.Length - HeaderSize)
        {
            error = $"payload length field {length} does not match the entry's {entry.Length - HeaderSize} payload bytes";
            return false;
        }
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(entry);
        uint computed = Crc32C(entry[4..]);
        if (stored != computed)
        {
            error = $"checksum mismatch (stored 0x{stored:x8}, computed 0x{computed:x8})";
            return false;
        }
        if (entry[4] != CurrentVersion)
        {
            error = $"record version {entry[4]} is not {CurrentVersion}";
            return false;
        }
        var type = (LogRecordType)entry[5];
        if (type is < LogRecordType.Put or > LogRecordType.CompactionBase)
        {
            error = $"unknown record type {entry[5]}";
            return false;
        }
        var objectId = new ObjectId(
            BinaryPrimitives.ReadUInt64LittleEndian(entry[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(entry[24..]),
            BinaryPrimitives.ReadUInt64LittleEndian(entry[32..]));
        record = new LogRecord(type, (LogRecordFlags)BinaryPrimitives.ReadUInt16LittleEndian(entry[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(entry[8..]), objectId,
            BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]), entry[HeaderSize..]);
        return true;
    }

    /// <summary>CRC-32C (Castagnoli; reflected, init and final XOR 0xFFFFFFFF), System.IO.Hashing's vectorized one.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data) => System.IO.Hashing.Crc32.HashToUInt32(System.IO.Hashing.Crc32ParameterSet.Crc32C, data);
}
