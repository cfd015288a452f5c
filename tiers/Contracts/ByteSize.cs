using System.Globalization;

namespace Tmem;

/// <summary>
/// Sizes as people write them: a byte count (<c>268435456</c>) or a number with a unit, binary
/// (<c>256MiB</c>, <c>4GiB</c>, <c>64KiB</c>; also <c>K</c>, <c>M</c>, <c>G</c>, <c>T</c> and
/// <c>KB</c>..<c>TB</c>, all powers of 1024 as the rest of the tooling uses them) or <c>B</c>.
/// Case does not matter; a space may stand between number and unit; a fraction is allowed with
/// a unit (<c>1.5GiB</c>). Used by the service's configuration and the command-line tools.
/// </summary>
public static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("kib", 1L << 10), ("mib", 1L << 20), ("gib", 1L << 30), ("tib", 1L << 40),
        ("kb", 1L << 10), ("mb", 1L << 20), ("gb", 1L << 30), ("tb", 1L << 40),
        ("k", 1L << 10), ("m", 1L << 20), ("g", 1L << 30), ("t", 1L << 40),
        ("b", 1),
    ];

    /// <summary>Parses <paramref name="text"/>; false when it is neither a byte count nor a number with a unit, or overflows.</summary>
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        string s = text.Trim();
        if (long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out bytes)) return true;
        string lower = s.ToLowerInvariant();
        foreach (var (suffix, factor) in Units)
        {
            if (!lower.EndsWith(suffix, StringComparison.Ordinal)) continue;
            string number = lower[..^suffix.Length].TrimEnd();
            if (!decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value) || number.Length == 0) return false;
            decimal result = value * factor;
            if (result > long.MaxValue || result != decimal.Truncate(result)) return false;
            bytes = (long)result;
            return true;
        }
        return false;
    }

    /// <summary>Parses <paramref name="text"/> or throws <see cref="FormatException"/> saying what is accepted.</summary>
    public static long Parse(string text) => TryParse(text, out long bytes)
        ? bytes
        : throw new FormatException($"'{text}' is not a size: give bytes (268435456) or a number with a unit (256MiB, 4GiB, 64KiB).");

    /// <summary>A readable form: <c>256 MiB</c>, <c>1.5 GiB</c>, <c>512 B</c>.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 40 or <= -(1L << 40) => Scaled(bytes, 1L << 40, "TiB"),
        >= 1L << 30 or <= -(1L << 30) => Scaled(bytes, 1L << 30, "GiB"),
        >= 1L << 20 or <= -(1L << 20) => Scaled(bytes, 1L << 20, "MiB"),
        >= 1L << 10 or <= -(1L << 10) => Scaled(bytes, 1L << 10, "KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };

    private static string Scaled(long bytes, long unit, string name) =>
        string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)unit:0.##} {name}");
}
