using Tmem.Durability;
using Tmem.LogTier;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// A durable store (data directory, FASTER log) closed and reopened in-process: what comes back,
/// what does not, and how damage is refused. Killing a real process is in CrashTests.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class DurableStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-durable-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private TmemStore Open(DurabilityMode mode = DurabilityMode.Strict) =>
        TmemStore.Open(new TmemOptions { DataDirectory = _dir, Durability = mode, RamBudgetBytes = 64L << 20 });

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index, int pageSize = 4096)
    {
        var page = new byte[pageSize];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    [Theory]
    [InlineData(DurabilityMode.Strict)]
    [InlineData(DurabilityMode.Relaxed)]
    public async Task Reopen_PersistentPoolsAndPages_ComeBackUnderTheSameIds(DurabilityMode mode)
    {
        var pages = Enumerable.Range(0, 40).Select(i => i % 5 == 0 ? SameFilled(4096, 0x1122334455667700UL + (ulong)i) : Compressible(4096, i)).ToArray();
        var big = Compressible(16384, 99);
        using (var store = Open(mode))
        {
            var a = store.GetClient(1);
            var b = store.GetClient(7);
            Assert.Equal(0, a.CreatePool(PoolOptions.Ephemeral));
            Assert.Equal(1, a.CreatePool(PoolOptions.Persistent));
            Assert.Equal(0, b.CreatePool(PoolOptions.Persistent with { PageSize = 16384, ExclusiveGets = true }));
            for (int i = 0; i < pages.Length; i++)
                Assert.Equal(PutStatus.Stored, await a.PutAsync(1, Oid(i / 8), (uint)i, pages[i]));
            Assert.Equal(PutStatus.Stored, a.Put(0, Oid(1), 0, pages[1]));
            Assert.Equal(PutStatus.Stored, b.Put(0, Oid(3), 9, big));
        }

        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, Durability = mode }, out var report))
        {
            Assert.Equal(2, report.PoolsRecovered);
            Assert.Equal(41, report.PagesRecovered);
            var a = store.GetClient(1);
            var b = store.GetClient(7);
            var pools = a.GetPools();
            var only = Assert.Single(pools); // the ephemeral pool 0 is not recovered
            Assert.Equal(1, only.PoolId);
            Assert.Equal(PoolKind.Persistent, only.Kind);
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(a, 1, Oid(i / 8), (uint)i));
            var bPool = Assert.Single(b.GetPools());
            Assert.True(bPool.ExclusiveGets);
            Assert.Equal(16384, bPool.PageSize);
            Assert.Equal(big, Read(b, 0, Oid(3), 9, 16384));
            Assert.Null(Read(b, 0, Oid(3), 9, 16384)); // exclusive get removed it ...
            Assert.Equal(0, a.CreatePool(PoolOptions.Ephemeral)); // ... and the free id 0 is reused
        }
        using (var store = Open(mode))
        {
            // ... durably: an exclusive get in a persistent pool logs the removal too.
            Assert.Null(Read(store.GetClient(7), 0, Oid(3), 9, 16384));
        }
    }

    [Fact]
    public void Reopen_FlushesAndFailedPuts_StayFlushed()
    {
        using (var store = Open())
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            for (uint i = 0; i < 10; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
            for (uint i = 0; i < 10; i++) c.Put(p, Oid(2), i, Compressible(4096, 100 + (int)i));
            c.Put(p, Oid(3), 0, Compressible(4096, 200));
            Assert.True(c.FlushPage(p, Oid(1), 4));
            Assert.Equal(10, c.FlushObject(p, Oid(2)));
            // A put that fails over an existing page flushes it, durably.
            Assert.Equal(PutStatus.RejectedPoorCompression, c.Put(p, Oid(3), 0, TestPages.Random(4096, 5)));
            // Replaced pages come back as their last version.
            c.Put(p, Oid(1), 5, Compressible(4096, 555));
        }
        using (var store = Open())
        {
            var c = store.GetClient(1);
            Assert.Null(Read(c, 0, Oid(1), 4));
            Assert.Equal(Compressible(4096, 555), Read(c, 0, Oid(1), 5));
            Assert.Equal(Compressible(4096, 3), Read(c, 0, Oid(1), 3));
            for (uint i = 0; i < 10; i++) Assert.Null(Read(c, 0, Oid(2), i));
            Assert.Null(Read(c, 0, Oid(3), 0));
            Assert.Equal(9, store.GetStats().PersPages);
        }
    }

    [Fact]
    public void Reopen_DestroyedPool_IsGoneAndSharedPoolsKeepTheirMembers()
    {
        var uuid = Guid.NewGuid();
        using (var store = Open())
        {
            var a = store.GetClient(1);
            var b = store.GetClient(2);
            int gone = a.CreatePool(PoolOptions.Persistent);
            a.Put(gone, Oid(1), 0, Compressible(4096, 1));
            int sharedA = a.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid });
            int sharedB = b.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid });
            a.Put(sharedA, Oid(1), 1, Compressible(4096, 2));
            a.DestroyPool(gone);
            a.DestroyPool(sharedA); // a leaves; b still holds the shared pool
            Assert.Equal(0, sharedA - 1);
            Assert.Equal(0, sharedB);
        }
        using (var store = Open())
        {
            var a = store.GetClient(1);
            var b = store.GetClient(2);
            Assert.Empty(a.GetPools());
            var shared = Assert.Single(b.GetPools());
            Assert.Equal(uuid, shared.SharedUuid);
            Assert.Equal(Compressible(4096, 2), Read(b, shared.PoolId, Oid(1), 1));
            // a rejoins; then both leave and the pool is gone for good.
            int again = a.CreatePool(PoolOptions.Persistent with { SharedUuid = uuid });
            Assert.Equal(Compressible(4096, 2), Read(a, again, Oid(1), 1));
            a.DestroyPool(again);
            b.DestroyPool(shared.PoolId);
        }
        using (var store = Open())
        {
            Assert.Equal(0, store.GetStats().Pools);
            Assert.Equal(0, store.GetStats().PersPages);
        }
    }

    [Fact]
    public void Reopen_WithAnotherSegmentSize_KeepsTheSizeTheDirectoryWasCreatedWith()
    {
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, LogSegmentSizeBytes = 16L << 20 }))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            // ~18 MiB of log: the second segment file exists only if the directory's size is used.
            for (uint i = 0; i < 8000; i++) Assert.Equal(PutStatus.Stored, c.Put(p, Oid(2), i, WithRandomPrefix(4096, 0.55, (int)i)));
        }
        Assert.Contains("segment_size 16777216", File.ReadAllText(Path.Combine(_dir, "format")));
        Assert.True(File.Exists(Path.Combine(_dir, "log", "segment.1")));
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, LogSegmentSizeBytes = 256L << 20 }))
        {
            var c = store.GetClient(1);
            for (uint i = 0; i < 8000; i += 97) Assert.Equal(WithRandomPrefix(4096, 0.55, (int)i), Read(c, 0, Oid(2), i));
        }
        Assert.Contains("segment_size 16777216", File.ReadAllText(Path.Combine(_dir, "format")));
    }

    [Theory]
    [InlineData("format 9\nsegment_size 67108864\n", "format 9")]
    [InlineData("format 1\n", "segment_size")]
    [InlineData("format 1\nsegment_size 1000\n", "segment_size")]
    public void Open_DamagedFormatFile_FailsNamingIt(string content, string named)
    {
        WriteSamplePages();
        File.WriteAllText(Path.Combine(_dir, "format"), content);
        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.Contains(Path.Combine(_dir, "format"), e.Message);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void Open_DirectoryInUse_IsRefusedUntilTheOwnerCloses()
    {
        using (var store = Open())
        {
            var e = Assert.Throws<IOException>(() => Open());
            Assert.Contains(_dir, e.Message);
            Assert.Contains("in use", e.Message);
        }
        using (Open())
        {
        }
    }

    [Fact]
    public void TmemStoreOpen_OpensMemoryOnlyOrDurable_FromTheOptions_WithAReport()
    {
        using (var memory = TmemStore.Open(new TmemOptions(), out var none))
        {
            Assert.False(memory.IsDurable);
            Assert.Null(none.DataDirectory);
            Assert.Equal(0, none.RecordsReplayed);
        }
        using (var durable = TmemStore.Open(new TmemOptions { DataDirectory = _dir }, out var report))
        {
            Assert.True(durable.IsDurable);
            Assert.Equal(Path.GetFullPath(_dir), report.DataDirectory);
            durable.GetClient(1).CreatePool(PoolOptions.Persistent);
        }
        using var reopened = TmemStore.Open(new TmemOptions { DataDirectory = _dir }, out var second);
        Assert.Equal(1, second.PoolsRecovered);
    }

    private void WriteSamplePages()
    {
        using var store = Open();
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        for (uint i = 0; i < 50; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
        c.Put(p, Oid(2), 0, SameFilled(4096, 0x0BADC0FFEE0DDF00UL));
        for (uint i = 50; i < 60; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
    }

    private string Segment0 => Path.Combine(_dir, "log", "segment.0");

    private string CheckpointFile => Path.Combine(_dir, "checkpoint", "index.ckpt");

    private int FlipPatternByte()
    {
        var bytes = File.ReadAllBytes(Segment0);
        // The same-filled page's payload is its 8-byte pattern: find it and damage it.
        int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(0x0BADC0FFEE0DDF00UL));
        Assert.True(at > 0);
        bytes[at + 3] ^= 0x10;
        File.WriteAllBytes(Segment0, bytes);
        return at;
    }

    [Fact]
    public void Open_BitFlipInACommittedRecordWithoutCheckpoint_FailsNamingItsAddress()
    {
        WriteSamplePages();
        File.Delete(CheckpointFile); // replay reads every record
        int at = FlipPatternByte();
        var damaged = File.ReadAllBytes(Segment0);
        var commit = File.ReadAllBytes(Path.Combine(_dir, "commits", "log.commit"));
        var files = Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Order().ToArray();

        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.InRange(e.LogAddress, at - 4 - 48 - 64, at); // the record's address, within a header of the payload
        Assert.Contains("checksum", e.Message);
        Assert.Contains($"address {e.LogAddress}", e.Message);
        Assert.Contains("offline recovery tool", e.Message);
        // Nothing was changed: the damaged byte is still there, no commit was written, no file
        // came or went (the lock file aside), and the lock was let go.
        Assert.Equal(damaged, File.ReadAllBytes(Segment0));
        Assert.Equal(commit, File.ReadAllBytes(Path.Combine(_dir, "commits", "log.commit")));
        Assert.Equal(files, Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Order().ToArray());
        using (DataDirectoryLock.Acquire(_dir))
        {
        }
    }

    [Fact]
    public void Get_BitFlipInARecordACheckpointIndexes_FailsNamingItsAddress()
    {
        WriteSamplePages();
        Assert.True(File.Exists(CheckpointFile));
        // Damage the Put record of page (1, 7): find its compressed bytes in the segment.
        var target = new byte[8192];
        int length = K4os.Compression.LZ4.LZ4Codec.Encode(Compressible(4096, 7), target, K4os.Compression.LZ4.LZ4Level.L00_FAST);
        var bytes = File.ReadAllBytes(Segment0);
        int at = bytes.AsSpan().IndexOf(target.AsSpan(0, length));
        Assert.True(at > 0);
        bytes[at + length / 2] ^= 0x04;
        File.WriteAllBytes(Segment0, bytes);

        using var store = Open(); // the checkpoint indexes the page: open does not read the record
        var c = store.GetClient(1);
        var e = Assert.Throws<TmemCorruptionException>(() => Read(c, 0, Oid(1), 7));
        Assert.InRange(e.LogAddress, at - 4 - 48, at);
        Assert.Contains($"address {e.LogAddress}", e.Message);
        Assert.Equal(Compressible(4096, 3), Read(c, 0, Oid(1), 3)); // the rest reads fine
    }

    [Fact]
    public void Open_SegmentTruncatedMidRecord_Fails()
    {
        WriteSamplePages();
        long length = DataLength(Segment0);
        using (var file = new FileStream(Segment0, FileMode.Open)) file.SetLength(length / 2 + 1000);
        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.InRange(e.LogAddress, 64, length / 2 + 1000);
        Assert.Equal(length / 2 + 1000, new FileInfo(Segment0).Length); // not extended, nothing changed
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public void Open_RecordsZeroedInsideAPage_FailsInsteadOfSkippingThem(LogDeviceKind device)
    {
        // FasterLog reads a zero length as page padding and skips to the next page: zeroed
        // records below the commit point would vanish without a word.
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, LogDevice = device }))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            for (uint i = 0; i < 20; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
            c.Put(p, Oid(2), 0, SameFilled(4096, 0x0BADC0FFEE0DDF00UL));
            // More than a 4 MiB FasterLog page after it, so the scan resumes past the zeros.
            for (uint i = 20; i < 3000; i++) c.Put(p, Oid(1), i, WithRandomPrefix(4096, 0.5, (int)i));
        }
        File.Delete(CheckpointFile);
        var bytes = File.ReadAllBytes(Segment0);
        int pattern = bytes.AsSpan().IndexOf(BitConverter.GetBytes(0x0BADC0FFEE0DDF00UL));
        int entry = pattern - LogRecord.HeaderSize - 4; // the same-filled Put's FasterLog entry
        bytes.AsSpan(entry, 3000).Clear();
        File.WriteAllBytes(Segment0, bytes);

        var e = Assert.Throws<TmemCorruptionException>(() => TmemStore.Open(new TmemOptions { DataDirectory = _dir, LogDevice = device }));
        Assert.Equal(entry, e.LogAddress);
        Assert.Contains("zeroed", e.Message);
        // The offline tool's verify sees it too.
        var verify = Tmem.Recovery.Offline.DataDirectoryVerifier.Verify(_dir);
        Assert.False(verify.IsClean);
        Assert.Contains(verify.Problems, p => p.Severity == Tmem.Recovery.Offline.ProblemSeverity.Damage && p.Address == entry);
    }

    [Fact]
    public void Open_SegmentFileDeleted_FailsInsteadOfOpeningEmpty()
    {
        WriteSamplePages();
        File.Delete(Segment0);
        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.Contains("segment.0", e.Message);
        Assert.Contains("Nothing was changed", e.Message);
        Assert.False(File.Exists(Segment0)); // the device did not create an empty one in its place
    }

    /// <summary>About 20 MiB of pages in 16 MiB segments (segments 0 and 1), closed with a checkpoint covering the whole log.</summary>
    private void WriteTwoSegments(LogDeviceKind device)
    {
        var options = new TmemOptions { DataDirectory = _dir, LogDevice = device, LogSegmentSizeBytes = 16L << 20, Durability = DurabilityMode.Relaxed };
        using var store = TmemStore.Open(options);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        for (int i = 0; i < 9000; i++) c.Put(p, Oid(i / 64), (uint)(i % 64), WithRandomPrefix(4096, 0.55, i));
    }

    /// <summary>The open fails naming <paramref name="file"/>, and changes no file.</summary>
    private void AssertOpenRefusedNaming(string file)
    {
        var files = Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != DataDirectoryLock.FileName).ToDictionary(f => f, File.ReadAllBytes);
        var e = Assert.Throws<TmemCorruptionException>(() => TmemStore.Open(new TmemOptions { DataDirectory = _dir }));
        Assert.Contains(file, e.Message);
        Assert.Contains("Nothing was changed", e.Message);
        Assert.Equal(files.Keys.Order(), Directory.GetFiles(_dir, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != DataDirectoryLock.FileName).Order());
        foreach (var (path, bytes) in files) Assert.Equal(bytes, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public void Open_LastSegmentShorterThanTheCommitPoint_WithACheckpoint_FailsNamingIt(LogDeviceKind device)
    {
        WriteTwoSegments(device);
        string last = Path.Combine(_dir, "log", "segment.1");
        using (var file = new FileStream(last, FileMode.Open)) file.SetLength(DataLength(last) / 2);
        AssertOpenRefusedNaming(last);
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public void Open_EarlierSegmentShorterThanASegment_WithACheckpoint_FailsNamingIt(LogDeviceKind device)
    {
        // The checkpoint covers the whole log, so the open replays nothing from segment 0: it
        // opened, and gets of pages in the lost part failed later.
        WriteTwoSegments(device);
        string first = Path.Combine(_dir, "log", "segment.0");
        Assert.Equal(16L << 20, new FileInfo(first).Length); // a whole segment, whichever device wrote it
        using (var file = new FileStream(first, FileMode.Open)) file.SetLength((16L << 20) - 3 * 4096);
        AssertOpenRefusedNaming(first);
        var verify = Tmem.Recovery.Offline.DataDirectoryVerifier.Verify(_dir);
        Assert.Contains(verify.Problems, p => p.Kind == Tmem.Recovery.Offline.ProblemKind.TruncatedSegment && p.File == first);
    }

    [Fact]
    public void Open_CheckpointAheadOfTheCommitMetadata_FailsNamingBoth()
    {
        // A commit file older than the checkpoint (later commits lost: a restored file, a disk
        // that acknowledged writes it never made) used to open from the older commit with a full
        // replay, dropping acknowledged operations.
        byte[] oldCommits;
        string commitFile = Path.Combine(_dir, "commits", "log.commit");
        using (var store = Open())
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            for (uint i = 0; i < 10; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
            using (var f = new FileStream(commitFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                oldCommits = new byte[f.Length];
                f.ReadExactly(oldCommits);
            }
            Assert.Equal(10, c.FlushObject(p, Oid(1)));
        }
        File.WriteAllBytes(commitFile, oldCommits);
        AssertOpenRefusedNaming(CheckpointFile);
        Assert.Contains("log.commit", Assert.Throws<TmemCorruptionException>(() => Open()).Message);
    }

    [Fact]
    public void Open_CommitMetadataDeleted_FailsInsteadOfOpeningEmpty()
    {
        WriteSamplePages();
        foreach (var file in Directory.GetFiles(Path.Combine(_dir, "commits"), "*", SearchOption.AllDirectories)) File.Delete(file);
        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.Contains("commit metadata", e.Message);
    }

    [Theory]
    [InlineData(16)] // begin address
    [InlineData(24)] // until (committed) address
    public void Open_CommitMetadataAddressesDamaged_Fails(int fieldOffset)
    {
        // FASTER adopts the begin/until fields of a commit file even when its checksum fails;
        // recovery must notice that they do not fit the segment files.
        WriteSamplePages();
        var commit = Path.Combine(_dir, "commits", "log.commit");
        var bytes = File.ReadAllBytes(commit);
        // Each 4 KiB slot: 24-byte header, then FASTER's metadata (begin and until addresses at 12 and 20).
        foreach (int slot in new[] { 0, 4096 })
            BitConverter.TryWriteBytes(bytes.AsSpan(slot + 24 + fieldOffset - 4, 8), 0x5A5A_5A5A_5A5AL);
        File.WriteAllBytes(commit, bytes);
        var e = Assert.Throws<TmemCorruptionException>(() => Open());
        Assert.Contains("log.commit", e.Message);
        Assert.Equal(bytes, File.ReadAllBytes(commit)); // nothing was changed
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public async Task Spill_PersistentDataOverTheRamBudget_IsReadBackFromTheLog(LogDeviceKind device)
    {
        const long budget = 128 * 1024;
        var options = new TmemOptions { DataDirectory = _dir, RamBudgetBytes = budget, LogDevice = device, Diagnostics = new() };
        var pages = Enumerable.Range(0, 400).Select(i => Compressible(4096, i)).ToArray(); // ~4x the budget compressed
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            int e = c.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
            for (int i = 0; i < pages.Length; i++)
                Assert.Equal(PutStatus.Stored, await c.PutAsync(p, Oid(i / 50), (uint)i, pages[i]));
            var stats = store.GetStats();
            Assert.Equal(pages.Length, stats.PersPages);
            Assert.True(stats.PersSpilledPages > pages.Length / 2, $"{stats.PersSpilledPages} spilled");
            Assert.InRange(stats.RamSlotBytes, 0, budget);
            // Ephemeral puts still find room: spilling makes it.
            Assert.Equal(PutStatus.Stored, c.Put(e, Oid(1), 0, pages[0]));
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, p, Oid(i / 50), (uint)i));
            // The mapped device serves spilled pages from its mapping, not through FasterLog.
            Assert.Equal(device == LogDeviceKind.Mapped, store.Diagnostics!.DirectReadCount > 0);
        }
        using (var store = TmemStore.Open(options, out var report))
        {
            // Recovery indexes what does not fit as spilled instead of failing or dropping it.
            Assert.Equal(pages.Length, report.PagesRecovered);
            Assert.True(store.GetStats().PersSpilledPages > 0);
            Assert.InRange(store.GetStats().RamSlotBytes, 0, budget);
            var c = store.GetClient(1);
            for (int i = 0; i < pages.Length; i++) Assert.Equal(pages[i], Read(c, 0, Oid(i / 50), (uint)i));
        }
    }

    [Fact]
    public void Spill_ExclusiveGetOfASpilledPage_TakesItDurably()
    {
        var options = new TmemOptions { DataDirectory = _dir, RamBudgetBytes = 64 * 1024 };
        var pages = Enumerable.Range(0, 200).Select(i => Compressible(4096, i)).ToArray();
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent with { ExclusiveGets = true });
            for (int i = 0; i < pages.Length; i++) Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), (uint)i, pages[i]));
            Assert.True(store.GetStats().PersSpilledPages > 0);
            for (int i = 0; i < pages.Length; i += 2)
            {
                Assert.Equal(pages[i], Read(c, p, Oid(1), (uint)i));
                Assert.Null(Read(c, p, Oid(1), (uint)i));
            }
            Assert.Equal(pages.Length / 2, store.GetStats().PersPages);
        }
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            for (int i = 0; i < pages.Length; i++)
                Assert.Equal(i % 2 == 0 ? null : pages[i], Read(c, 0, Oid(1), (uint)i));
        }
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public void Spill_ConcurrentPutsGetsAndFlushes_NeverReturnAWrongPage(LogDeviceKind device)
    {
        var options = new TmemOptions { DataDirectory = _dir, RamBudgetBytes = 64 * 1024, LogDevice = device };
        using var store = TmemStore.Open(options);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        // Each page's bytes name its handle and version; a get must return the handle's own bytes.
        static byte[] PageOf(int handle, int version) => Compressible(4096, handle * 1000 + version);
        var versions = new int[256];
        var present = new bool[256];
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            var page = new byte[4096];
            for (int n = 0; n < 1500; n++)
            {
                int h = random.Next(64) * 4 + t; // each thread owns its handles, so it knows their state
                switch (random.Next(4))
                {
                    case 0:
                    case 1:
                        if (c.Put(p, Oid(h), 0, PageOf(h, ++versions[h])) != PutStatus.Stored) errors.Enqueue($"put {h} refused");
                        present[h] = true;
                        break;
                    case 2:
                        var status = c.Get(p, Oid(h), 0, page);
                        if ((status == GetStatus.Hit) != present[h]) errors.Enqueue($"get {h}: {status}, expected hit {present[h]}");
                        else if (present[h] && !page.AsSpan().SequenceEqual(PageOf(h, versions[h]))) errors.Enqueue($"get {h}: wrong bytes");
                        break;
                    default:
                        if (c.FlushPage(p, Oid(h), 0) != present[h]) errors.Enqueue($"flush {h}: expected found {present[h]}");
                        present[h] = false;
                        break;
                }
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join();
        Assert.Empty(errors);
        Assert.True(store.GetStats().PersSpilledPages > 0);
    }

    [Fact]
    public void Checkpoint_OnClose_ReopensWithoutReplayAndEveryPageReads()
    {
        WriteSamplePages();
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir }, out var report);
        Assert.NotNull(report.CheckpointCoveredUntil);
        Assert.Null(report.CheckpointProblem);
        Assert.Equal(0, report.RecordsReplayed);
        Assert.Equal(61, report.PagesRecovered);
        var c = store.GetClient(1);
        for (uint i = 0; i < 60; i++) Assert.Equal(Compressible(4096, (int)i), Read(c, 0, Oid(1), i));
        Assert.Equal(SameFilled(4096, 0x0BADC0FFEE0DDF00UL), Read(c, 0, Oid(2), 0));
    }

    [Fact]
    public void Checkpoint_ThenMoreOperations_RecoveryReplaysOnlyTheSuffix()
    {
        string copy = _dir + "-crashed";
        try
        {
            using (var store = Open())
            {
                var c = store.GetClient(1);
                int p = c.CreatePool(PoolOptions.Persistent);
                for (uint i = 0; i < 30; i++) c.Put(p, Oid(1), i, Compressible(4096, (int)i));
                Assert.Equal(30, store.Checkpoint());
                // After the checkpoint: a replacement, a flush, a new pool, a destroyed pool.
                c.Put(p, Oid(1), 0, Compressible(4096, 500));
                c.FlushPage(p, Oid(1), 1);
                int q = c.CreatePool(PoolOptions.Persistent);
                c.Put(q, Oid(9), 9, Compressible(4096, 9));
                int r = c.CreatePool(PoolOptions.Persistent);
                c.Put(r, Oid(8), 8, Compressible(4096, 8));
                c.DestroyPool(r);
                // A copy of the directory now is what a crash leaves: the checkpoint and the log after it.
                CopyDirectory(_dir, copy);
            }
            using var recovered = TmemStore.Open(new TmemOptions { DataDirectory = copy }, out var report);
            Assert.NotNull(report.CheckpointCoveredUntil);
            Assert.InRange(report.RecordsReplayed, 6, 10);
            var c2 = recovered.GetClient(1);
            Assert.Equal(Compressible(4096, 500), Read(c2, 0, Oid(1), 0));
            Assert.Null(Read(c2, 0, Oid(1), 1));
            Assert.Equal(Compressible(4096, 2), Read(c2, 0, Oid(1), 2));
            Assert.Equal(Compressible(4096, 9), Read(c2, 1, Oid(9), 9));
            Assert.Equal([0, 1], c2.GetPools().Select(p => p.PoolId).ToArray());
            Assert.Equal(2, c2.CreatePool(PoolOptions.Persistent)); // serials and ids continue correctly
        }
        finally
        {
            if (Directory.Exists(copy)) Directory.Delete(copy, recursive: true);
        }
    }

    [Fact]
    public void Checkpoint_Damaged_FallsBackToFullReplay()
    {
        WriteSamplePages();
        var bytes = File.ReadAllBytes(CheckpointFile);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(CheckpointFile, bytes);
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir }, out var report);
        Assert.Null(report.CheckpointCoveredUntil);
        Assert.Contains("damaged", report.CheckpointProblem);
        Assert.True(report.RecordsReplayed > 60);
        Assert.Equal(61, report.PagesRecovered);
        Assert.Equal(Compressible(4096, 59), Read(store.GetClient(1), 0, Oid(1), 59));
    }

    [Fact]
    public void Checkpoint_Truncated_FallsBackToFullReplay()
    {
        WriteSamplePages();
        var bytes = File.ReadAllBytes(CheckpointFile);
        File.WriteAllBytes(CheckpointFile, bytes.AsSpan(0, bytes.Length - 100).ToArray());
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir }, out var report);
        Assert.Null(report.CheckpointCoveredUntil);
        Assert.NotNull(report.CheckpointProblem);
        Assert.Equal(61, report.PagesRecovered);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            if (Path.GetFileName(file) == DataDirectoryLock.FileName) continue; // held by the live store
            using var source = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var target = File.Create(file.Replace(from, to));
            source.CopyTo(target);
        }
    }

    [Fact]
    public async Task Relaxed_CommitAsync_CommitsAtOnce_NotAtTheNextInterval_ForConcurrentCallersToo()
    {
        // A minute between interval commits: only CommitAsync's own commit can end these waits in time.
        await using var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, Durability = DurabilityMode.Relaxed, CommitIntervalMs = 60_000, RamBudgetBytes = 64L << 20 });
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        for (int round = 0; round < 3; round++)
        {
            for (uint i = 0; i < 16; i++) Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId(7), (uint)(round * 16) + i, Compressible(4096, (int)i)));
            Assert.True(store.UncommittedLogBytes > 0, "Relaxed puts were committed before anyone asked");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => store.CommitAsync().AsTask())).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(0, store.UncommittedLogBytes);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"CommitAsync took {clock.Elapsed}");
        }
        await store.CommitAsync(); // nothing appended: at once
    }

    [Fact]
    public async Task Relaxed_ManyConcurrentPutAsyncOutrunningTheDevice_AllComplete()
    {
        // Acknowledged on append, 64 writers outrun the device and fill FasterLog's buffer; they
        // must wait for room without starving the thread pool that completes its writes (this
        // hung with 16 writers on two cores). A liveness check, with a generous bound.
        var options = new TmemOptions { DataDirectory = _dir, Durability = DurabilityMode.Relaxed, RamBudgetBytes = 256L << 20 };
        const int count = 12_000;
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            var pages = Enumerable.Range(0, 64).Select(i => Compressible(4096, i)).ToArray();
            int next = -1;
            var writers = Enumerable.Range(0, 64).Select(_ => Task.Run(async () =>
            {
                for (int i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
                    Assert.Equal(PutStatus.Stored, await c.PutAsync(p, Oid(i / 64), (uint)(i % 64), pages[i % 64]));
            })).ToArray();
            var all = Task.WhenAll(writers);
            Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(60))));
            await all;
        }
        using (var store = TmemStore.Open(options, out var report))
            Assert.Equal(count, report.PagesRecovered); // closing commits Relaxed's last window
    }
}
