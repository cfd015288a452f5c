using System.Diagnostics;
using Tmem.LogTier;

namespace Tmem.Durability;

/// <summary>
/// Opens a store whose persistent pools live in a data directory (<see cref="TmemOptions.DataDirectory"/>),
/// for <see cref="TmemStore.Open(TmemOptions, out RecoveryReport)"/>. Recovery order: take the
/// directory's lock; open the FASTER log and recover it explicitly (errors surface); load the
/// newest index checkpoint if it fits the log; replay every committed record after it, in order
/// (<see cref="LogReplay"/>), rebuilding each persistent pool under the same client and pool ids;
/// only then start the log's space reserve and allow checkpoints. Ephemeral pools are not
/// recovered. Damage below the commit point stops the open with a
/// <see cref="TmemCorruptionException"/> naming its address; nothing is dropped or changed.
/// </summary>
internal static class StoreRecovery
{
    /// <summary>Opens and recovers the store in <paramref name="options"/>' data directory (validated, a private copy).</summary>
    public static TmemStore Open(TmemOptions options, out RecoveryReport report)
    {
        string dir = options.DataDirectory!;

        var clock = Stopwatch.StartNew();
        var directoryLock = DataDirectoryLock.Acquire(dir);
        PersistentLog log;
        try
        {
            log = PersistentLog.Open(dir, options);
        }
        catch
        {
            directoryLock.Dispose();
            throw;
        }
        var store = TmemStore.CreateDurable(options, log, directoryLock);
        try
        {
            var checkpoint = LoadCheckpoint(dir, log, out string? checkpointProblem);
            long replayFrom = 0;
            if (checkpoint is not null)
            {
                ApplyCheckpoint(store, checkpoint, log, dir);
                replayFrom = checkpoint.CoveredUntil;
            }
            var (records, bytes) = Replay(store, log, dir, replayFrom);
            store.MarkRecovered();
            var stats = store.GetStats();
            report = new RecoveryReport
            {
                DataDirectory = Path.GetFullPath(dir),
                BeginAddress = log.BeginAddress,
                CommittedUntilAddress = log.CommittedUntilAddress,
                CheckpointCoveredUntil = checkpoint?.CoveredUntil,
                CheckpointProblem = checkpointProblem,
                RecordsReplayed = records,
                BytesReplayed = bytes,
                PoolsRecovered = stats.Pools,
                PagesRecovered = stats.PersPages,
                Elapsed = clock.Elapsed,
            };
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The newest checkpoint if it is intact and fits the log; else null, with the reason (a
    /// damaged or mismatched checkpoint means a full replay, not a failed open: the log is
    /// authoritative).
    /// </summary>
    private static IndexCheckpoint? LoadCheckpoint(string dir, PersistentLog log, out string? problem)
    {
        problem = null;
        string path = IndexCheckpoint.PathIn(dir);
        if (!File.Exists(path)) return null;
        var checkpoint = IndexCheckpoint.TryParse(File.ReadAllBytes(path), out problem);
        if (checkpoint is null)
        {
            problem = $"checkpoint {path} is damaged ({problem}); replayed the whole log instead";
            return null;
        }
        // A checkpoint is written only once the log is committed past its address, and only after
        // the begin address it records is committed: one ahead of the commit metadata means the
        // metadata lost commits (acknowledged operations), not that the checkpoint is stale.
        if (checkpoint.CoveredUntil > log.CommittedUntilAddress || checkpoint.LogBeginAddress > log.BeginAddress)
        {
            string commitFile = LogCommitFile.PathIn(Path.Combine(dir, DataLayout.CommitFolder));
            throw new TmemCorruptionException(Math.Min(checkpoint.CoveredUntil, log.CommittedUntilAddress),
                $"The index checkpoint {Path.GetFullPath(path)} covers the log from {checkpoint.LogBeginAddress} until {checkpoint.CoveredUntil}, but the commit metadata in {Path.GetFullPath(commitFile)} " +
                $"says the log is committed from {log.BeginAddress} until {log.CommittedUntilAddress}. A checkpoint is written only after the log is committed that far, so the commit metadata has lost commits: " +
                "opening from it could undo acknowledged operations. Nothing was changed; run the offline recovery tool (tmem-admin verify, then recover) on the data directory.");
        }
        // Older than the log's begin address: a crash between a compaction's truncation and its
        // new checkpoint leaves this, and the whole log (from the compaction base) replays.
        if (checkpoint.CoveredUntil < log.BeginAddress || checkpoint.LogBeginAddress != log.BeginAddress)
        {
            problem = $"checkpoint {path} covers the log until {checkpoint.CoveredUntil} from {checkpoint.LogBeginAddress}, which does not fit the log ({log.BeginAddress} to {log.CommittedUntilAddress}); replayed the whole log instead";
            return null;
        }
        return checkpoint;
    }

    private static void ApplyCheckpoint(TmemStore store, IndexCheckpoint checkpoint, PersistentLog log, string dir)
    {
        try
        {
            store.RaisePoolSerial(checkpoint.PoolSerialHighWater);
            foreach (var pool in checkpoint.Pools)
            {
                if (pool.Members.Count == 0) throw new InvalidDataException($"pool serial {pool.Serial} has no member");
                var (firstClient, firstPoolId) = pool.Members[0];
                store.RestorePool(pool.Serial, new PoolRecord(firstClient, firstPoolId, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, pool.StoreIncompressible));
                foreach (var (client, poolId) in pool.Members.Skip(1))
                    store.RestoreJoin(pool.Serial, new PoolRecord(client, poolId, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, pool.StoreIncompressible));
                var restored = store.RestoredPool(pool.Serial);
                foreach (var page in pool.Pages)
                {
                    if (page.Address < log.BeginAddress || page.Address >= checkpoint.CoveredUntil || (page.Length == 0) != page.SameFilled)
                        throw new InvalidDataException($"page {page.ObjectId}/{page.Index} of pool serial {pool.Serial} points at log address {page.Address} (length {page.Length}), outside the {log.BeginAddress}..{checkpoint.CoveredUntil} it covers");
                    restored.RestoreFromCheckpoint(page);
                }
            }
        }
        catch (InvalidDataException e)
        {
            throw new TmemCorruptionException(0,
                $"The checkpoint {IndexCheckpoint.PathIn(dir)} passed its checksum but does not fit the log: {e.Message}. Nothing was changed; move the checkpoint file aside to open the store by replaying the whole log, and report this.");
        }
    }

    private static (long Records, long Bytes) Replay(TmemStore store, PersistentLog log, string dir, long from)
    {
        var state = new ReplayState(new StoreReplayTarget(store), dir);
        long records = log.ForEachCommitted(from, static (address, entry, state) =>
        {
            if (!LogRecord.TryRead(entry, out var record, out string? error))
                throw Corrupt(state.Directory, address, $"is damaged: {error}");
            try
            {
                LogReplay.Apply(state.Target, record, address);
            }
            catch (InvalidDataException e)
            {
                throw Corrupt(state.Directory, address, $"({record.Type}, pool serial {record.PoolSerial}) contradicts the records before it: {e.Message}");
            }
            state.Bytes += entry.Length;
        }, state);
        return (records, state.Bytes);
    }

    private sealed class ReplayState(StoreReplayTarget target, string directory)
    {
        public StoreReplayTarget Target { get; } = target;

        public string Directory { get; } = directory;

        public long Bytes { get; set; }
    }

    /// <summary>Replay into a store: its pools re-created under their serials, pages installed without logging them again.</summary>
    private sealed class StoreReplayTarget(TmemStore store) : IReplayTarget
    {
        public void CreatePool(uint serial, in PoolRecord pool, bool restated) => store.RestorePool(serial, pool, restated);

        public void JoinPool(uint serial, in PoolRecord member, bool restated) => store.RestoreJoin(serial, member, restated);

        public void LeavePool(uint serial, in PoolRecord member) => store.RestoreLeave(serial, member);

        public void Put(uint serial, in ObjectId objectId, uint index, bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload, long address) =>
            store.RestoredPool(serial).RestorePut(objectId, index, sameFilled, uncompressed, payload, address);

        public void FlushPage(uint serial, in ObjectId objectId, uint index) => store.RestoredPool(serial).RestoreFlushPage(objectId, index);

        public void FlushObject(uint serial, in ObjectId objectId) => store.RestoredPool(serial).RestoreFlushObject(objectId);
    }

    private static TmemCorruptionException Corrupt(string dir, long address, string what) =>
        new(address, $"Log record at address {address} in {Path.GetFullPath(dir)} {what}. It is below the commit point, so it was acknowledged: the store was not opened and nothing was changed or dropped. Inspect and repair the directory with the offline recovery tool (verify, then recover) before opening it.");
}
