using System.IO.MemoryMappedFiles;
using Tmem.LogTier;

namespace Tmem.Tests.Faults;

/// <summary>The disk model itself: what a power cut keeps and loses, and the Nth-operation failures.</summary>
[Trait("Kind", "Unit")]
public sealed unsafe class SimulatedDiskTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tmem-simdisk-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
        if (Directory.Exists(_root + ".grave")) Directory.Delete(_root + ".grave", recursive: true);
    }

    private string P(string name) => Path.Combine(_root, name);

    private static byte[] Bytes(int length, byte value) => Enumerable.Repeat(value, length).ToArray();

    [Fact]
    public void NewFileAndDirectory_WhoseEntriesWereNeverSynced_Vanish_AndSyncedOnesStay()
    {
        Directory.CreateDirectory(_root);
        var disk = new SimulatedDisk(_root);
        disk.CreateDirectory(P("d"));
        disk.WriteNewFile(P("d/unsynced-entry"), Bytes(100, 1));
        disk.WriteNewFile(P("kept"), Bytes(100, 2));
        disk.FsyncDirectory(_root);          // names d and kept
        disk.WriteNewFile(P("late"), Bytes(10, 3)); // after that sync
        var report = disk.Restore(CutMode.New, new Random(1));
        Assert.True(Directory.Exists(P("d")));
        Assert.False(File.Exists(P("d/unsynced-entry")));
        Assert.False(File.Exists(P("late")));
        Assert.Equal(Bytes(100, 2), File.ReadAllBytes(P("kept")));
        Assert.Equal(2, report.FilesVanished);
    }

    [Fact]
    public void UnsyncedOverwrite_IsUndoneByOld_KeptByNew_AndNeverSurvivesWhenWrittenAfterTheCut()
    {
        Directory.CreateDirectory(_root);
        File.WriteAllBytes(P("f"), Bytes(2048, 1)); // durable: there when the disk is made
        foreach (var mode in new[] { CutMode.Old, CutMode.New, CutMode.MixedSectors })
        {
            var disk = new SimulatedDisk(_root);
            using (var file = disk.Open(P("f"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
                file.Write(Bytes(512, 2), 512);   // before the cut, never synced
                disk.Cut();
                file.Write(Bytes(512, 3), 1024);  // after the cut
                Assert.Equal(0, file.Fsync());     // returns, but nothing is durable any more
            }
            disk.Restore(mode, new Random(2));
            var bytes = File.ReadAllBytes(P("f"));
            Assert.Equal(2048, bytes.Length);
            Assert.Equal(Bytes(512, 1), bytes[1024..1536]);
            Assert.Equal(Bytes(512, 1), bytes[..512]);
            if (mode == CutMode.Old) Assert.Equal(Bytes(512, 1), bytes[512..1024]);
            if (mode == CutMode.New) Assert.Equal(Bytes(512, 2), bytes[512..1024]);
            File.WriteAllBytes(P("f"), Bytes(2048, 1));
        }
    }

    [Fact]
    public void WriteThrough_IsDurableOnReturn_ASyncedRename_Survives_AnUnsyncedOne_BringsTheOldFileBack()
    {
        Directory.CreateDirectory(_root);
        File.WriteAllBytes(P("target"), Bytes(512, 1));
        var disk = new SimulatedDisk(_root);
        using (var file = disk.Open(P("target"), FileMode.Open, FileAccess.ReadWrite, FileShare.None, FileOptions.WriteThrough))
            file.Write(Bytes(512, 9), 0);
        disk.WriteNewFile(P("target.tmp"), Bytes(512, 2));
        disk.Move(P("target.tmp"), P("target"), overwrite: true);
        disk.Restore(CutMode.New, new Random(3));
        Assert.Equal(Bytes(512, 9), File.ReadAllBytes(P("target"))); // the rename was never synced
        Assert.False(File.Exists(P("target.tmp")));                  // nor was the temporary file's name

        disk = new SimulatedDisk(_root);
        disk.WriteNewFile(P("target.tmp"), Bytes(512, 2));
        disk.Move(P("target.tmp"), P("target"), overwrite: true);
        disk.FsyncDirectory(_root);
        disk.Delete(P("target"));
        disk.Restore(CutMode.Old, new Random(3));
        Assert.Equal(Bytes(512, 2), File.ReadAllBytes(P("target"))); // synced rename; unsynced unlink undone
    }

    [Fact]
    public void MappedWrite_IsDurableOnlyOnceMsyncReturnedForIt()
    {
        Directory.CreateDirectory(_root);
        var disk = new SimulatedDisk(_root);
        using (var file = disk.Open(P("seg"), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            Assert.Equal(0, file.Allocate(0, 1 << 16));
            Assert.Equal(0, file.Fsync());
            disk.FsyncDirectory(_root);
            using var map = MemoryMappedFile.CreateFromFile(file.Handle, null, 1 << 16, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: true);
            using var view = map.CreateViewAccessor(0, 1 << 16, MemoryMappedFileAccess.ReadWrite);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            try
            {
                byte* mapping = pointer + view.PointerOffset;
                var a = Bytes(4096, 0xA);
                var b = Bytes(4096, 0xB);
                fixed (byte* source = a) file.CopyToMapping(mapping, 0, source, a.Length);
                Assert.Equal(0, file.Msync(mapping, 0, 4096));
                fixed (byte* source = b) file.CopyToMapping(mapping, 8192, source, b.Length); // never synced
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }
        disk.Restore(CutMode.Old, new Random(4));
        var bytes = File.ReadAllBytes(P("seg"));
        Assert.Equal(1 << 16, bytes.Length);
        Assert.Equal(Bytes(4096, 0xA), bytes[..4096]);
        Assert.Equal(new byte[4096], bytes[8192..12288]);
    }

    [Fact]
    public void FailAt_FailsExactlyThatOperation_WithTheErrno_AndFromThereOn_EveryLaterOne()
    {
        Directory.CreateDirectory(_root);
        using var disk = new SimulatedDisk(_root) { FailAt = 3, FailErrno = SimulatedDisk.Enospc };
        using var file = disk.Open(P("f"), FileMode.Create, FileAccess.ReadWrite, FileShare.None); // 1
        file.Write(Bytes(10, 1), 0);                                                            // 2
        var error = Assert.Throws<IOException>(() => file.Write(Bytes(10, 1), 0));              // 3
        Assert.Equal(SimulatedDisk.Enospc, error.HResult);
        Assert.Equal(0, file.Fsync());                                                          // 4
        disk.FailAt = 6;
        disk.FailFromThereOn = true;
        Assert.Equal(0, file.Fsync());                                                          // 5
        Assert.Equal(SimulatedDisk.Enospc, file.Fsync());                                       // 6
        Assert.Equal(SimulatedDisk.Enospc, file.Allocate(0, 100));                              // 7
        Assert.Equal(3, disk.FailedOperations);
    }
}
