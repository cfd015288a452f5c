using System.Buffers.Binary;
using System.Text;

namespace Tmem.Service.Tests;

/// <summary>Test pages: compressible ones that name their handle and version, and incompressible ones.</summary>
public static class Pages
{
    /// <summary>A 4 KiB page of text naming (tag, version), compressing well; distinct per (tag, version).</summary>
    public static byte[] Make(string tag, int version, int size = 4096)
    {
        var page = new byte[size];
        string line = $"page {tag} version {version}; ";
        byte[] bytes = Encoding.ASCII.GetBytes(line);
        for (int written = 0; written < size; written += bytes.Length)
            bytes.AsSpan(0, Math.Min(bytes.Length, size - written)).CopyTo(page.AsSpan(written));
        BinaryPrimitives.WriteInt32LittleEndian(page, version);
        return page;
    }

    /// <summary>Random bytes: LZ4 cannot compress them under 7/8 of the page, so a put is refused.</summary>
    public static byte[] Incompressible(int seed, int size = 4096)
    {
        var page = new byte[size];
        new Random(seed).NextBytes(page);
        return page;
    }
}
