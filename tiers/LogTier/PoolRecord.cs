using System.Buffers.Binary;

namespace Tmem.LogTier;

/// <summary>
/// Payload of the pool records (create, join, leave), 36 bytes little-endian:
/// <code>
///  0  i32  client id
///  4  i32  the client's pool id
///  8  i32  page size
/// 12  u8   exclusive gets (0/1)
/// 13  u8   shared (0/1)
/// 14  u8   store incompressible (0/1)
/// 15  u8   reserved, 0
/// 16  16B  shared UUID (Guid.TryWriteBytes layout), zeros when private
/// 32  u32  reserved, 0
/// </code>
/// </summary>
public readonly record struct PoolRecord(int ClientId, int PoolId, int PageSize, bool ExclusiveGets, Guid? SharedUuid, bool StoreIncompressible = false)
{
    /// <summary>Bytes of the payload.</summary>
    public const int Size = 36;

    /// <summary>Writes the payload (<see cref="Size"/> bytes).</summary>
    public void Write(Span<byte> destination)
    {
        destination[..Size].Clear();
        BinaryPrimitives.WriteInt32LittleEndian(destination, ClientId);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], PoolId);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], PageSize);
        destination[12] = ExclusiveGets ? (byte)1 : (byte)0;
        destination[13] = SharedUuid is null ? (byte)0 : (byte)1;
        destination[14] = StoreIncompressible ? (byte)1 : (byte)0;
        SharedUuid?.TryWriteBytes(destination[16..32]);
    }

    /// <summary>Reads a payload; throws <see cref="InvalidDataException"/> when it is malformed.</summary>
    public static PoolRecord Read(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != Size)
            throw new InvalidDataException($"pool record payload is {payload.Length} bytes, expected {Size}");
        return new PoolRecord(
            BinaryPrimitives.ReadInt32LittleEndian(payload),
            BinaryPrimitives.ReadInt32LittleEndian(payload[4..]),
            BinaryPrimitives.ReadInt32LittleEndian(payload[8..]),
            payload[12] != 0,
            payload[13] != 0 ? new Guid(payload[16..32]) : null,
            payload[14] != 0);
    }
}
