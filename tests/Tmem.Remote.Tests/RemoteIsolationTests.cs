using Tmem.GarnetHost;
using Tmem.Service.Tests;
using static Tmem.Remote.Tests.RemotePages;

namespace Tmem.Remote.Tests;

/// <summary>
/// Two service processes (two machines' Tmem services) with the remote tier on one real 3-primary
/// Garnet cluster, each under its own <c>Tmem:RemoteTier:StoreName</c>, putting the same handles
/// (same client, shared pool, object and indexes) with pages of their own: each gets back only
/// its own pages, from the cluster. Isolation rests on the key (store name and the open's random
/// incarnation) and the value's header (incarnation, pool, object, index, version, checksum);
/// nothing in it depends on the process, so the in-process test with stores under the same name
/// (<see cref="RemoteTierTests.TwoStores_OneCluster_Isolated"/>) covers that case.
/// </summary>
[Trait("Kind", "Remote")]
public sealed class RemoteIsolationTests
{
    private const int PageCount = 150;

    private static ServiceProcess Service(GarnetCluster cluster, string storeName) => new(
        "--Tmem:RamBudgetBytes=65536", // the least allowed: nearly every page goes to the cluster
        "--Tmem:RemoteTier:Enabled=true",
        $"--Tmem:RemoteTier:Endpoints={cluster.Endpoints}",
        $"--Tmem:RemoteTier:StoreName={storeName}",
        "--Tmem:RemoteTier:RequestTimeoutMs=2000", // correctness, not timeouts: a loaded machine must not turn hits into misses
        "--Tmem:RemoteTier:CapacityBytes=67108864",
        "--Tmem:RemoteTier:QueueBytes=8388608",
        "--Tmem:RemoteTier:KeyTtlSeconds=600");

    [Fact]
    public async Task TwoServiceProcesses_OneCluster_EachSeesOnlyItsOwnPages()
    {
        using var cluster = await GarnetCluster.StartAsync(primaries: 3);
        await using var a = Service(cluster, "machine-a");
        await using var b = Service(cluster, "machine-b");
        var services = new[] { a, b };
        await Task.WhenAll(a.StartAsync(), b.StartAsync());
        foreach (var service in services) await WaitAsync(service, s => s["remote_state"] == 1, "the remote tier healthy");

        var pools = new int[2];
        for (int s = 0; s < 2; s++)
        {
            await using var alice = await services[s].ConnectAsync();
            pools[s] = await alice.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
            for (uint i = 0; i < PageCount; i++)
                Assert.Equal(PutStatus.Stored, await alice.PutAsync(pools[s], Oid(5), i, Page($"machine{s}/i{i}", s)));
        }
        foreach (var service in services) await WaitAsync(service, s => s["remote_queue_bytes"] == 0, "the writeback queue drained");

        var page = new byte[PageSize];
        for (int s = 0; s < 2; s++)
        {
            await using var alice = await services[s].ConnectAsync();
            for (uint i = 0; i < PageCount; i++)
            {
                Assert.True(await alice.GetAsync(pools[s], Oid(5), i, page) == GetStatus.Hit, $"service {s} index {i} missed");
                Assert.True(Page($"machine{s}/i{i}", s).AsSpan().SequenceEqual(page), $"service {s} index {i}: another page came back");
            }
            var stats = await services[s].StatsAsync();
            Assert.True(stats["remote_hits"] > PageCount / 2, $"service {s}: only {stats["remote_hits"]} remote hits: the pages did not go through the cluster");
            Assert.Equal(0, stats["remote_mismatches"]);
        }
    }

    private static async Task WaitAsync(ServiceProcess service, Func<Dictionary<string, long>, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition(await service.StatsAsync()))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within 30 s: {what}\n{service.Output}");
            await Task.Delay(20);
        }
    }
}
