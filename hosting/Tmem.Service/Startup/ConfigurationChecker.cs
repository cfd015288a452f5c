using System.Collections;
using System.Globalization;
using System.Reflection;

namespace Tmem.Service.Startup;

/// <summary>
/// Checks the <c>Tmem</c> section before anything binds it: every key must name a setting of
/// <see cref="TmemOptions"/>, <see cref="ServiceOptions"/>, <see cref="RemoteTierOptions"/>, <see cref="ClientOptions"/> or
/// the NBD front end's <see cref="Nbd.NbdOptions"/> (a
/// misspelt key would otherwise be ignored silently; the message suggests the nearest name), and
/// every value must convert to its setting's type (an enum's message lists the names it takes).
/// Ranges are the validators' business (OptionsValidators.cs).
/// </summary>
internal static class ConfigurationChecker
{
    public static List<string> Check(IConfiguration configuration)
    {
        var errors = new List<string>();
        var section = configuration.GetSection(TmemOptions.SectionName);
        CheckObject(section, typeof(TmemOptions), errors, extra: ["Service", "Nbd", nameof(TmemOptions.RemoteTier)]);
        CheckObject(section.GetSection("Service"), typeof(ServiceOptions), errors, extra: []);
        CheckObject(section.GetSection("Nbd"), typeof(Nbd.NbdOptions), errors, extra: []);
        CheckObject(section.GetSection(nameof(TmemOptions.RemoteTier)), typeof(RemoteTierOptions), errors, extra: []);
        return errors;
    }

    private static void CheckObject(IConfigurationSection section, Type type, List<string> errors, string[] extra)
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (extra.Contains(child.Key, StringComparer.OrdinalIgnoreCase)) continue;
            if (!properties.TryGetValue(child.Key, out var property))
            {
                string? near = Nearest(child.Key, properties.Keys.Concat(extra));
                errors.Add($"{child.Path} is not a setting{(near is null ? "" : $" (did you mean {section.Path}:{near}?)")}; the settings of {section.Path} are {string.Join(", ", properties.Keys.Concat(extra).Order(StringComparer.Ordinal))}.");
                continue;
            }
            CheckValue(child, property.PropertyType, errors);
        }
    }

    private static void CheckValue(IConfigurationSection item, Type type, List<string> errors)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (underlying != typeof(string) && typeof(IEnumerable).IsAssignableFrom(underlying))
        {
            var element = underlying.GetGenericArguments()[0];
            if (item.Value is { Length: > 0 }) errors.Add($"{item.Path} is '{item.Value}'; it is a list, set as {item.Path}:0, {item.Path}:1, ...");
            foreach (var entry in item.GetChildren())
            {
                if (!int.TryParse(entry.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                    errors.Add($"{entry.Path} is not a setting; {item.Path} is a list, indexed 0, 1, ...");
                else if (element == typeof(string) || element.IsPrimitive) CheckValue(entry, element, errors);
                else CheckObject(entry, element, errors, extra: []);
            }
            return;
        }
        if (item.GetChildren().Any())
        {
            errors.Add($"{item.Path} has sub-keys ({string.Join(", ", item.GetChildren().Select(c => c.Key))}); it is a single value.");
            return;
        }
        string? value = item.Value;
        if (string.IsNullOrEmpty(value)) return; // empty: the default (or, for a path, none)
        string? problem = underlying switch
        {
            _ when underlying.IsEnum => Enum.TryParse(underlying, value, ignoreCase: true, out var parsed) && Enum.IsDefined(underlying, parsed!) && !char.IsDigit(value[0]) && value[0] != '-'
                ? null
                : $"it must be one of {string.Join(", ", Enum.GetNames(underlying))}",
            _ when underlying == typeof(int) => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? null
                : SizeUnits.IsSizeKey(item.Path) ? "it must be a byte count or a size such as 64KiB" : $"it must be a whole number from {int.MinValue} to {int.MaxValue}",
            _ when underlying == typeof(long) => long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? null
                : SizeUnits.IsSizeKey(item.Path) ? "it must be a byte count or a size such as 256MiB or 4GiB" : "it must be a whole number",
            _ when underlying == typeof(double) => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) ? null : "it must be a number such as 0.5",
            _ when underlying == typeof(bool) => bool.TryParse(value, out _) ? null : "it must be true or false",
            _ => null,
        };
        if (problem is not null) errors.Add($"{item.Path} is '{value}'; {problem}.");
    }

    /// <summary>The candidate within edit distance 3 of <paramref name="key"/> (case ignored), if any.</summary>
    private static string? Nearest(string key, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = 4;
        foreach (var candidate in candidates)
        {
            int d = Distance(key.ToUpperInvariant(), candidate.ToUpperInvariant());
            if (d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        return best;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
