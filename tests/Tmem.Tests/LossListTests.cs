using Tmem.Recovery.Offline;
using static Tmem.Tests.TestPages;

namespace Tmem.Tests;

/// <summary>
/// The loss list of <c>recover --truncate-at-first-corruption</c> against an independent model of
/// the acknowledged operations: each test runs a sequence of Strict operations (one thread, one
/// log record each, so log order is operation order), maps each operation to its record by walking
/// the undamaged segment's framing, damages the segment, and compares the report with the
/// difference between the state of all operations and the state of those before the cut. Where
/// records are unreadable the report must say so with the address range and list exactly the
/// handles a later readable record or the checkpoint settles.
/// </summary>
public sealed class LossListTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tmem-losses-" + Guid.NewGuid().ToString("N"));

    public LossListTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Dir => Path.Combine(_root, "data");

    private string Live => Path.Combine(_root, "live");

    private string Segment0 => Path.Combine(Dir, "log", "segment.0");

    private string CheckpointFile => Path.Combine(Dir, "checkpoint", "index.ckpt");

    private enum Op { CreatePool, Put, FlushPage, FlushObject }

    private readonly record struct Handle(int Pool, ObjectId Oid, uint Index);

    private sealed record Operation(Op Kind, int Pool, ObjectId Oid, uint Index, byte[]? Page);

    /// <summary>The operations in order, run against a real store, and what they leave.</summary>
    private sealed class Workload
    {
        public List<Operation> Ops { get; } = new();

        private readonly TmemClient _client;

        public Workload(TmemClient client) => _client = client;

        public void CreatePool(int expectedId)
        {
            Assert.Equal(expectedId, _client.CreatePool(PoolOptions.Persistent));
            Ops.Add(new Operation(Op.CreatePool, expectedId, default, 0, null));
        }

        public void Put(int pool, int oid, uint index, byte[] page)
        {
            Assert.Equal(PutStatus.Stored, _client.Put(pool, Oid(oid), index, page));
            Ops.Add(new Operation(Op.Put, pool, Oid(oid), index, page));
        }

        public void FlushPage(int pool, int oid, uint index)
        {
            Assert.True(_client.FlushPage(pool, Oid(oid), index));
            Ops.Add(new Operation(Op.FlushPage, pool, Oid(oid), index, null));
        }

        public void FlushObject(int pool, int oid)
        {
            Assert.True(_client.FlushObject(pool, Oid(oid)) > 0);
            Ops.Add(new Operation(Op.FlushObject, pool, Oid(oid), 0, null));
        }

        /// <summary>The pages after operations [0, <paramref name="count"/>).</summary>
        public Dictionary<Handle, byte[]> StateAfter(int count)
        {
            var state = new Dictionary<Handle, byte[]>();
            foreach (var op in Ops.Take(count))
            {
                switch (op.Kind)
                {
                    case Op.Put: state[new Handle(op.Pool, op.Oid, op.Index)] = op.Page!; break;
                    case Op.FlushPage: state.Remove(new Handle(op.Pool, op.Oid, op.Index)); break;
                    case Op.FlushObject: foreach (var h in state.Keys.Where(h => h.Pool == op.Pool && h.Oid == op.Oid).ToList()) state.Remove(h); break;
                }
            }
            return state;
        }

        /// <summary>Whether an operation after index <paramref name="after"/> sets <paramref name="handle"/>'s state.</summary>
        public bool SetLater(Handle handle, int after) =>
            Ops.Skip(after + 1).Any(op => op.Pool == handle.Pool && op.Oid == handle.Oid && (op.Kind == Op.FlushObject || (op.Kind is Op.Put or Op.FlushPage && op.Index == handle.Index)));

        /// <summary>
        /// What the cut before operation <paramref name="cut"/> changes, as (handle, kind): pages
        /// that are in the full state and not at the cut are lost, different reverted, gone resurrected.
        /// </summary>
        public Dictionary<Handle, LossKind> Changes(int cut)
        {
            var all = StateAfter(Ops.Count);
            var before = StateAfter(cut);
            var changes = new Dictionary<Handle, LossKind>();
            foreach (var (h, page) in all)
            {
                if (!before.TryGetValue(h, out var old)) changes[h] = LossKind.Lost;
                else if (!ReferenceEquals(old, page)) changes[h] = LossKind.Reverted;
            }
            foreach (var h in before.Keys.Where(h => !all.ContainsKey(h))) changes[h] = LossKind.Resurrected;
            return changes;
        }
    }

    /// <summary>
    /// The entries of an undamaged segment 0 by FasterLog's framing (4-byte length, payload padded
    /// to 4, a zero length ends the page), from address 64 until the first empty page.
    /// </summary>
    private static List<(long Address, long End)> Entries(byte[] segment)
    {
        var entries = new List<(long, long)>();
        const long page = 4L << 20;
        long a = 64;
        while (a + 4 <= segment.Length)
        {
            int length = BitConverter.ToInt32(segment, (int)a);
            if (length == 0)
            {
                long next = (a & ~(page - 1)) + page;
                if (next >= segment.Length || BitConverter.ToInt32(segment, (int)next) == 0) break;
                a = next;
                continue;
            }
            long end = a + 4 + ((length + 3) & ~3);
            entries.Add((a, end));
            a = end;
        }
        return entries;
    }

    /// <summary>The report's page losses as (handle, kind); the pool id from the members (client 1).</summary>
    private static Dictionary<Handle, LossKind> Listed(RepairReport report)
    {
        var listed = new Dictionary<Handle, LossKind>();
        foreach (var loss in report.LostPages)
        {
            int pool = Assert.Single(loss.Members, m => m.ClientId == 1).PoolId;
            var words = loss.ObjectId.Split(':').Select(w => Convert.ToUInt64(w, 16)).ToArray();
            Assert.True(listed.TryAdd(new Handle(pool, new ObjectId(words[0], words[1], words[2]), loss.Index), loss.Kind), $"{loss} listed twice");
        }
        return listed;
    }

    private static void AssertSameChanges(Dictionary<Handle, LossKind> expected, Dictionary<Handle, LossKind> listed)
    {
        var missing = expected.Where(e => !listed.ContainsKey(e.Key)).Select(e => $"{e.Key} {e.Value}").ToList();
        var extra = listed.Where(l => !expected.ContainsKey(l.Key)).Select(l => $"{l.Key} {l.Value}").ToList();
        var wrong = expected.Where(e => listed.TryGetValue(e.Key, out var k) && k != e.Value).Select(e => $"{e.Key} {e.Value} listed as {listed[e.Key]}").ToList();
        Assert.True(missing.Count + extra.Count + wrong.Count == 0,
            $"missing: {string.Join("; ", missing.Take(10))} ({missing.Count}); not changed but listed: {string.Join("; ", extra.Take(10))} ({extra.Count}); wrong kind: {string.Join("; ", wrong.Take(10))}");
    }

    /// <summary>After the cut the store opens with exactly the state before operation <paramref name="cut"/>.</summary>
    private void AssertStoreHoldsStateBefore(Workload work, int cut)
    {
        var expected = work.StateAfter(cut);
        using var store = TmemStore.Open(new TmemOptions { DataDirectory = Dir }, out var report);
        var c = store.GetClient(1);
        var buffer = new byte[4096];
        foreach (var (h, page) in expected)
        {
            Assert.Equal(GetStatus.Hit, c.Get(h.Pool, h.Oid, h.Index, buffer));
            Assert.Equal(page, buffer);
        }
        Assert.Equal(expected.Count, report.PagesRecovered);
    }

    /// <summary>
    /// A workload whose cut point is the same-filled marker put (object 3): before it pages to
    /// keep, flush and replace; after it new pages, replacements, page and object flushes, a page
    /// put and flushed again, a new pool. Runs on <see cref="Live"/>; the directory is copied to
    /// <see cref="Dir"/> at the end (before close: no checkpoint) or after close (with one).
    /// </summary>
    private (Workload Work, int Marker) RunMixedWorkload(bool closeWithCheckpoint, Action<Workload>? afterMarker = null)
    {
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Live }))
        {
            var w = new Workload(store.GetClient(1));
            w.CreatePool(0);
            for (uint i = 0; i < 60; i++) w.Put(0, 1, i, Compressible(4096, (int)i));
            for (uint i = 0; i < 20; i++) w.Put(0, 2, i, Compressible(4096, 1000 + (int)i));
            int marker = w.Ops.Count;
            w.Put(0, 3, 0, SameFilled(4096, 0x0BADC0FFEE0DDF00UL));
            if (afterMarker is not null) afterMarker(w);
            else
            {
                for (uint i = 0; i < 50; i++) w.Put(0, 4, i, Compressible(4096, 2000 + (int)i));   // lost
                for (uint i = 0; i < 10; i++) w.Put(0, 1, i, Compressible(4096, 3000 + (int)i));   // reverted
                for (uint i = 20; i < 30; i++) w.FlushPage(0, 1, i);                                 // resurrected
                w.FlushObject(0, 2);                                                                 // resurrected
                for (uint i = 0; i < 10; i++) w.Put(0, 5, i, Compressible(4096, 4000 + (int)i));
                for (uint i = 0; i < 5; i++) w.FlushPage(0, 5, i);                                   // put and flushed: unchanged
                w.Put(0, 1, 30, Compressible(4096, 5000));
                w.FlushPage(0, 1, 30);                                                               // replaced, then flushed: resurrected
                for (uint i = 0; i < 5; i++) w.Put(0, 6, i, Compressible(4096, 6000 + (int)i));
                w.FlushObject(0, 6);                                                                 // unchanged
                w.CreatePool(1);
                for (uint i = 0; i < 3; i++) w.Put(1, 7, i, Compressible(4096, 7000 + (int)i));    // in a pool created after the cut: lost
            }
            if (!closeWithCheckpoint) CommitRollbackTests.Copy(Live, Dir);
            return (w, marker);
        }
    }

    private (Workload Work, int Marker) Finish((Workload Work, int Marker) run, bool withCheckpoint)
    {
        if (withCheckpoint) CommitRollbackTests.Copy(Live, Dir);
        Assert.Equal(withCheckpoint, File.Exists(CheckpointFile));
        return run;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FlippedBitInALengthHeader_IsResynchronised_AndEveryChangedHandleIsListed(bool withCheckpoint)
    {
        var (work, marker) = Finish(RunMixedWorkload(withCheckpoint), withCheckpoint);
        var bytes = File.ReadAllBytes(Segment0);
        var entries = Entries(bytes);
        Assert.Equal(work.Ops.Count, entries.Count); // one record per operation
        long entry = entries[marker].Address;
        Assert.Equal(entry, bytes.AsSpan().IndexOf(BitConverter.GetBytes(0x0BADC0FFEE0DDF00UL)) - 48 - 4);
        bytes[entry + 1] ^= 0x10; // the length header: 56 becomes 4152, inside the page
        File.WriteAllBytes(Segment0, bytes);

        var verify = DataDirectoryVerifier.Verify(Dir);
        Assert.Equal(entry, verify.FirstCorruptionAddress);
        Assert.Contains(verify.Problems, p => p.Kind == ProblemKind.BadFraming && p.Address == entry && p.Message.Contains("only the length header is damaged"));
        Assert.DoesNotContain(verify.Problems, p => p.Kind == ProblemKind.InconsistentRecord);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(entry, report.CutAddress);
        Assert.True(report.LossListComplete, string.Join("; ", report.UnknownRanges));
        var expected = work.Changes(marker);
        Assert.Equal(50 + 10 + 10 + 20 + 5 + 1 + 1 + 3, expected.Count);
        AssertSameChanges(expected, Listed(report));
        Assert.Contains(report.LostPools, p => p.Members.Contains(new PoolMember(1, 1)) && p.Description.Contains("created"));
        AssertStoreHoldsStateBefore(work, marker);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZeroedBlockWithAFlushInside_ResurrectedPageIsListed_OrTheListSaysItIsIncomplete(bool withCheckpoint)
    {
        int flush = 0;
        var (work, _) = Finish(RunMixedWorkload(withCheckpoint, w =>
        {
            for (uint i = 0; i < 20; i++) w.Put(0, 4, i, Compressible(4096, 2000 + (int)i));
            flush = w.Ops.Count;
            w.FlushPage(0, 1, 5);                                                                // inside the zeroed block
            for (uint i = 20; i < 60; i++) w.Put(0, 4, i, Compressible(4096, 2000 + (int)i));
            w.FlushObject(0, 2);                                                                 // after it: known
            for (uint i = 0; i < 10; i++) w.Put(0, 1, 40 + i, Compressible(4096, 3000 + (int)i)); // after it: known
        }), withCheckpoint);
        var bytes = File.ReadAllBytes(Segment0);
        var entries = Entries(bytes);
        Assert.Equal(work.Ops.Count, entries.Count);
        long block = entries[flush].Address & ~4095L;
        bytes.AsSpan((int)block, 4096).Clear();
        File.WriteAllBytes(Segment0, bytes);
        // The operations whose records the zeros touch are unknown; the first of them is the cut.
        var unknown = Enumerable.Range(0, entries.Count).Where(i => entries[i].Address < block + 4096 && entries[i].End > block).ToList();
        int cut = unknown[0], lastUnknown = unknown[^1];
        Assert.Contains(flush, unknown);
        Assert.True(lastUnknown + 5 < work.Ops.Count);

        if (!withCheckpoint)
        {
            var (code, stdout, _) = OfflineToolTests.RunTool("recover", Dir);
            Assert.Equal(1, code);
            Assert.Contains("INCOMPLETE", stdout);
            Assert.Contains($"{entries[cut].Address} to {entries[lastUnknown + 1].Address}", stdout);
        }
        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(entries[cut].Address, report.CutAddress);
        var expected = work.Changes(cut);
        Assert.Equal(LossKind.Resurrected, expected[new Handle(0, Oid(1), 5)]);
        var listed = Listed(report);
        if (withCheckpoint)
        {
            // The checkpoint, past the damage, is the store's state there: the list is exact.
            Assert.True(report.LossListComplete, string.Join("; ", report.UnknownRanges));
            AssertSameChanges(expected, listed);
        }
        else
        {
            // Incomplete, saying where: the zeroed records. Exactly what later records settle is listed.
            Assert.False(report.LossListComplete);
            var range = Assert.Single(report.UnknownRanges);
            Assert.Equal(entries[cut].Address, range.From);
            Assert.Equal(entries[lastUnknown + 1].Address, range.Until); // resynchronised at the first whole record after the zeros
            var settled = expected.Where(e => work.SetLater(e.Key, lastUnknown)).ToDictionary(e => e.Key, e => e.Value);
            Assert.DoesNotContain(new Handle(0, Oid(1), 5), settled.Keys);
            // A record the zeros cut into, whose header is before them, is listed as damaged by what its header says.
            foreach (int op in unknown.Where(i => entries[i].Address + 4 + 48 <= block && work.Ops[i].Kind is Op.Put or Op.FlushPage))
            {
                var h = new Handle(work.Ops[op].Pool, work.Ops[op].Oid, work.Ops[op].Index);
                if (!work.SetLater(h, lastUnknown)) settled[h] = LossKind.Damaged;
            }
            AssertSameChanges(settled, listed);
        }
        AssertStoreHoldsStateBefore(work, cut);
    }

    [Fact]
    public void FlushesAfterTheCheckpoint_OfPagesItListsPastTheCut_AreNotListed()
    {
        // Damage before the checkpoint's address, records after it readable: the checkpoint
        // lists pages put after the cut that later flushes (after the checkpoint) removed.
        Workload work;
        int marker;
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Live }))
        {
            work = new Workload(store.GetClient(1));
            work.CreatePool(0);
            for (uint i = 0; i < 30; i++) work.Put(0, 1, i, Compressible(4096, (int)i));
            marker = work.Ops.Count;
            work.Put(0, 3, 0, SameFilled(4096, 0x0BADC0FFEE0DDF00UL));
            for (uint i = 0; i < 20; i++) work.Put(0, 4, i, Compressible(4096, 2000 + (int)i));
            for (uint i = 0; i < 10; i++) work.Put(0, 8, i, Compressible(4096, 2500 + (int)i));
            store.Checkpoint();
            for (uint i = 0; i < 10; i++) work.FlushPage(0, 4, i);  // listed by the checkpoint, gone after it
            work.FlushObject(0, 8);
            work.FlushPage(0, 1, 3);                                 // before the cut, flushed after the checkpoint: resurrected
            CommitRollbackTests.Copy(Live, Dir);                      // a power cut: the checkpoint is older than the log's end
        }
        var bytes = File.ReadAllBytes(Segment0);
        var entries = Entries(bytes);
        Assert.Equal(work.Ops.Count, entries.Count);
        long entry = entries[marker].Address;
        bytes[entry + 4 + 48 + 3] ^= 0x01; // the marker's payload: its checksum fails, its framing holds
        File.WriteAllBytes(Segment0, bytes);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(entry, report.CutAddress);
        Assert.True(report.LossListComplete, string.Join("; ", report.UnknownRanges));
        var expected = work.Changes(marker);
        Assert.Equal(1 + 10 + 1, expected.Count); // the marker, pages 10..19 of object 4, page 3 of object 1
        AssertSameChanges(expected, Listed(report));
        AssertStoreHoldsStateBefore(work, marker);
    }

    [Fact]
    public void SegmentCutMidRecord_AfterTheCheckpoint_ReportsTheMissingRangeInsteadOfZeroLosses()
    {
        Workload work;
        using (var store = TmemStore.Open(new TmemOptions { DataDirectory = Live }))
        {
            work = new Workload(store.GetClient(1));
            work.CreatePool(0);
            for (uint i = 0; i < 30; i++) work.Put(0, 1, i, Compressible(4096, (int)i));
            store.Checkpoint();
            for (uint i = 0; i < 30; i++) work.Put(0, 2, i, Compressible(4096, 100 + (int)i));
            for (uint i = 0; i < 10; i++) work.FlushPage(0, 1, i);
            CommitRollbackTests.Copy(Live, Dir);
        }
        var bytes = File.ReadAllBytes(Segment0);
        var entries = Entries(bytes);
        int cutOp = 31 + 15; // the 16th put of object 2
        long cutAt = entries[cutOp].Address + 100;
        long committed = entries[^1].End;
        using (var file = new FileStream(Segment0, FileMode.Open)) file.SetLength(cutAt);

        var dry = DataDirectoryRepairer.Repair(Dir);
        Assert.False(dry.LossListComplete);
        Assert.Contains("incomplete", dry.Advice);
        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(entries[cutOp].Address, report.CutAddress);
        Assert.False(report.LossListComplete);
        var range = Assert.Single(report.UnknownRanges);
        Assert.Equal((entries[cutOp].Address, committed), (range.From, range.Until));
        Assert.Empty(report.LostPages); // nothing after the cut is readable: nothing can be listed, and the report says so
        AssertStoreHoldsStateBefore(work, cutOp);
    }

    [Fact]
    public async Task LastSegmentDeleted_AfterTheCheckpoint_ReportsTheMissingRange()
    {
        var options = new TmemOptions { DataDirectory = Live, LogSegmentSizeBytes = 16L << 20 };
        long segmentSize = 16L << 20;
        using (var store = TmemStore.Open(options))
        {
            var c = store.GetClient(1);
            int p = c.CreatePool(PoolOptions.Persistent);
            var puts = new List<ValueTask<PutStatus>>();
            for (int i = 0; i < 5000; i++) puts.Add(c.PutAsync(p, Oid(i / 64), (uint)(i % 64), WithRandomPrefix(4096, 0.55, i)));
            foreach (var put in puts) Assert.Equal(PutStatus.Stored, await put);
            store.Checkpoint();
            puts.Clear();
            for (int i = 5000; i < 9000; i++) puts.Add(c.PutAsync(p, Oid(i / 64), (uint)(i % 64), WithRandomPrefix(4096, 0.55, i)));
            foreach (var put in puts) Assert.Equal(PutStatus.Stored, await put);
            Assert.Equal(64, c.FlushObject(p, Oid(0))); // in segment 1: its pages come back with the cut, unlisted
            CommitRollbackTests.Copy(Live, Dir);
        }
        string segment1 = Path.Combine(Dir, "log", "segment.1");
        Assert.True(File.Exists(segment1));
        var checkpoint = Tmem.LogTier.IndexCheckpoint.TryParse(File.ReadAllBytes(CheckpointFile), out _)!;
        Assert.True(checkpoint.CoveredUntil < segmentSize); // the checkpoint is older than segment 1
        File.Delete(segment1);

        var report = DataDirectoryRepairer.Repair(Dir, new RepairOptions { TruncateAtFirstCorruption = true });
        Assert.Equal(segmentSize, report.CutAddress);
        Assert.False(report.LossListComplete);
        var range = Assert.Single(report.UnknownRanges);
        Assert.Equal(segmentSize, range.From);
        Assert.Contains("segment.1", range.Reason);
        Assert.DoesNotContain(report.LostPages, l => l.ObjectId == Oid(0).ToString());
        var (code, stdout, _) = OfflineToolTests.RunTool("verify", Dir);
        Assert.Equal(0, code); // repaired
    }
}
