using System.Collections.Concurrent;

namespace Tmem.Service.Sessions;

/// <summary>What an operator sees of one open connection (any front end), and the way to close it.</summary>
internal interface IClientConnection
{
    /// <summary>A number unique in this run of the service, from 1.</summary>
    long Id { get; }

    /// <summary>The session once authenticated; null before.</summary>
    Session? Session { get; }

    /// <summary>The peer, for logs (<c>unix pid 1234 uid 1000</c>, <c>127.0.0.1:40312</c>).</summary>
    string Peer { get; }

    /// <summary>The kernel's word on a Unix-socket peer; null for TCP.</summary>
    PeerCredentials? Credentials { get; }

    DateTimeOffset ConnectedAt { get; }

    /// <summary>Requests received on this connection.</summary>
    long Requests { get; }

    /// <summary>Requests started and not yet answered.</summary>
    int InFlight { get; }

    /// <summary>Response bytes queued and not yet taken by the kernel.</summary>
    long QueuedBytes { get; }

    /// <summary>Closes the connection soon: it reads no more, answers what it started, and closes.</summary>
    void Kill();
}

/// <summary>The connections open now, for the client list and the kill request; shared by every front end. Thread-safe.</summary>
internal sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<long, IClientConnection> _open = new();
    private long _lastId;

    /// <summary>A new connection's id.</summary>
    public long NextId() => Interlocked.Increment(ref _lastId);

    public void Add(IClientConnection connection) => _open[connection.Id] = connection;

    public void Remove(IClientConnection connection) => _open.TryRemove(connection.Id, out _);

    /// <summary>The open connections, by id.</summary>
    public IReadOnlyList<IClientConnection> List() => _open.Values.OrderBy(c => c.Id).ToList();

    /// <summary>Closes connection <paramref name="id"/>; false when none is open under that id.</summary>
    public bool Kill(long id)
    {
        if (!_open.TryGetValue(id, out var connection)) return false;
        connection.Kill();
        return true;
    }
}
