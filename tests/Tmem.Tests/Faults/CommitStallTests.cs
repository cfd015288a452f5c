using System.Reflection;
using FASTER.core;
using Tmem.Recovery;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests.Faults;

/// <summary>
/// A Strict store whose commit FASTER's epoch left waiting (found by the power-cut loop: every
/// writer and a checkpoint waited for twenty minutes; the dump showed the action that starts the
/// commit's flush on the epoch's drain list, and no thread inside the epoch to drain it). This
/// recreates that state on purpose and checks that the store gets out of it by itself
/// (<c>StalledCommitNudge</c>). It reaches into FASTER 2.6.5's internals (FasterLog's epoch, and
/// LightEpoch.Release, which leaves the epoch without draining) to do so.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class CommitStallTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-stall-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(LogDeviceKind.Mapped)]
    [InlineData(LogDeviceKind.File)]
    public async Task FlushLeftOnTheEpochDrainList_StrictPutStillCompletes(LogDeviceKind device)
    {
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = _dir, LogDevice = device, RamBudgetBytes = 16L << 20 });
        var c = store.GetClient(1);
        int p = c.CreatePool(PoolOptions.Persistent);
        Assert.Equal(PutStatus.Stored, c.Put(p, Oid(1), 0, Compressible(4096, 1)));

        var log = (FasterLog)typeof(Tmem.LogTier.PersistentLog).GetField("_log", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(store.Log)!;
        var epoch = (LightEpoch)typeof(FasterLog).GetField("epoch", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(log)!;
        var release = typeof(LightEpoch).GetMethod("Release", BindingFlags.NonPublic | BindingFlags.Instance)!;
        using var entered = new ManualResetEventSlim();
        using var leave = new ManualResetEventSlim();
        // A thread inside the epoch holds back the flush of the next commit ...
        var holder = new Thread(() =>
        {
            epoch.Resume();
            entered.Set();
            leave.Wait();
            release.Invoke(epoch, null); // ... and leaves without draining, as FASTER's race does
        }) { IsBackground = true };
        holder.Start();
        entered.Wait();
        var put = Task.Run(() => c.Put(p, Oid(1), 1, Compressible(4096, 2)));
        await Task.Delay(300);
        Assert.False(put.IsCompleted); // its commit's flush waits for the holder
        leave.Set();
        holder.Join();
        // Nobody is inside the epoch now and nobody appends: only the store itself can drain it.
        try
        {
            Assert.Equal(PutStatus.Stored, await put.WaitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            if (!put.IsCompleted) _ = log.ReadAsync(log.TailAddress); // drain by hand, so that the store can close and the test fail
        }
        var waiters = (Tmem.LogTier.CommitWaiters)typeof(Tmem.LogTier.PersistentLog).GetField("_waiters", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(store.Log)!;
        Assert.True(waiters.Stall.Nudges > 0);
        var page = new byte[4096];
        Assert.Equal(GetStatus.Hit, c.Get(p, Oid(1), 1, page));
    }
}
