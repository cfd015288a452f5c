namespace Tmem;

/// <summary>When a persistent put or flush is acknowledged, and so what a crash can lose.</summary>
public enum DurabilityMode
{
    /// <summary>
    /// Acknowledged only after the log commit that covers it is durable (one commit serves every
    /// waiter). A crash loses nothing that was acknowledged. The default.
    /// </summary>
    Strict = 0,

    /// <summary>
    /// Acknowledged once appended to the log; the log is committed at least every
    /// <see cref="TmemOptions.CommitIntervalMs"/>. A crash loses at most that window, and what
    /// survives is a prefix of the operations: never a later one without the earlier ones.
    /// </summary>
    Relaxed = 1,
}
