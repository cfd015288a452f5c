using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Tmem.Service.Sessions;

/// <summary>
/// Who is at the other end of a Unix socket, as the kernel says (Linux <c>SO_PEERCRED</c>: the
/// process id, user id and group id of the process that connected), not as the peer claims.
/// </summary>
internal readonly record struct PeerCredentials(int Pid, uint Uid, uint Gid)
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;

    /// <summary>The credentials of a Unix socket's peer; null for another kind of socket or platform, or if the kernel will not say.</summary>
    public static PeerCredentials? Of(Socket socket)
    {
        if (socket.AddressFamily != AddressFamily.Unix || !OperatingSystem.IsLinux()) return null;
        Span<byte> ucred = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred) != 12) return null;
        }
        catch (SocketException)
        {
            return null;
        }
        return new PeerCredentials(MemoryMarshal.Read<int>(ucred), MemoryMarshal.Read<uint>(ucred[4..]), MemoryMarshal.Read<uint>(ucred[8..]));
    }

    /// <summary>For logs: <c>unix pid 1234 uid 1000</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"unix pid {Pid} uid {Uid}");
}
