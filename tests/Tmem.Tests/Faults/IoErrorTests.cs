using System.Diagnostics;
using Tmem.CrashHost;
using Tmem.Recovery;
using Xunit.Abstractions;

namespace Tmem.Tests.Faults;

/// <summary>
/// I/O errors, SQLite's "ioerr" way: a small workload that covers a store's whole life (creating
/// the directory, pools, puts, flushes, gets, a checkpoint, pool churn, a log compaction, the close)
/// is run once to count its I/O operations, then once for every N in that range with the Nth
/// operation failing (EIO, or ENOSPC), and again with every operation from the Nth on failing for a
/// while (a disk that fails, then comes back). Each time: the operation that hit the error fails
/// with a clear error (<see cref="TmemNotDurableException"/>, <see cref="PutStatus.RejectedStorageFull"/>,
/// an <see cref="IOException"/> from an open, a checkpoint or a compaction) or is retried
/// underneath; the store stays up, returns to <see cref="StorageState.Healthy"/> by itself once
/// I/O succeeds and takes new pages again; every answer it gave is consistent; and reopened, it
/// holds every acknowledged operation. TMEM_SOAK=1 runs every N in the second loop too.
/// </summary>
[Trait("Kind", "Crash")]
public sealed class IoErrorTests(ITestOutputHelper output)
{
    private const int DurabilityTimeoutMs = 100;

    [Theory]
    [InlineData(LogDeviceKind.Mapped, DurabilityMode.Strict)]
    [InlineData(LogDeviceKind.File, DurabilityMode.Strict)]
    [InlineData(LogDeviceKind.Mapped, DurabilityMode.Relaxed)]
    public void TheNthOperationFails_ForEveryN_TheStoreStaysConsistentAndKeepsWorking(LogDeviceKind device, DurabilityMode mode)
    {
        long total = Calibrate(device, mode);
        var clock = Stopwatch.StartNew();
        long failed = 0, acknowledged = 0;
        var byKind = new Dictionary<string, int>();
        for (long n = 1; n <= total; n++)
        {
            var result = RunOnce(device, mode, disk =>
            {
                disk.FailAt = n;
                disk.FailErrno = n % 3 == 0 ? SimulatedDisk.Enospc : SimulatedDisk.Eio;
            }, $"operation {n} of {total} fails once");
            failed += result.Failed;
            acknowledged += result.Acknowledged;
            foreach (var f in result.Injected) byKind[f] = byKind.GetValueOrDefault(f) + 1;
        }
        output.WriteLine($"{device} {mode}: {total} operations in the workload; each failed once in turn: {failed} failed in {clock.Elapsed.TotalSeconds:F1} s " +
            $"([{string.Join(", ", byKind.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))}]); {acknowledged} acknowledged operations checked after reopening");
        IoErrorCounts.Add(failed, acknowledged);
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped, DurabilityMode.Strict, SimulatedDisk.Enospc)]
    [InlineData(LogDeviceKind.File, DurabilityMode.Strict, SimulatedDisk.Eio)]
    [InlineData(LogDeviceKind.Mapped, DurabilityMode.Relaxed, SimulatedDisk.Eio)]
    public void FromTheNthOperationOn_EverythingFailsForAWhile_TheStoreDegradesAndRecoversByItself(LogDeviceKind device, DurabilityMode mode, int errno)
    {
        long total = Calibrate(device, mode);
        int points = PowerCutTests.Soak ? (int)total : 16;
        var clock = Stopwatch.StartNew();
        long failed = 0, acknowledged = 0;
        for (int i = 0; i < points; i++)
        {
            long n = 1 + i * total / points;
            var result = RunOnce(device, mode, disk =>
            {
                disk.FailAt = n;
                disk.FailFromThereOn = true;
                disk.FailErrno = errno;
                long startedAt = 0;
                disk.Observe = (number, _, _) =>
                {
                    // The failing spell lasts 250 ms from the first failed operation.
                    if (number < n) return;
                    if (startedAt == 0) Interlocked.CompareExchange(ref startedAt, Stopwatch.GetTimestamp(), 0);
                    else if (Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds > 250) disk.FailAt = 0;
                };
            }, $"every operation from {n} of {total} on fails for 250 ms (errno {errno})");
            failed += result.Failed;
            acknowledged += result.Acknowledged;
        }
        output.WriteLine($"{device} {mode}: {points} failing spells (errno {errno}) over a {total}-operation workload: {failed} operations failed in {clock.Elapsed.TotalSeconds:F1} s; {acknowledged} acknowledged operations checked");
        IoErrorCounts.Add(failed, acknowledged);
    }

    [Theory]
    [InlineData(LogDeviceKind.File)]
    [InlineData(LogDeviceKind.Mapped)]
    public void ReadsFail_AGetOfASpilledPageAnswersAnIOError_NotDamage_AndReadsItOnceReadsWork(LogDeviceKind device)
    {
        // Found by the loop above: FasterLog hands back no data for a failed read, and the get
        // called that a damaged record. A transient failure is retried underneath; one that lasts
        // is an IOException that says so, and the page is served once the device reads again.
        string root = Path.Combine(Path.GetTempPath(), "tmem-ioerr-read-" + Guid.NewGuid().ToString("N"));
        string dir = Path.Combine(root, "data");
        Directory.CreateDirectory(root);
        try
        {
            using (var store = TmemStore.Open(Options(dir, device, DurabilityMode.Strict, null)))
            {
                var c = store.GetClient(1);
                c.CreatePool(PoolOptions.Persistent);
                var page = new byte[CrashLayout.PageSize];
                for (int i = 0; i < 200; i++)
                {
                    CrashLayout.Render(page, CrashLayout.PageKind.Data, 0, i / 32, i % 32, CrashLayout.Version(1, i + 1));
                    Assert.Equal(PutStatus.Stored, c.Put(0, CrashLayout.Oid(i / 32), (uint)(i % 32), page));
                }
            }
            var disk = new SimulatedDisk(root) { FailKinds = IoKind.Read };
            using (var store = TmemStore.Open(Options(dir, device, DurabilityMode.Strict, disk)))
            {
                var c = store.GetClient(1);
                var buffer = new byte[CrashLayout.PageSize];
                disk.FailAt = disk.Operations + 1; // the next read fails once: retried underneath
                Assert.Equal(GetStatus.Hit, c.Get(0, CrashLayout.Oid(0), 0, buffer));
                disk.FailFromThereOn = true;      // from here on every read fails
                var spilled = Enumerable.Range(0, 200).FirstOrDefault(i =>
                {
                    try
                    {
                        return c.Get(0, CrashLayout.Oid(i / 32), (uint)(i % 32), buffer) != GetStatus.Hit;
                    }
                    catch (IOException e)
                    {
                        Assert.Contains("errno 5", e.Message);
                        return true;
                    }
                }, -1);
                if (device == LogDeviceKind.Mapped)
                {
                    // Gets of the mapped device read the mapping, not the file: no read to fail.
                    Assert.Equal(-1, spilled);
                    return;
                }
                Assert.NotEqual(-1, spilled);
                Assert.Equal(StorageState.Healthy, store.Storage.State);
                disk.FailAt = 0;
                Assert.Equal(GetStatus.Hit, c.Get(0, CrashLayout.Oid(spilled / 32), (uint)(spilled % 32), buffer));
                Assert.Null(CrashLayout.Decode(buffer, 0, spilled / 32, spilled % 32).Error);
                Assert.True(store.GetStats().StorageFailures > 0);
            }
            disk.Dispose();
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Runs the workload without faults; returns how many operations it makes (at least the ones a fault loop covers).</summary>
    private long Calibrate(LogDeviceKind device, DurabilityMode mode)
    {
        long operations = 0;
        var result = RunOnce(device, mode, disk => disk.Observe = (n, _, _) => operations = n, "calibration");
        Assert.Equal(0, result.Failed);
        output.WriteLine($"{device} {mode}: the workload makes {operations} I/O operations ({string.Join(", ", result.ByKind.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))})");
        return operations;
    }

    private sealed record Outcome(long Failed, long Acknowledged, List<string> Injected, Dictionary<string, long> ByKind);

    /// <summary>
    /// One run on a fresh directory: the workload with the faults <paramref name="arm"/> sets up,
    /// the close, then a reopen without faults and the check.
    /// </summary>
    private Outcome RunOnce(LogDeviceKind device, DurabilityMode mode, Action<SimulatedDisk> arm, string what)
    {
        string root = Path.Combine(Path.GetTempPath(), "tmem-ioerr-" + Guid.NewGuid().ToString("N"));
        string dir = Path.Combine(root, "data");
        Directory.CreateDirectory(root);
        var disk = new SimulatedDisk(root);
        arm(disk);
        var script = new Script(mode == DurabilityMode.Strict);
        try
        {
            var options = Options(dir, device, mode, disk);
            script.Run(options, disk);
            if (script.Problems.Count == 0)
            {
                disk.FailAt = 0;
                if (disk.IsCut) disk.Restore(CutMode.Old, new Random(1));
                disk.Dispose();
                using var reopened = TmemStore.Open(Options(dir, device, mode, null));
                script.Verify(reopened);
            }
        }
        catch (Exception e)
        {
            script.Problems.Add($"unexpected {e}");
        }
        if (script.Problems.Count > 0)
        {
            Assert.Fail($"{device} {mode}, {what} (directory {root} kept): injected [{string.Join("; ", disk.Failures)}]\n" +
                $"allowed failures: [{string.Join("; ", script.Allowed)}]\nproblems:\n{string.Join("\n", script.Problems.Take(10))}");
        }
        Directory.Delete(root, recursive: true);
        return new Outcome(disk.FailedOperations, script.Acknowledged, disk.Failures.Select(f => f.Split(' ')[1]).ToList(),
            disk.OperationsByKind.ToDictionary(k => k.Key.ToString(), k => k.Value));
    }

    private static TmemOptions Options(string dir, LogDeviceKind device, DurabilityMode mode, SimulatedDisk? disk) => new()
    {
        DataDirectory = dir,
        LogDevice = device,
        Durability = mode,
        DurabilityTimeoutMs = DurabilityTimeoutMs,
        LogSegmentSizeBytes = 16L << 20,
        RamBudgetBytes = 64L << 10, // the smallest: pages spill, gets read the log
        Diagnostics = disk is null ? null : new()
        {
            StorageIo = disk,
            WrapLogDevice = device == LogDeviceKind.File ? d => new SimulatedDiskDevice(d, disk) : null,
        },
    };

    /// <summary>
    /// The workload and its model: per handle, the states it may be in (one, unless an operation on
    /// it failed with an unknown outcome). Single-threaded, so every acknowledged operation is
    /// ordered after the ones before it.
    /// </summary>
    private sealed class Script(bool strict)
    {
        private const int MainPool = 0;
        private readonly Dictionary<(int Pool, int Obj, int Index), HashSet<PageState>> _possible = new();
        private readonly byte[] _page = new byte[CrashLayout.PageSize];
        private long _seq;
        private TmemStore? _store;
        private bool _churnMayExist;
        private bool _mainAcknowledged;
        private bool _mainMayBeMissing;

        public List<string> Problems { get; } = new();

        public List<string> Allowed { get; } = new();

        public long Acknowledged { get; private set; }

        /// <summary>
        /// Runs the workload. Strict: then the power is cut (only what was made durable survives:
        /// an error the store swallowed or retried must not have cost an acknowledged operation,
        /// such as a sync whose failure Linux does not report twice); Relaxed: a clean close.
        /// </summary>
        public void Run(TmemOptions options, SimulatedDisk disk)
        {
            _store = Open(options);
            if (_store is null) return;
            try
            {
                var c = _store.GetClient(1);
                if (!Try("create pool", () => c.CreatePool(PoolOptions.Persistent), out int pool)) _mainMayBeMissing = true;
                if (pool != 0) Problems.Add($"the pool got id {pool}");
                for (int i = 0; i < 10; i++) Put(c, MainPool, i / 4, i % 4, i == 3 ? CrashLayout.PageKind.SameFilled : CrashLayout.PageKind.Data);
                PutBatch(c);
                Get(c, MainPool, 0, 0);
                Flush(c, MainPool, 0, 1);
                FlushObject(c, MainPool, 1);
                Maintenance("checkpoint", () => _store.Checkpoint());
                for (int i = 0; i < 4; i++) Put(c, MainPool, 2, i, CrashLayout.PageKind.Data);
                // Pool churn: a second pool, a page, gone again.
                _churnMayExist = true;
                if (Try("create the churn pool", () => c.CreatePool(PoolOptions.Persistent), out int churn))
                {
                    if (churn != 1) Problems.Add($"the churn pool got id {churn}");
                    Put(c, 1, 0, 0, CrashLayout.PageKind.Data);
                    bool destroyed = Try("destroy the churn pool", () =>
                    {
                        c.DestroyPool(1);
                        return 0;
                    }, out _);
                    foreach (var key in _possible.Keys.Where(k => k.Pool == 1).ToList())
                    {
                        if (destroyed) Acked(key, PageState.Miss);
                        else Possible(key).Add(PageState.Miss);
                    }
                    _churnMayExist = !destroyed;
                }
                Maintenance("log compaction", () => _store.CompactLog(force: true));
                Put(c, MainPool, 0, 1, CrashLayout.PageKind.Data);
                Put(c, MainPool, 3, 0, CrashLayout.PageKind.Zero);
                foreach (var (p, o, i) in _possible.Keys.Where(k => k.Pool == MainPool).ToList()) Get(c, p, o, i);
                // The disk works again (a failing spell that began late in the workload ends here):
                // the store must be healthy by itself, and take new pages.
                disk.FailAt = 0;
                WaitHealthy("the end of the workload");
                var status = c.Put(MainPool, CrashLayout.Oid(7), 0, Render(MainPool, 7, 0, CrashLayout.PageKind.Data, out var state));
                if (status != PutStatus.Stored) Problems.Add($"a put after the failures answered {status}");
                else Acked((MainPool, 7, 0), state);
            }
            finally
            {
                if (strict) disk.Cut("the end of the workload");
                try
                {
                    _store.Dispose();
                }
                catch (Exception e)
                {
                    Problems.Add($"closing the store threw {e}");
                }
            }
        }

        private TmemStore? Open(TmemOptions options)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    return TmemStore.Open(options);
                }
                catch (IOException e) when (e is not TmemNotDurableException && clock.ElapsedMilliseconds < 10_000)
                {
                    // A clear error; the next open, once I/O works, must succeed.
                    Allowed.Add($"open: {e.Message}");
                    Thread.Sleep(20);
                }
                catch (Exception e)
                {
                    Problems.Add($"opening the store failed with {e.GetType().Name}, not an IOException that a retry fixes: {e}");
                    return null;
                }
            }
        }

        private byte[] Render(int pool, int obj, int index, CrashLayout.PageKind kind, out PageState state)
        {
            long version = CrashLayout.Version(pool + 1, ++_seq);
            CrashLayout.Render(_page, kind, 0, obj, index, version);
            state = kind switch { CrashLayout.PageKind.Zero => new PageState('Z', 0), CrashLayout.PageKind.SameFilled => new PageState('S', version), _ => new PageState('D', version) };
            return _page;
        }

        private HashSet<PageState> Possible((int, int, int) key)
        {
            if (!_possible.TryGetValue(key, out var set)) _possible[key] = set = [PageState.Miss];
            return set;
        }

        private void Acked((int, int, int) key, PageState state)
        {
            Acknowledged++;
            if (key.Item1 == MainPool) _mainAcknowledged = true;
            var set = Possible(key);
            set.Clear();
            set.Add(state);
        }

        /// <summary>Runs an operation; false (and the outcome is unknown) when it failed with an allowed error. Records problems.</summary>
        private bool Try<T>(string what, Func<T> operation, out T result)
        {
            result = default!;
            try
            {
                result = operation();
                return true;
            }
            catch (TmemNotDurableException e)
            {
                Allowed.Add($"{what}: NotDurable ({e.Message})");
            }
            catch (IOException e) when (e.GetType() == typeof(IOException) && what.StartsWith("get ", StringComparison.Ordinal))
            {
                throw; // Get decides
            }
            catch (Exception e)
            {
                Problems.Add($"{what} threw {e}");
            }
            WaitHealthy(what);
            return false;
        }

        private void WaitHealthy(string after)
        {
            if (!SpinWait.SpinUntil(() => _store!.Storage.State == StorageState.Healthy, 10_000))
                Problems.Add($"after {after}, the store stayed {_store!.Storage.State} ({_store.Storage.LastError}) with I/O working again");
        }

        private void Put(TmemClient c, int pool, int obj, int index, CrashLayout.PageKind kind)
        {
            var key = (pool, obj, index);
            var page = Render(pool, obj, index, kind, out var state);
            if (!Try($"put {key}", () => c.Put(pool, CrashLayout.Oid(obj), (uint)index, page), out var status))
            {
                Possible(key).Add(state);
                return;
            }
            if (status == PutStatus.Stored)
            {
                Acked(key, state);
                return;
            }
            if (!Refused(key, status))
            {
                Problems.Add($"put {key} answered {status}");
                return;
            }
            // Refused: like every refused put, it removed the old page (durably, before answering).
            Acked(key, PageState.Miss);
            WaitHealthy($"put {key} refused");
        }

        /// <summary>
        /// A refusal this workload may see: the storage full or failing; in Relaxed mode also the RAM
        /// budget (a page whose record is not committed yet cannot be spilled).
        /// </summary>
        private bool Refused((int, int, int) key, PutStatus status)
        {
            if (status != PutStatus.RejectedStorageFull && (strict || status != PutStatus.RejectedCapacity)) return false;
            Allowed.Add($"put {key}: {status}");
            return true;
        }

        /// <summary>Concurrent puts (one group commit in Strict mode), more than the RAM budget holds: some pages spill, and gets of them read the log.</summary>
        private void PutBatch(TmemClient c)
        {
            var puts = new List<((int, int, int) Key, PageState State, Task<PutStatus> Put)>();
            for (int obj = 4; obj < 8; obj++)
            {
                for (int index = 0; index < 24; index++)
                {
                    var page = Render(MainPool, obj, index, CrashLayout.PageKind.Data, out var state);
                    puts.Add(((MainPool, obj, index), state, c.PutAsync(MainPool, CrashLayout.Oid(obj), (uint)index, page).AsTask()));
                }
            }
            foreach (var (key, state, put) in puts)
            {
                if (!Try($"batched put {key}", () => put.GetAwaiter().GetResult(), out var status)) Possible(key).Add(state);
                else if (status == PutStatus.Stored) Acked(key, state);
                else if (Refused(key, status)) Acked(key, PageState.Miss);
                else Problems.Add($"batched put {key} answered {status}");
            }
        }

        private void Flush(TmemClient c, int pool, int obj, int index)
        {
            var key = (pool, obj, index);
            if (Try($"flush {key}", () => c.FlushPage(pool, CrashLayout.Oid(obj), (uint)index), out _)) Acked(key, PageState.Miss);
            else Possible(key).Add(PageState.Miss);
        }

        private void FlushObject(TmemClient c, int pool, int obj)
        {
            bool done = Try($"flush object {pool}/{obj}", () => c.FlushObject(pool, CrashLayout.Oid(obj)), out _);
            foreach (var key in _possible.Keys.Where(k => k.Pool == pool && k.Obj == obj).ToList())
            {
                if (done) Acked(key, PageState.Miss);
                else Possible(key).Add(PageState.Miss);
            }
        }

        private void Get(TmemClient c, int pool, int obj, int index)
        {
            var key = (pool, obj, index);
            var buffer = new byte[CrashLayout.PageSize];
            GetStatus status;
            try
            {
                if (!Try($"get {key}", () => c.Get(pool, CrashLayout.Oid(obj), (uint)index, buffer), out status)) return;
            }
            catch (IOException e) when (e.GetType() == typeof(IOException) && e.Message.Contains("the read may succeed later"))
            {
                // A device read that kept failing past its retries: a clear error, not damage, not a wrong page.
                Allowed.Add($"get {key}: {e.Message}");
                return;
            }
            var seen = status == GetStatus.Miss ? PageState.Miss : Decode(buffer, obj, index);
            var set = Possible(key);
            if (!set.Contains(seen))
            {
                Problems.Add($"get {key} answered {seen}, not one of [{string.Join(", ", set)}]");
                return;
            }
            if (strict) Acked(key, seen); // a Strict get answers only what is durable
        }

        private void Maintenance(string what, Action operation)
        {
            try
            {
                operation();
            }
            catch (IOException e) when (e is not TmemNotDurableException)
            {
                Allowed.Add($"{what}: {e.Message}"); // a clear error: the log stays authoritative
            }
            catch (TmemNotDurableException e)
            {
                Allowed.Add($"{what}: NotDurable ({e.Message})");
            }
            catch (Exception e)
            {
                Problems.Add($"{what} threw {e}");
            }
            WaitHealthy(what);
        }

        private static PageState Decode(byte[] page, int obj, int index)
        {
            var (kind, version, error) = CrashLayout.Decode(page, 0, obj, index);
            return error is not null ? new PageState('X', version, error)
                : kind switch { CrashLayout.PageKind.Zero => new PageState('Z', 0), CrashLayout.PageKind.SameFilled => new PageState('S', version), _ => new PageState('D', version) };
        }

        /// <summary>After a clean reopen without faults: every handle in one of its possible states, nothing else there.</summary>
        public void Verify(TmemStore store)
        {
            var c = store.GetClient(1);
            var pools = c.GetPools();
            bool main = pools.Any(p => p.PoolId == MainPool);
            bool churn = pools.Any(p => p.PoolId == 1);
            if (!main && (_mainAcknowledged || !_mainMayBeMissing)) Problems.Add($"the main pool is gone after reopening (pools [{string.Join(", ", pools)}])");
            if (churn && !_churnMayExist) Problems.Add("the destroyed churn pool came back");
            if (strict && !store.Storage.State.Equals(StorageState.Healthy)) Problems.Add($"reopened {store.Storage.State}");
            long hits = 0;
            var buffer = new byte[CrashLayout.PageSize];
            foreach (var (key, set) in _possible)
            {
                bool exists = key.Pool == MainPool ? main : churn;
                var status = exists ? c.Get(key.Pool, CrashLayout.Oid(key.Obj), (uint)key.Index, buffer) : GetStatus.Miss;
                if (status == GetStatus.Hit) hits++;
                var got = status == GetStatus.Miss ? PageState.Miss : Decode(buffer, key.Obj, key.Index);
                if (!set.Contains(got)) Problems.Add($"after reopening, {key} is {got}, not one of [{string.Join(", ", set)}]");
            }
            if (hits != store.GetStats().PersPages) Problems.Add($"after reopening the store holds {store.GetStats().PersPages} pages, {hits} of them known");
        }
    }
}

/// <summary>Totals over the tests of a run, for the closing note.</summary>
internal static class IoErrorCounts
{
    public static long Failed;
    public static long Checked;

    public static void Add(long failed, long checkedOps)
    {
        Interlocked.Add(ref Failed, failed);
        Interlocked.Add(ref Checked, checkedOps);
    }
}
