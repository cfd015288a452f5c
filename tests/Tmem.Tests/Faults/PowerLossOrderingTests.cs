using Tmem.Recovery;
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

    private TmemOptions Options(SimulatedDisk? disk, LogDeviceKind device, DurabilityMode mode = DurabilityMode.Strict) => new()
    {
        DataDirectory = DataDirectory,
        LogDevice = device,
        Durability = mode,
        LogSegmentSizeBytes = 16L << 20,
        RamBudgetBytes = 16L << 20,
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
}
