namespace Tmem.Service.Sessions;

/// <summary>
/// Why a session operation did not produce a result, independent of any wire format: the tmem
/// protocol maps each kind to a status code (Handlers/Failures.cs), a block-device front end to
/// its own error codes.
/// </summary>
internal enum FailureKind
{
    /// <summary>Bad arguments: page length, object id, pool options, payload.</summary>
    InvalidArgument,

    /// <summary>The pool id names no pool of this client, nor of any other.</summary>
    PoolNotFound,

    /// <summary>The pool id is not this client's but another client's (which stays unreachable).</summary>
    PoolOfAnotherClient,

    /// <summary>The client holds as many pools as it may.</summary>
    PoolLimitReached,

    /// <summary>The client's configuration does not allow this shared-pool UUID.</summary>
    SharedPoolNotAllowed,

    /// <summary>A shared pool with this UUID exists with other settings.</summary>
    SharedPoolMismatch,

    /// <summary>The client is already a member of that shared pool.</summary>
    SharedPoolAlreadyJoined,

    /// <summary>The service is stopping (the store is closed); not carried out.</summary>
    ShuttingDown,

    /// <summary>Carried out in memory and in the log, but not known to be durable: the storage is failing.</summary>
    NotDurable,

    /// <summary>Unexpected; logged. The operation may or may not have taken effect.</summary>
    ServerError,
}

/// <summary>A failure and the message that tells the client what was wrong.</summary>
internal readonly record struct Failure(FailureKind Kind, string Message);

/// <summary>The service's own policy refused an operation (a limit or an allow list of the configured client).</summary>
internal sealed class SessionRefusedException(FailureKind kind, string message) : Exception(message)
{
    public FailureKind Kind { get; } = kind;
}
