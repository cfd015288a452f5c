using Tmem.Recovery;
using Tmem.Recovery.Offline;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests.Faults;

/// <summary>
/// One test per ordering rule that makes a power cut safe (docs/storage-format.md, "What is synced
/// before what"), each a deterministic power cut on a <see cref="SimulatedDisk"/> at the moment
/// the rule is about. The random power-cut loop (<see cref="PowerCutTests"/>) found the defects
/// these pin down.
/// </summary>
[Trait("Kind", "Crash")]
public sealed class PowerLossOrderingTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tmem-ordering-" + Guid.NewGuid().ToString("N"));

    private string DataDirectory => Path.Combine(_root, "data");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private TmemOptions Options(SimulatedDisk? disk, LogDeviceKind device, DurabilityMode mode = DurabilityMode.Strict, long ramBudgetBytes = 16L << 20) => new()
    {
        DataDirectory = DataDirectory,
        LogDevice = device,
        Durability = mode,
        LogSegmentSizeBytes = 16L << 20,
        RamBudgetBytes = ramBudgetBytes,
        Diagnostics = disk is null ? null : new()
        {
            StorageIo = disk,
            WrapLogDevice = device == LogDeviceKind.File ? d => new SimulatedDiskDevice(d, disk) : null,
        },
    };

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index)
    {
        var page = new byte[4096];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public void NewDataDirectory_ItsDirectoriesAreDurableBeforeTheFirstAcknowledgement(LogDeviceKind device)
    {
        // The store creates DATA, DATA/log, DATA/commits and DATA/checkpoint; a directory whose
        // entry in its parent was never synced vanishes in a power cut with everything in it.
        Directory.CreateDirectory(_root);
        var page = Compressible(4096, 1);
        var disk = new SimulatedDisk(_root);
        using (var store = TmemStore.Open(Options(disk, device)))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, page));
            store.Checkpoint();
            disk.Cut();
        }
        var report = disk.Restore(CutMode.Old, new Random(1));
        disk.Dispose();
        Assert.True(report.DirectoriesVanished == 0, report + "\n" + string.Join("\n", report.Details));
        using (var store = TmemStore.Open(Options(null, device), out var recovery))
        {
            Assert.Equal(page, Read(store.GetClient(1), 0, Oid(1), 0));
            Assert.NotNull(recovery.CheckpointCoveredUntil);
        }
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped, "data", 1)]
    [InlineData(LogDeviceKind.Mapped, "data", 2)]
    [InlineData(LogDeviceKind.Mapped, "data", 3)]
    [InlineData(LogDeviceKind.File, "data", 3)]
    [InlineData(LogDeviceKind.Mapped, "data/commits", 1)]
    [InlineData(LogDeviceKind.File, "data/commits", 1)]
    public void DirectorySyncFailsWhileTheStoreCreatesItsFiles_TheRetriedOpenSyncsThem(LogDeviceKind device, string directory, int failing)
    {
        // The first open fails (ENOSPC) to sync DATA after the format file (1), after creating
        // log/ (2) or commits/ (3), or to sync commits/ after renaming the new commit file into
        // it; the second open finds what the first created and must still make it durable, or a
        // power cut takes the directory or the file, and with it every acknowledged operation.
        Directory.CreateDirectory(_root);
        var page = Compressible(4096, 1);
        var disk = new SimulatedDisk(_root);
        int seen = 0;
        disk.FailErrno = SimulatedDisk.Enospc;
        disk.FailIf = (kind, what) => kind == IoKind.Sync && what == $"fsync directory {directory}" && ++seen == failing;
        Assert.Throws<IOException>(() => TmemStore.Open(Options(disk, device)));
        using (var store = TmemStore.Open(Options(disk, device)))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, page));
            disk.Cut();
        }
        var report = disk.Restore(CutMode.Old, new Random(1));
        disk.Dispose();
        using (var store = TmemStore.Open(Options(null, device)))
            Assert.True(page.AsSpan().SequenceEqual(Read(store.GetClient(1), 0, Oid(1), 0)), report + "\n" + string.Join("\n", report.Details));
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped, "fallocate")]
    [InlineData(LogDeviceKind.File, "fallocate")]
    [InlineData(LogDeviceKind.Mapped, "directory fsync")]
    [InlineData(LogDeviceKind.File, "directory fsync")]
    public async Task ReserveAllocationFailsOnce_TheRetryMakesTheSegmentsEntryDurable_BeforeThePagesInItAreAcknowledged(LogDeviceKind device, string failing)
    {
        // A reopened store's space reserve creates segment 1 while the tail is in segment 0. Its
        // fallocate fails once (ENOSPC: the disk was full a moment), or the fsync of the log
        // directory after it: the reserve is missing, and retried a second later. The retry finds
        // the file the first attempt created and must still sync its directory entry, or a power
        // cut takes the file and every page acknowledged in it. (Segment 2's allocation is held up
        // until the cut: its directory sync would make segment 1's entry durable too, and the
        // first open's marker file sync already did, which is why the store is reopened.)
        Directory.CreateDirectory(_root);
        using (var first = new SimulatedDisk(_root) { FailIf = (_, what) => what.Contains("data/log/segment.1", StringComparison.Ordinal) })
        {
            // The first open's reserve cannot create segment 1 (the disk is full), so the second one does.
            using var store = TmemStore.Open(Options(first, device));
            store.GetClient(1).CreatePool(PoolOptions.Persistent with { StoreIncompressible = true });
        }
        Assert.False(File.Exists(Path.Combine(DataDirectory, "log", "segment.1")));
        var disk = new SimulatedDisk(_root) { FailErrno = SimulatedDisk.Enospc };
        bool sawSegment1 = false, failed = false;
        using var segment2 = new ManualResetEventSlim();
        disk.FailIf = (kind, what) =>
        {
            if (what.Contains("data/log/segment.2", StringComparison.Ordinal)) segment2.Wait();
            if (what.Contains("data/log/segment.1", StringComparison.Ordinal)) sawSegment1 = true;
            if (failed || !sawSegment1) return false;
            if (failing == "fallocate" ? !what.StartsWith("fallocate data/log/segment.1", StringComparison.Ordinal) : what != "fsync directory data/log") return false;
            return failed = true;
        };
        const int Pages = 4300; // 4 KiB stored each: past the 16 MiB of segment 0
        using (var store = TmemStore.Open(Options(disk, device, ramBudgetBytes: 64L << 20)))
        {
            try
            {
                Assert.True(failed);
                Assert.True(SpinWait.SpinUntil(() => store.Storage.State == StorageState.Healthy, 10_000), $"the reserve stayed missing: {store.Storage.LastError}");
                var c = store.GetClient(1);
                for (int batch = 0; batch < Pages; batch += 100)
                {
                    var puts = await Task.WhenAll(Enumerable.Range(batch, 100).Select(i => c.PutAsync(0, Oid(i), 0, Random(4096, i)).AsTask()));
                    Assert.All(puts, put => Assert.Equal(PutStatus.Stored, put));
                }
                Assert.True(store.Log!.TailAddress > 16L << 20, "the tail never reached segment 1");
                disk.Cut();
            }
            finally
            {
                segment2.Set();
            }
        }
        var report = disk.Restore(CutMode.Old, new Random(1));
        disk.Dispose();
        using (var store = TmemStore.Open(Options(null, device)))
        {
            var c = store.GetClient(1);
            var lost = Enumerable.Range(0, Pages).Where(i => Read(c, 0, Oid(i), 0) is not { } got || !got.AsSpan().SequenceEqual(Random(4096, i))).ToList();
            Assert.True(lost.Count == 0, $"{lost.Count} acknowledged pages lost, from page {lost.FirstOrDefault()}; {report}\n{string.Join("\n", report.Details)}");
        }
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public async Task CheckpointWhileAPoolIsDestroyed_ThePowerGoesBeforeItsDepartureIsDurable_ThePoolKeepsItsPages(LogDeviceKind device)
    {
        // DestroyPool removes the pool's pages in memory, then logs its departure. A checkpoint
        // taken between the two listed the pool without its pages, covering a log that still
        // held them; if the departure never became durable, the next open (from the checkpoint)
        // had the pool with none of its acknowledged pages, a full replay had them all, and the
        // offline verify called the directory damaged. A checkpoint waits for the departure.
        Directory.CreateDirectory(_root);
        var disk = new SimulatedDisk(_root);
        var options = Options(disk, device);
        Task<long>? checkpoint = null;
        bool checkpointDoneInside = false;
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int kept = c.CreatePool(PoolOptions.Persistent);
            int destroyed = c.CreatePool(PoolOptions.Persistent);
            for (int i = 0; i < 8; i++)
            {
                Assert.Equal(PutStatus.Stored, c.Put(kept, Oid(i), 0, Compressible(4096, i)));
                Assert.Equal(PutStatus.Stored, c.Put(destroyed, Oid(i), 0, Compressible(4096, 100 + i)));
            }
            options.Diagnostics!.PoolDestroyedHook = () =>
            {
                checkpoint = Task.Run(store.Checkpoint);
                checkpointDoneInside = checkpoint.Wait(300);
                disk.Cut("after the checkpoint, before the departure");
            };
            c.DestroyPool(destroyed);
            await checkpoint!;
        }
        disk.Restore(CutMode.Old, new Random(1));
        disk.Dispose();
        var verified = DataDirectoryVerifier.Verify(DataDirectory);
        Assert.True(verified.IsClean, $"checkpoint written inside the destroy: {checkpointDoneInside}; {string.Join("; ", verified.Problems.Select(p => p.Message))}");
        using (var store = TmemStore.Open(Options(null, device)))
        {
            var c = store.GetClient(1);
            Assert.Equal(2, c.GetPools().Count); // the destruction was not durable: it did not happen
            for (int i = 0; i < 8; i++)
            {
                Assert.Equal(Compressible(4096, i), Read(c, 0, Oid(i), 0));
                Assert.Equal(Compressible(4096, 100 + i), Read(c, 1, Oid(i), 0));
            }
        }
    }
}
