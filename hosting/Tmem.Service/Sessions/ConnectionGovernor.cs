using Microsoft.Extensions.Options;

namespace Tmem.Service.Sessions;

/// <summary>A connection the governor can close to make room (an unauthenticated one).</summary>
internal interface IEvictable
{
    /// <summary>Close soon: the connection's reader stops at its next wait for input.</summary>
    void Evict();
}

/// <summary>A connection's place in <see cref="ConnectionGovernor"/>'s counts, from admission to release.</summary>
internal sealed class ConnectionTicket
{
    internal LinkedListNode<IEvictable>? Pending;
    internal bool Authenticated;
    internal bool Released;
}

/// <summary>
/// Admission of connections, for every front end. Connections that have not authenticated and
/// those that have are counted apart, so unauthenticated ones can never take the places of
/// clients: at most <c>MaxUnauthenticatedConnections</c> wait for their handshake (each for at
/// most <c>HandshakeTimeoutSeconds</c>), and when one more arrives the oldest waiting one is
/// closed, rather than the new one refused (a client's handshake takes one round trip, so an
/// attacker would have to open that many connections within it to push a client out); at most
/// <c>MaxConnections</c> are authenticated, checked when a handshake succeeds. Thread-safe.
/// </summary>
internal sealed class ConnectionGovernor(IOptions<ServiceOptions> options)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<IEvictable> _pending = new();
    private readonly int _maxAuthenticated = options.Value.MaxConnections;
    private readonly int _maxUnauthenticated = options.Value.MaxUnauthenticatedConnections;
    private int _authenticated;
    private long _evicted;
    private long _refused;

    /// <summary>Authenticated connections open now.</summary>
    public int Authenticated => Volatile.Read(ref _authenticated);

    /// <summary>Connections open now that have not authenticated yet.</summary>
    public int Unauthenticated
    {
        get
        {
            lock (_lock) return _pending.Count;
        }
    }

    /// <summary>Unauthenticated connections closed to make room for newer ones.</summary>
    public long Evicted => Interlocked.Read(ref _evicted);

    /// <summary>Handshakes refused because <c>MaxConnections</c> were authenticated.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>A new connection, not authenticated yet; closes the oldest such one when they are at their limit.</summary>
    public ConnectionTicket AdmitUnauthenticated(IEvictable connection)
    {
        var ticket = new ConnectionTicket();
        IEvictable? evict = null;
        lock (_lock)
        {
            if (_pending.Count >= _maxUnauthenticated && _pending.First is { } oldest)
            {
                _pending.Remove(oldest);
                evict = oldest.Value;
                _evicted++;
            }
            ticket.Pending = _pending.AddLast(connection);
        }
        evict?.Evict();
        return ticket;
    }

    /// <summary>
    /// The connection has authenticated: counts it as such, unless <c>MaxConnections</c> are
    /// (then it stays unauthenticated and should be closed), or it was evicted meanwhile.
    /// </summary>
    public bool TryAuthenticate(ConnectionTicket ticket)
    {
        lock (_lock)
        {
            if (ticket.Released || ticket.Authenticated || ticket.Pending is not { List: not null } node) return false;
            if (_authenticated >= _maxAuthenticated)
            {
                _refused++;
                return false;
            }
            _pending.Remove(node);
            ticket.Pending = null;
            ticket.Authenticated = true;
            _authenticated++;
            return true;
        }
    }

    /// <summary>For a front end that authenticates at accept (no handshake): an authenticated place, or null at the limit.</summary>
    public ConnectionTicket? TryAdmitAuthenticated()
    {
        lock (_lock)
        {
            if (_authenticated >= _maxAuthenticated)
            {
                _refused++;
                return null;
            }
            _authenticated++;
            return new ConnectionTicket { Authenticated = true };
        }
    }

    /// <summary>The connection closed.</summary>
    public void Release(ConnectionTicket ticket)
    {
        lock (_lock)
        {
            if (ticket.Released) return;
            ticket.Released = true;
            if (ticket.Pending is { List: not null } node) _pending.Remove(node);
            ticket.Pending = null;
            if (ticket.Authenticated) _authenticated--;
        }
    }
}
