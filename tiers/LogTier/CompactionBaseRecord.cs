using System.Buffers.Binary;

namespace Tmem.LogTier;

/// <summary>
/// Payload of a <see cref="LogRecordType.CompactionBase"/> record, little-endian:
/// <code>
///  0  i64  the log's begin address before this compaction
///  8  i32  member count N
/// 12  N x 44 bytes, one per (pool, member), pools in serial order, each pool's first member first:
///      0  u32  pool serial
///      4  u8   0 = create (the pool's first member), 1 = join
///      5  3B   reserved, 0
///      8  36B  PoolRecord (client id, pool id, page size, exclusive gets, shared UUID)
/// </code>
/// Replay applies each entry only where the pool or member is not live yet: replaying from an
/// older begin address (a crash before the truncation), they are all there already.
/// </summary>
public sealed record CompactionBaseRecord(long PreviousBegin, List<(uint Serial, bool Join, PoolRecord Pool)> Members)
{
    private const int EntrySize = 8 + PoolRecord.Size;

    /// <summary>Bytes the payload takes.</summary>
    public int Size => 12 + Members.Count * EntrySize;

    /// <summary>Writes the payload (<see cref="Size"/> bytes) into <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        destination[..Size].Clear();
        BinaryPrimitives.WriteInt64LittleEndian(destination, PreviousBegin);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], Members.Count);
        int at = 12;
        foreach (var (serial, join, pool) in Members)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(destination[at..], serial);
            destination[at + 4] = join ? (byte)1 : (byte)0;
            pool.Write(destination[(at + 8)..]);
            at += EntrySize;
        }
    }

    /// <summary>Reads a payload; throws <see cref="InvalidDataException"/> when it is malformed.</summary>
    public static CompactionBaseRecord Read(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 12)
            throw new InvalidDataException($"compaction base payload is {payload.Length} bytes, under its 12-byte header");
        int count = BinaryPrimitives.ReadInt32LittleEndian(payload[8..]);
        if (count < 0 || payload.Length != 12 + (long)count * EntrySize)
            throw new InvalidDataException($"compaction base payload is {payload.Length} bytes for {count} members");
        var members = new List<(uint, bool, PoolRecord)>(count);
        for (int i = 0, at = 12; i < count; i++, at += EntrySize)
        {
            if (payload[at + 4] > 1) throw new InvalidDataException($"compaction base member {i} has kind {payload[at + 4]}");
            members.Add((BinaryPrimitives.ReadUInt32LittleEndian(payload[at..]), payload[at + 4] == 1, PoolRecord.Read(payload.Slice(at + 8, PoolRecord.Size))));
        }
        return new CompactionBaseRecord(BinaryPrimitives.ReadInt64LittleEndian(payload), members);
    }
}
