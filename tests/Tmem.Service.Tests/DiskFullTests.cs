using Tmem.Tests.Faults;

namespace Tmem.Service.Tests;

/// <summary>
/// The real service on a data directory whose disk fills up (a 64 MiB tmpfs with a 24 MiB
/// ballast file, 16 MiB log segments): it stays up, refuses persistent puts with a clear status
/// while full, keeps serving, says so in its log, exits 0 on SIGTERM while full, starts while
/// full, and takes puts again by itself once space is freed.
/// </summary>
[Collection("Service")]
[Trait("Kind", "Integration")]
public sealed class DiskFullTests
{
    /// <summary>Half random bytes, half zeros: about 2 KiB compressed, so the log fills in a few thousand puts.</summary>
    private static byte[] HalfRandom(int seed)
    {
        var page = new byte[4096];
        new Random(seed).NextBytes(page.AsSpan(0, 2048));
        return page;
    }

    [TmpfsFact]
    public async Task DiskFull_ServiceStaysUp_RefusesPersistentPuts_ExitsZeroOnSigterm_AndRecoversWhenSpaceIsFreed()
    {
        await using var service = new ServiceProcess("--Tmem:LogSegmentSizeBytes=16777216", "--Tmem:DurabilityTimeoutMs=1000", "--Tmem:Service:CommitCheckIntervalMs=100");
        using var disk = Tmpfs.MountAt(service.DataDirectory, 64L << 20);
        string ballast = disk.Ballast(24L << 20);
        await service.StartAsync();
        var acknowledged = new Dictionary<uint, byte[]>();
        int pool;
        await using (var alice = await service.ConnectAsync())
        {
            pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
            int ephemeral = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
            var oid = new ObjectId(77);
            PutStatus last = PutStatus.Stored;
            for (uint i = 0; i < 40_000 && last == PutStatus.Stored; i += 16)
            {
                // 16 pipelined puts at a time; once one is refused the disk is full.
                var batch = Enumerable.Range(0, 16).Select(k => (Index: i + (uint)k, Page: HalfRandom((int)i + k))).ToArray();
                var results = await Task.WhenAll(batch.Select(b => alice.PutAsync(pool, oid, b.Index, b.Page).AsTask()));
                for (int k = 0; k < batch.Length; k++)
                {
                    if (results[k] == PutStatus.Stored) acknowledged[batch[k].Index] = batch[k].Page;
                    else last = results[k];
                }
            }
            Assert.Equal(PutStatus.RejectedStorageFull, last);
            Assert.True(acknowledged.Count > 1000, $"only {acknowledged.Count} pages before the disk was full");
            var stats = (await alice.GetStatsAsync()).ToDictionary(kv => kv.Key, kv => kv.Value);
            Assert.Equal(1, stats["storage_state"]);
            Assert.True(stats["storage_full_refused"] > 0);
            // Still serving: durable pages, ephemeral pools, flushes.
            var buffer = new byte[4096];
            foreach (var (index, page) in acknowledged.Take(200))
            {
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, oid, index, buffer));
                Assert.Equal(page, buffer);
            }
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(ephemeral, oid, 0, HalfRandom(-1)));
            var flushed = acknowledged.Keys.First();
            Assert.True(await alice.FlushPageAsync(pool, oid, flushed));
            acknowledged.Remove(flushed);
            Assert.True(SpinWait.SpinUntil(() => service.Output.Contains("Storage full", StringComparison.Ordinal), 5000), service.Output);
        }

        // SIGTERM while full: a clean exit; and the service starts again on the full disk.
        Assert.Equal(0, await service.StopAsync());
        Assert.Contains("Store closed", service.Output);
        Assert.DoesNotContain("Unhandled exception", service.Output);
        await service.StartAsync();
        await using (var alice = await service.ConnectAsync())
        {
            var oid = new ObjectId(77);
            var buffer = new byte[4096];
            foreach (var (index, page) in acknowledged)
            {
                Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, oid, index, buffer));
                Assert.Equal(page, buffer);
            }
            Assert.Equal(PutStatus.RejectedStorageFull, await alice.PutAsync(pool, new ObjectId(78), 0, HalfRandom(-2)));

            // Free the space: puts are accepted again without a restart.
            File.Delete(ballast);
            PutStatus status = PutStatus.RejectedStorageFull;
            var until = DateTime.UtcNow.AddSeconds(15);
            while (status == PutStatus.RejectedStorageFull && DateTime.UtcNow < until)
            {
                status = await alice.PutAsync(pool, new ObjectId(78), 0, HalfRandom(-3));
                if (status == PutStatus.RejectedStorageFull) await Task.Delay(100);
            }
            Assert.Equal(PutStatus.Stored, status);
            Assert.True(SpinWait.SpinUntil(() => service.Output.Contains("Storage healthy again", StringComparison.Ordinal), 5000), service.Output);
        }
        Assert.Equal(0, await service.StopAsync());
    }
}
