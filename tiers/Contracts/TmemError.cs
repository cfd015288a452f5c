namespace Tmem;

/// <summary>Why an operation was refused as misuse (carried by <see cref="TmemException"/>).</summary>
public enum TmemError
{
    /// <summary>The pool id names no pool of this client (never created, destroyed, or another client's).</summary>
    PoolNotFound = 1,

    /// <summary>The client already has the store's <c>MaxPoolsPerClient</c> pools.</summary>
    PoolLimitReached = 2,

    /// <summary>A shared pool with that UUID exists with another kind, page size or get mode.</summary>
    SharedPoolMismatch = 3,

    /// <summary>The client is already a member of the shared pool with that UUID.</summary>
    SharedPoolAlreadyJoined = 4,
}
