using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;
using Xunit.Abstractions;
using static Tmem.Remote.Tests.RemotePages;

namespace Tmem.Remote.Tests;

/// <summary>
/// A server that refuses writes: a real redis-server whose <c>maxmemory</c> is reached under the
/// <c>noeviction</c> policy answers every HSET with an OOM error while it still serves reads and
/// deletes (Garnet spills to disk instead of refusing, so this case needs Redis). The remote tier
/// must drop the pages whose writes are refused, never fail a put, keep serving what the server
/// holds, and resume by itself once the server takes writes again.
/// </summary>
[Trait("Kind", "Remote")]
public sealed class RemoteRefusalTests(ITestOutputHelper output)
{
    [RedisServerFact]
    public async Task ServerRefusesWrites_EvictedPagesAreDropped_OlderOnesStillHit_ThenItResumesByItself()
    {
        using var redis = RedisServer.Start();
        var remote = new RemoteTierOptions
        {
            Enabled = true,
            Endpoints = redis.Endpoint,
            StoreName = "refusal",
            RequestTimeoutMs = 2000, // refusals are what this test is about, not timeouts
            CapacityBytes = 64L << 20,
            QueueBytes = 8L << 20,
        };
        var options = new TmemOptions { RamBudgetBytes = 64 << 10, RemoteTier = remote };
        options.UseRemotePageStore(o => new RedisRemotePageStore(o)); // the client as the service makes it
        using var store = TmemStore.Open(options);
        await RemoteFailureTests.WaitStateAsync(store, RemoteTierState.Healthy, TimeSpan.FromSeconds(15));
        var client = store.GetClient(1);
        int pool = client.CreatePool(new PoolOptions { SharedUuid = Guid.NewGuid() });
        var buffer = new byte[PageSize];

        // Taking writes: 200 pages (about 220 KiB) into a 64 KiB budget go to the server.
        for (uint i = 0; i < 200; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, Page($"a{i}", 1)));
        WaitWritten(store);
        var taking = store.GetStats();
        Assert.True(taking.RemoteWrites >= 100 && taking.RemoteWriteFailures == 0, RemoteTierTests.Counters(store));

        // Full: every write is refused (OOM), reads still work.
        await redis.Connection.GetServer(redis.Endpoint).ExecuteAsync("CONFIG", "SET", "maxmemory", "1");
        for (uint i = 0; i < 200; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(2), i, Page($"b{i}", 1)));
        WaitWritten(store);
        var refused = store.GetStats();
        output.WriteLine($"refusing: {RemoteTierTests.Counters(store)}");
        Assert.True(refused.RemoteWriteFailures - taking.RemoteWriteFailures >= 100, $"the refused writes were not counted as failures: {RemoteTierTests.Counters(store)}");
        // A refused page leaves the store (its gets miss at once, it takes no remote capacity).
        Assert.True(refused.RemotePages == taking.RemotePages, $"pages whose writes were refused still count as remote: {RemoteTierTests.Counters(store)}");
        await RemoteFailureTests.WaitStateAsync(store, RemoteTierState.Degraded, TimeSpan.FromSeconds(15));
        Assert.Contains("OOM", store.RemoteTier.LastError ?? "", StringComparison.Ordinal);
        int hitsA = 0, hitsB = 0;
        for (uint i = 0; i < 200; i++)
        {
            if (client.Get(pool, Oid(1), i, buffer) == GetStatus.Hit)
            {
                Assert.True(Page($"a{i}", 1).AsSpan().SequenceEqual(buffer), $"a{i} got {Describe(buffer)}");
                hitsA++;
            }
            if (client.Get(pool, Oid(2), i, buffer) == GetStatus.Hit)
            {
                Assert.True(Page($"b{i}", 1).AsSpan().SequenceEqual(buffer), $"b{i} got {Describe(buffer)}");
                hitsB++;
            }
        }
        output.WriteLine($"while refusing: {hitsA} of the pages written before hit, {hitsB} of those evicted while refusing (those still in RAM)");
        Assert.True(store.GetStats().RemoteMisses == refused.RemoteMisses, $"gets of refused pages still asked the server: {RemoteTierTests.Counters(store)}");
        Assert.True(hitsA >= 100, $"the server's pages stopped being served while it refused writes: {hitsA} hits; {RemoteTierTests.Counters(store)}");
        // Only what still fits in the 64 KiB budget (under 60 pages of ~1.1 KiB) can hit: the rest was refused.
        Assert.True(hitsB < 100, $"{hitsB} pages evicted while the server refused every write came back: {RemoteTierTests.Counters(store)}");

        // Taking writes again: healthy by itself, and new evictions are written and come back.
        await redis.Connection.GetServer(redis.Endpoint).ExecuteAsync("CONFIG", "SET", "maxmemory", "0");
        await RemoteFailureTests.WaitStateAsync(store, RemoteTierState.Healthy, TimeSpan.FromSeconds(15));
        var before = store.GetStats();
        for (uint i = 0; i < 200; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(3), i, Page($"c{i}", 1)));
        WaitWritten(store);
        int hitsC = 0;
        for (uint i = 0; i < 200; i++)
        {
            if (client.Get(pool, Oid(3), i, buffer) != GetStatus.Hit) continue;
            Assert.True(Page($"c{i}", 1).AsSpan().SequenceEqual(buffer), $"c{i} got {Describe(buffer)}");
            hitsC++;
        }
        var after = store.GetStats();
        output.WriteLine($"resumed: {hitsC} hits; {RemoteTierTests.Counters(store)}");
        Assert.Equal(before.RemoteWriteFailures, after.RemoteWriteFailures);
        Assert.True(hitsC >= 190, $"after the server took writes again only {hitsC} of 200 pages came back: {RemoteTierTests.Counters(store)}");
    }
}

/// <summary>A fact that runs only where redis-server is installed (Debian package redis-server; .ci/run installs it).</summary>
public sealed class RedisServerFactAttribute : FactAttribute
{
    public RedisServerFactAttribute()
    {
        if (RedisServer.Path is null) Skip = "needs redis-server (Debian package redis-server; .ci/run installs it)";
    }
}

/// <summary>A standalone redis-server on a free loopback port, without persistence, and a connection to it.</summary>
public sealed class RedisServer : IDisposable
{
    public static readonly string? Path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(d => System.IO.Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);

    private readonly Process _process;

    public string Endpoint { get; }

    public IConnectionMultiplexer Connection { get; }

    private RedisServer(Process process, string endpoint, IConnectionMultiplexer connection)
    {
        _process = process;
        Endpoint = endpoint;
        Connection = connection;
    }

    public static RedisServer Start()
    {
        int port = FreePort();
        var start = new ProcessStartInfo(Path ?? throw new InvalidOperationException("no redis-server"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--daemonize", "no" })
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        string endpoint = $"127.0.0.1:{port}";
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                var config = ConfigurationOptions.Parse(endpoint);
                config.AllowAdmin = true; // CONFIG SET
                config.ConnectTimeout = 2000;
                config.AsyncTimeout = config.SyncTimeout = 10_000;
                return new RedisServer(process, endpoint, ConnectionMultiplexer.Connect(config));
            }
            catch (RedisConnectionException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(100);
            }
            catch
            {
                Kill(process);
                throw;
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill();
            process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        process.Dispose();
    }

    public void Dispose()
    {
        Connection.Dispose();
        Kill(_process);
    }
}
