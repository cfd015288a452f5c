using Tmem.Durability;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Tmem.Recovery.Offline;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// The offline recovery tool (Tmem.Recovery.Offline and tools/Tmem.Admin) on real data
/// directories: each kind of damage DurableStoreTests makes is found by verify, named, and
/// repaired by recover, after which the store opens with every undamaged page byte-exact and
/// the report lists exactly the pages that are not; export/import; refusal of a directory a
/// live process holds.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class OfflineToolTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tmem-offline-" + Guid.NewGuid().ToString("N"));

    public OfflineToolTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir => Path.Combine(_root, "data");

    private string Segment(int n) => Path.Combine(Dir, "log", $"segment.{n}");

    private string CheckpointFile => Path.Combine(Dir, "checkpoint", "index.ckpt");

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index, int pageSize = 4096)
    {
        var page = new byte[pageSize];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    /// <summary>DurableStoreTests' sample: 60 compressible pages of object 1 and a same-filled page of object 2 between them.</summary>
    private Dictionary<(ObjectId, uint), byte[]> WriteSamplePages()
    {
        var expected = new Dictionary<(ObjectId, uint), byte[]>();
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir });
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        void Put(ObjectId oid, uint index, byte[] page)
        {
            Assert.Equal(PutStatus.Stored, c.Put(p, oid, index, page));
            expected[(oid, index)] = page;
        }
        for (uint i = 0; i < 50; i++) Put(Oid(1), i, Compressible(4096, (int)i));
        Put(Oid(2), 0, SameFilled(4096, 0x0BADC0FFEE0DDF00UL));
        for (uint i = 50; i < 60; i++) Put(Oid(1), i, Compressible(4096, (int)i));
        return expected;
    }

    /// <summary>Many pages over more than one 16 MiB segment (Relaxed, pipelined: quick to write).</summary>
    private Dictionary<(ObjectId, uint), byte[]> WriteManyPages(int count)
    {
        var expected = new Dictionary<(ObjectId, uint), byte[]>();
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir, LogSegmentSizeBytes = 16L << 20, Durability = DurabilityMode.Relaxed });
        var c = store.GetClient(3);
        int p = c.CreatePool(PoolOptions.Persistent);
        var puts = new List<ValueTask<PutStatus>>();
        for (int i = 0; i < count; i++)
        {
            var page = WithRandomPrefix(4096, 0.55, i);
            expected[(Oid(i / 64), (uint)(i % 64))] = page;
            puts.Add(c.PutAsync(p, Oid(i / 64), (uint)(i % 64), page));
        }
        foreach (var put in puts) Assert.Equal(PutStatus.Stored, put.AsTask().GetAwaiter().GetResult());
        return expected;
    }

    /// <summary>
    /// After a repair: the store opens; every page the report does not list as lost reads back
    /// byte-exact, and every page it lists is gone (nothing listed that survived, nothing missing
    /// that is not listed).
    /// </summary>
    private void AssertRepairedExactly(Dictionary<(ObjectId, uint), byte[]> expected, RepairReport report, int clientId, int poolId)
    {
        Assert.True(report.Openable, report.Advice);
        Assert.Empty(report.Unrepaired);
        var lost = report.LostPages.Select(l => (l.ObjectId, l.Index)).ToHashSet();
        Assert.Equal(report.LostPages.Count, lost.Count); // each handle once
        Assert.All(report.LostPages, l => Assert.Contains(new PoolMember(clientId, poolId), l.Members));
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }, out var recovery);
        var c = store.GetClient(clientId);
        int survived = 0;
        foreach (var ((oid, index), page) in expected)
        {
            var got = c.GetPools().Any(p => p.PoolId == poolId) ? Read(c, poolId, oid, index) : null;
            bool listed = lost.Contains((oid.ToString(), index));
            if (got is null) Assert.True(listed, $"page {oid}/{index} is gone but the report does not list it");
            else
            {
                Assert.False(listed, $"page {oid}/{index} is listed as lost but came back");
                Assert.Equal(page, got);
                survived++;
            }
        }
        Assert.Equal(survived, recovery.PagesRecovered);
        Assert.Equal(report.PagesAfter, recovery.PagesRecovered);
        // A fresh checkpoint was written and the directory verifies clean.
        Assert.NotNull(recovery.CheckpointCoveredUntil);
        Assert.Null(recovery.CheckpointProblem);
        store.Dispose();
        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.True(verify.IsClean, string.Join("\n", verify.Problems));
    }

    [Fact]
    public void Inspect_AndVerify_CleanDirectory_ReportWhatIsThere()
    {
        var uuid = Guid.NewGuid();
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }))
        {
            var a = store.GetClient(1);
            var b = store.GetClient(2);
            int p = a.CreatePool(PoolOptions.Persistent);
            int shared = a.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid });
            Assert.Equal(0, b.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid }));
            for (uint i = 0; i < 10; i++) a.Put(p, Oid(1), i, Compressible(4096, (int)i));
            a.Put(p, Oid(1), 0, Compressible(4096, 100)); // a dead record
            a.Put(shared, Oid(5), 5, SameFilled(4096, 7));
        }
        var report = DataDirectoryInspector.Inspect(Dir);
        Assert.Equal(1, report.FormatVersion);
        Assert.Equal(64, report.BeginAddress);
        Assert.True(report.CommittedUntilAddress > 64);
        Assert.Equal([1, 2], report.Clients);
        Assert.Equal(11, report.LivePages);
        var pool = report.Pools.Single(x => x.ClientId == 1 && x.PoolId == 0);
        Assert.Equal(10, pool.Pages);
        Assert.Equal(Enumerable.Range(0, 10).Sum(i => (long)Lz4Length(i == 0 ? Compressible(4096, 100) : Compressible(4096, i))), pool.CompressedBytes);
        var sharedPool = report.Pools.Single(x => x.ClientId == 2);
        Assert.Equal(uuid, sharedPool.SharedUuid);
        Assert.Equal(1, sharedPool.SameFilledPages);
        Assert.Equal([new PoolMember(1, 1), new PoolMember(2, 0)], sharedPool.Members);
        Assert.InRange(report.LiveFraction, 0.5, 0.99); // one dead page and the pool records
        Assert.True(report.Checkpoint!.Usable);
        Assert.Equal(report.CommittedUntilAddress, report.Checkpoint.CoveredUntil);
        Assert.Single(report.Segments);
        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.True(verify.IsClean);
        Assert.Empty(verify.Problems);
        Assert.True(verify.CheckpointChecked);
        Assert.Equal(15, verify.RecordsChecked); // 3 pool records, 11 puts + 1 replaced
    }

    [Fact]
    public void BitFlip_BelowTheCommitPoint_VerifyNamesIt_RecoverCutsThereOnlyWithTheFlag()
    {
        var expected = WriteSamplePages();
        File.Delete(CheckpointFile);
        var bytes = File.ReadAllBytes(Segment(0));
        int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(0x0BADC0FFEE0DDF00UL));
        bytes[at + 3] ^= 0x10;
        File.WriteAllBytes(Segment(0), bytes);

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.False(verify.IsClean);
        var problem = Assert.Single(verify.Problems);
        Assert.Equal(ProblemKind.BadRecord, problem.Kind);
        Assert.InRange(problem.Address!.Value, at - 4 - 48, at - 48 - 4); // the record's entry address: header + record header before the payload
        Assert.Contains("checksum", problem.Message);
        Assert.Equal(problem.Address, verify.FirstCorruptionAddress);

        // Without the flag: nothing changes; the report previews the loss.
        var dry = DataDirectoryRepairer.Repair(Dir);
        Assert.Empty(dry.Actions);
        Assert.False(dry.Truncated);
        Assert.False(dry.Openable);
        Assert.Contains("--truncate-at-first-corruption", dry.Advice);
        Assert.Equal(11, dry.LostPages.Count);
        Assert.Equal(bytes, File.ReadAllBytes(Segment(0)));

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.True(report.Truncated);
        Assert.Equal(problem.Address, report.CutAddress);
        // Lost: the damaged same-filled page itself and the ten pages put after it; no pool changes.
        var damaged = Assert.Single(report.LostPages, l => l.Kind == LossKind.Damaged);
        Assert.Equal((Oid(2).ToString(), 0u), (damaged.ObjectId, damaged.Index));
        Assert.Equal(Enumerable.Range(50, 10).Select(i => (Oid(1).ToString(), (uint)i)).ToHashSet(),
            report.LostPages.Where(l => l.Kind == LossKind.Lost).Select(l => (l.ObjectId, l.Index)).ToHashSet());
        Assert.Empty(report.LostPools);
        Assert.NotNull(report.BackupDirectory);
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(report.BackupDirectory!, "log", "segment.0"))); // the damaged original is kept
        AssertRepairedExactly(expected, report, 1, 0);
    }

    [Fact]
    public void BitFlipInThePoolRecord_WithoutCheckpoint_RecoverListsEveryPageThatFollowed()
    {
        var expected = WriteSamplePages();
        File.Delete(CheckpointFile); // only the log knows the pages
        var bytes = File.ReadAllBytes(Segment(0));
        bytes[64 + 4 + 48 + 2] ^= 0x20; // the PoolCreate record at address 64: its payload's pool id
        File.WriteAllBytes(Segment(0), bytes);

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.Equal(64, verify.FirstCorruptionAddress);
        Assert.Equal(ProblemKind.BadRecord, verify.Problems[0].Kind);
        // Each put that follows names a pool that no longer exists: noticed as a consequence.
        Assert.Equal(61, verify.Problems.Count(p => p.Kind == ProblemKind.InconsistentRecord && p.Severity == ProblemSeverity.Notice));

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(61, report.LostPages.Count);
        Assert.All(report.LostPages, l => Assert.Equal(LossKind.Lost, l.Kind));
        Assert.Equal(0, report.PagesAfter);
        Assert.True(report.Openable);
        Assert.Empty(report.Unrepaired);
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir });
        Assert.Equal(0, store.GetStats().PersPages);
    }

    [Fact]
    public void SegmentTruncatedMidRecord_VerifyNamesIt_RecoverKeepsTheRecordsBeforeIt()
    {
        var expected = WriteSamplePages();
        long length = TestPages.DataLength(Segment(0));
        using (var file = new FileStream(Segment(0), FileMode.Open)) file.SetLength(length / 2 + 1000);

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.False(verify.IsClean);
        var truncated = Assert.Single(verify.Problems, p => p.Kind == ProblemKind.TruncatedSegment);
        Assert.Contains(Segment(0), truncated.Message);
        Assert.InRange(truncated.Address!.Value, length / 2 + 1000 - 4200, length / 2 + 1000);
        // The checkpoint lists pages whose records are gone; it was not compared with the log beyond the damage.
        Assert.DoesNotContain(verify.Problems, p => p.Kind == ProblemKind.CheckpointMismatch && p.Severity == ProblemSeverity.Damage);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.True(report.Truncated);
        Assert.InRange(report.LostPages.Count, 20, 40); // about half the pages, known from the checkpoint
        Assert.All(report.LostPages, l => Assert.Equal(LossKind.Lost, l.Kind));
        AssertRepairedExactly(expected, report, 1, 0);
    }

    [Fact]
    public void SegmentFileDeleted_VerifyNamesIt_RecoverKeepsTheSegmentsBeforeIt()
    {
        var expected = WriteManyPages(9000); // about 20 MiB: segments 0 and 1
        Assert.True(File.Exists(Segment(1)));
        File.Delete(Segment(1));

        var verify = DataDirectoryVerifier.Verify(Dir);
        var missing = Assert.Single(verify.Problems, p => p.Kind == ProblemKind.MissingSegment);
        Assert.Equal(Segment(1), missing.File);
        Assert.Equal(16L << 20, missing.Address);

        var dry = DataDirectoryRepairer.Repair(Dir);
        Assert.Empty(dry.Actions);
        Assert.NotEmpty(dry.LostPages);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(16L << 20, report.CutAddress);
        Assert.InRange(report.LostPages.Count, 500, 4000);
        Assert.All(report.LostPages, l => Assert.Contains("checkpoint", l.Reason)); // known only from the checkpoint
        AssertRepairedExactly(expected, report, 3, 0);
    }

    [Fact]
    public void SegmentZeroDeleted_RecoverWithTheFlag_LeavesAnEmptyStoreAndListsEveryPage()
    {
        var expected = WriteSamplePages();
        File.Delete(Segment(0));
        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.Contains(verify.Problems, p => p.Kind == ProblemKind.MissingSegment && p.Address == 64);
        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(61, report.LostPages.Count);
        Assert.Contains(report.LostPools, p => p.PoolSerial == 1);
        AssertRepairedExactly(expected, report, 1, 0);
    }

    [Theory]
    [InlineData(-1)] // the commit file deleted
    [InlineData(36)] // the begin address field of FASTER's metadata damaged (the slot's checksum fails)
    [InlineData(44)] // the commit point field damaged
    public void CommitMetadata_DeletedOrDamaged_VerifyNamesIt_RecoverRebuildsItWithTheFlag(int fieldOffset)
    {
        var expected = WriteSamplePages();
        string commit = Path.Combine(Dir, "commits", "log.commit");
        if (fieldOffset < 0) File.Delete(commit);
        else
        {
            // The newer of the two 4 KiB slots holds the last commit; damage both the same way.
            var bytes = File.ReadAllBytes(commit);
            foreach (int slot in new[] { 0, 4096 })
                BitConverter.TryWriteBytes(bytes.AsSpan(slot + fieldOffset, 8), 0x5A5A_5A5A_5A5AL);
            File.WriteAllBytes(commit, bytes);
        }
        Assert.Throws<TmemCorruptionException>(() => TmemStore.Open(new TmemOptions { DataDirectory = Dir }));

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.False(verify.IsClean);
        var problem = Assert.Single(verify.Problems, p => p.Severity == ProblemSeverity.Damage);
        Assert.Equal(ProblemKind.CommitMetadata, problem.Kind);
        Assert.Null(verify.CommittedUntilAddress);
        Assert.Equal(62, verify.RecordsChecked); // every record was still read

        var dry = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Empty(dry.Actions);
        Assert.Contains("--rebuild-commit-metadata", dry.Advice);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { RebuildCommitMetadata = true });
        Assert.Contains(report.Actions, a => a.Contains("rebuilt FASTER's commit metadata"));
        Assert.Empty(report.LostPages);
        AssertRepairedExactly(expected, report, 1, 0);
    }

    [Fact]
    public void TornTail_PastTheCommitPoint_IsANoticeAndRecoverDropsIt()
    {
        var expected = WriteSamplePages();
        long committed = DataDirectoryInspector.Inspect(Dir).CommittedUntilAddress!.Value;
        // A whole, valid record written after the last commit: what a crash between a flush and
        // its commit leaves.
        var record = new byte[Tmem.LogTier.LogRecord.SizeOf(8)];
        Tmem.LogTier.LogRecord.Write(record, Tmem.LogTier.LogRecordType.Put, Tmem.LogTier.LogRecordFlags.SameFilled, 1, Oid(99), 0, BitConverter.GetBytes(42UL));
        using (var file = new FileStream(Segment(0), FileMode.Open))
        {
            file.Position = committed;
            file.Write(BitConverter.GetBytes(record.Length));
            file.Write(record);
        }
        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.True(verify.IsClean);
        var tail = Assert.Single(verify.Problems);
        Assert.Equal((ProblemKind.UncommittedTail, ProblemSeverity.Notice, committed), (tail.Kind, tail.Severity, tail.Address!.Value));

        var report = DataDirectoryRepairer.Repair(Dir);
        Assert.Contains(report.Actions, a => a.Contains("torn tail"));
        Assert.Empty(report.LostPages);
        Assert.Equal(Tmem.LogTier.PersistentLog.EntrySize(8), report.DroppedLogBytes);
        Assert.Equal(new byte[4 + record.Length], File.ReadAllBytes(Segment(0)).AsSpan((int)committed, 4 + record.Length).ToArray());
        AssertRepairedExactly(expected, report, 1, 0);
        Assert.Empty(DataDirectoryVerifier.Verify(Dir).Problems);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Checkpoint_DamagedOrTruncated_VerifyNamesIt_RecoverRebuildsItLosingNothing(bool truncate)
    {
        var expected = WriteSamplePages();
        var bytes = File.ReadAllBytes(CheckpointFile);
        if (truncate) bytes = bytes.AsSpan(0, bytes.Length - 100).ToArray();
        else bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(CheckpointFile, bytes);

        var verify = DataDirectoryVerifier.Verify(Dir);
        var problem = Assert.Single(verify.Problems);
        Assert.Equal(ProblemKind.CheckpointDamaged, problem.Kind);
        Assert.Equal(CheckpointFile, problem.File);
        Assert.Contains(truncate ? "length" : "checksum", problem.Message);
        Assert.Null(verify.FirstCorruptionAddress);

        var report = DataDirectoryRepairer.Repair(Dir); // no flag needed: nothing is lost
        Assert.False(report.Truncated);
        Assert.Empty(report.LostPages);
        Assert.Contains(report.Actions, a => a.Contains("checkpoint"));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(report.BackupDirectory!, "checkpoint", "index.ckpt")));
        AssertRepairedExactly(expected, report, 1, 0);
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }, out var recovery);
        Assert.Equal(0, recovery.RecordsReplayed); // the rebuilt checkpoint is used
    }

    [Fact]
    public void Checkpoint_IntactButDisagreeingWithTheLog_IsFoundAndRebuilt()
    {
        var expected = WriteSamplePages();
        // A checkpoint that passes its checksum but points a page at the wrong record.
        var checkpoint = Tmem.LogTier.IndexCheckpoint.TryParse(File.ReadAllBytes(CheckpointFile), out _)!;
        var pages = checkpoint.Pools[0].Pages;
        pages[3] = pages[3] with { Address = pages[4].Address };
        File.WriteAllBytes(CheckpointFile, checkpoint.Serialize());

        var verify = DataDirectoryVerifier.Verify(Dir);
        var problem = Assert.Single(verify.Problems);
        Assert.Equal(ProblemKind.CheckpointMismatch, problem.Kind);
        Assert.Contains($"{pages[3].ObjectId}/{pages[3].Index}", problem.Message);
        var report = DataDirectoryRepairer.Repair(Dir);
        Assert.Empty(report.LostPages);
        AssertRepairedExactly(expected, report, 1, 0);
    }

    [Fact]
    public void ExportThenImport_IntoAnEmptyDirectory_ReproducesThePoolsByteForByte()
    {
        var uuid = Guid.NewGuid();
        var pages = new Dictionary<(int Pool, ObjectId, uint), byte[]>();
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }))
        {
            var c = store.GetClient(4);
            var other = store.GetClient(5);
            Assert.Equal(0, c.CreatePool(PoolOptions.Ephemeral));
            Assert.Equal(1, c.CreatePool(PoolOptions.Persistent));
            Assert.Equal(2, c.CreatePool(PoolOptions.Persistent with { PageSize = 16384, ExclusiveGets = true }));
            Assert.Equal(3, c.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid }));
            other.CreatePool(PoolOptions.Persistent);
            other.Put(0, Oid(9), 9, Compressible(4096, 9)); // another client's: not exported
            void Put(int pool, ObjectId oid, uint index, byte[] page)
            {
                Assert.Equal(PutStatus.Stored, c.Put(pool, oid, index, page));
                pages[(pool, oid, index)] = page;
            }
            for (uint i = 0; i < 40; i++) Put(1, Oid((int)(i / 8)), i, i % 7 == 0 ? SameFilled(4096, i) : Compressible(4096, (int)i));
            Put(2, Oid(1), 1, Compressible(16384, 77));
            Put(3, new ObjectId(1, 2, 3), 4, Compressible(4096, 3));
            c.FlushPage(1, Oid(0), 1);
            pages.Remove((1, Oid(0), 1));
            c.Put(0, Oid(1), 0, Compressible(4096, 1)); // ephemeral: not exported
        }
        string file = Path.Combine(_root, "client4.tmempool");
        var export = PoolExporter.Export(Dir, 4, [], file);
        Assert.Equal([new PoolPages(1, 39), new PoolPages(2, 1), new PoolPages(3, 1)], export.Pools);

        string target = Path.Combine(_root, "target");
        var import = PoolExporter.Import(target, file);
        Assert.Equal(export.Pools, import.Pools);
        // The export of the imported directory is the same file, byte for byte (before the reads
        // below: a get in the exclusive-gets pool removes its page).
        string again = Path.Combine(_root, "again.tmempool");
        PoolExporter.Export(target, 4, [], again);
        Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(again));
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = target }, out var recovery))
        {
            Assert.Equal(41, recovery.PagesRecovered);
            var c = store.GetClient(4);
            var pools = c.GetPools();
            Assert.Equal([1, 2, 3], pools.Select(p => p.PoolId).ToArray());
            Assert.Equal(16384, pools[1].PageSize);
            Assert.True(pools[1].ExclusiveGets);
            Assert.Equal(uuid, pools[2].SharedUuid);
            foreach (var ((pool, oid, index), page) in pages)
                Assert.Equal(page, Read(c, pool, oid, index, page.Length));
            Assert.Empty(store.GetClient(5).GetPools());
        }

        // A second import clashes (pool ids in use; the shared UUID exists) and changes nothing.
        var segmentBefore = File.ReadAllBytes(Path.Combine(target, "log", "segment.0"));
        var clash = Assert.Throws<OfflineRefusedException>(() => PoolExporter.Import(target, file));
        Assert.Contains("pool id 1", clash.Message);
        var sharedClash = Assert.Throws<OfflineRefusedException>(() => PoolExporter.Import(target, file, asClientId: 6));
        Assert.Contains(uuid.ToString(), sharedClash.Message);
        Assert.Equal(segmentBefore, File.ReadAllBytes(Path.Combine(target, "log", "segment.0")));

        // A damaged export is refused.
        var damaged = File.ReadAllBytes(file);
        damaged[damaged.Length / 2] ^= 0x40;
        File.WriteAllBytes(file, damaged);
        var bad = Assert.Throws<OfflineRefusedException>(() => PoolExporter.Import(Path.Combine(_root, "third"), file));
        Assert.Contains("checksum", bad.Message);
    }

    [Fact]
    public void Compact_Offline_ShrinksTheSegmentsAndKeepsEveryPage()
    {
        var expected = WriteManyPages(9000);
        // Compaction off while the pages die, or the store would compact on its own first.
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir, LogCompactionLiveFraction = 0 }))
        {
            var c = store.GetClient(3);
            for (int o = 0; o < 120; o++) c.FlushObject(0, Oid(o)); // most of segment 0 is now dead
        }
        foreach (var key in expected.Keys.Where(k => k.Item1.Word0 < 120).ToList()) expected.Remove(key);
        var before = DataDirectoryInspector.Inspect(Dir);
        Assert.InRange(before.LiveFraction, 0.05, 0.3);
        var report = OfflineCompactor.Compact(Dir);
        Assert.Equal(before.SegmentBytes, report.SegmentBytesBefore);
        Assert.True(report.SegmentBytesAfter < report.SegmentBytesBefore, $"{report.SegmentBytesBefore} -> {report.SegmentBytesAfter}");
        Assert.False(File.Exists(Segment(0)));
        Assert.False(report.Skipped);
        Assert.True(report.Result!.BeginAfter > report.Result.BeginBefore);
        using var reopened = TmemStore.Open(new TmemOptions { DataDirectory = Dir });
        var client = reopened.GetClient(3);
        foreach (var ((oid, index), page) in expected) Assert.Equal(page, Read(client, 0, oid, index));
        Assert.Equal(expected.Count, reopened.GetStats().PersPages);
    }

    [Fact]
    public void Compact_OfANearlyAllLiveLog_IsSkippedSayingSo_AndTheDirectoryDoesNotGrow_ThenRunsOnceItWouldGain()
    {
        WriteManyPages(9000); // about 20 MiB, all live, in two 16 MiB segments
        var files = Directory.GetFiles(Dir, "*", SearchOption.AllDirectories).ToDictionary(f => f, f => new FileInfo(f).Length);
        var report = OfflineCompactor.Compact(Dir);
        Assert.True(report.Skipped, $"not skipped: {report}");
        Assert.Null(report.Result);
        Assert.Contains("would not shrink", report.Reason);
        Assert.Equal(report.SegmentBytesBefore, report.SegmentBytesAfter);
        Assert.True(report.SegmentFilesExpected >= report.SegmentFilesBefore);
        Assert.Equal(files, Directory.GetFiles(Dir, "*", SearchOption.AllDirectories).ToDictionary(f => f, f => new FileInfo(f).Length));

        var (code, stdout, _) = RunTool("compact", Dir, "--json");
        Assert.Equal(0, code);
        using (var skipped = JsonDocument.Parse(stdout))
        {
            Assert.True(skipped.RootElement.GetProperty("skipped").GetBoolean());
            Assert.Contains("would not shrink", skipped.RootElement.GetProperty("reason").GetString());
        }
        var (plainCode, plainOut, _) = RunTool("compact", Dir);
        Assert.Equal(0, plainCode);
        Assert.StartsWith("skipped: compacting would not shrink", plainOut.Trim());

        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir, LogCompactionLiveFraction = 0 }))
        {
            var c = store.GetClient(3);
            for (int o = 0; o < 120; o++) c.FlushObject(0, Oid(o));
        }
        (code, stdout, _) = RunTool("compact", Dir, "--json");
        Assert.Equal(0, code);
        using var ran = JsonDocument.Parse(stdout);
        var root = ran.RootElement;
        Assert.False(root.GetProperty("skipped").GetBoolean());
        Assert.True(root.GetProperty("segmentBytesAfter").GetInt64() < root.GetProperty("segmentBytesBefore").GetInt64());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("result").GetProperty("elapsed").ValueKind); // a duration is a number (seconds)
    }

    [Fact]
    public void Tool_DirectoryHeldByALiveProcess_IsRefusedByEveryCommand()
    {
        string ack = Path.Combine(_root, "ack.txt");
        using var host = StartProcess(Beside("Tmem.CrashHost.dll"), Dir, ack, "strict", "1");
        WaitForLine(host, "READY");
        try
        {
            Assert.Throws<DataDirectoryInUseException>(() => DataDirectoryVerifier.Verify(Dir));
            Assert.Throws<DataDirectoryInUseException>(() => DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true }));
            foreach (var args in new[] { new[] { "inspect", Dir, "--json" }, ["verify", Dir, "--json"], ["recover", Dir, "--json"], ["compact", Dir, "--json"] })
            {
                var (code, stdout, _) = RunTool(args);
                Assert.Equal(3, code);
                using var doc = JsonDocument.Parse(stdout); // one JSON document and nothing else
                Assert.Equal("in-use", doc.RootElement.GetProperty("error").GetString());
                Assert.Contains("in use", doc.RootElement.GetProperty("message").GetString());
            }
            var (plainCode, plainOut, plainErr) = RunTool("verify", Dir);
            Assert.Equal(3, plainCode);
            Assert.Empty(plainOut);
            Assert.Contains(DataDirectoryLock.FileName, plainErr);
        }
        finally
        {
            host.Kill();
            host.WaitForExit();
        }
        // Once the holder is gone the tool works.
        var (okCode, okOut, _) = RunTool("verify", Dir, "--json");
        Assert.Equal(0, okCode);
        Assert.True(JsonDocument.Parse(okOut).RootElement.GetProperty("isClean").GetBoolean());
    }

    [Fact]
    public void Tool_VerifyAndRecover_ExitCodesAndJson()
    {
        WriteSamplePages();
        var bytes = File.ReadAllBytes(Segment(0));
        int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(0x0BADC0FFEE0DDF00UL));
        bytes[at] ^= 0x01;
        File.WriteAllBytes(Segment(0), bytes);

        var (code, stdout, _) = RunTool("verify", Dir, "--json");
        Assert.Equal(1, code);
        var problems = JsonDocument.Parse(stdout).RootElement.GetProperty("problems");
        Assert.Equal("BadRecord", problems[0].GetProperty("kind").GetString());
        var (plainCode, plainOut, _) = RunTool("verify", Dir);
        Assert.Equal(1, plainCode);
        Assert.Contains("DAMAGE BadRecord", plainOut);

        Assert.Equal(1, RunTool("recover", Dir).Code); // without the flag: reports, changes nothing
        Assert.Equal(bytes, File.ReadAllBytes(Segment(0)));
        var (recoverCode, recoverOut, _) = RunTool("recover", Dir, "--truncate-at-first-corruption", "--json");
        Assert.Equal(0, recoverCode);
        var report = JsonDocument.Parse(recoverOut).RootElement;
        Assert.True(report.GetProperty("truncated").GetBoolean());
        Assert.Equal(11, report.GetProperty("lostPages").GetArrayLength());
        Assert.Equal(0, RunTool("verify", Dir).Code);
        var inspect = JsonDocument.Parse(RunTool("inspect", Dir, "--json").Stdout).RootElement;
        Assert.Equal(50, inspect.GetProperty("livePages").GetInt64());
        Assert.Equal(2, RunTool("verify").Code); // usage
        Assert.Equal(4, RunTool("verify", Path.Combine(_root, "nothing-here")).Code); // refused
    }

    // ---- processes ---------------------------------------------------------------------------

    private static string Beside(string dll)
    {
        string path = Path.Combine(AppContext.BaseDirectory, dll);
        Assert.True(File.Exists(path), $"{path} is missing: the build copies it beside the tests");
        return path;
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } path && File.Exists(path) ? path
        : Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";

    private static Process StartProcess(string dll, params string[] args)
    {
        var info = new ProcessStartInfo(DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["NO_COLOR"] = "1";
        return Process.Start(info)!;
    }

    private static void WaitForLine(Process process, string prefix)
    {
        var task = Task.Run(() =>
        {
            while (process.StandardOutput.ReadLine() is { } line)
                if (line.StartsWith(prefix, StringComparison.Ordinal)) return true;
            return false;
        });
        Assert.True(task.Wait(TimeSpan.FromSeconds(60)) && task.Result, $"the process printed no {prefix}: {(process.HasExited ? process.StandardError.ReadToEnd() : "still running")}");
    }

    internal static (int Code, string Stdout, string Stderr) RunTool(params string[] args)
    {
        using var process = StartProcess(Beside("tmem-admin.dll"), args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), $"tmem-admin {string.Join(' ', args)} did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
