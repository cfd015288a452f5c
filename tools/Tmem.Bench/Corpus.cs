using System.Runtime.InteropServices;

namespace Tmem.Bench;

/// <summary>A set of 4 KiB pages to benchmark with, and where it came from.</summary>
internal sealed class Corpus
{
    public const int PageSize = 4096;

    private Corpus(string description, byte[][] pages)
    {
        Description = description;
        Pages = pages;
    }

    public string Description { get; }

    public byte[][] Pages { get; }

    /// <summary>One 8-byte word repeated (the store keeps such pages without compressing them).</summary>
    public static bool IsSameFilled(byte[] page)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(page);
        return words.IndexOfAnyExcept(words[0]) < 0;
    }

    /// <summary>
    /// The given files; else <c>../shared/corpus/anon.pages</c> and <c>file.pages</c> beside the
    /// repository root when present; else pages cut from the installed .NET runtime's assemblies.
    /// </summary>
    public static Corpus Load(IReadOnlyList<string> files)
    {
        if (files.Count == 0)
        {
            var shared = FindSharedCorpus();
            if (shared is not null) files = shared;
        }
        if (files.Count > 0)
        {
            var pages = new List<byte[]>();
            foreach (var file in files)
            {
                var bytes = File.ReadAllBytes(file);
                if (bytes.Length < PageSize || bytes.Length % PageSize != 0)
                    throw new ArgumentException($"Corpus file {file} is {bytes.Length} bytes; it must be a non-empty multiple of {PageSize}.");
                pages.AddRange(Cut(bytes));
            }
            return new Corpus(string.Join(" + ", files.Select(Path.GetFileName)), pages.ToArray());
        }
        return FromRuntime();
    }

    private static List<string>? FindSharedCorpus()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (!File.Exists(Path.Combine(dir.FullName, "Tmem.sln"))) continue;
                string corpus = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "corpus"));
                var found = new[] { "anon.pages", "file.pages" }.Select(f => Path.Combine(corpus, f)).Where(File.Exists).ToList();
                return found.Count > 0 ? found : null;
            }
        }
        return null;
    }

    private static Corpus FromRuntime()
    {
        string dir = RuntimeEnvironment.GetRuntimeDirectory();
        var pages = new List<byte[]>();
        foreach (var file in Directory.GetFiles(dir, "*.dll").Order(StringComparer.Ordinal))
        {
            pages.AddRange(Cut(File.ReadAllBytes(file)));
            if (pages.Count >= 4096) break;
        }
        return new Corpus($"{pages.Count} pages of .NET runtime assemblies ({dir})", pages.ToArray());
    }

    private static IEnumerable<byte[]> Cut(byte[] bytes)
    {
        for (int offset = 0; offset + PageSize <= bytes.Length; offset += PageSize)
            yield return bytes.AsSpan(offset, PageSize).ToArray();
    }
}
