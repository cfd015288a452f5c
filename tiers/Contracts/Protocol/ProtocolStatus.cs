namespace Tmem.Protocol;

/// <summary>
/// Byte 5 of a response frame. <see cref="Ok"/> means the request was carried out and the payload
/// holds its result (which may itself be a refusal, such as a put's <see cref="PutStatus"/>);
/// any other value is an error whose payload is a short UTF-8 message. Codes marked "closes"
/// are followed by the server closing the connection.
/// </summary>
public enum ProtocolStatus : byte
{
    /// <summary>Done; the payload is the result.</summary>
    Ok = 0,

    /// <summary>The frame header is invalid (length under 12, non-zero status or reserved bytes in a request). Closes.</summary>
    MalformedFrame = 1,

    /// <summary>The frame's length is over the connection's limit (1024 before the handshake, the client's MaxFrameBytes after). Closes.</summary>
    FrameTooLarge = 2,

    /// <summary>The Hello asked for a protocol version this server does not speak. Closes.</summary>
    UnsupportedVersion = 3,

    /// <summary>A request other than Hello came before a successful handshake. Closes.</summary>
    HandshakeRequired = 4,

    /// <summary>Unknown client name or wrong secret (which of the two is not said). Closes.</summary>
    AuthenticationFailed = 5,

    /// <summary>The opcode is not one this server knows. The connection stays open.</summary>
    UnknownOpcode = 6,

    /// <summary>The payload is wrong for the opcode (length, page size, invalid object id, bad pool options).</summary>
    InvalidArgument = 7,

    /// <summary>The pool id names no pool of this client and none of any other client.</summary>
    PoolNotFound = 8,

    /// <summary>The pool id is not this client's, but another client has a pool under that id: still unreachable.</summary>
    PoolOfAnotherClient = 9,

    /// <summary>The client already has as many pools as it may (its MaxPools, or the store's MaxPoolsPerClient).</summary>
    PoolLimitReached = 10,

    /// <summary>The client's configuration does not allow it to create or join a shared pool with this UUID.</summary>
    SharedPoolNotAllowed = 11,

    /// <summary>A shared pool with this UUID exists with another kind, page size or get mode.</summary>
    SharedPoolMismatch = 12,

    /// <summary>The client is already a member of the shared pool with this UUID.</summary>
    SharedPoolAlreadyJoined = 13,

    /// <summary>The service is stopping; the request was not carried out.</summary>
    ShuttingDown = 14,

    /// <summary>An unexpected failure in the server (logged there); the request may not have been carried out.</summary>
    ServerError = 15,

    /// <summary>A second Hello on a connection that has already authenticated. The connection stays open.</summary>
    AlreadyAuthenticated = 16,

    /// <summary>
    /// A persistent put, flush or get whose outcome could not be made durable, or shown to be,
    /// because the data directory's storage is failing (writes or syncs fail, or no room even for
    /// the log's reserve). Its effect is in the store's memory and log and becomes durable by
    /// itself once the storage recovers; a crash or stop before that loses it (the handle then
    /// holds what it held before). The outcome is not known yet: a later get tells. Retry later.
    /// The connection stays open.
    /// </summary>
    NotDurable = 17,

    /// <summary>
    /// The Hello was valid but the service already serves as many authenticated connections as it
    /// may (<c>Tmem:Service:MaxConnections</c>). Closes; try again later.
    /// </summary>
    TooManyConnections = 18,

    /// <summary>
    /// The request is for administrator clients (<c>Tmem:Service:Clients:N:Admin</c>) and this
    /// client is not one. The connection stays open.
    /// </summary>
    NotPermitted = 19,
}
