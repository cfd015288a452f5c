using System.Buffers.Binary;
using System.Text;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>
/// The export file (<c>tmem-admin export</c> / <c>import</c>), version 1: one client's persistent
/// pools with their settings, members and pages, as the log holds them. Little-endian:
/// <code>
/// header, 24 bytes
///  0  8B   magic "TMEMPOOL"
///  8  u32  version (1)
/// 12  u32  pool count P
/// 16  i32  the exporting client's id
/// 20  u32  reserved, 0
/// P pools, each
///  0  i32  the client's pool id
///  4  i32  page size
///  8  u8   exclusive gets (0/1)
///  9  u8   shared (0/1)
/// 10  u8   store incompressible (0/1)
/// 11  u8   reserved, 0
/// 12  16B  shared UUID (Guid.TryWriteBytes layout), zeros when private
/// 28  u32  member count M (the pool's members in the source, for information)
/// 32  i64  page count N
/// 40  M x (i32 client id, i32 pool id)
///     N pages, each
///      0  3 x u64  object id words 0, 1, 2
///     24  u32  index
///     28  u8   kind: 0 = the page as an LZ4 block (the log record's payload, unchanged), 1 = same-filled (payload: the 8-byte word),
///              2 = uncompressed (payload: the page itself; pools with byte 10 set)
///     29  3B   reserved, 0
///     32  u32  payload length L
///     36  L    payload
/// trailer, 20 bytes
///  0  8B   "TMEMEND!"
///  8  i64  total pages (sum of N)
/// 16  u32  CRC-32C (Castagnoli) of every byte of the file before this field
/// </code>
/// A reader refuses a file whose magic, version, lengths, trailer or checksum do not match.
/// </summary>
public static class PoolExportFile
{
    /// <summary>The format version written and read.</summary>
    public const int Version = 1;

    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("TMEMPOOL");
    private static readonly byte[] EndMagic = Encoding.ASCII.GetBytes("TMEMEND!");

    /// <summary>A page as exported: compressed (LZ4 block), same-filled (the 8-byte word) or uncompressed (the page).</summary>
    /// <param name="ObjectId">The object id.</param>
    /// <param name="Index">The page index.</param>
    /// <param name="SameFilled">Whether <paramref name="Payload"/> is the 8-byte word repeated over the page.</param>
    /// <param name="Payload">The LZ4 block, the 8-byte word, or the page itself when <paramref name="Uncompressed"/>.</param>
    /// <param name="Uncompressed">Whether <paramref name="Payload"/> is the page itself.</param>
    public sealed record Page(ObjectId ObjectId, uint Index, bool SameFilled, byte[] Payload, bool Uncompressed = false);

    /// <summary>An exported pool.</summary>
    /// <param name="PoolId">The client's pool id.</param>
    /// <param name="PageSize">Bytes per page.</param>
    /// <param name="ExclusiveGets">Whether a get removes the page.</param>
    /// <param name="SharedUuid">The shared pool's UUID, or null.</param>
    /// <param name="Members">The pool's members in the source.</param>
    /// <param name="Pages">Its pages.</param>
    public sealed record Pool(int PoolId, int PageSize, bool ExclusiveGets, Guid? SharedUuid, IReadOnlyList<PoolMember> Members, IReadOnlyList<Page> Pages)
    {
        /// <summary>Whether the pool stores poorly compressing pages uncompressed (<see cref="PoolOptions.StoreIncompressible"/>).</summary>
        public bool StoreIncompressible { get; init; }
    }

    /// <summary>Serializes an export.</summary>
    public static byte[] Write(int clientId, IReadOnlyList<Pool> pools)
    {
        using var stream = new MemoryStream();
        Span<byte> b = stackalloc byte[40];
        stream.Write(Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(b, Version);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)pools.Count);
        BinaryPrimitives.WriteInt32LittleEndian(b[8..], clientId);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], 0);
        stream.Write(b[..16]);
        long total = 0;
        foreach (var pool in pools)
        {
            b.Clear();
            BinaryPrimitives.WriteInt32LittleEndian(b, pool.PoolId);
            BinaryPrimitives.WriteInt32LittleEndian(b[4..], pool.PageSize);
            b[8] = pool.ExclusiveGets ? (byte)1 : (byte)0;
            b[9] = pool.SharedUuid is null ? (byte)0 : (byte)1;
            b[10] = pool.StoreIncompressible ? (byte)1 : (byte)0;
            pool.SharedUuid?.TryWriteBytes(b[12..28]);
            BinaryPrimitives.WriteUInt32LittleEndian(b[28..], (uint)pool.Members.Count);
            BinaryPrimitives.WriteInt64LittleEndian(b[32..], pool.Pages.Count);
            stream.Write(b[..40]);
            foreach (var member in pool.Members)
            {
                BinaryPrimitives.WriteInt32LittleEndian(b, member.ClientId);
                BinaryPrimitives.WriteInt32LittleEndian(b[4..], member.PoolId);
                stream.Write(b[..8]);
            }
            foreach (var page in pool.Pages)
            {
                b.Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(b, page.ObjectId.Word0);
                BinaryPrimitives.WriteUInt64LittleEndian(b[8..], page.ObjectId.Word1);
                BinaryPrimitives.WriteUInt64LittleEndian(b[16..], page.ObjectId.Word2);
                BinaryPrimitives.WriteUInt32LittleEndian(b[24..], page.Index);
                b[28] = page.SameFilled ? (byte)1 : page.Uncompressed ? (byte)2 : (byte)0;
                BinaryPrimitives.WriteUInt32LittleEndian(b[32..], (uint)page.Payload.Length);
                stream.Write(b[..36]);
                stream.Write(page.Payload);
                total++;
            }
        }
        stream.Write(EndMagic);
        BinaryPrimitives.WriteInt64LittleEndian(b, total);
        stream.Write(b[..8]);
        var bytes = stream.ToArray();
        var result = new byte[bytes.Length + 4];
        bytes.CopyTo(result, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(bytes.Length), LogRecord.Crc32C(bytes));
        return result;
    }

    /// <summary>Parses and checks an export; throws <see cref="InvalidDataException"/> naming what is wrong.</summary>
    public static (int ClientId, List<Pool> Pools) Read(ReadOnlySpan<byte> file)
    {
        if (file.Length < 24 + 20 || !file[..8].SequenceEqual(Magic))
            throw new InvalidDataException("not a Tmem pool export (bad magic or too short)");
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(file[^4..]);
        uint computed = LogRecord.Crc32C(file[..^4]);
        if (stored != computed) throw new InvalidDataException($"checksum mismatch (stored 0x{stored:x8}, computed 0x{computed:x8}): the file is damaged or truncated");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(file[8..]);
        if (version != Version) throw new InvalidDataException($"export format version {version}; this build reads version {Version}");
        uint poolCount = BinaryPrimitives.ReadUInt32LittleEndian(file[12..]);
        int clientId = BinaryPrimitives.ReadInt32LittleEndian(file[16..]);
        int at = 24;
        long total = 0;
        var pools = new List<Pool>();
        try
        {
            for (uint p = 0; p < poolCount; p++)
            {
                var h = file.Slice(at, 40);
                int poolId = BinaryPrimitives.ReadInt32LittleEndian(h);
                int pageSize = BinaryPrimitives.ReadInt32LittleEndian(h[4..]);
                bool exclusive = h[8] != 0;
                Guid? uuid = h[9] != 0 ? new Guid(h[12..28]) : null;
                bool storeIncompressible = h[10] != 0;
                uint memberCount = BinaryPrimitives.ReadUInt32LittleEndian(h[28..]);
                long pageCount = BinaryPrimitives.ReadInt64LittleEndian(h[32..]);
                at += 40;
                if (memberCount > 1_000_000 || pageCount < 0 || pageCount > file.Length / 36)
                    throw new InvalidDataException($"pool {p} claims {memberCount} members and {pageCount} pages");
                var members = new List<PoolMember>();
                for (uint m = 0; m < memberCount; m++, at += 8)
                    members.Add(new PoolMember(BinaryPrimitives.ReadInt32LittleEndian(file[at..]), BinaryPrimitives.ReadInt32LittleEndian(file[(at + 4)..])));
                var pages = new List<Page>((int)pageCount);
                for (long i = 0; i < pageCount; i++)
                {
                    var e = file.Slice(at, 36);
                    var id = new ObjectId(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), BinaryPrimitives.ReadUInt64LittleEndian(e[16..]));
                    uint index = BinaryPrimitives.ReadUInt32LittleEndian(e[24..]);
                    byte kind = e[28];
                    int length = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(e[32..]));
                    if (kind > 2 || (kind == 1 && length != 8) || (kind == 0 && (length == 0 || length > pageSize + pageSize / 255 + 16))
                        || (kind == 2 && (length != pageSize || !storeIncompressible)))
                        throw new InvalidDataException($"page {id}/{index} of pool id {poolId} has kind {kind} and a {length}-byte payload");
                    pages.Add(new Page(id, index, kind == 1, file.Slice(at + 36, length).ToArray(), kind == 2));
                    at += 36 + length;
                }
                total += pageCount;
                pools.Add(new Pool(poolId, pageSize, exclusive, uuid, members, pages) { StoreIncompressible = storeIncompressible });
            }
            if (at != file.Length - 20 || !file.Slice(at, 8).SequenceEqual(EndMagic) || BinaryPrimitives.ReadInt64LittleEndian(file[(at + 8)..]) != total)
                throw new InvalidDataException($"the trailer is not where the pools end (byte {at}) or its page count is not {total}");
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new InvalidDataException($"its counts point past its end (at byte {at})");
        }
        return (clientId, pools);
    }
}
