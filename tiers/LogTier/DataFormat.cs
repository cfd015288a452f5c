using System.Globalization;
using System.Text;

namespace Tmem.LogTier;

/// <summary>
/// <c>DATA/format</c>: what a data directory was created with, as text lines <c>key value</c>
/// (docs/storage-format.md): <c>format</c> (the layout version, 1) and <c>segment_size</c> (bytes
/// per log segment file). Written atomically when the directory gets its log; read on every open,
/// so the log is always addressed with the segment size its files were written with.
/// </summary>
public sealed record DataFormat(int Version, long SegmentSize)
{
    /// <summary>The file's name in the data directory.</summary>
    public const string FileName = "format";
    /// <summary>The layout version this build writes and reads.</summary>
    public const int CurrentVersion = 1;

    /// <summary>log2 of <see cref="SegmentSize"/>.</summary>
    public int SegmentSizeBits => System.Numerics.BitOperations.Log2((ulong)SegmentSize);

    /// <summary>
    /// The directory's format: read from its file; for a directory with no file and no log yet,
    /// <paramref name="segmentSize"/> (the file is then written). Log segments without a format
    /// file were written by a development build before format 1 and are refused.
    /// </summary>
    public static DataFormat OpenOrCreate(string dataDirectory, string logDirectory, long segmentSize) =>
        OpenOrCreate(dataDirectory, logDirectory, segmentSize, NativeStorageIo.Instance);

    /// <summary><see cref="OpenOrCreate(string, string, long)"/> through <paramref name="io"/> (see <see cref="IStorageIo"/>).</summary>
    internal static DataFormat OpenOrCreate(string dataDirectory, string logDirectory, long segmentSize, IStorageIo io)
    {
        string path = Path.Combine(dataDirectory, FileName);
        if (File.Exists(path)) return Parse(path, Lines(io.ReadAllBytes(path)));
        bool hasSegments = Directory.Exists(logDirectory) && Directory.EnumerateFiles(logDirectory, DataLayout.SegmentBaseName + ".*").Any();
        if (hasSegments)
            throw new TmemCorruptionException(0, $"{dataDirectory} has log segments but no {FileName} file: it was written by a development build before format {CurrentVersion} (or the file was lost), and this build cannot address its log. Nothing was changed.");
        var format = new DataFormat(CurrentVersion, segmentSize);
        string temp = path + ".tmp";
        io.WriteNewFile(temp, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"format {format.Version}\nsegment_size {format.SegmentSize}\n")));
        io.Move(temp, path, overwrite: false);
        io.FsyncDirectory(dataDirectory);
        return format;
    }

    private static string[] Lines(byte[] bytes) =>
        Encoding.UTF8.GetString(bytes).Split('\n').Select(line => line.TrimEnd('\r')).ToArray();

    /// <summary>
    /// The directory's format file, read without creating anything (the offline tool): null when
    /// there is no file; throws <see cref="TmemCorruptionException"/> when it is not valid.
    /// </summary>
    public static DataFormat? TryRead(string dataDirectory)
    {
        string path = Path.Combine(dataDirectory, FileName);
        return File.Exists(path) ? Parse(path, File.ReadAllLines(path)) : null;
    }

    private static DataFormat Parse(string path, string[] lines)
    {
        int? version = null;
        long? segmentSize = null;
        foreach (var line in lines)
        {
            var parts = line.Split(' ', 2, StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[0] == "format" && int.TryParse(parts[1], CultureInfo.InvariantCulture, out int v)) version = v;
            else if (parts.Length == 2 && parts[0] == "segment_size" && long.TryParse(parts[1], CultureInfo.InvariantCulture, out long s)) segmentSize = s;
        }
        if (version != CurrentVersion)
            throw new TmemCorruptionException(0, $"{path} says format {(version?.ToString(CultureInfo.InvariantCulture) ?? "(missing)")}; this build reads format {CurrentVersion}. Nothing was changed.");
        if (segmentSize is not { } size || size < 1L << 20 || size > 1L << 40 || (size & (size - 1)) != 0)
            throw new TmemCorruptionException(0, $"{path} has no valid segment_size (a power of two); the log cannot be addressed without it. Nothing was changed.");
        return new DataFormat(version.Value, size);
    }
}
