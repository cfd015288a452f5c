using System.Buffers.Binary;

namespace Tmem.CrashHost;

/// <summary>
/// What the crash host stores and how it names it, shared with the test that checks what
/// recovery brings back (tests/Tmem.Tests/CrashTests.cs references this assembly).
/// <para>
/// Two persistent pools: label 0 is client 1's private pool 0; label 1 is a shared pool
/// (<see cref="SharedUuid"/>) that client 1 maps as pool 1 and client 2 as pool 0. Each has
/// <see cref="Objects"/> objects of <see cref="Indices"/> pages. Every page a put stores is a
/// pure function of (label, object, index, version), where version is
/// <c>run &lt;&lt; 32 | seq</c> (<see cref="Version"/>) and seq is the host run's issue sequence
/// number, so a recovered page names its own handle and the exact operation that stored it.
/// </para>
/// </summary>
public static class CrashLayout
{
    public const int PageSize = PoolOptions.DefaultPageSize;
    public const int Labels = 2;
    public const int Objects = 8;
    public const int Indices = 32;
    public const int PrivateLabel = 0;
    public const int SharedLabel = 1;
    public const int MaxRun = (1 << 22) - 1; // the version must fit the 54 bits a fill pattern carries

    public static readonly Guid SharedUuid = new("6d3c1a9e-2f4b-4c8e-9a7d-5e0b1c2d3f40");

    private const ulong Magic = 0x4853_4152_4343_4D54; // "TMCCRASH" little-endian
    private const int HeaderSize = 24;

    /// <summary>The kinds of page a put stores (journal letters D, S, Z).</summary>
    public enum PageKind
    {
        /// <summary>Compressible bytes with a header naming handle and version.</summary>
        Data,

        /// <summary>One 64-bit word repeated (stored as a pattern); the word names handle and version.</summary>
        SameFilled,

        /// <summary>All zero bytes: names nothing.</summary>
        Zero,
    }

    public static ObjectId Oid(int obj) => new(0xC0DE_0000UL + (ulong)obj, 0x5EED, 0);

    public static long Version(int run, long seq) => (long)run << 32 | (uint)seq;

    public static int RunOf(long version) => (int)(version >> 32);

    public static long SeqOf(long version) => version & 0xFFFF_FFFFL;

    /// <summary>Writes the page a put of this kind stores for (label, obj, index, version).</summary>
    public static void Render(Span<byte> page, PageKind kind, int label, int obj, int index, long version)
    {
        switch (kind)
        {
            case PageKind.Zero:
                page.Clear();
                break;
            case PageKind.SameFilled:
                var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page);
                words.Fill(Pattern(label, obj, index, version));
                break;
            default:
                BinaryPrimitives.WriteUInt64LittleEndian(page, Magic);
                page[8] = (byte)label;
                page[9] = (byte)obj;
                BinaryPrimitives.WriteUInt16LittleEndian(page[10..], (ushort)index);
                BinaryPrimitives.WriteInt64LittleEndian(page[12..], version);
                BinaryPrimitives.WriteUInt32LittleEndian(page[20..], 0);
                // Filler: each 64-byte block starts with 8 pseudo-random bytes, then repeats one
                // byte. LZ4 takes it to roughly a fifth of the page: far from the size limits.
                ulong x = (ulong)version * 0x9E3779B97F4A7C15UL ^ (ulong)label << 56 ^ (ulong)obj << 48 ^ (ulong)index << 32 | 1;
                for (int block = HeaderSize; block < page.Length; block += 64)
                {
                    var span = page.Slice(block, Math.Min(64, page.Length - block));
                    for (int i = 0; i < span.Length; i++)
                    {
                        if (i < 8)
                        {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            span[i] = (byte)x;
                        }
                        else
                        {
                            span[i] = (byte)(x >> 8);
                        }
                    }
                }
                break;
        }
    }

    /// <summary>The fill word of a same-filled page: top bit set, then label, object, index and the 54-bit version.</summary>
    public static ulong Pattern(int label, int obj, int index, long version)
    {
        if ((ulong)version >= 1UL << 54) throw new ArgumentOutOfRangeException(nameof(version), version, "over 54 bits");
        return 1UL << 63 | (ulong)label << 62 | (ulong)obj << 59 | (ulong)index << 54 | (ulong)version;
    }

    /// <summary>
    /// Identifies a recovered page of handle (label, obj, index): its kind and version (0 for a
    /// zero page), or an error when the page is not exactly a page some put of this handle stores.
    /// </summary>
    public static (PageKind Kind, long Version, string? Error) Decode(ReadOnlySpan<byte> page, int label, int obj, int index)
    {
        if (page.Length != PageSize) return (PageKind.Data, 0, $"{page.Length}-byte page");
        if (!page.ContainsAnyExcept((byte)0)) return (PageKind.Zero, 0, null);
        var expected = new byte[PageSize];
        ulong word = BinaryPrimitives.ReadUInt64LittleEndian(page);
        if (word == Magic)
        {
            int l = page[8], o = page[9], i = BinaryPrimitives.ReadUInt16LittleEndian(page[10..]);
            long version = BinaryPrimitives.ReadInt64LittleEndian(page[12..]);
            if ((l, o, i) != (label, obj, index))
                return (PageKind.Data, version, $"holds the data page of another handle (pool label {l}, object {o}, index {i}, version {Describe(version)})");
            Render(expected, PageKind.Data, l, o, i, version);
            return page.SequenceEqual(expected)
                ? (PageKind.Data, version, null)
                : (PageKind.Data, version, $"is a torn or corrupt data page (header says version {Describe(version)})");
        }
        if (word >> 63 == 1)
        {
            int l = (int)(word >> 62 & 1), o = (int)(word >> 59 & 7), i = (int)(word >> 54 & 31);
            long version = (long)(word & ((1UL << 54) - 1));
            if ((l, o, i) != (label, obj, index))
                return (PageKind.SameFilled, version, $"holds the same-filled page of another handle (pool label {l}, object {o}, index {i}, version {Describe(version)})");
            Render(expected, PageKind.SameFilled, l, o, i, version);
            return page.SequenceEqual(expected)
                ? (PageKind.SameFilled, version, null)
                : (PageKind.SameFilled, version, $"is a torn or corrupt same-filled page (first word says version {Describe(version)})");
        }
        return (PageKind.Data, 0, $"is garbage (first word {word:x16})");
    }

    public static string Describe(long version) => $"{RunOf(version)}:{SeqOf(version)}";
}
