namespace Tmem;

/// <summary>
/// The data directory holds a store that the configured options cannot open (for example more
/// pools per client than <see cref="TmemOptions.MaxPoolsPerClient"/> allows). Nothing is damaged
/// and nothing was changed: open it again with the setting <see cref="Key"/> raised.
/// </summary>
public sealed class TmemOptionsMismatchException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public TmemOptionsMismatchException(string key, string message) : base(message)
    {
        Key = key;
    }

    /// <summary>The configuration key to change, as <c>Tmem:Name</c>.</summary>
    public string Key { get; }
}
