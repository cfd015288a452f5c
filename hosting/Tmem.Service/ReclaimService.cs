using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>
/// Keeps the RAM tier under budget ahead of demand: every <see cref="ServiceOptions.ReclaimIntervalMs"/>,
/// when slot bytes pass <see cref="ServiceOptions.ReclaimHighWater"/> of <c>Tmem:RamBudgetBytes</c>,
/// evicts down to <see cref="ServiceOptions.ReclaimLowWater"/> (<see cref="TmemStore.Reclaim"/>),
/// so puts find room without evicting on their own path; and when slabs hold more than
/// <c>Tmem:CompactionThreshold</c> beyond the slot bytes in use, runs slab compaction
/// (<see cref="TmemStore.Compact"/>). (Log compaction is a separate matter.)
/// </summary>
internal sealed partial class ReclaimService(StoreHost host, IOptions<TmemOptions> storeOptions, IOptions<ServiceOptions> options, ILogger<ReclaimService> logger) : BackgroundService
{
    private const long MinCompactionWasteBytes = 256 * 1024;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (o.ReclaimIntervalMs == 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(o.ReclaimIntervalMs));
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                RunOnce(host.Store, o, storeOptions.Value.CompactionThreshold);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }

    private void RunOnce(TmemStore store, ServiceOptions o, double compactionThreshold)
    {
        var stats = store.GetStats();
        if (stats.RamSlotBytes > o.ReclaimHighWater * stats.RamBudgetBytes)
        {
            long target = (long)(o.ReclaimLowWater * stats.RamBudgetBytes);
            long freed = store.Reclaim(target);
            LogReclaimed(freed, stats.RamSlotBytes - freed, target);
        }
        long waste = stats.RamSlabBytes - stats.RamSlotBytes;
        if (waste > MinCompactionWasteBytes && waste > compactionThreshold * stats.RamSlotBytes)
        {
            int moved = store.Compact();
            if (moved > 0) LogCompacted(moved, waste);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Reclaim freed {Bytes} slot bytes; {Left} in use (target {Target})")]
    private partial void LogReclaimed(long bytes, long left, long target);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Slab compaction moved {Pages} pages ({Waste} bytes of slab waste before)")]
    private partial void LogCompacted(int pages, long waste);
}
