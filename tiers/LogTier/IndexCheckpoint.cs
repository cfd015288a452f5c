using System.Buffers.Binary;
using System.Text;

namespace Tmem.LogTier;

/// <summary>
/// The index checkpoint, <c>DATA/checkpoint/index.ckpt</c> (docs/storage-format.md): every live
/// persistent pool with its members and, per page, where its Put record is in the log, as of a
/// log address (<see cref="CoveredUntil"/>) below which the log adds nothing to it. Recovery
/// loads it and replays only the records from that address. Written atomically: temp file,
/// fsync, rename, fsync of the directory.
/// </summary>
public sealed class IndexCheckpoint
{
    /// <summary>The folder of the data directory that holds the checkpoint.</summary>
    public const string Folder = "checkpoint";
    /// <summary>The checkpoint file's name.</summary>
    public const string FileName = "index.ckpt";
    /// <summary>Bytes of one page entry in the file.</summary>
    public const int PageEntrySize = 48;
    private const int Version = 2;
    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("TMEMCKPT");

    /// <summary>The log's begin address when the checkpoint was taken (it fits only a log with that begin address).</summary>
    public required long LogBeginAddress { get; init; }

    /// <summary>The log address the checkpoint covers until: replay starts there.</summary>
    public required long CoveredUntil { get; init; }

    /// <summary>The highest pool serial handed out so far (serials are never reused).</summary>
    public required int PoolSerialHighWater { get; init; }

    /// <summary>Every persistent pool, with its members and pages.</summary>
    public required List<PoolEntry> Pools { get; init; }

    /// <summary>One pool: its settings, its members as logged, and its pages.</summary>
    public sealed record PoolEntry(uint Serial, int PageSize, bool ExclusiveGets, Guid? SharedUuid, List<(int ClientId, int PoolId)> Members, List<PageEntry> Pages)
    {
        /// <summary>The pool's <see cref="PoolOptions.StoreIncompressible"/>.</summary>
        public bool StoreIncompressible { get; init; }
    }

    /// <summary>
    /// One page: its handle, compressed length (0 when same-filled), its Put record's address
    /// (every page has one: compaction moves records by it) and, when same-filled, its pattern.
    /// </summary>
    public readonly record struct PageEntry(ObjectId ObjectId, uint Index, ushort Length, bool SameFilled, long Address, ulong Pattern);

    /// <summary>The checkpoint file's path in a data directory.</summary>
    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, Folder, FileName);

    /// <summary>The file contents (format in docs/storage-format.md), CRC-32C included.</summary>
    public byte[] Serialize()
    {
        long pages = Pools.Sum(p => (long)p.Pages.Count);
        long members = Pools.Sum(p => (long)p.Members.Count);
        long size = 40 + Pools.Count * 36L + members * 8 + pages * PageEntrySize + 12;
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], LogBeginAddress);
        BinaryPrimitives.WriteInt64LittleEndian(span[24..], CoveredUntil);
        BinaryPrimitives.WriteInt32LittleEndian(span[32..], PoolSerialHighWater);
        BinaryPrimitives.WriteInt32LittleEndian(span[36..], Pools.Count);
        int at = 40;
        foreach (var pool in Pools)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span[at..], pool.Serial);
            BinaryPrimitives.WriteInt32LittleEndian(span[(at + 4)..], pool.PageSize);
            span[at + 8] = pool.ExclusiveGets ? (byte)1 : (byte)0;
            span[at + 9] = pool.SharedUuid is null ? (byte)0 : (byte)1;
            span[at + 10] = pool.StoreIncompressible ? (byte)1 : (byte)0;
            pool.SharedUuid?.TryWriteBytes(span.Slice(at + 12, 16));
            BinaryPrimitives.WriteInt32LittleEndian(span[(at + 28)..], pool.Members.Count);
            BinaryPrimitives.WriteInt32LittleEndian(span[(at + 32)..], pool.Pages.Count);
            at += 36;
            foreach (var (client, poolId) in pool.Members)
            {
                BinaryPrimitives.WriteInt32LittleEndian(span[at..], client);
                BinaryPrimitives.WriteInt32LittleEndian(span[(at + 4)..], poolId);
                at += 8;
            }
            foreach (var page in pool.Pages)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(span[at..], page.ObjectId.Word0);
                BinaryPrimitives.WriteUInt64LittleEndian(span[(at + 8)..], page.ObjectId.Word1);
                BinaryPrimitives.WriteUInt64LittleEndian(span[(at + 16)..], page.ObjectId.Word2);
                BinaryPrimitives.WriteUInt32LittleEndian(span[(at + 24)..], page.Index);
                BinaryPrimitives.WriteUInt16LittleEndian(span[(at + 28)..], page.Length);
                span[at + 30] = page.SameFilled ? (byte)1 : (byte)0;
                BinaryPrimitives.WriteInt64LittleEndian(span[(at + 32)..], page.Address);
                BinaryPrimitives.WriteUInt64LittleEndian(span[(at + 40)..], page.Pattern);
                at += PageEntrySize;
            }
        }
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], at);
        BinaryPrimitives.WriteUInt32LittleEndian(span[(at + 8)..], LogRecord.Crc32C(span[..(at + 8)]));
        return bytes;
    }

    /// <summary>Parses a checkpoint; null with <paramref name="problem"/> when it is damaged.</summary>
    public static IndexCheckpoint? TryParse(ReadOnlySpan<byte> bytes, out string? problem)
    {
        problem = null;
        if (bytes.Length < 52 || !bytes[..8].SequenceEqual(Magic))
        {
            problem = "not a checkpoint (bad magic or too short)";
            return null;
        }
        long bodyLength = BinaryPrimitives.ReadInt64LittleEndian(bytes[^12..]);
        if (bodyLength != bytes.Length - 12)
        {
            problem = $"length field {bodyLength} does not match the file's {bytes.Length - 12} bytes (truncated or extended)";
            return null;
        }
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]);
        uint computed = LogRecord.Crc32C(bytes[..^4]);
        if (stored != computed)
        {
            problem = $"checksum mismatch (stored 0x{stored:x8}, computed 0x{computed:x8})";
            return null;
        }
        if (BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]) != Version)
        {
            problem = $"version {BinaryPrimitives.ReadInt32LittleEndian(bytes[8..])} is not {Version}";
            return null;
        }
        try
        {
            int poolCount = BinaryPrimitives.ReadInt32LittleEndian(bytes[36..]);
            var pools = new List<PoolEntry>(poolCount);
            int at = 40;
            for (int p = 0; p < poolCount; p++)
            {
                uint serial = BinaryPrimitives.ReadUInt32LittleEndian(bytes[at..]);
                int pageSize = BinaryPrimitives.ReadInt32LittleEndian(bytes[(at + 4)..]);
                bool exclusive = bytes[at + 8] != 0;
                Guid? uuid = bytes[at + 9] != 0 ? new Guid(bytes.Slice(at + 12, 16)) : null;
                bool storeIncompressible = bytes[at + 10] != 0;
                int memberCount = BinaryPrimitives.ReadInt32LittleEndian(bytes[(at + 28)..]);
                int pageCount = BinaryPrimitives.ReadInt32LittleEndian(bytes[(at + 32)..]);
                at += 36;
                var members = new List<(int, int)>(memberCount);
                for (int m = 0; m < memberCount; m++, at += 8)
                    members.Add((BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]), BinaryPrimitives.ReadInt32LittleEndian(bytes[(at + 4)..])));
                var pages = new List<PageEntry>(pageCount);
                for (int i = 0; i < pageCount; i++, at += PageEntrySize)
                {
                    var e = bytes.Slice(at, PageEntrySize);
                    pages.Add(new PageEntry(
                        new ObjectId(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), BinaryPrimitives.ReadUInt64LittleEndian(e[16..])),
                        BinaryPrimitives.ReadUInt32LittleEndian(e[24..]),
                        BinaryPrimitives.ReadUInt16LittleEndian(e[28..]),
                        e[30] != 0,
                        BinaryPrimitives.ReadInt64LittleEndian(e[32..]),
                        BinaryPrimitives.ReadUInt64LittleEndian(e[40..])));
                }
                pools.Add(new PoolEntry(serial, pageSize, exclusive, uuid, members, pages) { StoreIncompressible = storeIncompressible });
            }
            if (at != bytes.Length - 12)
            {
                problem = $"its contents end at byte {at}, not at {bytes.Length - 12}";
                return null;
            }
            return new IndexCheckpoint
            {
                LogBeginAddress = BinaryPrimitives.ReadInt64LittleEndian(bytes[16..]),
                CoveredUntil = BinaryPrimitives.ReadInt64LittleEndian(bytes[24..]),
                PoolSerialHighWater = BinaryPrimitives.ReadInt32LittleEndian(bytes[32..]),
                Pools = pools,
            };
        }
        catch (ArgumentOutOfRangeException)
        {
            problem = "its counts point past its end";
            return null;
        }
    }

    /// <summary>Writes the checkpoint atomically: temp file, fsync, rename over the old one, fsync the directory.</summary>
    public static void WriteAtomically(string dataDirectory, byte[] bytes) => WriteAtomically(dataDirectory, bytes, NativeStorageIo.Instance);

    /// <summary><see cref="WriteAtomically(string, byte[])"/> through <paramref name="io"/> (see <see cref="IStorageIo"/>).</summary>
    internal static void WriteAtomically(string dataDirectory, byte[] bytes, IStorageIo io)
    {
        string dir = Path.Combine(dataDirectory, Folder);
        io.CreateDirectoryDurably(dir);
        string temp = Path.Combine(dir, FileName + ".tmp");
        try
        {
            io.WriteNewFile(temp, bytes);
        }
        catch (IOException)
        {
            // A full disk: the half-written temporary file would hold the space it could not get.
            io.Delete(temp);
            throw;
        }
        io.Move(temp, Path.Combine(dir, FileName), overwrite: true);
        io.FsyncDirectory(dir);
    }
}
