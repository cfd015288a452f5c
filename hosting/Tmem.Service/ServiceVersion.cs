using System.Reflection;

namespace Tmem.Service;

/// <summary>The service's version (the build's informational version, Directory.Build.props), as --version, the start-up log line and Info report it.</summary>
internal static class ServiceVersion
{
    public static string Text { get; } = Read(typeof(ServiceVersion).Assembly);

    /// <summary>An assembly's informational version without the source revision after '+', else its assembly version.</summary>
    public static string Read(Assembly assembly)
    {
        string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        if (informational is { Length: > 0 })
        {
            int plus = informational.IndexOf('+', StringComparison.Ordinal);
            return plus > 0 ? informational[..plus] : informational;
        }
        return assembly.GetName().Version?.ToString(3) ?? "0.0.0";
    }
}
