using System.Buffers;
using System.Net.Sockets;

namespace Tmem.Service.Network;

/// <summary>How every front end's connection closes its socket.</summary>
internal static class GracefulClose
{
    /// <summary>
    /// Closes so that the last response arrives: send FIN, then read (and discard) what the client
    /// still sends for a moment, since closing with unread input would reset the connection and
    /// could destroy that response in flight. A <paramref name="broken"/> socket is only disposed.
    /// </summary>
    public static void Close(Socket socket, bool broken)
    {
        try
        {
            if (!broken)
            {
                socket.Shutdown(SocketShutdown.Send);
                socket.ReceiveTimeout = LingerMilliseconds;
                var sink = ArrayPool<byte>.Shared.Rent(4096);
                try
                {
                    long deadline = Environment.TickCount64 + LingerMilliseconds;
                    while (Environment.TickCount64 < deadline && socket.Receive(sink) > 0)
                    {
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(sink);
                }
            }
        }
        catch (Exception)
        {
            // Reset, timed out or already closed: nothing more to deliver.
        }
        finally
        {
            socket.Dispose();
        }
    }

    /// <summary>How long a closing connection reads what its client still sends.</summary>
    private const int LingerMilliseconds = 1000;

    /// <summary>As <see cref="Close"/>, for a socket used asynchronously.</summary>
    public static async Task CloseAsync(Socket socket, bool broken)
    {
        try
        {
            if (!broken)
            {
                socket.Shutdown(SocketShutdown.Send);
                using var linger = new CancellationTokenSource(LingerMilliseconds);
                var sink = ArrayPool<byte>.Shared.Rent(4096);
                try
                {
                    while (await socket.ReceiveAsync(sink, SocketFlags.None, linger.Token).ConfigureAwait(false) > 0)
                    {
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(sink);
                }
            }
        }
        catch (Exception)
        {
            // Reset, timed out or already closed: nothing more to deliver.
        }
        finally
        {
            socket.Dispose();
        }
    }
}
