using System.Buffers.Binary;
using System.Text;

namespace Tmem.Protocol;

/// <summary>
/// The byte layout of frames (docs/PROTOCOL.md), shared by the service and the client. Every
/// integer is little-endian.
/// <code>
/// offset size field
///  0     4    length: the whole frame's size in bytes, this field included (12 or more)
///  4     1    opcode (a response: the request's opcode | 0x80)
///  5     1    status (requests: 0; responses: a ProtocolStatus)
///  6     2    reserved, 0
///  8     4    request id (the client's choice; the response carries it back)
/// 12     ...  payload
/// </code>
/// </summary>
public static class Wire
{
    /// <summary>The protocol version this code speaks (in Hello).</summary>
    public const ushort Version = 1;

    /// <summary>Size of the frame header.</summary>
    public const int HeaderSize = 12;

    /// <summary>Set in a response's opcode byte.</summary>
    public const byte ResponseBit = 0x80;

    /// <summary>The largest frame a server accepts before the handshake.</summary>
    public const int HandshakeMaxFrameBytes = 1024;

    /// <summary>Size of a handle on the wire: pool id (u32), object id (3 x u64), index (u32).</summary>
    public const int HandleSize = 32;

    /// <summary>Size of an object id on the wire.</summary>
    public const int ObjectIdSize = 24;

    /// <summary>Size of a CreatePool request's payload.</summary>
    public const int CreatePoolSize = 24;

    /// <summary>Size of one pool entry in a ListPools response.</summary>
    public const int PoolEntrySize = 36;

    /// <summary>Size of a Hello response's payload.</summary>
    public const int HelloResponseSize = 20;

    /// <summary>CreatePool flag: the pool is shared (the UUID field names it).</summary>
    public const byte FlagShared = 0x01;

    /// <summary>CreatePool flag: gets remove the page (persistent pools only).</summary>
    public const byte FlagExclusiveGets = 0x02;

    /// <summary>CreatePool flag: pages that compress poorly are stored uncompressed, never refused for it (<see cref="PoolOptions.StoreIncompressible"/>).</summary>
    public const byte FlagStoreIncompressible = 0x04;

    /// <summary>The frame size a put of a page of <paramref name="pageSize"/> bytes needs.</summary>
    public static int PutFrameSize(int pageSize) => HeaderSize + HandleSize + pageSize;

    /// <summary>Writes a frame header.</summary>
    public static void WriteHeader(Span<byte> frame, int frameLength, byte opcode, ProtocolStatus status, uint requestId)
    {
        BinaryPrimitives.WriteInt32LittleEndian(frame, frameLength);
        frame[4] = opcode;
        frame[5] = (byte)status;
        frame[6] = 0;
        frame[7] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(frame[8..], requestId);
    }

    /// <summary>The length field of a frame that starts at <paramref name="frame"/>.</summary>
    public static int ReadLength(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadInt32LittleEndian(frame);

    /// <summary>The request id of a frame.</summary>
    public static uint ReadRequestId(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt32LittleEndian(frame[8..]);

    /// <summary>Writes an object id as three u64 words.</summary>
    public static void WriteObjectId(Span<byte> destination, in ObjectId objectId)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, objectId.Word0);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], objectId.Word1);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], objectId.Word2);
    }

    /// <summary>Reads an object id written by <see cref="WriteObjectId"/>.</summary>
    public static ObjectId ReadObjectId(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source),
        BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]));

    /// <summary>Writes a handle: pool id, object id, index (<see cref="HandleSize"/> bytes).</summary>
    public static void WriteHandle(Span<byte> destination, int poolId, in ObjectId objectId, uint index)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, poolId);
        WriteObjectId(destination[4..], objectId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[28..], index);
    }

    /// <summary>Reads a handle written by <see cref="WriteHandle"/> (at least <see cref="HandleSize"/> bytes).</summary>
    public static void ReadHandle(ReadOnlySpan<byte> source, out int poolId, out ObjectId objectId, out uint index)
    {
        poolId = BinaryPrimitives.ReadInt32LittleEndian(source);
        objectId = ReadObjectId(source[4..]);
        index = BinaryPrimitives.ReadUInt32LittleEndian(source[28..]);
    }

    /// <summary>Writes a CreatePool payload (<see cref="CreatePoolSize"/> bytes).</summary>
    public static void WriteCreatePool(Span<byte> destination, PoolOptions options)
    {
        destination[0] = (byte)options.Kind;
        destination[1] = (byte)((options.SharedUuid is null ? 0 : FlagShared) | (options.ExclusiveGets ? FlagExclusiveGets : 0)
            | (options.StoreIncompressible ? FlagStoreIncompressible : 0));
        destination[2] = 0;
        destination[3] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], options.PageSize);
        if (options.SharedUuid is { } uuid) uuid.TryWriteBytes(destination.Slice(8, 16), bigEndian: true, out _);
        else destination.Slice(8, 16).Clear();
    }

    /// <summary>
    /// Reads a CreatePool payload. Returns null and an error message when a field is out of its
    /// range (the store checks the page size and the flag combinations itself).
    /// </summary>
    public static PoolOptions? ReadCreatePool(ReadOnlySpan<byte> payload, out string? error)
    {
        error = null;
        byte kind = payload[0], flags = payload[1];
        if (kind > 1) error = $"pool kind {kind} is not 0 (ephemeral) or 1 (persistent)";
        else if ((flags & ~(FlagShared | FlagExclusiveGets | FlagStoreIncompressible)) != 0) error = $"pool flags 0x{flags:x2} has bits other than 0x01 (shared), 0x02 (exclusive gets) and 0x04 (store incompressible)";
        else if (payload[2] != 0 || payload[3] != 0) error = "CreatePool bytes 2-3 are reserved and must be 0";
        if (error is not null) return null;
        var uuid = new Guid(payload.Slice(8, 16), bigEndian: true);
        bool shared = (flags & FlagShared) != 0;
        if (!shared && uuid != Guid.Empty)
        {
            error = "the UUID field must be all zero for a private pool (flag 0x01 not set)";
            return null;
        }
        if (shared && uuid == Guid.Empty)
        {
            error = "a shared pool (flag 0x01) needs a non-zero UUID; the all-zero UUID names no shared pool";
            return null;
        }
        return new PoolOptions
        {
            Kind = (PoolKind)kind,
            ExclusiveGets = (flags & FlagExclusiveGets) != 0,
            StoreIncompressible = (flags & FlagStoreIncompressible) != 0,
            PageSize = BinaryPrimitives.ReadInt32LittleEndian(payload[4..]),
            SharedUuid = shared ? uuid : null,
        };
    }

    /// <summary>
    /// Writes one ListPools entry (<see cref="PoolEntrySize"/> bytes). Its kind, flags, page size
    /// and UUID are those a CreatePool that makes (or joins) this pool carries: flag 0x02 only for
    /// a persistent pool with exclusive gets (a private ephemeral pool's gets are exclusive by its
    /// kind, not by a flag, and CreatePool refuses the flag on ephemeral pools).
    /// </summary>
    public static void WritePoolEntry(Span<byte> destination, PoolInfo pool)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, pool.PoolId);
        destination[4] = (byte)pool.Kind;
        destination[5] = (byte)((pool.SharedUuid is null ? 0 : FlagShared) | (pool.Kind == PoolKind.Persistent && pool.ExclusiveGets ? FlagExclusiveGets : 0)
            | (pool.StoreIncompressible ? FlagStoreIncompressible : 0));
        destination[6] = 0;
        destination[7] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], pool.PageSize);
        if (pool.SharedUuid is { } uuid) uuid.TryWriteBytes(destination.Slice(12, 16), bigEndian: true, out _);
        else destination.Slice(12, 16).Clear();
        BinaryPrimitives.WriteInt64LittleEndian(destination[28..], pool.Pages);
    }

    /// <summary>
    /// Reads one ListPools entry. <see cref="PoolInfo.ExclusiveGets"/> says whether a hit removes
    /// the page, as the in-process client's does: true for flag 0x02 and for a private ephemeral pool.
    /// </summary>
    public static PoolInfo ReadPoolEntry(ReadOnlySpan<byte> source)
    {
        byte flags = source[5];
        var kind = (PoolKind)source[4];
        bool shared = (flags & FlagShared) != 0;
        return new PoolInfo(
            BinaryPrimitives.ReadInt32LittleEndian(source),
            kind,
            BinaryPrimitives.ReadInt32LittleEndian(source[8..]),
            shared ? new Guid(source.Slice(12, 16), bigEndian: true) : null,
            (flags & FlagExclusiveGets) != 0 || (kind == PoolKind.Ephemeral && !shared),
            BinaryPrimitives.ReadInt64LittleEndian(source[28..]))
        {
            StoreIncompressible = (flags & FlagStoreIncompressible) != 0,
        };
    }

    /// <summary>The CreatePool options that make (or join) the pool a ListPools entry describes.</summary>
    public static PoolOptions ToCreateOptions(PoolInfo pool) => new()
    {
        Kind = pool.Kind,
        PageSize = pool.PageSize,
        SharedUuid = pool.SharedUuid,
        ExclusiveGets = pool.Kind == PoolKind.Persistent && pool.ExclusiveGets,
        StoreIncompressible = pool.StoreIncompressible,
    };

    /// <summary>The size of a Stats response payload for these counters.</summary>
    public static int StatsSize(IReadOnlyList<KeyValuePair<string, long>> counters)
    {
        int size = 2;
        foreach (var (name, _) in counters) size += 1 + Encoding.ASCII.GetByteCount(name) + 8;
        return size;
    }

    /// <summary>Writes a Stats payload: u16 count, then per counter u8 name length, ASCII name, i64 value.</summary>
    public static void WriteStats(Span<byte> destination, IReadOnlyList<KeyValuePair<string, long>> counters)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)counters.Count);
        int at = 2;
        foreach (var (name, value) in counters)
        {
            int length = Encoding.ASCII.GetBytes(name, destination[(at + 1)..]);
            destination[at] = (byte)length;
            at += 1 + length;
            BinaryPrimitives.WriteInt64LittleEndian(destination[at..], value);
            at += 8;
        }
    }

    /// <summary>Reads a Stats payload.</summary>
    /// <exception cref="InvalidDataException">The payload does not parse.</exception>
    public static IReadOnlyList<KeyValuePair<string, long>> ReadStats(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 2) throw new InvalidDataException("Stats payload shorter than its count.");
        int count = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        var list = new List<KeyValuePair<string, long>>(count);
        int at = 2;
        for (int i = 0; i < count; i++)
        {
            if (at >= payload.Length) throw new InvalidDataException("Stats payload ends inside a counter.");
            int length = payload[at];
            if (at + 1 + length + 8 > payload.Length) throw new InvalidDataException("Stats payload ends inside a counter.");
            string name = Encoding.ASCII.GetString(payload.Slice(at + 1, length));
            long value = BinaryPrimitives.ReadInt64LittleEndian(payload[(at + 1 + length)..]);
            list.Add(new(name, value));
            at += 1 + length + 8;
        }
        return list;
    }
}
