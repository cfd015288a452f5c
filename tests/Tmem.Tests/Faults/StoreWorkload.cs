using System.Collections.Concurrent;
using Tmem.CrashHost;

namespace Tmem.Tests.Faults;

/// <summary>
/// The concurrent load the power-cut tests run on a durable store, and how they read back what it
/// left: the crash host's two persistent pools (<see cref="CrashLayout"/>: label 0 is client 1's
/// private pool 0, label 1 a pool shared by clients 1 and 2) with puts of data, same-filled and
/// zero pages, flush page, flush object and gets; a third, <i>churn</i> pool (label 2, client 3's
/// pool 0) created, filled a little and destroyed over and over; and index checkpoints and forced
/// log compactions in between. Every operation goes in a <see cref="History"/>; every page names
/// the operation that stored it.
/// </summary>
internal sealed class StoreWorkload
{
    public const int ChurnLabel = 2;
    public const int ChurnObjects = 2;
    public const int ChurnIndices = 4;
    public const int Workers = 3;

    private readonly TmemStore _store;
    private readonly History _history;
    private readonly int _run;
    private readonly bool _strict;
    private readonly Func<bool> _stopped;
    private readonly ConcurrentQueue<string> _errors = new();
    private volatile string _phase = "puts";

    public StoreWorkload(TmemStore store, History history, int run, bool strict, Func<bool> stopped)
    {
        _store = store;
        _history = history;
        _run = run;
        _strict = strict;
        _stopped = stopped;
    }

    /// <summary>Failures seen before the cut (nothing may fail while the disk works).</summary>
    public IReadOnlyCollection<string> Errors => _errors;

    /// <summary>What the maintenance task is doing ("checkpoint", "compaction", or "puts").</summary>
    public string Phase => _phase;

    public long Checkpoints;
    public long Compactions;

    /// <summary>Creates the two crash-layout pools (durably) if they are not there yet.</summary>
    public static async Task EnsurePoolsAsync(TmemStore store)
    {
        var c1 = store.GetClient(1);
        var c2 = store.GetClient(2);
        var shared = PoolOptions.Persistent with { SharedUuid = CrashLayout.SharedUuid };
        if (!c1.GetPools().Any(p => p.PoolId == 0)) Assert.Equal(0, c1.CreatePool(PoolOptions.Persistent));
        if (!c1.GetPools().Any(p => p.PoolId == 1)) Assert.Equal(1, c1.CreatePool(shared));
        if (!c2.GetPools().Any(p => p.PoolId == 0)) Assert.Equal(0, c2.CreatePool(shared));
        await store.WaitForCommitAsync();
    }

    /// <summary>Every handle's state, the churn pool's existence under <see cref="HistoryCheck.PoolKey"/>.</summary>
    public static Dictionary<(int, int, int), PageState> ReadAll(TmemStore store)
    {
        var c1 = store.GetClient(1);
        var c2 = store.GetClient(2);
        var c3 = store.GetClient(3);
        Assert.True(c1.GetPools() is [{ PoolId: 0, Kind: PoolKind.Persistent, SharedUuid: null }, { PoolId: 1, Kind: PoolKind.Persistent } s1]
            && s1.SharedUuid == CrashLayout.SharedUuid
            && c2.GetPools() is [{ PoolId: 0, Kind: PoolKind.Persistent } s2] && s2.SharedUuid == CrashLayout.SharedUuid,
            $"the pools did not come back as created: client 1 has [{string.Join(", ", c1.GetPools())}], client 2 [{string.Join(", ", c2.GetPools())}]");
        var churn = c3.GetPools();
        Assert.True(churn.Count <= 1 && churn.All(p => p.PoolId == 0 && p.Kind == PoolKind.Persistent), $"client 3 has [{string.Join(", ", churn)}]");

        var states = new Dictionary<(int, int, int), PageState>();
        var page = new byte[CrashLayout.PageSize];
        var other = new byte[CrashLayout.PageSize];
        long hits = 0;
        for (int label = 0; label < CrashLayout.Labels; label++)
        {
            for (int obj = 0; obj < CrashLayout.Objects; obj++)
            {
                for (int index = 0; index < CrashLayout.Indices; index++)
                {
                    var oid = CrashLayout.Oid(obj);
                    var status = c1.Get(label, oid, (uint)index, page);
                    if (label == CrashLayout.SharedLabel)
                    {
                        Assert.Equal(status, c2.Get(0, oid, (uint)index, other));
                        Assert.True(status == GetStatus.Miss || page.AsSpan().SequenceEqual(other), $"the shared pool gives clients 1 and 2 different pages at {obj}/{index}");
                    }
                    if (status == GetStatus.Hit) hits++;
                    states[(label, obj, index)] = status == GetStatus.Miss ? PageState.Miss : Decode(page, label, obj, index);
                }
            }
        }
        states[HistoryCheck.PoolKey(ChurnLabel)] = churn.Count == 1 ? PageState.Present : PageState.Absent;
        for (int obj = 0; obj < ChurnObjects; obj++)
        {
            for (int index = 0; index < ChurnIndices; index++)
            {
                var status = churn.Count == 1 ? c3.Get(0, CrashLayout.Oid(obj), (uint)index, page) : GetStatus.Miss;
                if (status == GetStatus.Hit) hits++;
                states[(ChurnLabel, obj, index)] = status == GetStatus.Miss ? PageState.Miss : Decode(page, 0, obj, index);
            }
        }
        Assert.Equal(hits, store.GetStats().PersPages); // nothing else came back
        return states;
    }

    private static PageState Decode(ReadOnlySpan<byte> page, int label, int obj, int index)
    {
        var (kind, version, error) = CrashLayout.Decode(page, label == ChurnLabel ? 0 : label, obj, index);
        return error is not null ? new PageState('X', version, error)
            : kind switch { CrashLayout.PageKind.Zero => new PageState('Z', 0), CrashLayout.PageKind.SameFilled => new PageState('S', version), _ => new PageState('D', version) };
    }

    /// <summary>Runs the workers, the churn and the maintenance until <c>stopped</c> says so.</summary>
    public Task RunAsync(int seed)
    {
        var tasks = new List<Task>();
        for (int w = 0; w < Workers; w++)
        {
            var rng = new Random(seed * 31 + w);
            tasks.Add(Task.Run(() => Guard(() => WorkAsync(rng))));
        }
        tasks.Add(Task.Run(() => Guard(() => ChurnAsync(new Random(seed * 37)))));
        tasks.Add(Task.Run(() => Guard(() => MaintainAsync(new Random(seed * 41)))));
        return Task.WhenAll(tasks);
    }

    private async Task Guard(Func<Task> body)
    {
        try
        {
            await body();
        }
        catch (Exception e) when (!_history.IsFrozen)
        {
            _errors.Enqueue($"{e.GetType().Name} before the cut: {e}");
        }
        catch (Exception)
        {
            // After the power cut anything goes: none of it happened.
        }
    }

    private void Failed(History.Op op, Exception e)
    {
        op.Outcome = e.GetType().Name;
        if (!_history.IsFrozen) _errors.Enqueue($"{op} failed before the cut: {e}");
    }

    private async Task WorkAsync(Random rng)
    {
        var c1 = _store.GetClient(1);
        var c2 = _store.GetClient(2);
        var page = new byte[CrashLayout.PageSize];
        while (!_stopped())
        {
            int label = rng.Next(CrashLayout.Labels);
            int obj = rng.Next(CrashLayout.Objects);
            int index = rng.Next(CrashLayout.Indices);
            var (client, pool) = label == CrashLayout.PrivateLabel ? (c1, 0) : rng.Next(2) == 0 ? (c1, 1) : (c2, 0);
            var oid = CrashLayout.Oid(obj);
            bool blocking = rng.Next(8) == 0;
            int roll = rng.Next(100);
            History.Op? op = null;
            try
            {
                if (roll < 50)
                {
                    var kind = roll < 40 ? CrashLayout.PageKind.Data : roll < 45 ? CrashLayout.PageKind.SameFilled : CrashLayout.PageKind.Zero;
                    op = IssuePut(label, obj, index, kind, page);
                    var status = blocking ? client.Put(pool, oid, (uint)index, page) : await client.PutAsync(pool, oid, (uint)index, page);
                    if (status != PutStatus.Stored) throw new InvalidOperationException($"put refused: {status}");
                    _history.Ack(op);
                }
                else if (roll < 65)
                {
                    op = _history.Issue(History.Kind.FlushPage, label, obj, index, PageState.Miss);
                    _ = blocking ? client.FlushPage(pool, oid, (uint)index) : await client.FlushPageAsync(pool, oid, (uint)index);
                    _history.Ack(op);
                }
                else if (roll < 68)
                {
                    op = _history.Issue(History.Kind.FlushObject, label, obj, -1, PageState.Miss);
                    _ = blocking ? client.FlushObject(pool, oid) : await client.FlushObjectAsync(pool, oid);
                    _history.Ack(op);
                }
                else
                {
                    op = _history.Issue(History.Kind.Get, label, obj, index);
                    var status = blocking ? client.Get(pool, oid, (uint)index, page) : await client.GetAsync(pool, oid, (uint)index, page);
                    _history.Ack(op, status == GetStatus.Miss ? PageState.Miss : Decode(page, label, obj, index));
                }
            }
            catch (Exception e) when (op is not null)
            {
                Failed(op, e);
                if (_history.IsFrozen) return;
            }
            if (!_strict) await Task.Yield();
        }
    }

    private History.Op IssuePut(int label, int obj, int index, CrashLayout.PageKind kind, byte[] page)
    {
        // The version names the put's own sequence number, so the page is rendered after Issue.
        var op = _history.Issue(History.Kind.Put, label, obj, index);
        long version = CrashLayout.Version(_run, op.Seq);
        CrashLayout.Render(page, kind, label == ChurnLabel ? 0 : label, obj, index, version);
        op.Effect = kind switch { CrashLayout.PageKind.Zero => new PageState('Z', 0), CrashLayout.PageKind.SameFilled => new PageState('S', version), _ => new PageState('D', version) };
        return op;
    }

    private async Task ChurnAsync(Random rng)
    {
        var c3 = _store.GetClient(3);
        var page = new byte[CrashLayout.PageSize];
        bool exists = c3.GetPools().Count == 1;
        while (!_stopped())
        {
            History.Op? op = null;
            try
            {
                if (exists)
                {
                    op = _history.Issue(History.Kind.DestroyPool, ChurnLabel, -1, -1);
                    c3.DestroyPool(0);
                    _history.Ack(op);
                    exists = false;
                }
                await Task.Delay(rng.Next(0, 5));
                op = _history.Issue(History.Kind.CreatePool, ChurnLabel, -1, -1);
                int id = c3.CreatePool(PoolOptions.Persistent);
                if (id != 0) throw new InvalidOperationException($"the churn pool got id {id}");
                _history.Ack(op);
                exists = true;
                for (int i = rng.Next(1, 5); i > 0 && !_stopped(); i--)
                {
                    int obj = rng.Next(ChurnObjects), index = rng.Next(ChurnIndices);
                    op = IssuePut(ChurnLabel, obj, index, rng.Next(4) == 0 ? CrashLayout.PageKind.SameFilled : CrashLayout.PageKind.Data, page);
                    var status = await c3.PutAsync(0, CrashLayout.Oid(obj), (uint)index, page);
                    if (status != PutStatus.Stored) throw new InvalidOperationException($"churn put refused: {status}");
                    _history.Ack(op);
                }
            }
            catch (Exception e) when (op is not null)
            {
                Failed(op, e);
                return;
            }
        }
    }

    private async Task MaintainAsync(Random rng)
    {
        while (!_stopped())
        {
            await Task.Delay(rng.Next(5, 60));
            if (_stopped()) return;
            bool compact = rng.Next(5) < 2;
            _phase = compact ? "compaction" : "checkpoint";
            try
            {
                if (compact)
                {
                    _store.CompactLog(force: true);
                    Interlocked.Increment(ref Compactions);
                }
                else
                {
                    _store.Checkpoint();
                    Interlocked.Increment(ref Checkpoints);
                }
            }
            catch (Exception e) when (!_history.IsFrozen)
            {
                _errors.Enqueue($"{_phase} failed before the cut: {e}");
            }
            catch (Exception)
            {
                return;
            }
            finally
            {
                _phase = "puts";
            }
        }
    }
}
