using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Tmem.Client;
using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>
/// What INFO, PING, CONFIG and CLIENT LIST give Redis users, on the real service: the Info
/// report, Ping, run-time settings for administrator clients, the client list and kill, and
/// peer credentials on the Unix socket (logged, listed, and a client bound to a Unix uid).
/// alice is an administrator here (index 0 keeps the shipped client's Admin=true); bob is not.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class OperatorTests : IAsyncLifetime
{
    private readonly ServiceProcess _service = new();

    public Task InitializeAsync() => _service.StartAsync();

    public async Task DisposeAsync() => await _service.DisposeAsync();

    /// <summary>A page that compresses to about a quarter (its first 1 KiB random, then zeros): some slot bytes each.</summary>
    private static byte[] Compressible(uint seed)
    {
        var page = new byte[4096];
        new Random((int)seed).NextBytes(page.AsSpan(0, 1024));
        return page;
    }

    private static uint CurrentUid() =>
        uint.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    [Fact]
    public async Task Info_HasItsSections_ServerFacts_RequestsByOpcode_StorageState_AndTheConfigurationInForce()
    {
        await using var alice = await _service.ConnectAsync("alice");
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        for (uint i = 0; i < 5; i++) await alice.PutAsync(pool, new ObjectId(1), i, Compressible(i));
        var info = await alice.GetInfoAsync();

        Assert.Equal(["Server", "Clients", "Requests", "Store", "Log", "Config"], info.Sections.Select(s => s.Name));
        Assert.Matches(@"^\d+\.\d+\.\d+", info["version"]);
        Assert.Equal(_service.Pid.ToString(CultureInfo.InvariantCulture), info["pid"]);
        Assert.True(long.Parse(info["rss_bytes"]!, CultureInfo.InvariantCulture) > 1 << 20);
        Assert.True(long.Parse(info["uptime_seconds"]!, CultureInfo.InvariantCulture) >= 0);
        Assert.Equal(_service.DataDirectory, info["data_directory"]);
        Assert.Equal(_service.SocketPath, info["unix_socket"]);
        Assert.Equal("5", info["requests_put"]);
        Assert.Equal("1", info["requests_create_pool"]);
        Assert.Equal("1", info["connections"]);
        Assert.Equal("healthy", info["storage"]);
        Assert.Equal("Strict", info["durability"]);
        Assert.Equal("5", info["pers_pages"]);
        Assert.Equal("Strict", info["Tmem:Durability"]);
        Assert.Equal("268435456", info["Tmem:RamBudgetBytes"]);
        Assert.DoesNotContain(info.Sections.SelectMany(s => s.Entries), e => e.Value.Contains("secret", StringComparison.Ordinal));

        // tmem stats: the same report; --json groups it by section, numbers as numbers.
        var (code, json, stderr) = await ToolProcess.RunAsync(ToolProcess.CliDll(), ["--socket", _service.SocketPath, "--client", "bob", "--secret", "bob-secret", "stats", "--json"], _service.Root);
        Assert.True(code == 0, stderr);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(_service.Pid, document.RootElement.GetProperty("server").GetProperty("pid").GetInt32());
        Assert.Equal("healthy", document.RootElement.GetProperty("log").GetProperty("storage").GetString());
        Assert.Equal(5, document.RootElement.GetProperty("store").GetProperty("pers_pages").GetInt64());
    }

    [Fact]
    public async Task Ping_AnswersEveryClient_AndTmemPingIsAHealthCheck()
    {
        await using var bob = await _service.ConnectAsync("bob");
        var rtt = await bob.PingAsync();
        Assert.True(rtt > TimeSpan.Zero && rtt < TimeSpan.FromSeconds(5));
        var (code, stdout, _) = await ToolProcess.RunAsync(ToolProcess.CliDll(), ["--socket", _service.SocketPath, "--client", "bob", "--secret", "bob-secret", "ping", "-n", "2", "--interval", "10"], _service.Root);
        Assert.Equal(0, code);
        Assert.Equal(2, stdout.Split('\n').Count(l => l.StartsWith("PONG", StringComparison.Ordinal)));
        (code, _, _) = await ToolProcess.RunAsync(ToolProcess.CliDll(), ["--socket", Path.Combine(_service.Root, "none.sock"), "ping"], _service.Root);
        Assert.Equal(3, code);
    }

    [Fact]
    public async Task ConfigSet_RamBudget_ByAnAdministrator_ShrinksTheStoreAtOnce_WithoutARestart_OthersAreNotPermitted()
    {
        await using var alice = await _service.ConnectAsync("alice");
        await using var bob = await _service.ConnectAsync("bob");
        int pool = await alice.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        var puts = new List<Task<PutStatus>>();
        for (uint i = 0; i < 3000; i++) puts.Add(alice.PutAsync(pool, new ObjectId(i + 1), 0, Compressible(i)).AsTask());
        await Task.WhenAll(puts);
        var before = await _service.StatsAsync();
        Assert.True(before["ram_slot_bytes"] > 2L << 20, $"{before["ram_slot_bytes"]} slot bytes");

        var refused = await Assert.ThrowsAsync<TmemRemoteException>(() => bob.SetConfigAsync("Tmem:RamBudgetBytes", "1MiB"));
        Assert.Equal(ProtocolStatus.NotPermitted, refused.Status);
        Assert.Contains("Tmem:Service:Clients:N:Admin", refused.Message);
        Assert.Equal(ProtocolStatus.NotPermitted, (await Assert.ThrowsAsync<TmemRemoteException>(() => bob.ListClientsAsync())).Status);

        Assert.Equal("1048576", await alice.SetConfigAsync("Tmem:RamBudgetBytes", "1MiB"));
        var after = await _service.StatsAsync();
        Assert.Equal(1L << 20, after["ram_budget_bytes"]);
        Assert.True(after["ram_slot_bytes"] <= 1L << 20, $"{after["ram_slot_bytes"]} slot bytes over the new budget");
        Assert.True(after["evicted_eph_pages"] > before["evicted_eph_pages"]);
        Assert.Contains(await alice.GetConfigAsync("Tmem:RamBudgetBytes"), kv => kv.Value == "1048576");

        var bad = await Assert.ThrowsAsync<TmemRemoteException>(() => alice.SetConfigAsync("Tmem:RamBudgetBytes", "12XB"));
        Assert.Equal(ProtocolStatus.InvalidArgument, bad.Status);
        Assert.Equal(ProtocolStatus.InvalidArgument, (await Assert.ThrowsAsync<TmemRemoteException>(() => alice.SetConfigAsync("Tmem:Durability", "Relaxed"))).Status);

        // tmem config set, with units.
        var (code, stdout, stderr) = await ToolProcess.RunAsync(ToolProcess.CliDll(), ["--socket", _service.SocketPath, "--client", "alice", "--secret", "alice-secret", "config", "set", "Tmem:RamBudgetBytes", "2MiB"], _service.Root);
        Assert.True(code == 0, stderr);
        Assert.Contains("Tmem:RamBudgetBytes = 2097152", stdout);
        Assert.Equal(2L << 20, (await _service.StatsAsync())["ram_budget_bytes"]);
    }

    [Fact]
    public async Task ConfigSet_LogLevel_TakesEffectAtOnce_AndConnectionsAreLoggedWithTheirPeersUidAndPid()
    {
        await using var alice = await _service.ConnectAsync("alice");
        await using (await _service.ConnectAsync("bob"))
        {
        }
        Assert.DoesNotContain("Client bob (id 2) connected", _service.Output); // a Debug line, off by default
        Assert.Equal("Debug", await alice.SetConfigAsync("Logging:LogLevel:Default", "debug"));
        await using (await _service.ConnectAsync("bob"))
        {
        }
        string expected = $"Client bob (id 2) connected from unix pid {Environment.ProcessId} uid {CurrentUid()}";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!_service.Output.Contains(expected, StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);
        Assert.Contains(expected, _service.Output);
        Assert.Equal(ProtocolStatus.InvalidArgument, (await Assert.ThrowsAsync<TmemRemoteException>(() => alice.SetConfigAsync("Logging:LogLevel:Default", "Loud"))).Status);
    }

    [Fact]
    public async Task ClientList_ShowsEachConnection_AndKill_ClosesOne()
    {
        await using var alice = await _service.ConnectAsync("alice");
        await using var bob = await _service.ConnectAsync("bob");
        for (int i = 0; i < 3; i++) await bob.PingAsync();
        var list = await alice.ListClientsAsync();
        var entry = Assert.Single(list, c => c["client"] == "bob");
        Assert.Equal("2", entry["client_id"]);
        Assert.Equal("no", entry["admin"]);
        Assert.Equal("unix", entry["peer"]);
        Assert.Equal(CurrentUid().ToString(CultureInfo.InvariantCulture), entry["uid"]);
        Assert.Equal(Environment.ProcessId.ToString(CultureInfo.InvariantCulture), entry["pid"]);
        Assert.Equal("4", entry["requests"]); // the Hello and three pings
        Assert.True(DateTimeOffset.Parse(entry["since"], CultureInfo.InvariantCulture) <= DateTimeOffset.UtcNow);
        Assert.Contains(list, c => c["client"] == "alice" && c["admin"] == "yes");

        Assert.True(await alice.KillClientAsync(long.Parse(entry["id"], CultureInfo.InvariantCulture)));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (bob.IsConnected && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);
        await Assert.ThrowsAnyAsync<IOException>(() => bob.PingAsync());
        // The service forgets the connection once its close is done (a moment after the client sees it).
        clock.Restart();
        while ((await alice.ListClientsAsync()).Any(c => c["client"] == "bob") && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);
        Assert.DoesNotContain(await alice.ListClientsAsync(), c => c["client"] == "bob");
        Assert.False(await alice.KillClientAsync(999_999));
        Assert.Contains("an administrator asked (ClientKill)", _service.Output);
    }

    [Fact]
    public async Task AClientBoundToAUnixUid_NeedsNoSecretFromThatUsersPrograms_OverTheUnixSocketOnly()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        uint uid = CurrentUid();
        await using var service = new ServiceProcess(
            $"--Tmem:Service:TcpPort={port}",
            "--Tmem:Service:Clients:3:Name=me", "--Tmem:Service:Clients:3:Id=4", "--Tmem:Service:Clients:3:Secret=",
            $"--Tmem:Service:Clients:3:UnixUid={uid}",
            "--Tmem:Service:Clients:4:Name=other", "--Tmem:Service:Clients:4:Id=5", "--Tmem:Service:Clients:4:Secret=",
            $"--Tmem:Service:Clients:4:UnixUid={uid + 1}");
        await service.StartAsync(); // an empty secret with TCP on is allowed for a client bound to a uid

        await using (var me = await TmemConnection.ConnectAsync(service.SocketPath, "me", ""))
            Assert.Equal(4, me.ClientId);
        await using (var meAnySecret = await TmemConnection.ConnectAsync(service.SocketPath, "me", "whatever"))
            Assert.Equal(4, meAnySecret.ClientId);
        // Over TCP the kernel vouches for nobody: the empty secret is refused.
        var overTcp = await Assert.ThrowsAsync<TmemRemoteException>(() => TmemConnection.ConnectAsync($"tcp:127.0.0.1:{port}", "me", ""));
        Assert.Equal(ProtocolStatus.AuthenticationFailed, overTcp.Status);
        // Another user's client is not this user's.
        var other = await Assert.ThrowsAsync<TmemRemoteException>(() => TmemConnection.ConnectAsync(service.SocketPath, "other", ""));
        Assert.Equal(ProtocolStatus.AuthenticationFailed, other.Status);
        // Clients with secrets are as before, over either listener.
        await using (var alice = await TmemConnection.ConnectAsync($"tcp:127.0.0.1:{port}", "alice", "alice-secret"))
            Assert.Equal(1, alice.ClientId);
    }

    [Fact]
    public async Task TmemBench_LoadsTheService_AndReportsThroughputAndLatencyPercentilesPerTest()
    {
        var (code, json, stderr) = await ToolProcess.RunAsync(ToolProcess.CliDll(),
            ["--socket", _service.SocketPath, "--client", "bob", "--secret", "bob-secret", "bench", "-c", "2", "-P", "4", "-n", "2000", "--pool", "Persistent", "--json"], _service.Root);
        Assert.True(code == 0, stderr);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(2, document.RootElement.GetProperty("connections").GetInt32());
        Assert.Equal(4, document.RootElement.GetProperty("pipeline").GetInt32());
        var tests = document.RootElement.GetProperty("tests").EnumerateArray().ToList();
        Assert.Equal(["put", "get"], tests.Select(t => t.GetProperty("test").GetString()));
        foreach (var t in tests)
        {
            Assert.True(t.GetProperty("opsPerSecond").GetDouble() > 0);
            var latency = t.GetProperty("latencyMs");
            Assert.True(latency.GetProperty("p50").GetDouble() <= latency.GetProperty("p99").GetDouble());
            Assert.True(latency.GetProperty("p99").GetDouble() <= latency.GetProperty("max").GetDouble());
            Assert.Equal(0, t.GetProperty("refused").GetInt32());
            Assert.Equal(0, t.GetProperty("misses").GetInt32());
        }
        var stats = await _service.StatsAsync();
        Assert.Equal(0, stats["pools"]); // its pool is gone again
    }
}
