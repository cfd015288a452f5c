namespace Tmem;

/// <summary>The outcome of a get.</summary>
public enum GetStatus
{
    /// <summary>
    /// No page under the handle (never put, flushed, evicted, or taken by an exclusive get).
    /// The destination is left unchanged.
    /// </summary>
    Miss = 0,

    /// <summary>The page was copied into the destination.</summary>
    Hit = 1,
}
