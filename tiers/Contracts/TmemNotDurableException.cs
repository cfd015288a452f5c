namespace Tmem;

/// <summary>
/// A persistent operation (or a get of a persistent page) could not be made durable, or could not
/// be shown to be, because the data directory's storage is failing: its writes or syncs fail, or
/// it has no room even for the log's reserve. The operation's effect is in the store's memory and
/// in its log, and it becomes durable by itself once the storage recovers; a crash or a stop
/// before that loses it (the handle then holds what it held before). Its outcome is therefore not
/// known yet, as for a request whose connection dropped: a later get tells. Retry later.
/// </summary>
public sealed class TmemNotDurableException : IOException
{
    /// <summary>Creates the exception.</summary>
    public TmemNotDurableException(string message, Exception? innerException = null) : base(message, innerException)
    {
    }
}
