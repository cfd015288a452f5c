namespace Tmem.Client;

/// <summary>Where the service is, who to be there, and how to reconnect (<c>services.AddTmemClient(...)</c>).</summary>
public sealed class TmemClientOptions
{
    /// <summary>The service's address: a Unix socket path, <c>unix:PATH</c> or <c>tcp:HOST:PORT</c> (<see cref="TmemEndpoint.Parse"/>). Default <c>tmem.sock</c>.</summary>
    public string Address { get; set; } = "tmem.sock";

    /// <summary>The configured client to act as (the service's <c>Tmem:Service:Clients:N:Name</c>). Default <c>local</c>.</summary>
    public string ClientName { get; set; } = "local";

    /// <summary>That client's secret; empty for a client without one (or one bound to this process's Unix user). Default empty.</summary>
    public string Secret { get; set; } = "";

    /// <summary>How long one connection attempt (connect and handshake) may take. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The wait after a first failed attempt before the next one; it doubles with each failure in a row. Default 100 ms.</summary>
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest wait between attempts. Default 5 s.</summary>
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(5);

    internal void Validate()
    {
        _ = TmemEndpoint.Parse(Address);
        ArgumentException.ThrowIfNullOrEmpty(ClientName, nameof(ClientName));
        ArgumentNullException.ThrowIfNull(Secret, nameof(Secret));
        if (ConnectTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "must be positive");
        if (ReconnectMinDelay < TimeSpan.Zero || ReconnectMaxDelay < ReconnectMinDelay)
            throw new ArgumentOutOfRangeException(nameof(ReconnectMaxDelay), ReconnectMaxDelay, "ReconnectMinDelay must be 0 or more and ReconnectMaxDelay at least ReconnectMinDelay");
    }
}
