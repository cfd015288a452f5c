namespace Tmem.Service.Sessions;

/// <summary>
/// Where every front end gets its sessions: authentication against the configured clients
/// (<see cref="Authenticate"/>), or acting for a configured client by name when the front end
/// authenticates by its own means (<see cref="ActAs"/>, for a block-device export), plus the
/// limits all front ends share (<see cref="Governor"/>, <see cref="ResponseBudget"/>).
/// </summary>
internal sealed class SessionManager(StoreHost host, ClientDirectory clients, ServiceMetrics metrics, ConnectionGovernor governor,
    ResponseBudget responseBudget, ConnectionRegistry connections, ILogger<Session> logger)
{
    public TmemStore Store => host.Store;

    public ILogger Logger => logger;

    public ClientDirectory Clients => clients;

    /// <summary>Admission of connections (unauthenticated and authenticated), shared by every front end.</summary>
    public ConnectionGovernor Governor => governor;

    /// <summary>The bound on response bytes queued across all connections, shared by every front end.</summary>
    public ResponseBudget ResponseBudget => responseBudget;

    public ServiceMetrics Metrics => metrics;

    /// <summary>The connections open now (every front end registers its own), for the client list and kill.</summary>
    public ConnectionRegistry Connections => connections;

    /// <summary>
    /// A session for the client with this name and secret, or with this name when the client is
    /// bound to the Unix user <paramref name="peer"/> runs as (<c>Clients:N:UnixUid</c>); null for
    /// an unknown name or a wrong secret alike.
    /// </summary>
    public Session? Authenticate(string name, ReadOnlySpan<byte> secret, PeerCredentials? peer = null) =>
        clients.Authenticate(name, secret, peer) is { } client ? new Session(this, client, host.Store.GetClient(client.Options.Id)) : null;

    /// <summary>A session for the configured client <paramref name="name"/>, with no secret checked (a front end's own configuration names it).</summary>
    /// <exception cref="KeyNotFoundException">No such client is configured.</exception>
    public Session ActAs(string name) =>
        clients.Find(name) is { } client
            ? new Session(this, client, host.Store.GetClient(client.Options.Id))
            : throw new KeyNotFoundException($"no client named '{name}' is configured (Tmem:Service:Clients)");

    /// <summary>The store's counters, then the service's own.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> GetStats()
    {
        var list = new List<KeyValuePair<string, long>>(host.Store.GetStats().ToList());
        metrics.AppendCounters(list);
        return list;
    }
}
