using Tmem.Durability;
using Tmem.LogTier;
using Tmem.Recovery.Offline;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// Single faults that would roll the store back silently through its commit metadata (a zeroed or
/// damaged slot of the commit file, a commit file older than the checkpoint, segment files that
/// end before the commit point), each provoked on a real data directory: the open refuses naming
/// the file, verify reports damage, and recover says what may be lost and changes nothing
/// without a flag.
/// </summary>
public sealed class CommitRollbackTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tmem-rollback-" + Guid.NewGuid().ToString("N"));

    public CommitRollbackTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir => Path.Combine(_root, "data");

    private string Live => Path.Combine(_root, "live");

    private string CommitFile => Path.Combine(Dir, "commits", "log.commit");

    private string CheckpointFile => Path.Combine(Dir, "checkpoint", "index.ckpt");

    private static long SlotNumber(byte[] file, int slot) => BitConverter.ToInt64(file, slot * LogCommitFile.SlotSize + 8);

    private static int NewestSlot(byte[] file) => SlotNumber(file, 0) > SlotNumber(file, 1) ? 0 : 1;

    private static long SlotUntil(byte[] file, int slot) => BitConverter.ToInt64(file, slot * LogCommitFile.SlotSize + 24 + 20);

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index)
    {
        var page = new byte[4096];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    /// <summary>
    /// Strict: 20 pages of object 1 and 20 of object 2, then object 2 flushed (acknowledged). The
    /// directory is copied while the store is open, as a power cut right after the flush leaves
    /// it: its newest commit is the one that made the flush durable, and there is no checkpoint.
    /// Returns the acknowledged state.
    /// </summary>
    private Dictionary<(ObjectId, uint), byte[]> FlushObjectThenPowerCut()
    {
        var acknowledged = new Dictionary<(ObjectId, uint), byte[]>();
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Live });
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        for (uint i = 0; i < 20; i++)
        {
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), i, Compressible(4096, (int)i)));
            acknowledged[(Oid(1), i)] = Compressible(4096, (int)i);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(2), i, Compressible(4096, 100 + (int)i)));
        }
        Assert.Equal(20, c.FlushObject(p, Oid(2)));
        Copy(Live, Dir);
        return acknowledged;
    }

    /// <summary>Copies a data directory (of a live store too: its lock file is left out).</summary>
    internal static void Copy(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            if (Path.GetFileName(file) == DataDirectoryLock.FileName) continue;
            using var source = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var target = File.Create(file.Replace(from, to));
            source.CopyTo(target);
        }
    }

    /// <summary>The store opens with exactly <paramref name="expected"/> in client 1's pool 0.</summary>
    private void AssertOpensWith(Dictionary<(ObjectId, uint), byte[]> expected)
    {
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }, out var report);
        var c = store.GetClient(1);
        foreach (var ((oid, index), page) in expected) Assert.Equal(page, Read(c, 0, oid, index));
        Assert.Equal(expected.Count, report.PagesRecovered);
    }

    private void AssertOpenRefused(params string[] named)
    {
        var files = Directory.GetFiles(Dir, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != DataDirectoryLock.FileName)
            .ToDictionary(f => f, File.ReadAllBytes);
        var e = Assert.Throws<TmemCorruptionException>(() => TmemStore.Open(new TmemOptions { DataDirectory = Dir }));
        foreach (var name in named) Assert.Contains(name, e.Message);
        Assert.Contains("offline recovery tool", e.Message);
        // Nothing was changed or created.
        Assert.Equal(files.Keys.Order(), Directory.GetFiles(Dir, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != DataDirectoryLock.FileName).Order());
        foreach (var (file, bytes) in files) Assert.Equal(bytes, File.ReadAllBytes(file));
    }

    [Fact]
    public void NewestSlotZeroed_OpenRefuses_VerifyNamesTheSlot_RecoverSaysWhatMayBeLost()
    {
        var acknowledged = FlushObjectThenPowerCut();
        var bytes = File.ReadAllBytes(CommitFile);
        int newest = NewestSlot(bytes);
        long olderNumber = SlotNumber(bytes, 1 - newest);
        long olderUntil = SlotUntil(bytes, 1 - newest);
        Assert.True(olderUntil < SlotUntil(bytes, newest)); // the older commit does not cover the flush
        bytes.AsSpan(newest * LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear();
        File.WriteAllBytes(CommitFile, bytes);

        AssertOpenRefused("log.commit", $"slot {newest}");

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.False(verify.IsClean);
        var problem = Assert.Single(verify.Problems, p => p.Severity == ProblemSeverity.Damage);
        Assert.Equal(ProblemKind.CommitMetadata, problem.Kind);
        Assert.Equal(CommitFile, problem.File);
        Assert.Contains($"slot {newest}", problem.Message);
        Assert.Contains($"commit {olderNumber}", problem.Message);
        // The records after the older commit are not called unacknowledged: they may have been.
        Assert.DoesNotContain(verify.Problems, p => p.Kind == ProblemKind.UncommittedTail);
        Assert.Equal(1, OfflineToolTests.RunTool("verify", Dir).Code);

        // Without a flag: nothing changes; the report says what is known and what each flag does.
        var dry = DataDirectoryRepairer.Repair(Dir);
        Assert.Empty(dry.Actions);
        Assert.False(dry.Openable);
        Assert.Contains($"commit {olderNumber}", dry.Advice);
        Assert.Contains($"commits after {olderNumber} may be lost", dry.Advice);
        Assert.Contains($"address {olderUntil}", dry.Advice);
        Assert.Contains("--rebuild-commit-metadata", dry.Advice);
        Assert.Contains("--rollback-to-older-commit", dry.Advice);
        Assert.Equal(bytes, File.ReadAllBytes(CommitFile));
        Assert.Equal(olderNumber, dry.OlderCommit);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (Oid(2).ToString(), (uint)i)).ToHashSet(), dry.LostPages.Select(l => (l.ObjectId, l.Index)).ToHashSet()); // what a rollback would undo
        var (code, stdout, _) = OfflineToolTests.RunTool("recover", Dir);
        Assert.Equal(1, code);
        Assert.Contains("WOULD be undone by --rollback-to-older-commit", stdout);
        Assert.Equal(2, OfflineToolTests.RunTool("recover", Dir, "--rebuild-commit-metadata", "--rollback-to-older-commit").Code); // one or the other
        Assert.Equal(bytes, File.ReadAllBytes(CommitFile));

        // Rebuilding keeps every record that was written: the flush stays.
        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RebuildCommitMetadata = true });
        Assert.True(report.Openable, report.Advice);
        Assert.Empty(report.Unrepaired);
        Assert.Empty(report.LostPages);
        AssertOpensWith(acknowledged);
        Assert.True(DataDirectoryVerifier.Verify(Dir).IsClean);
    }

    [Fact]
    public void NewestSlotZeroed_RollbackFlag_MakesTheRollbackPermanent_ListingWhatItUndoes()
    {
        var acknowledged = FlushObjectThenPowerCut();
        var bytes = File.ReadAllBytes(CommitFile);
        int newest = NewestSlot(bytes);
        long olderUntil = SlotUntil(bytes, 1 - newest);
        bytes.AsSpan(newest * LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear();
        File.WriteAllBytes(CommitFile, bytes);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RollbackToOlderCommit = true });
        Assert.True(report.Openable, report.Advice);
        Assert.Equal(olderUntil, report.CutAddress);
        Assert.True(report.Truncated);
        Assert.True(report.LossListComplete);
        // What the rollback undoes, from the operations: the flush of object 2 after the older
        // commit, so its 20 pages come back; whether it was acknowledged is not known to the tool.
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (Oid(2).ToString(), (uint)i)).ToHashSet(),
            report.LostPages.Select(l => (l.ObjectId, l.Index)).ToHashSet());
        Assert.All(report.LostPages, l => Assert.Equal(LossKind.Resurrected, l.Kind));
        Assert.Contains(report.Actions, a => a.Contains("rolled back"));
        Assert.NotNull(report.BackupDirectory);
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(report.BackupDirectory!, "commits", "log.commit")));
        for (uint i = 0; i < 20; i++) acknowledged[(Oid(2), i)] = Compressible(4096, 100 + (int)i);
        AssertOpensWith(acknowledged);
        Assert.True(DataDirectoryVerifier.Verify(Dir).IsClean);
    }

    [Fact]
    public void OlderSlotZeroed_OpenRefuses_RecoverRebuildLosesNothing()
    {
        var acknowledged = FlushObjectThenPowerCut();
        var bytes = File.ReadAllBytes(CommitFile);
        int older = 1 - NewestSlot(bytes);
        bytes.AsSpan(older * LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear();
        File.WriteAllBytes(CommitFile, bytes);

        // Which slot was the newer is not known once one is gone: refused the same way.
        AssertOpenRefused("log.commit", $"slot {older}");
        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.Contains(verify.Problems, p => p.Kind == ProblemKind.CommitMetadata && p.Severity == ProblemSeverity.Damage && p.Message.Contains($"slot {older}"));
        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RebuildCommitMetadata = true });
        Assert.True(report.Openable, report.Advice);
        Assert.Empty(report.LostPages);
        AssertOpensWith(acknowledged);
    }

    [Theory]
    [InlineData(9)]       // the commit number
    [InlineData(24 + 20)] // FASTER's committed-until address
    [InlineData(1000)]    // past the metadata, where the slot is zeros
    public void SlotBytesDamaged_OpenRefuses_RecoverNamesTheOlderCommit(int offset)
    {
        var acknowledged = FlushObjectThenPowerCut();
        var bytes = File.ReadAllBytes(CommitFile);
        int newest = NewestSlot(bytes);
        long olderNumber = SlotNumber(bytes, 1 - newest);
        bytes[newest * LogCommitFile.SlotSize + offset] ^= 0x08;
        File.WriteAllBytes(CommitFile, bytes);

        if (offset < 100)
        {
            AssertOpenRefused("log.commit", $"slot {newest}");
            var verify = DataDirectoryVerifier.Verify(Dir);
            Assert.Contains(verify.Problems, p => p.Kind == ProblemKind.CommitMetadata && p.Message.Contains($"slot {newest}") && p.Message.Contains("damaged"));
            var dry = DataDirectoryRepairer.Repair(Dir);
            Assert.Empty(dry.Actions);
            Assert.Contains($"commits after {olderNumber} may be lost", dry.Advice);
            var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RebuildCommitMetadata = true });
            Assert.True(report.Openable, report.Advice);
        }
        // A flipped bit in the zeros after the metadata is outside the checksummed contents: harmless.
        AssertOpensWith(acknowledged);
    }

    [Fact]
    public void CommitFileOlderThanTheCheckpoint_OpenRefuses_RecoverRollsForward()
    {
        var acknowledged = new Dictionary<(ObjectId, uint), byte[]>();
        byte[] oldCommits;
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            for (uint i = 0; i < 20; i++) c.Put(p, Oid(2), i, Compressible(4096, 100 + (int)i));
            // A copy of the commit file now: what a lost write of later commits (a disk that
            // acknowledged writes it never made, a restored file) leaves.
            using (var f = new FileStream(Path.Combine(Dir, "commits", "log.commit"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                oldCommits = new byte[f.Length];
                f.ReadExactly(oldCommits);
            }
            Assert.Equal(20, c.FlushObject(p, Oid(2)));
            for (uint i = 0; i < 20; i++)
            {
                c.Put(p, Oid(1), i, Compressible(4096, (int)i));
                acknowledged[(Oid(1), i)] = Compressible(4096, (int)i);
            }
            store.Checkpoint();
        }
        File.WriteAllBytes(CommitFile, oldCommits); // both slots valid, both older than the checkpoint

        AssertOpenRefused("index.ckpt", "log.commit");
        var verify = DataDirectoryVerifier.Verify(Dir);
        var problem = Assert.Single(verify.Problems, p => p.Severity == ProblemSeverity.Damage);
        Assert.Equal(ProblemKind.CommitMetadata, problem.Kind);
        Assert.Contains("index.ckpt", problem.Message);
        Assert.DoesNotContain(verify.Problems, p => p.Kind == ProblemKind.UncommittedTail);
        var dry = DataDirectoryRepairer.Repair(Dir);
        Assert.Empty(dry.Actions);
        Assert.Contains("--rebuild-commit-metadata", dry.Advice);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RebuildCommitMetadata = true });
        Assert.True(report.Openable, report.Advice);
        Assert.Empty(report.LostPages);
        AssertOpensWith(acknowledged);
        Assert.True(DataDirectoryVerifier.Verify(Dir).IsClean);
    }

    [Fact]
    public void FreshLog_WithOneCommit_Opens()
    {
        // After the log's first commit (the pool's creation) one slot legitimately holds no commit.
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Live }))
        {
            Assert.Equal(0, store.GetClient(1).CreatePool(PoolOptions.Persistent));
            Copy(Live, Dir);
        }
        var bytes = File.ReadAllBytes(CommitFile);
        Assert.Contains(new[] { SlotNumber(bytes, 0), SlotNumber(bytes, 1) }, n => n == 0);
        using var reopened = TmemStore.Open(new TmemOptions { DataDirectory = Dir });
        Assert.Equal(PoolKind.Persistent, Assert.Single(reopened.GetClient(1).GetPools()).Kind);
    }

    [Fact]
    public void CommitSlot_HoldsFastersMetadataInTheDocumentedFieldOrder()
    {
        // docs/storage-format.md, "Commit file": checked against what FASTER really writes.
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }))
            store.GetClient(1).CreatePool(PoolOptions.Persistent);
        var bytes = File.ReadAllBytes(CommitFile);
        var slot = bytes.AsSpan(NewestSlot(bytes) * LogCommitFile.SlotSize, LogCommitFile.SlotSize);
        Assert.Equal(0x544D4354u, BitConverter.ToUInt32(slot));
        long number = BitConverter.ToInt64(slot[8..]);
        Assert.Equal(44, BitConverter.ToInt32(slot[16..]));
        Assert.Equal(1u, BitConverter.ToUInt32(slot[20..])); // paired: beside a genesis slot
        var metadata = slot[24..];
        Assert.Equal(1, BitConverter.ToInt32(metadata));                  // version
        long begin = BitConverter.ToInt64(metadata[12..]), until = BitConverter.ToInt64(metadata[20..]);
        Assert.Equal(64, begin);
        Assert.True(until > begin);
        Assert.Equal(number, BitConverter.ToInt64(metadata[28..]));       // commit number
        Assert.Equal(0, BitConverter.ToInt32(metadata[36..]));            // iterator count
        Assert.Equal(-1, BitConverter.ToInt32(metadata[40..]));           // cookie length: none
        Assert.Equal(begin ^ until ^ number ^ 0 ^ -1, BitConverter.ToInt64(metadata[4..])); // checksum
        Assert.True(slot[(24 + 44)..].IndexOfAnyExcept((byte)0) < 0);
    }
}
