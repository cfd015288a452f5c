using System.Buffers.Binary;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// Log compaction on real FASTER logs with 16 MiB segments: live pages survive (in memory, after
/// a checkpointed reopen and after a full replay), dead records and whole segment files go, and
/// concurrent puts, gets and flushes never see a wrong or missing page.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class LogCompactionTests : IDisposable
{
    private const long Segment = 16L << 20;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-compact-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private TmemOptions Options(long ramBudget = 64L << 20, double liveFraction = 0, DurabilityMode mode = DurabilityMode.Relaxed, LogDeviceKind device = LogDeviceKind.File) => new()
    {
        LogDevice = device,
        DataDirectory = _dir,
        Durability = mode,
        RamBudgetBytes = ramBudget,
        LogSegmentSizeBytes = Segment,
        LogCompactionLiveFraction = liveFraction,
    };

    private string CheckpointFile => Path.Combine(_dir, "checkpoint", "index.ckpt");

    private string[] Segments() => Directory.GetFiles(Path.Combine(_dir, "log"), "segment.*");

    /// <summary>A page that names its handle and version in its first 16 bytes; the rest compresses to about half.</summary>
    private static byte[] Versioned(uint index, int version)
    {
        var page = WithRandomPrefix(4096, 0.5, (int)index * 7919 + version);
        BinaryPrimitives.WriteUInt32LittleEndian(page, index);
        BinaryPrimitives.WriteInt32LittleEndian(page.AsSpan(4), version);
        return page;
    }

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index)
    {
        var page = new byte[4096];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    /// <summary>Puts <paramref name="pages"/> pages, overwrites each <paramref name="rounds"/> more times and flushes every tenth: returns the expected contents.</summary>
    private static Dictionary<uint, byte[]?> Churn(TmemClient client, int pool, uint pages, int rounds)
    {
        var expected = new Dictionary<uint, byte[]?>();
        for (int round = 0; round <= rounds; round++)
        {
            for (uint i = 0; i < pages; i++)
            {
                var page = i % 50 == 0 ? SameFilled(4096, 0xAB00_0000_0000_0000UL + i + (ulong)round) : Versioned(i, round);
                Assert.Equal(PutStatus.Stored, client.Put(pool, Oid(1), i, page));
                expected[i] = page;
            }
        }
        for (uint i = 0; i < pages; i += 10)
        {
            Assert.True(client.FlushPage(pool, Oid(1), i));
            expected[i] = null;
        }
        return expected;
    }

    private static void AssertPages(TmemClient client, int pool, Dictionary<uint, byte[]?> expected)
    {
        foreach (var (index, page) in expected)
        {
            var got = Read(client, pool, Oid(1), index);
            if (page is null) Assert.Null(got);
            else Assert.True(page.AsSpan().SequenceEqual(got), $"page {index} differs");
        }
    }

    [Fact]
    public void Compact_AfterOverwriteChurn_KeepsEveryLivePageAndDeletesDeadSegments()
    {
        Dictionary<uint, byte[]?> expected;
        using (var store = TmemStore.Open(Options()))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            int shared = c.CreatePool(PoolOptions.Persistent with { SharedUuid = Guid.Parse("0b5e55ed-0000-4000-8000-000000000001") });
            var other = store.GetClient(2);
            int joined = other.CreatePool(PoolOptions.Persistent with { SharedUuid = Guid.Parse("0b5e55ed-0000-4000-8000-000000000001") });
            int doomed = c.CreatePool(PoolOptions.Persistent);
            Assert.Equal(PutStatus.Stored, c.Put(doomed, Oid(9), 0, Versioned(0, 0)));
            c.DestroyPool(doomed);
            Assert.Equal(PutStatus.Stored, c.Put(shared, Oid(5), 1, Versioned(1, 77)));

            expected = Churn(c, p, 4000, 5); // ~6 x 4000 x ~2 KiB = ~50 MiB of log, ~8 MiB live
            var before = store.GetStats();
            Assert.True(before.LogBytes > 3 * Segment, $"log bytes {before.LogBytes}");
            Assert.True(before.LogLiveBytes < before.LogBytes / 3);

            var result = store.CompactLog(force: true)!;
            Assert.True(result.BeginAfter > result.BeginBefore);
            Assert.True(result.CopiedRecords > 0);
            var after = store.GetStats();
            Assert.Equal(1, after.LogCompactions);
            Assert.True(after.LogBytes < 2 * after.LogLiveBytes, $"log {after.LogBytes} live {after.LogLiveBytes}");
            AssertPages(c, p, expected);
            Assert.Equal(Versioned(1, 77), Read(other, joined, Oid(5), 1));
            // FASTER deletes the segments below the new begin address after the truncation commit.
            long firstLive = result.BeginAfter / Segment;
            Assert.True(SpinWait.SpinUntil(() => Segments().All(f => long.Parse(Path.GetExtension(f).AsSpan(1)) >= firstLive), 5000),
                $"segments below {firstLive} remain: {string.Join(", ", Segments().Select(Path.GetFileName))}");
            // The log's files (the space reserve is counted apart, in log_reserve_bytes).
            Assert.True(store.GetStats().LogDiskBytes <= 2 * after.LogLiveBytes + Segment);
        }

        // With the checkpoint compaction wrote (and the one on close) ...
        using (var store = TmemStore.Open(Options(), out var report))
        {
            Assert.NotNull(report.CheckpointCoveredUntil);
            Assert.Null(report.CheckpointProblem);
            AssertPages(store.GetClient(1), 0, expected);
            Assert.Equal(Versioned(1, 77), Read(store.GetClient(2), 0, Oid(5), 1));
            Assert.Equal(2, store.GetClient(1).GetPools().Count); // the destroyed pool stays gone
        }
        // ... and by replaying the compacted log alone: the relocated pool records come first.
        File.Delete(CheckpointFile);
        using (var store = TmemStore.Open(Options(), out var report))
        {
            Assert.Null(report.CheckpointCoveredUntil);
            Assert.True(report.BeginAddress > 0);
            AssertPages(store.GetClient(1), 0, expected);
            Assert.Equal(Versioned(1, 77), Read(store.GetClient(2), 0, Oid(5), 1));
            Assert.Equal(2, store.GetClient(1).GetPools().Count);
            Assert.Single(store.GetClient(2).GetPools());
            Assert.Equal(2, store.GetClient(1).CreatePool(PoolOptions.Ephemeral)); // the destroyed pool's id is free
        }
    }

    [Fact]
    public void Compact_InterruptedBeforeTruncation_ReplaysToTheSameState()
    {
        // Copies appended and committed but the log not truncated (as after a crash between the
        // two): the original records and the copies both replay, and the copies restate the same pages.
        Dictionary<uint, byte[]?> expected;
        long begin;
        var options = Options();
        options.Diagnostics = new();
        using (var store = TmemStore.Open(options, out var first))
        {
            begin = first.BeginAddress;
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            expected = Churn(c, p, 2000, 3);
            // Stop compaction after its copies are committed, just before it would truncate.
            store.Diagnostics!.CompactionStageHook = stage =>
            {
                if (stage == "before-truncate") throw new IOException("simulated crash before truncation");
            };
            Assert.Throws<IOException>(() => store.CompactLog(force: true));
            store.Diagnostics.CompactionStageHook = null;
            Assert.Equal(0, store.GetStats().LogTruncatedBytes);
            AssertPages(c, p, expected);
            // A cancelled compaction stops before truncating too (its base and pool records stay).
            using var cancel = new CancellationTokenSource();
            cancel.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => store.CompactLog(force: true, cancel.Token));
            Assert.Equal(0, store.GetStats().LogTruncatedBytes);
            expected[1] = Versioned(1, 1000);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 1, expected[1]!));
        }
        File.Delete(CheckpointFile);
        using (var store = TmemStore.Open(Options(), out var report))
        {
            Assert.Equal(begin, report.BeginAddress);
            AssertPages(store.GetClient(1), 0, expected);
        }
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)] // spilled gets decode straight from the mapping while segments go
    public async Task Compact_UnderConcurrentPutsGetsAndFlushesOfSpilledPages_NeverLosesOrMixesAPage(LogDeviceKind device)
    {
        // A RAM budget far under the live data: most pages are spilled and read from the log, so
        // gets race with compaction moving their records and truncating the old ones.
        const int Writers = 24; // async: many puts in flight share each commit
        const uint PagesPerWriter = 200;
        var options = Options(ramBudget: 2L << 20, mode: DurabilityMode.Strict, device: device);
        var expected = new Dictionary<uint, byte[]?>[Writers];
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            using var stop = new CancellationTokenSource();
            var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                var mine = expected[w] = new Dictionary<uint, byte[]?>();
                var random = new Random(w);
                var buffer = new byte[4096];
                for (int version = 0; !stop.IsCancellationRequested || version < 3; version++)
                {
                    for (uint k = 0; k < PagesPerWriter; k++)
                    {
                        uint index = (uint)w * PagesPerWriter + k;
                        if (random.Next(20) == 0)
                        {
                            await c.FlushPageAsync(p, Oid(1), index);
                            mine[index] = null;
                        }
                        else
                        {
                            var page = Versioned(index, version);
                            if (await c.PutAsync(p, Oid(1), index, page) != PutStatus.Stored) failures.Enqueue($"put {index} refused");
                            mine[index] = page;
                        }
                        // Read back one of this writer's own pages: it must be exactly the last value.
                        uint probe = (uint)w * PagesPerWriter + (uint)random.Next((int)PagesPerWriter);
                        if (mine.TryGetValue(probe, out var want))
                        {
                            bool hit = c.Get(p, Oid(1), probe, buffer) == GetStatus.Hit;
                            if (want is null ? hit : !hit || !want.AsSpan().SequenceEqual(buffer))
                                failures.Enqueue($"page {probe}: expected {(want is null ? "miss" : "version " + BinaryPrimitives.ReadInt32LittleEndian(want.AsSpan(4)))}, got {(hit ? "version " + BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(4)) : "miss")}");
                        }
                    }
                }
            })).ToArray();

            int compactions = 0;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (compactions < 4 && DateTime.UtcNow < deadline && !writers.Any(t => t.IsFaulted))
            {
                var stats = store.GetStats();
                if (stats.LogBytes > stats.LogLiveBytes + (6L << 20) && store.CompactLog(force: true) is not null) compactions++;
                else await Task.Delay(50);
            }
            stop.Cancel();
            await Task.WhenAll(writers);
            Assert.Empty(failures);
            Assert.True(compactions >= 3, $"only {compactions} compactions ran");
            Assert.True(store.GetStats().PersSpilledPages > 0);
            Assert.True(store.GetStats().LogTruncatedBytes > 0);
            foreach (var mine in expected) AssertPages(c, p, mine);
        }
        File.Delete(CheckpointFile);
        using (var store = TmemStore.Open(options))
            foreach (var mine in expected) AssertPages(store.GetClient(1), 0, mine);
    }

    [Fact]
    public void AutoCompaction_UnderOverwriteChurn_KeepsTheLogNearItsLiveData()
    {
        using var store = TmemStore.Open(Options(liveFraction: 0.6));
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        var expected = Churn(c, p, 3000, 12);
        Assert.True(SpinWait.SpinUntil(() => store.GetStats().LogCompactions > 0, 20_000), "no compaction started on its own");
        // Let a compaction that is running finish, then check the bound it keeps.
        SpinWait.SpinUntil(() => store.CompactLog() is null && store.GetStats().LogBytes < 2 * store.GetStats().LogLiveBytes + 2 * Segment, 20_000);
        var stats = store.GetStats();
        Assert.Equal(0, stats.LogCompactionFailures);
        Assert.True(stats.LogBytes <= 2 * stats.LogLiveBytes + 2 * Segment, $"log {stats.LogBytes} live {stats.LogLiveBytes}");
        AssertPages(c, p, expected);
    }
}
