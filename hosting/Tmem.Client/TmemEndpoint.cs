using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Tmem.Client;

/// <summary>Parses the service addresses that the tools and the configuration use.</summary>
public static class TmemEndpoint
{
    /// <summary>
    /// <c>unix:PATH</c> or a bare path: the service's Unix domain socket;
    /// <c>tcp:HOST:PORT</c>: its TCP listener (HOST an IP address or a name).
    /// </summary>
    /// <exception cref="FormatException">Neither form.</exception>
    public static EndPoint Parse(string address)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        if (address.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string rest = address[4..];
            int colon = rest.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
                throw new FormatException($"'{address}' is not tcp:HOST:PORT with a port from 1 to 65535.");
            string host = rest[..colon].Trim('[', ']');
            return IPAddress.TryParse(host, out var ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(host, port);
        }
        string path = address.StartsWith("unix:", StringComparison.Ordinal) ? address[5..] : address;
        if (path.Length == 0) throw new FormatException($"'{address}' has no socket path.");
        return new UnixDomainSocketEndPoint(path);
    }
}
