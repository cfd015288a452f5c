using System.Globalization;

namespace Tmem.Service.Operators;

/// <summary>
/// The settings an administrator client may read and change while the service runs
/// (ConfigGet/ConfigSet, <c>tmem config</c>): <c>Tmem:RamBudgetBytes</c> (the store's budget;
/// shrinking evicts down to it at once) and <c>Logging:LogLevel:CATEGORY</c> (<c>Default</c>,
/// <c>Tmem</c>, ...). Changes last until the service stops; to keep one, put it in the
/// configuration too.
/// </summary>
internal sealed partial class RuntimeSettings(StoreHost host, RuntimeConfigurationSource overrides, IConfiguration configuration, ILogger<RuntimeSettings> logger)
{
    public const string RamBudgetKey = "Tmem:RamBudgetBytes";
    public const string LogLevelPrefix = "Logging:LogLevel:";

    /// <summary>Every setting that can change at run time, with its value in force.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> GetAll()
    {
        var list = new List<KeyValuePair<string, string>> { new(RamBudgetKey, host.Store.GetStats().RamBudgetBytes.ToString(CultureInfo.InvariantCulture)) };
        var levels = configuration.GetSection("Logging:LogLevel").GetChildren().ToDictionary(c => c.Key, c => c.Value ?? "", StringComparer.OrdinalIgnoreCase);
        levels.TryAdd("Default", "Information");
        foreach (var (category, level) in levels.OrderBy(kv => kv.Key, StringComparer.Ordinal)) list.Add(new(LogLevelPrefix + category, level));
        return list;
    }

    /// <summary>The settings whose key matches <paramref name="pattern"/> (empty or <c>*</c>: all; a trailing <c>*</c>: a prefix; case ignored).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Get(string pattern)
    {
        var all = GetAll();
        if (pattern.Length == 0 || pattern == "*") return all;
        if (pattern.EndsWith('*')) return all.Where(kv => kv.Key.StartsWith(pattern[..^1], StringComparison.OrdinalIgnoreCase)).ToList();
        var one = all.Where(kv => kv.Key.Equals(pattern, StringComparison.OrdinalIgnoreCase)).ToList();
        if (one.Count == 0 && pattern.StartsWith(LogLevelPrefix, StringComparison.OrdinalIgnoreCase))
            one.Add(new(pattern, configuration[pattern] ?? "(Default)"));
        return one;
    }

    /// <summary>Changes one setting; the value in force after it, or the reason it was refused (<paramref name="error"/>).</summary>
    public string? TrySet(string key, string value, string by, out string? error)
    {
        error = null;
        if (key.Equals(RamBudgetKey, StringComparison.OrdinalIgnoreCase))
        {
            if (!ByteSize.TryParse(value, out long bytes) || bytes < 1L << 16)
            {
                error = $"{RamBudgetKey} must be at least 65536 bytes, as a byte count or a size such as 256MiB; '{value}' is not";
                return null;
            }
            long before = host.Store.GetStats().RamBudgetBytes;
            long inUse = host.Store.SetRamBudget(bytes);
            LogRamBudget(by, before, bytes, inUse);
            return bytes.ToString(CultureInfo.InvariantCulture);
        }
        if (key.StartsWith(LogLevelPrefix, StringComparison.OrdinalIgnoreCase) && key.Length > LogLevelPrefix.Length)
        {
            if (!Enum.TryParse<LogLevel>(value, ignoreCase: true, out var level) || !Enum.IsDefined(level) || char.IsDigit(value[0]))
            {
                error = $"{key} must be one of {string.Join(", ", Enum.GetNames<LogLevel>())}; '{value}' is not";
                return null;
            }
            string canonical = LogLevelPrefix + key[LogLevelPrefix.Length..];
            overrides.Provider.Apply(canonical, level.ToString());
            LogLogLevel(by, canonical, level);
            return level.ToString();
        }
        error = $"{key} cannot be changed at run time; these can: {RamBudgetKey}, {LogLevelPrefix}CATEGORY (Default, Tmem, Microsoft, ...)";
        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {Client} changed Tmem:RamBudgetBytes from {Before} to {After} bytes ({InUse} slot bytes in use now)")]
    private partial void LogRamBudget(string client, long before, long after, long inUse);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {Client} set {Key} to {Level}")]
    private partial void LogLogLevel(string client, string key, LogLevel level);
}
