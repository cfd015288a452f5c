namespace Tmem.Service.Tests;

/// <summary>
/// The service's periodic reclaim (<c>ReclaimService</c>) beside the store's own reclaim ahead of
/// demand: by default it leaves a full store at the store's small headroom (a second margin of
/// 5-10% would only leave RAM unused); with watermarks configured it evicts down to the low one.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class ReclaimServiceTests
{
    private const long Budget = 8L << 20; // the smallest budget the store reclaims ahead for

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AFullStore_StaysNearlyFull_UnlessWatermarksAreConfigured(bool watermarks)
    {
        var args = new List<string> { "--Tmem:DataDirectory=", $"--Tmem:RamBudgetBytes={Budget}", "--Tmem:Service:ReclaimIntervalMs=100" };
        // Watermarks far below the store's own headroom, so that the two cases cannot overlap: a tick
        // that finds the store over 0.8 takes it down to 0.7, and puts after it refill it at most to
        // the budget, which the next tick (after the puts, in the delay below) finds over 0.8 again.
        if (watermarks) args.AddRange(["--Tmem:Service:ReclaimHighWater=0.8", "--Tmem:Service:ReclaimLowWater=0.7"]);
        await using var service = new ServiceProcess([.. args]);
        await service.StartAsync();
        await using var alice = await service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
        // About 1.1 KiB compressed each: twice the budget's worth, so the store is full and evicting.
        for (int batch = 0; batch < 240; batch++)
        {
            var puts = Enumerable.Range(batch * 64, 64).Select(i => alice.PutAsync(pool, new ObjectId((ulong)i), 0, HalfRandom(i)).AsTask());
            Assert.All(await Task.WhenAll(puts), status => Assert.Equal(PutStatus.Stored, status));
        }
        await Task.Delay(600); // several of the service's reclaim ticks
        var stats = await service.StatsAsync();
        Assert.Equal(Budget, stats["ram_budget_bytes"]);
        double fill = stats["ram_slot_bytes"] / (double)Budget;
        if (watermarks) Assert.InRange(fill, 0.5, 0.8);
        else Assert.InRange(fill, 0.97, 1.0); // the store's own headroom is 1/128
    }

    [Fact]
    public async Task OneWatermarkWithoutTheOther_IsRefused()
    {
        await using var service = new ServiceProcess("--Tmem:Service:ReclaimLowWater=0.8");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(2, code);
        Assert.Contains("Tmem:Service:ReclaimLowWater is set and Tmem:Service:ReclaimHighWater is not; set both or neither.", output);
    }

    /// <summary>1 KiB of random bytes, then zeros: LZ4 keeps about the random part.</summary>
    private static byte[] HalfRandom(int seed)
    {
        var page = new byte[4096];
        new Random(seed).NextBytes(page.AsSpan(0, 1024));
        return page;
    }
}
