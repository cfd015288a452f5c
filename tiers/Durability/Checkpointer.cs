using Tmem.LogTier;
using Tmem.Translation;

namespace Tmem.Durability;

/// <summary>
/// A durable store's index checkpoints (<c>checkpoint/index.ckpt</c>, docs/storage-format.md):
/// a copy of the persistent index consistent with one log address, written atomically once the
/// log is committed that far, so that the next open replays only what follows it. One checkpoint
/// or log compaction at a time (<see cref="Lock"/>; a compaction writes its own checkpoint).
/// </summary>
internal sealed class Checkpointer(TmemStore store, PersistentLog log, string dataDirectory)
{
    /// <summary>Held for a whole checkpoint and a whole log compaction: they never overlap.</summary>
    public Lock Lock { get; } = new();

    /// <summary>Captures and writes a checkpoint; returns the pages it lists.</summary>
    /// <exception cref="IOException">The storage is full or failing, or the write failed; the log stays authoritative.</exception>
    public long Write()
    {
        // A checkpoint file takes space the log's reserve may need, and cannot be made durable on
        // a failing disk; the log stays authoritative meanwhile.
        if (log.Health.IsDegraded)
            throw new IOException($"No checkpoint while the data directory's storage is {log.Health.State.ToString().ToLowerInvariant()} ({log.Health.Snapshot().LastError}); the log stays authoritative, and the next checkpoint tries again.");
        lock (Lock)
        {
            var checkpoint = Capture(log.BeginAddress);
            WriteWhenCommitted(checkpoint);
            return checkpoint.Pools.Sum(p => (long)p.Pages.Count);
        }
    }

    /// <summary>
    /// Copies the index of every persistent pool, consistent with the log tail at that moment.
    /// <paramref name="logBeginAddress"/> is the begin address the log will have when the
    /// checkpoint is written (compaction captures before it truncates).
    /// </summary>
    public IndexCheckpoint Capture(long logBeginAddress)
    {
        var spin = new SpinWait();
        while (true)
        {
            lock (store.PoolLock)
            {
                // A pool whose pages are gone from memory but whose departure is not in the log yet
                // cannot be copied consistently with the tail: wait for the departure (DestroyPool
                // appends it a moment later, under this lock).
                if (store.PoolsBeingDestroyedLocked == 0) return CaptureLocked(logBeginAddress);
            }
            spin.SpinOnce(sleep1Threshold: 10);
        }
    }

    private IndexCheckpoint CaptureLocked(long logBeginAddress)
    {
        // Persistent records are appended only under a bucket lock of their pool or under
        // the pool lock: holding all of them, the log tail is exactly what the copy reflects.
        var pools = store.PersistentPoolsLocked().OrderBy(p => p.Serial).ToArray();
        var buckets = pools.SelectMany(p => p.Buckets).ToArray();
        int held = 0;
        try
        {
            foreach (var bucket in buckets)
            {
                bucket.Lock.Enter();
                held++;
            }
            return new IndexCheckpoint
            {
                LogBeginAddress = logBeginAddress,
                CoveredUntil = log.TailAddress,
                PoolSerialHighWater = store.PoolSerialLocked,
                Pools = pools.Select(p => new IndexCheckpoint.PoolEntry((uint)p.Serial, p.PageSize, p.ExclusiveGets, p.SharedUuid,
                    p.LoggedMembers.ToList(), p.CapturePagesLocked()) { StoreIncompressible = p.StoreIncompressible }).ToList(),
            };
        }
        finally
        {
            for (int i = 0; i < held; i++) buckets[i].Lock.Exit();
        }
    }

    /// <summary>Writes a captured checkpoint once every record it reflects is durable.</summary>
    public void WriteWhenCommitted(IndexCheckpoint checkpoint)
    {
        if (checkpoint.CoveredUntil > 0) log.WaitCommitted(checkpoint.CoveredUntil - 1);
        IndexCheckpoint.WriteAtomically(dataDirectory, checkpoint.Serialize(), log.Io);
    }
}
