namespace Tmem;

/// <summary>
/// The data directory holds damaged data below the commit point (or damaged metadata). The store
/// was not opened and nothing was changed or dropped; the message names where and what, and the
/// offline tool that can inspect and repair the directory.
/// </summary>
public sealed class TmemCorruptionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TmemCorruptionException(long logAddress, string message) : base(message)
    {
        LogAddress = logAddress;
    }

    /// <summary>The log address of the damaged record, or 0 when the damage is not in a record.</summary>
    public long LogAddress { get; }
}
