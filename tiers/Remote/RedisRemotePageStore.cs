using System.Buffers.Binary;
using StackExchange.Redis;

namespace Tmem.Remote;

/// <summary>
/// <see cref="IRemotePageStore"/> over a Redis-protocol cluster (Garnet, or any Redis cluster, or
/// one server) with StackExchange.Redis, which follows the cluster's slot map and its MOVED and ASK
/// redirects. docs/remote-tier.md.
/// <para>
/// Keys: one Redis hash per tmem object, <c>tmem:STORE:INCARNATION:POOL:OBJECT</c> (the store's
/// name, the open's incarnation in hex, the pool serial, the object id's three words in hex), so
/// that an object's pages live in one slot and a flush object is one DEL; a field per page version
/// (the index and the version, 4 + 8 bytes big-endian), so a field is written once and never
/// changed. A batch of writes is one HSET per object (its pages as fields) and one renewal of the
/// key's expiry (<see cref="RemoteTierOptions.KeyTtlSeconds"/>) per object, sent together; the
/// expiry reclaims what lost deletes and crashed stores leave.
/// </para>
/// <para>
/// Every request is bounded by <see cref="RemoteTierOptions.RequestTimeoutMs"/> here, not by the
/// client's own timeout checks (which run about once a second). Failures are statuses, never
/// exceptions; the state (<see cref="Status"/>) is judged once a second from them and a ping of
/// every node.
/// </para>
/// </summary>
public sealed class RedisRemotePageStore : IRemotePageStore
{
    private readonly RemoteTierOptions _options;
    private readonly string _storeName;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan? _ttl;
    private readonly RemoteHealth _health = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly bool _ownsConnection;
    private readonly Task _prober;
    private volatile IConnectionMultiplexer? _connection;
    private volatile IDatabase? _db;

    /// <summary>Connects to <see cref="RemoteTierOptions.Endpoints"/> in the background (the store opens without waiting).</summary>
    public RedisRemotePageStore(RemoteTierOptions options)
        : this(options, null)
    {
    }

    /// <summary>
    /// Uses <paramref name="connection"/> (left open on disposal) when given, e.g. tests that open
    /// many stores on one cluster; otherwise connects to <see cref="RemoteTierOptions.Endpoints"/>.
    /// </summary>
    public RedisRemotePageStore(RemoteTierOptions options, IConnectionMultiplexer? connection)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _storeName = options.EffectiveStoreName;
        _timeout = TimeSpan.FromMilliseconds(options.RequestTimeoutMs);
        _ttl = options.KeyTtlSeconds > 0 ? TimeSpan.FromSeconds(options.KeyTtlSeconds) : null;
        _ownsConnection = connection is null;
        var connected = connection is not null ? Task.FromResult(connection) : ConnectAsync(options);
        _prober = Task.Run(() => RunAsync(connected));
    }

    /// <inheritdoc/>
    public RemoteTierStatus Status => _health.Status;

    /// <summary>The client's settings for <paramref name="options"/> (also for tests that share one connection).</summary>
    public static ConfigurationOptions ClientConfiguration(RemoteTierOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var config = ConfigurationOptions.Parse(options.Endpoints!);
        config.AbortOnConnectFail = false;             // open now, connect (and reconnect) in the background
        config.ConnectTimeout = options.ConnectTimeoutMs;
        config.ConnectRetry = 1;
        config.BacklogPolicy = BacklogPolicy.FailFast; // a node that is down fails requests at once, not after a backlog
        config.AsyncTimeout = Math.Max(100, options.RequestTimeoutMs);
        config.SyncTimeout = Math.Max(100, options.RequestTimeoutMs);
        config.ReconnectRetryPolicy = new LinearRetry(500);
        config.ClientName = "tmem-" + options.EffectiveStoreName;
        return config;
    }

    private static async Task<IConnectionMultiplexer> ConnectAsync(RemoteTierOptions options) =>
        await ConnectionMultiplexer.ConnectAsync(ClientConfiguration(options)).ConfigureAwait(false);

    /// <summary>The object's key: <c>tmem:STORE:INCARNATION:POOL:OBJECT</c>.</summary>
    public string KeyOf(RemoteObjectKey obj) =>
        $"tmem:{_storeName}:{obj.Incarnation:x16}:{obj.PoolSerial}:{obj.ObjectId.Word0:x16}{obj.ObjectId.Word1:x16}{obj.ObjectId.Word2:x16}";

    private static RedisValue Field(in RemotePageKey page)
    {
        var field = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(field, page.Index);
        BinaryPrimitives.WriteInt64BigEndian(field.AsSpan(4), page.Version);
        return field;
    }

    /// <inheritdoc/>
    public async Task<RemoteWriteStatus[]> WriteAsync(IReadOnlyList<RemotePageWrite> writes)
    {
        ArgumentNullException.ThrowIfNull(writes);
        var statuses = new RemoteWriteStatus[writes.Count];
        var db = _db;
        if (db is null)
        {
            Array.Fill(statuses, RemoteWriteStatus.Failed);
            return statuses;
        }
        // One HSET (and one expiry renewal) per object, all in one batch: the client sends them
        // together per node instead of flushing each, and a node parses one command per object.
        var groups = new Dictionary<RemoteObjectKey, List<int>>();
        for (int i = 0; i < writes.Count; i++)
        {
            if (!groups.TryGetValue(writes[i].Page.Object, out var members)) groups.Add(writes[i].Page.Object, members = new List<int>(4));
            members.Add(i);
        }
        var sent = new Task?[writes.Count];
        Task all;
        try
        {
            var batch = db.CreateBatch();
            var objects = new Task[groups.Count];
            int g = 0;
            foreach (var (obj, members) in groups)
            {
                RedisKey key = KeyOf(obj);
                var entries = new HashEntry[members.Count];
                for (int m = 0; m < members.Count; m++) entries[m] = new HashEntry(Field(writes[members[m]].Page), writes[members[m]].Value);
                var write = objects[g++] = batch.HashSetAsync(key, entries);
                foreach (int i in members) sent[i] = write;
                if (_ttl is { } ttl) _ = batch.KeyExpireAsync(key, ttl, flags: CommandFlags.FireAndForget);
            }
            batch.Execute();
            all = Task.WhenAll(objects);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed("write", e);
            Array.Fill(statuses, RemoteWriteStatus.Failed);
            foreach (var t in sent) _ = t?.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default); // whatever was sent
            return statuses;
        }
        try
        {
            await all.WaitAsync(_timeout).ConfigureAwait(false);
            return statuses; // all Written
        }
        catch (TimeoutException) // ours, or the client's own (RedisTimeoutException)
        {
            _health.Failed($"a write took longer than {_options.RequestTimeoutMs} ms ({RemoteTierOptions.SectionName}:{nameof(RemoteTierOptions.RequestTimeoutMs)})");
            if (!all.IsCompleted) _ = all.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
        catch (Exception e) when (e is not OutOfMemoryException) // the client also throws InvalidOperationException from a connection torn down mid-read
        {
            Failed("write", e);
        }
        for (int i = 0; i < sent.Length; i++)
        {
            var write = sent[i]!;
            statuses[i] = write.IsCompletedSuccessfully ? RemoteWriteStatus.Written
                : !write.IsCompleted || write.Exception?.InnerException is TimeoutException ? RemoteWriteStatus.TimedOut
                : RemoteWriteStatus.Failed;
        }
        return statuses;
    }

    /// <inheritdoc/>
    public async ValueTask<RemoteRead> ReadAsync(RemotePageKey page, bool take)
    {
        var db = _db;
        if (db is null) return new RemoteRead(RemoteReadStatus.Failed);
        RedisKey key = KeyOf(page.Object);
        var field = Field(page);
        Task<Lease<byte>?> get;
        try
        {
            get = db.HashGetLeaseAsync(key, field);
            if (take) db.HashDelete(key, field, CommandFlags.FireAndForget); // same connection, so after the HGET
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed("get", e);
            return new RemoteRead(RemoteReadStatus.Failed);
        }
        try
        {
            var lease = await get.WaitAsync(_timeout).ConfigureAwait(false);
            return lease is null ? new RemoteRead(RemoteReadStatus.Absent) : new RemoteRead(RemoteReadStatus.Found, lease, lease.Length);
        }
        catch (TimeoutException)
        {
            _health.Failed($"a get took longer than {_options.RequestTimeoutMs} ms ({RemoteTierOptions.SectionName}:{nameof(RemoteTierOptions.RequestTimeoutMs)})");
            _ = get.ContinueWith(static t => { if (t.IsCompletedSuccessfully) t.Result?.Dispose(); else _ = t.Exception; }, TaskScheduler.Default);
            return new RemoteRead(RemoteReadStatus.TimedOut);
        }
        catch (Exception e) when (e is not OutOfMemoryException) // the client also throws InvalidOperationException from a connection torn down mid-read
        {
            Failed("get", e);
            return new RemoteRead(RemoteReadStatus.Failed);
        }
    }

    /// <inheritdoc/>
    public RemoteRead Read(RemotePageKey page, bool take)
    {
        var db = _db;
        if (db is null) return new RemoteRead(RemoteReadStatus.Failed);
        RedisKey key = KeyOf(page.Object);
        var field = Field(page);
        try
        {
            // The client's synchronous call waits on this thread for its reader to signal it, and
            // gives up after SyncTimeout (the request timeout) exactly: no pool thread is needed.
            var lease = db.HashGetLease(key, field);
            return lease is null ? new RemoteRead(RemoteReadStatus.Absent) : new RemoteRead(RemoteReadStatus.Found, lease, lease.Length);
        }
        catch (TimeoutException) // RedisTimeoutException
        {
            _health.Failed($"a get took longer than {_options.RequestTimeoutMs} ms ({RemoteTierOptions.SectionName}:{nameof(RemoteTierOptions.RequestTimeoutMs)})");
            return new RemoteRead(RemoteReadStatus.TimedOut);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed("get", e);
            return new RemoteRead(RemoteReadStatus.Failed);
        }
        finally
        {
            if (take) Delete(page); // the local descriptor is gone already: the copy only holds memory
        }
    }

    /// <inheritdoc/>
    public void Delete(RemotePageKey page)
    {
        try
        {
            _db?.HashDelete(KeyOf(page.Object), Field(page), CommandFlags.FireAndForget);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed("delete", e);
        }
    }

    /// <inheritdoc/>
    public void DeleteObject(RemoteObjectKey obj)
    {
        try
        {
            _db?.KeyDelete(KeyOf(obj), CommandFlags.FireAndForget);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Failed("delete", e);
        }
    }

    private void Failed(string what, Exception e) => _health.Failed($"a {what} failed: {e.GetType().Name}: {FirstLine(e.Message)}");

    private static string FirstLine(string message)
    {
        int end = message.IndexOfAny(['\r', '\n']);
        message = end < 0 ? message : message[..end];
        return message.Length <= 300 ? message : message[..300];
    }

    // ---- The state ----------------------------------------------------------------------------

    private async Task RunAsync(Task<IConnectionMultiplexer> connecting)
    {
        try
        {
            _connection = await connecting.WaitAsync(_stop.Token).ConfigureAwait(false);
            _db = _connection.GetDatabase();
        }
        catch (OperationCanceledException)
        {
            return;
        }
        catch (Exception e)
        {
            // Stays down: the store runs on without its remote tier.
            _health.Failed($"connecting failed: {e.GetType().Name}: {FirstLine(e.Message)}");
            _health.Judge(0, 0, null);
            return;
        }
        while (!_stop.IsCancellationRequested)
        {
            await ProbeAsync().ConfigureAwait(false);
            try
            {
                await Task.Delay(1000, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Pings every node the client knows, then judges the state from the pings and the second's requests.</summary>
    private async Task ProbeAsync()
    {
        var connection = _connection!;
        var endpoints = connection.GetEndPoints();
        int answering = 0;
        string? error = null;
        foreach (var endpoint in endpoints)
        {
            try
            {
                await connection.GetServer(endpoint).PingAsync().WaitAsync(_timeout + _timeout).ConfigureAwait(false);
                answering++;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                error = $"node {endpoint} does not answer: {(e is TimeoutException ? $"no reply within {2 * _options.RequestTimeoutMs} ms" : FirstLine(e.Message))}";
            }
        }
        _health.Judge(endpoints.Length, answering, error);
    }

    /// <summary>Stops the prober and closes the connection (if it opened it), waiting at most about 2 s for either.</summary>
    public void Dispose()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        var bound = TimeSpan.FromMilliseconds(Math.Min(2000, 10L * _options.RequestTimeoutMs + 200));
        try
        {
            _prober.Wait(bound);
        }
        catch (AggregateException)
        {
        }
        if (_ownsConnection && _connection is { } connection)
        {
            // Without waiting for replies a dead or paused node will never send; bounded either way.
            var close = Task.Run(() => connection.Close(allowCommandsToComplete: false));
            try
            {
                close.Wait(bound);
            }
            catch (AggregateException)
            {
            }
        }
    }
}
