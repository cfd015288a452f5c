using System.Collections.Concurrent;
using System.Diagnostics;
using Tmem.LogTier;
using Tmem.Tests.Faults;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// A durable store whose disk fails under it: writes that fail (a device decorator below the
/// store's retrying layer) and a disk that really fills up (a small tmpfs). The store stays up,
/// keeps serving what is durable, never shows a reader a state a crash could take back, refuses
/// what it cannot keep with a clear status, and recovers by itself.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class StorageFaultTests : IDisposable
{
    private const int TimeoutMs = 300;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-faults-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private TmemStore Open(LogDeviceKind device, out FaultyDevice faulty, DurabilityMode mode = DurabilityMode.Strict, string? dir = null)
    {
        FaultyDevice? made = null;
        var store = TmemStore.Open(new TmemOptions
        {
            DataDirectory = dir ?? _dir,
            LogDevice = device,
            Durability = mode,
            DurabilityTimeoutMs = TimeoutMs,
            RamBudgetBytes = 64L << 20,
            Diagnostics = new() { WrapLogDevice = d => made = new FaultyDevice(d) },
        });
        faulty = made!;
        return store;
    }

    private static byte[]? Read(TmemClient client, int pool, ObjectId oid, uint index)
    {
        var page = new byte[4096];
        return client.Get(pool, oid, index, page) == GetStatus.Hit ? page : null;
    }

    private static void WaitFor(Func<bool> condition, string what, int milliseconds = 10_000) =>
        Assert.True(SpinWait.SpinUntil(condition, milliseconds), $"timed out waiting for {what}");

    [Theory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public async Task WritesFail_PendingPutAnswersNotDurable_NoReaderSeesIt_AndItLandsOnceWritesSucceed(LogDeviceKind device)
    {
        var v1 = Compressible(4096, 1);
        var v2 = Compressible(4096, 2);
        var other = Compressible(4096, 3);
        using (var store = Open(device, out var faulty))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            int e = c.CreatePool(PoolOptions.Ephemeral);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, v1));
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(2), 0, other));

            faulty.FailWritesWith = FaultyDevice.Eio;
            var put = c.PutAsync(p, Oid(1), 0, v2).AsTask();
            // Readers race with the put: each sees the durable v1, or is told NotDurable; never v2
            // (its commit is failing, so a crash now would undo it), never a miss.
            var seen = new ConcurrentBag<string>();
            var readers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
            {
                while (!put.IsCompleted)
                {
                    try
                    {
                        var page = Read(c, p, Oid(1), 0);
                        seen.Add(page is null ? "miss" : page.AsSpan().SequenceEqual(v1) ? "v1" : page.AsSpan().SequenceEqual(v2) ? "v2" : "garbage");
                    }
                    catch (TmemNotDurableException)
                    {
                        seen.Add("not durable");
                    }
                }
            })).ToArray();
            var clock = Stopwatch.StartNew();
            await Assert.ThrowsAsync<TmemNotDurableException>(() => put);
            Assert.InRange(clock.ElapsedMilliseconds, 0, 10_000);
            await Task.WhenAll(readers);
            Assert.DoesNotContain("v2", seen);
            Assert.DoesNotContain("miss", seen);
            Assert.DoesNotContain("garbage", seen);

            var status = store.Storage;
            Assert.Equal(StorageState.Failing, status.State);
            Assert.Contains("errno 5", status.LastError);
            // What is durable keeps being served, and so do ephemeral pools.
            Assert.Equal(other, Read(c, p, Oid(2), 0));
            Assert.Equal(PutStatus.Stored, c.Put(e, Oid(9), 0, other));
            Assert.Equal(other, Read(c, e, Oid(9), 0));
            // The pending v2 is still not shown; once failing that long, waits end at once.
            clock.Restart();
            Assert.Throws<TmemNotDurableException>(() => Read(c, p, Oid(1), 0));
            Assert.Throws<TmemNotDurableException>(() => c.Put(p, Oid(3), 0, other));
            Assert.InRange(clock.ElapsedMilliseconds, 0, 2 * TimeoutMs);
            var stats = store.GetStats();
            Assert.Equal((long)StorageState.Failing, stats.StorageState);
            Assert.True(stats.StorageFailures > 0);
            Assert.True(stats.NotDurable >= 3, $"not_durable {stats.NotDurable}");
            Assert.True(stats.StorageFullRefused >= 1);

            faulty.FailWritesWith = 0;
            WaitFor(() => store.Storage.State == StorageState.Healthy, "the storage to recover");
            // The pending put landed by itself; the store takes new pages again.
            Assert.Equal(v2, Read(c, p, Oid(1), 0));
            Assert.Null(Read(c, p, Oid(3), 0));
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(4), 0, other));
        }
        using (var store = Open(device, out _))
        {
            var c = store.GetClient(1);
            Assert.Equal(v2, Read(c, 0, Oid(1), 0));
            Assert.Equal(other, Read(c, 0, Oid(2), 0));
            Assert.Null(Read(c, 0, Oid(3), 0));
            Assert.Equal(other, Read(c, 0, Oid(4), 0));
        }
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public async Task WritesFail_CloseWhileFailing_EndsPromptly_AndKeepsEveryAcknowledgedPage(LogDeviceKind device)
    {
        var v1 = Compressible(4096, 1);
        var store = Open(device, out var faulty);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        for (uint i = 0; i < 20; i++) Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), i, v1));
        faulty.FailWritesWith = FaultyDevice.Enospc;
        await Assert.ThrowsAsync<TmemNotDurableException>(() => c.PutAsync(p, Oid(1), 0, Compressible(4096, 2)).AsTask());
        Assert.Throws<TmemNotDurableException>(() => c.FlushPage(p, Oid(1), 1));
        var clock = Stopwatch.StartNew();
        store.Dispose(); // no exception, no hang: the last commit gives up after the timeout
        Assert.InRange(clock.ElapsedMilliseconds, 0, TimeoutMs + 5_000);

        using var reopened = Open(device, out _);
        var r = reopened.GetClient(1);
        // Nothing acknowledged is lost; what was answered NotDurable did not survive the stop.
        for (uint i = 0; i < 20; i++) Assert.Equal(v1, Read(r, p, Oid(1), i));
    }

    [Fact]
    public async Task DeviceHoldsWrites_StrictPutWaits_NothingAnsweredUntilDurable()
    {
        // A device that neither completes nor fails (held writes): operations wait, as they must;
        // released, everything completes and nothing was answered early.
        using var store = Open(LogDeviceKind.Mapped, out var faulty);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        faulty.HoldWrites = true;
        var put = Task.Run(() => c.Put(p, Oid(1), 0, Compressible(4096, 1)));
        Assert.NotSame(put, await Task.WhenAny(put, Task.Delay(3 * TimeoutMs)));
        Assert.Equal(StorageState.Healthy, store.Storage.State); // slow is not failing
        faulty.ReleaseHeldWrites();
        Assert.Equal(PutStatus.Stored, await put.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("put")]
    [InlineData("put-async")]
    [InlineData("flush")]
    [InlineData("flush-async")]
    public async Task RelaxedCommitsHeldBack_AnAppendPastTheLagLimitWaitsForTheCommit_SoACrashLosesLittle(string op)
    {
        // Relaxed acknowledges on append. When commits fall behind (here: the device holds the
        // writes; in life an overloaded machine or a slow disk), appends must stop once the
        // oldest uncommitted one is older than the lag limit, or a crash would lose without bound.
        using var store = Open(LogDeviceKind.Mapped, out var faulty, DurabilityMode.Relaxed);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, Compressible(4096, 1)));
        await store.CommitAsync();
        faulty.HoldWrites = true;
        long acknowledged;
        Task later;
        try
        {
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(2), 0, Compressible(4096, 2))); // acknowledged at once, not durable
            acknowledged = store.Log!.TailAddress;
            await Task.Delay(IntervalCommitPolicy.LagLimitMs(new TmemOptions().CommitIntervalMs) + 100);
            Assert.True(store.Log.CommittedUntilAddress < acknowledged);

            later = op switch
            {
                "put" => Task.Run(() => c.Put(p, Oid(3), 0, Compressible(4096, 3))),
                "put-async" => c.PutAsync(p, Oid(3), 0, Compressible(4096, 3)).AsTask(),
                "flush" => Task.Run(() => c.FlushPage(p, Oid(1), 0)),
                _ => c.FlushPageAsync(p, Oid(1), 0).AsTask(),
            };
            Assert.NotSame(later, await Task.WhenAny(later, Task.Delay(500)));
        }
        finally
        {
            faulty.ReleaseHeldWrites(); // a held write would otherwise keep the store from closing
        }
        await later.WaitAsync(TimeSpan.FromSeconds(10));
        // Whatever the later operation appended went in after the commit that covers the first.
        Assert.True(store.Log.CommittedUntilAddress >= acknowledged, $"committed {store.Log.CommittedUntilAddress}, acknowledged {acknowledged}");
        Assert.Equal(Compressible(4096, 2), Read(c, p, Oid(2), 0));
        Assert.Equal(op.StartsWith("flush", StringComparison.Ordinal) ? null : Compressible(4096, 1), Read(c, p, Oid(1), 0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GetAsync_OfAPageWhoseCommitIsHeld_CompletesOnceCommitted_WithoutBlocking(bool exclusive)
    {
        var v1 = Compressible(4096, 1);
        var v2 = Compressible(4096, 2);
        using var store = Open(LogDeviceKind.Mapped, out var faulty);
        var c = store.GetClient(1);
        int p = c.CreatePool(exclusive ? Stores.PersistentExclusive : PoolOptions.Persistent);
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, v1));
        var buffer = new byte[4096];
        // A durable page: answered synchronously.
        var now = c.GetAsync(p, Oid(1), 0, buffer);
        Assert.True(now.IsCompletedSuccessfully);
        Assert.Equal(GetStatus.Hit, await now);
        Assert.Equal(v1, buffer);
        if (exclusive) Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, v1));

        faulty.HoldWrites = true;
        var put = c.PutAsync(p, Oid(1), 0, v2).AsTask();
        var get = c.GetAsync(p, Oid(1), 0, buffer).AsTask();
        Assert.NotSame(get, await Task.WhenAny(get, Task.Delay(3 * TimeoutMs)));
        Assert.False(put.IsCompleted);
        faulty.ReleaseHeldWrites();
        Assert.Equal(GetStatus.Hit, await get.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(v2, buffer);
        Assert.Equal(PutStatus.Stored, await put.WaitAsync(TimeSpan.FromSeconds(10)));
        // An exclusive get took the page; a non-exclusive one left it.
        Assert.Equal(exclusive ? null : v2, Read(c, p, Oid(1), 0));
    }

    [Fact]
    public async Task Relaxed_WritesFail_PutsRefusedWithStorageFull_AndTheStoreRecoversByItself()
    {
        var v1 = Compressible(4096, 1);
        using var store = Open(LogDeviceKind.Mapped, out var faulty, DurabilityMode.Relaxed);
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, v1));
        await store.WaitForCommitAsync();
        faulty.FailWritesWith = FaultyDevice.Eio;
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(2), 0, v1)); // acknowledged on append; its commit fails
        WaitFor(() => store.Storage.State == StorageState.Failing, "the failed interval commit");
        // Refused at once, and like every refused put it takes the old page with it.
        Assert.Equal(PutStatus.RejectedStorageFull, c.Put(p, Oid(1), 0, Compressible(4096, 2)));
        Assert.Null(Read(c, p, Oid(1), 0));
        faulty.FailWritesWith = 0;
        WaitFor(() => store.Storage.State == StorageState.Healthy, "the storage to recover");
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(3), 0, v1));
        Assert.Equal(v1, Read(c, p, Oid(2), 0));
    }

    [TmpfsTheory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public void DiskFull_OnTmpfs_PutsRefusedWithStorageFull_ReadsAndFlushesWork_AndPutsResumeWhenSpaceIsFreed(LogDeviceKind device)
    {
        using var disk = Tmpfs.Mount(64L << 20);
        string ballast = disk.Ballast(24L << 20);
        string dir = Path.Combine(disk.Path, "data");
        var options = new TmemOptions { DataDirectory = dir, LogDevice = device, LogSegmentSizeBytes = 16L << 20, DurabilityTimeoutMs = 1000, RamBudgetBytes = 64L << 20 };
        var acknowledged = new Dictionary<(int Object, uint Index), byte[]>();
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            int e = c.CreatePool(PoolOptions.Ephemeral);
            PutStatus last = PutStatus.Stored;
            for (int i = 0; i < 40_000 && last == PutStatus.Stored; i++)
            {
                var page = CompressingTo(4096, 0.45, 0.55, i);
                last = c.Put(p, Oid(i / 64), (uint)(i % 64), page);
                if (last == PutStatus.Stored) acknowledged[(i / 64, (uint)(i % 64))] = page;
            }
            Assert.Equal(PutStatus.RejectedStorageFull, last);
            Assert.True(acknowledged.Count > 1000, $"only {acknowledged.Count} pages before the disk was full");
            var status = store.Storage;
            Assert.Equal(StorageState.Full, status.State);
            Assert.Contains("errno 28", status.LastError);

            // Everything acknowledged reads back; flushes work (the reserve holds their records).
            foreach (var ((o, i), page) in acknowledged) Assert.Equal(page, Read(c, p, Oid(o), i));
            var flushed = acknowledged.Keys.First();
            Assert.True(c.FlushPage(p, Oid(flushed.Object), flushed.Index));
            acknowledged.Remove(flushed);
            // A refused put over a page removes it (put-put coherency), durably.
            var replaced = acknowledged.Keys.Last();
            Assert.Equal(PutStatus.RejectedStorageFull, c.Put(p, Oid(replaced.Object), replaced.Index, Compressible(4096, 7)));
            Assert.Null(Read(c, p, Oid(replaced.Object), replaced.Index));
            acknowledged.Remove(replaced);
            // Ephemeral pools are RAM only and keep working; a checkpoint waits for space.
            Assert.Equal(PutStatus.Stored, c.Put(e, Oid(1), 0, Compressible(4096, 8)));
            Assert.Throws<IOException>(() => store.Checkpoint());
            Assert.True(store.GetStats().StorageFullRefused >= 2);

            File.Delete(ballast);
            WaitFor(() => store.Storage.State == StorageState.Healthy, "the reserve to be allocated once space was freed");
            var fresh = Compressible(4096, 9);
            Assert.Equal(PutStatus.Stored, c.Put(p, Oid(100_000), 0, fresh));
            acknowledged[(100_000, 0)] = fresh;
        }
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            foreach (var ((o, i), page) in acknowledged) Assert.Equal(page, Read(c, 0, Oid(o), i));
            Assert.Equal(acknowledged.Count, store.GetStats().PersPages);
        }
    }
}
