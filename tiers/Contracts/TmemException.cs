namespace Tmem;

/// <summary>
/// An operation was refused because of how it was called (not a normal outcome such as a
/// rejected put). The store's state is unchanged.
/// </summary>
public sealed class TmemException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TmemException(TmemError error, string message) : base(message)
    {
        Error = error;
    }

    /// <summary>What was wrong.</summary>
    public TmemError Error { get; }
}
