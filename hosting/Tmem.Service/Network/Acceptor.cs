using System.Net.Sockets;

namespace Tmem.Service.Network;

/// <summary>The accept step both front ends' accept loops share.</summary>
internal static class Acceptor
{
    /// <summary>
    /// The next connection, with TCP_NODELAY on a TCP socket; null once <paramref name="stopping"/>
    /// is cancelled or the listener is closed (the stop). A failed accept (out of file descriptors,
    /// for example) is logged and retried after 100 ms instead of spinning on it.
    /// </summary>
    public static async Task<Socket?> NextAsync(Socket listener, Action<SocketException> logFailure, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || stopping.IsCancellationRequested)
            {
                return null;
            }
            catch (SocketException e)
            {
                logFailure(e);
                await Task.Delay(100).ConfigureAwait(false);
                continue;
            }
            if (socket.AddressFamily != AddressFamily.Unix) socket.NoDelay = true;
            return socket;
        }
        return null;
    }
}
