using Tmem.Protocol;

namespace Tmem.Client;

/// <summary>
/// The service refused a request: <see cref="Status"/> says why and the message is the server's.
/// Statuses that close the connection (see <see cref="ProtocolStatus"/>) leave the
/// <see cref="TmemConnection"/> unusable; the others leave it as it was.
/// <para>
/// <see cref="ProtocolStatus.NotDurable"/> (see <see cref="IsNotDurable"/>) is not a refusal: a
/// persistent put, flush or get whose outcome the server could not make or show durable because
/// its storage is failing. The effect is in the server's memory and log and becomes durable once
/// the storage recovers, unless the server stops or crashes first; a later get tells. Retry later.
/// </para>
/// </summary>
public sealed class TmemRemoteException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TmemRemoteException(ProtocolStatus status, string message) : base($"{status}: {message}")
    {
        Status = status;
        ServerMessage = message;
    }

    /// <summary>The status code the server answered.</summary>
    public ProtocolStatus Status { get; }

    /// <summary>
    /// Whether the server answered <see cref="ProtocolStatus.NotDurable"/>: the outcome is not
    /// known to be durable (the server's storage is failing), as described above.
    /// </summary>
    public bool IsNotDurable => Status == ProtocolStatus.NotDurable;

    /// <summary>The server's message, without the status name.</summary>
    public string ServerMessage { get; }
}
