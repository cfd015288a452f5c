using System.Globalization;

namespace Tmem.Service.Startup;

/// <summary>
/// Sizes with units in configuration: every <c>Tmem:</c> key whose name ends in <c>Bytes</c>
/// (<c>Tmem:RamBudgetBytes</c>, <c>Tmem:Service:MaxQueuedResponseBytes</c>,
/// <c>Tmem:Service:Clients:N:MaxFrameBytes</c>, ...) takes a byte count or a size such as
/// <c>256MiB</c> or <c>4GiB</c> (<see cref="ByteSize"/>), from any layer. Values with a unit are
/// turned into byte counts by a layer added last, before the checks and the binding see them;
/// a value that is neither is left for <see cref="ConfigurationChecker"/> to refuse.
/// </summary>
internal static class SizeUnits
{
    public static void Normalize(IConfigurationBuilder builder, IConfiguration configuration)
    {
        var rewritten = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in configuration.GetSection(TmemOptions.SectionName).AsEnumerable())
        {
            if (value is null || !IsSizeKey(key) || long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _)) continue;
            if (ByteSize.TryParse(value, out long bytes)) rewritten[key] = bytes.ToString(CultureInfo.InvariantCulture);
        }
        if (rewritten.Count > 0) builder.AddInMemoryCollection(rewritten);
    }

    /// <summary>Whether the key's last segment names a size in bytes.</summary>
    public static bool IsSizeKey(string key)
    {
        int colon = key.LastIndexOf(':');
        return key[(colon + 1)..].EndsWith("Bytes", StringComparison.OrdinalIgnoreCase);
    }
}
