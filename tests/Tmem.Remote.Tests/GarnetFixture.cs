using StackExchange.Redis;
using Tmem.GarnetHost;

namespace Tmem.Remote.Tests;

/// <summary>
/// A 3-primary Garnet cluster on loopback for a test class, with one client connection that the
/// class's stores share (so opening a store costs no connect). Tests that kill or pause a node
/// start a cluster of their own (<see cref="StartClusterAsync"/>).
/// </summary>
public sealed class GarnetFixture : IAsyncLifetime
{
    public GarnetCluster Cluster { get; private set; } = null!;

    public IConnectionMultiplexer Connection { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        (Cluster, Connection) = await StartClusterAsync();
    }

    public Task DisposeAsync()
    {
        Connection.Dispose();
        Cluster.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>Starts a cluster and connects to it as the remote tier would (its client settings).</summary>
    public static async Task<(GarnetCluster Cluster, IConnectionMultiplexer Connection)> StartClusterAsync()
    {
        var cluster = await GarnetCluster.StartAsync(primaries: 3);
        try
        {
            var config = RedisRemotePageStore.ClientConfiguration(Settings(cluster));
            config.AbortOnConnectFail = true; // the tests want the cluster reached before they start
            // Each store's client bounds its requests by its own RequestTimeoutMs; the shared
            // connection's own timeout only has to be longer than any of them.
            config.AsyncTimeout = config.SyncTimeout = 10_000;
            var connection = await ConnectionMultiplexer.ConnectAsync(config);
            return (cluster, connection);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    /// <summary>Remote tier settings for <paramref name="cluster"/>: on, 100 ms requests, a store name of the test's.</summary>
    public static RemoteTierOptions Settings(GarnetCluster cluster, string storeName = "test", int requestTimeoutMs = 100) => new()
    {
        Enabled = true,
        Endpoints = cluster.Endpoints,
        StoreName = storeName,
        RequestTimeoutMs = requestTimeoutMs,
        CapacityBytes = 64L << 20,
        QueueBytes = 8L << 20,
        KeyTtlSeconds = 600,
    };

    /// <summary>
    /// Opens a store with the remote tier on over <paramref name="connection"/> and waits until the
    /// tier reports healthy (evictions before that are dropped, as when the cluster is down).
    /// </summary>
    public static TmemStore OpenStore(TmemOptions options, RemoteTierOptions remote, IConnectionMultiplexer connection, Func<IRemotePageStore, IRemotePageStore>? wrap = null)
    {
        options.RemoteTier = remote;
        options.UseRemotePageStore(o => wrap is null ? new RedisRemotePageStore(o, connection) : wrap(new RedisRemotePageStore(o, connection)));
        var store = TmemStore.Open(options);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.RemoteTier.State != RemoteTierState.Healthy)
        {
            if (DateTime.UtcNow > deadline)
            {
                var status = store.RemoteTier;
                store.Dispose();
                throw new TimeoutException($"the remote tier did not become healthy: {status}");
            }
            Thread.Sleep(5);
        }
        return store;
    }
}
