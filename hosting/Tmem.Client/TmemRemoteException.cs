using Tmem.Protocol;

namespace Tmem.Client;

/// <summary>
/// The service refused a request: <see cref="Status"/> says why and the message is the server's.
/// Statuses that close the connection (see <see cref="ProtocolStatus"/>) leave the
/// <see cref="TmemConnection"/> unusable; the others leave it as it was.
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

    /// <summary>The server's message, without the status name.</summary>
    public string ServerMessage { get; }
}
