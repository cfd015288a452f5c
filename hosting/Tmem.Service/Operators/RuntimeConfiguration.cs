namespace Tmem.Service.Operators;

/// <summary>
/// The last configuration layer: values an administrator set at run time (ConfigSet), over every
/// file, variable and argument. Setting one reloads the configuration, so whatever watches it
/// (the logging filters) follows at once. Nothing is written to disk: a restart starts from the
/// files again.
/// </summary>
internal sealed class RuntimeConfigurationSource : IConfigurationSource
{
    public RuntimeConfigurationProvider Provider { get; } = new();

    public IConfigurationProvider Build(IConfigurationBuilder builder) => Provider;
}

internal sealed class RuntimeConfigurationProvider : ConfigurationProvider
{
    /// <summary>Sets <paramref name="key"/> and tells the configuration's watchers.</summary>
    public void Apply(string key, string value)
    {
        Data[key] = value;
        OnReload();
    }
}
