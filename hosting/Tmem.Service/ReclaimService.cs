using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Keeps the RAM tier under budget ahead of demand: every <see cref="ServiceOptions.ReclaimIntervalMs"/>,
/// when slot bytes pass <see cref="ServiceOptions.ReclaimHighWater"/> of <c>Tmem:RamBudgetBytes</c>,
/// evicts down to <see cref="ServiceOptions.ReclaimLowWater"/> (<see cref="TmemStore.Reclaim"/>),
/// so puts find room without evicting on their own path (by default only while the store does not
/// reclaim ahead itself: <see cref="ServiceOptions.ReclaimWatermarks"/>); and when slabs hold more than
/// <c>Tmem:SlabCompactionThreshold</c> beyond the slot bytes in use, runs slab compaction
/// (<see cref="TmemStore.Compact"/>). (Log compaction is a separate matter.)
/// </summary>
internal sealed partial class ReclaimService(StoreHost host, IOptions<TmemOptions> storeOptions, IOptions<ServiceOptions> options, ILogger<ReclaimService> logger)
    : PeriodicService(host, logger)
{
    private const long MinCompactionWasteBytes = 256 * 1024;

    protected override TimeSpan? Interval => options.Value.ReclaimIntervalMs is > 0 and var ms ? TimeSpan.FromMilliseconds(ms) : null;

    protected override ValueTask TickAsync(TmemStore store, CancellationToken stoppingToken)
    {
        RunOnce(store, options.Value, storeOptions.Value.SlabCompactionThreshold);
        return ValueTask.CompletedTask;
    }

    private void RunOnce(TmemStore store, ServiceOptions o, double compactionThreshold)
    {
        var stats = store.GetStats();
        if (o.ReclaimWatermarks(store.ReclaimsAhead) is var (high, low) && stats.RamSlotBytes > high * stats.RamBudgetBytes)
        {
            long target = (long)(low * stats.RamBudgetBytes);
            long freed = store.Reclaim(target);
            LogReclaimed(freed, stats.RamSlotBytes - freed, target);
        }
        long waste = stats.RamSlabBytes - stats.RamSlotBytes;
        if (waste > MinCompactionWasteBytes && waste > compactionThreshold * stats.RamSlotBytes)
        {
            int moved = store.CompactSlabs();
            if (moved > 0) LogCompacted(moved, waste);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Reclaim freed {Bytes} slot bytes; {Left} in use (target {Target})")]
    private partial void LogReclaimed(long bytes, long left, long target);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Slab compaction moved {Pages} pages ({Waste} bytes of slab waste before)")]
    private partial void LogCompacted(int pages, long waste);
}
