using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Tmem.Client;
using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>Stopping and restarting the real service: SIGTERM (graceful) and SIGKILL (recovery).</summary>
[Collection("Service")]
[Trait("Kind", "Integration")]
public sealed partial class RestartTests
{
    private static readonly ObjectId Oid = new(5150);

    [Fact]
    public async Task ANormalStop_LogsNoWarning_NotEvenFromTheAcceptLoop()
    {
        // The accept loop used to take the SocketException of its listener being closed by the
        // stop for a failure ("Accept failed" with a stack trace) about one stop in two.
        await using var service = new ServiceProcess();
        for (int i = 0; i < 4; i++)
        {
            await service.StartAsync();
            Assert.Equal(0, await service.StopAsync());
        }
        Assert.DoesNotContain("Accept failed", service.Output);
        Assert.DoesNotContain("warn:", service.Output);
        Assert.DoesNotContain("fail:", service.Output);
    }

    [Fact]
    public async Task Sigterm_FinishesInFlightRequests_ExitsZero_RestartKeepsPersistentPoolsAndReplaysNothing()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        int persistent, ephemeral;
        var acknowledged = new ConcurrentBag<uint>();
        var outcomes = new ConcurrentBag<string>();
        await using (var alice = await service.ConnectAsync())
        {
            persistent = await alice.CreatePoolAsync(PoolOptions.Persistent);
            ephemeral = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
            for (uint i = 0; i < 50; i++) Assert.Equal(PutStatus.Stored, await alice.PutAsync(persistent, Oid, i, Pages.Make("keep", (int)i)));
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(ephemeral, Oid, 0, Pages.Make("eph", 0)));

            // Puts keep coming while the service is told to stop: each is answered (stored or
            // ShuttingDown) or cut off by the close; every one answered Stored must survive.
            var writer = Task.Run(async () =>
            {
                for (uint i = 1000; i < 100_000; i++)
                {
                    try
                    {
                        if (await alice.PutAsync(persistent, Oid, i, Pages.Make("late", (int)i)) == PutStatus.Stored) acknowledged.Add(i);
                    }
                    catch (TmemRemoteException e) when (e.Status == ProtocolStatus.ShuttingDown)
                    {
                        outcomes.Add("shutting down");
                    }
                    catch (IOException)
                    {
                        outcomes.Add("closed");
                        return;
                    }
                }
            });
            await Task.Delay(300);
            Assert.Equal(0, await service.StopAsync());
            await writer;
        }
        Assert.Contains("Store closed", service.Output);
        Assert.NotEmpty(acknowledged);

        var startup = await service.StartAsync();
        // The shutdown checkpoint covers the whole log: nothing to replay.
        var recovered = RecoveredLine().Match(service.Output);
        Assert.True(recovered.Success, service.Output);
        Assert.Equal("0", recovered.Groups["records"].Value);
        Assert.True(startup < TimeSpan.FromSeconds(30), $"restart took {startup}");
        await using (var alice = await service.ConnectAsync())
        {
            var pools = await alice.GetPoolsAsync();
            Assert.Equal(persistent, Assert.Single(pools).PoolId); // the ephemeral pool is not recovered
            var page = new byte[4096];
            for (uint i = 0; i < 50; i++)
            {
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(persistent, Oid, i, page));
                Assert.Equal(Pages.Make("keep", (int)i), page);
            }
            foreach (uint i in acknowledged)
            {
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(persistent, Oid, i, page));
                Assert.Equal(Pages.Make("late", (int)i), page);
            }
        }
        Assert.Equal(0, await service.StopAsync());
    }

    [Fact]
    public async Task Sigkill_RestartKeepsEveryAcknowledgedStrictPut()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        int pool;
        await using (var setup = await service.ConnectAsync())
            pool = await setup.CreatePoolAsync(PoolOptions.Persistent);
        var acknowledged = new ConcurrentBag<(int Writer, uint Index)>();
        var connections = new List<TmemConnection>();
        for (int w = 0; w < 4; w++) connections.Add(await service.ConnectAsync());
        // Four connections, each pipelining 16 puts at a time, each put on a handle of its own.
        var writers = connections.Select((conn, w) => Task.Run(async () =>
        {
            uint next = 0;
            try
            {
                while (true)
                {
                    var batch = Enumerable.Range(0, 16).Select(_ => next++).Select(async i =>
                    {
                        if (await conn.PutAsync(pool, new ObjectId((ulong)w), i, Pages.Make($"w{w}", (int)i)) == PutStatus.Stored)
                            acknowledged.Add((w, i));
                    }).ToArray();
                    await Task.WhenAll(batch);
                }
            }
            catch (IOException)
            {
                // killed
            }
        })).ToArray();
        await Task.Delay(1500);
        await service.KillAsync();
        await Task.WhenAll(writers);
        foreach (var c in connections) await c.DisposeAsync();
        Assert.True(acknowledged.Count > 50, $"only {acknowledged.Count} puts were acknowledged before the kill");

        await service.StartAsync();
        await using var alice = await service.ConnectAsync();
        var page = new byte[4096];
        foreach (var (w, i) in acknowledged)
        {
            Assert.True(await alice.GetAsync(pool, new ObjectId((ulong)w), i, page) == GetStatus.Hit, $"acknowledged put {w}/{i} lost in the kill");
            Assert.Equal(Pages.Make($"w{w}", (int)i), page);
        }
        Assert.Equal(0, await service.StopAsync());
    }

    [Fact]
    public async Task BadConfiguration_StopsTheStart_NamingTheKey()
    {
        await using var service = new ServiceProcess("--Tmem:Service:Clients:2:MaxInFlight=0", "--Tmem:Service:SocketFileMode=0999");
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(service.StartAsync);
        Assert.Contains("Tmem:Service:Clients:2:MaxInFlight is 0; it must be from 1 to 65536", failure.Message);
        Assert.Contains("Tmem:Service:SocketFileMode is '0999'", failure.Message);
        Assert.Contains("exited with 2", failure.Message);
    }

    [GeneratedRegex(@"recovered \d+ persistent pools, \d+ pages from (?<records>\d+) log records")]
    private static partial Regex RecoveredLine();
}
