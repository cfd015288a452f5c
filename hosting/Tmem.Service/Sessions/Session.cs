namespace Tmem.Service.Sessions;

/// <summary>
/// One configured client acting on the store, for any front end: the tmem socket protocol
/// (Handlers/) or a block-device protocol. It carries the service's policy for that client (its
/// pool limit, its shared-pool allow list) and turns every failure into a <see cref="Failure"/>.
/// Durability is the engine's business: a persistent put or flush completes when the engine says
/// it is durable, so a front end only awaits what it is given. Thread-safe; several connections
/// may share a client, each with a session of its own or the same one.
/// </summary>
internal sealed partial class Session
{
    private readonly SessionManager _manager;
    private readonly ILogger _logger;

    public Session(SessionManager manager, ConfiguredClient client, TmemClient tmem)
    {
        _manager = manager;
        _logger = manager.Logger;
        Client = client;
        Tmem = tmem;
    }

    public ConfiguredClient Client { get; }

    /// <summary>The store client it acts as (its pools).</summary>
    public TmemClient Tmem { get; }

    public string Name => Client.Options.Name;

    public int ClientId => Client.Options.Id;

    /// <inheritdoc cref="TmemClient.GetPageSize"/>
    public int GetPageSize(int poolId) => Tmem.GetPageSize(poolId);

    /// <summary>A put; reads the page before it returns; completes when the engine's durability promise holds.</summary>
    public ValueTask<PutStatus> PutAsync(int poolId, in ObjectId objectId, uint index, ReadOnlySpan<byte> page) =>
        Tmem.PutAsync(poolId, objectId, index, page);

    /// <summary>A get into <paramref name="page"/>, which must stay untouched until this completes.</summary>
    public ValueTask<GetStatus> GetAsync(int poolId, in ObjectId objectId, uint index, Memory<byte> page) =>
        Tmem.GetAsync(poolId, objectId, index, page);

    public ValueTask<bool> FlushPageAsync(int poolId, in ObjectId objectId, uint index) => Tmem.FlushPageAsync(poolId, objectId, index);

    public ValueTask<int> FlushObjectAsync(int poolId, in ObjectId objectId) => Tmem.FlushObjectAsync(poolId, objectId);

    /// <summary>Completes once everything the store appended so far is committed (a block device's flush).</summary>
    public ValueTask WaitForCommitAsync() => _manager.Store.WaitForCommitAsync();

    /// <summary>Everything appended so far committed, the commit started now in either durability mode (a block device's FLUSH and FUA).</summary>
    public ValueTask CommitAsync() => _manager.Store.CommitAsync();

    public IReadOnlyList<PoolInfo> GetPools() => Tmem.GetPools();

    /// <summary>The store's counters, then the service's (store-wide and service-wide, not this client's).</summary>
    public IReadOnlyList<KeyValuePair<string, long>> GetStats() => _manager.GetStats();

    /// <summary>
    /// Creates a pool or joins a shared one, within the client's allow list and pool limit. Runs
    /// on the thread pool: creating a persistent pool waits for its log record's commit.
    /// </summary>
    /// <exception cref="SessionRefusedException">The UUID is not on the client's allow list (thrown at once).</exception>
    public Task<int> CreatePoolAsync(PoolOptions options)
    {
        if (options.SharedUuid is { } uuid && !Client.MayUseSharedPool(uuid))
            throw new SessionRefusedException(FailureKind.SharedPoolNotAllowed, $"client {Name} may not create or join shared pool {uuid} (Tmem:Service:Clients:*:SharedPools)");
        return Task.Run(() =>
        {
            lock (Client.CreateLock)
            {
                if (Tmem.GetPools().Count >= Client.MaxPools)
                    throw new SessionRefusedException(FailureKind.PoolLimitReached, $"client {Name} already has {Client.MaxPools} pools, its limit");
                return Tmem.CreatePool(options);
            }
        });
    }

    /// <summary>
    /// Creates a pool the service makes on the client's behalf (an NBD export's): the client's pool
    /// limit applies, its shared-pool allow list does not (a shared UUID here is the service's own,
    /// random, and told to no one). Runs on the thread pool, as <see cref="CreatePoolAsync"/>.
    /// </summary>
    public Task<int> CreateServicePoolAsync(PoolOptions options) => Task.Run(() =>
    {
        lock (Client.CreateLock)
        {
            if (Tmem.GetPools().Count >= Client.MaxPools)
                throw new SessionRefusedException(FailureKind.PoolLimitReached, $"client {Name} already has {Client.MaxPools} pools, its limit");
            return Tmem.CreatePool(options);
        }
    });

    /// <summary>Destroys (leaves) a pool, on the thread pool (a persistent pool's destruction waits for its commit).</summary>
    public Task DestroyPoolAsync(int poolId) => Task.Run(() => Tmem.DestroyPool(poolId));

    /// <summary>
    /// What a failed operation on <paramref name="poolId"/> (-1: none) means for the client;
    /// an unexpected exception is logged here, once, as a <see cref="FailureKind.ServerError"/>.
    /// </summary>
    public Failure Classify(Exception e, int poolId, string operation, string peer)
    {
        switch (e)
        {
            case TmemException { Error: TmemError.PoolNotFound } when _manager.Store.IsPoolIdUsedByAnotherClient(ClientId, poolId):
                return new(FailureKind.PoolOfAnotherClient, $"pool id {poolId} is not this client's; it belongs to another client and is unreachable from here");
            case TmemException { Error: TmemError.PoolNotFound }:
                return new(FailureKind.PoolNotFound, $"no pool with id {poolId}");
            case TmemException { Error: TmemError.PoolLimitReached } t:
                return new(FailureKind.PoolLimitReached, t.Message);
            case TmemException { Error: TmemError.SharedPoolMismatch } t:
                return new(FailureKind.SharedPoolMismatch, t.Message);
            case TmemException { Error: TmemError.SharedPoolAlreadyJoined } t:
                return new(FailureKind.SharedPoolAlreadyJoined, t.Message);
            case SessionRefusedException r:
                return new(r.Kind, r.Message);
            case ArgumentException a:
                return new(FailureKind.InvalidArgument, a.Message);
            case ObjectDisposedException:
                return new(FailureKind.ShuttingDown, "the service is stopping");
            case TmemNotDurableException n:
                LogNotDurable(operation, Name, peer, n.Message);
                return new(FailureKind.NotDurable, n.Message);
            default:
                LogRequestFailed(e, operation, Name, peer);
                return new(FailureKind.ServerError, $"{e.GetType().Name}: {e.Message}");
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Operation} request of client {Name} ({Peer}) failed unexpectedly")]
    private partial void LogRequestFailed(Exception exception, string operation, string name, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Operation} request of client {Name} ({Peer}) is not durable: {Reason}")]
    private partial void LogNotDurable(string operation, string name, string peer, string reason);
}
