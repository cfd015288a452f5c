using System.Diagnostics;
using Tmem.Diagnostics;
using Tmem.LogTier;
using Tmem.Translation;

namespace Tmem.Durability;

/// <summary>
/// A durable store's log compaction (docs/engine.md, "Log compaction"; <see cref="TmemStore.CompactLog"/>). The log only grows: every overwrite and
/// flush leaves a dead record behind. When the live records are less than
/// <see cref="TmemOptions.LogCompactionLiveFraction"/> of the log, compaction
/// <list type="number">
/// <item>appends, under the pool lock, a <see cref="LogRecordType.CompactionBase"/> record B that
/// restates every live persistent pool and member, so that the records from B on hold the whole
/// state;</item>
/// <item>scans the committed log below B and, for each Put record whose page still points at it,
/// appends a copy and points the page at the copy, under the page's bucket lock (a put or flush
/// racing with it is ordered wholly before or after);</item>
/// <item>waits for those records to commit, checks that no live page points below B, and truncates
/// the log to B with a commit, after which FASTER deletes the segment files below it;</item>
/// <item>writes a fresh index checkpoint (the old one points below B).</item>
/// </list>
/// A crash anywhere leaves a log that replays to the same state: before the truncation commit the
/// old records are all there and the copies restate them; after it, replay from B starts with the
/// pools and finds every live page at or after B.
/// </summary>
internal sealed class LogCompactor(TmemStore store, PersistentLog log, Checkpointer checkpointer, TmemOptions options, StoreCounters counters, StoreDiagnostics? diagnostics)
{
    private readonly CancellationTokenSource _compactionStop = new();
    private int _compactionRunning;
    private Task? _backgroundCompaction;
    private long _compactionRetryAfterTail;
    private volatile Exception? _lastCompactionError;

    /// <summary>The error that stopped the last background compaction, or null.</summary>
    public Exception? LastError => _lastCompactionError;

    /// <summary>Compacts now when due, or always with <paramref name="force"/>; null when it was not due (see <see cref="TmemStore.CompactLog"/>).</summary>
    public LogCompactionResult? Compact(bool force, CancellationToken cancellationToken)
    {
        if (!force && !CompactionDue()) return null;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _compactionStop.Token);
        return CompactCore(force, linked.Token);
    }

    /// <summary>
    /// Compaction frees whole segment files, so it is judged on them: due when the live records
    /// are under the live fraction of the segments the log spans (what a preallocating device
    /// holds on disk; an upper bound for the file device) and at least a segment of the log is
    /// dead, so that a compaction can free a file (and a log that is all live, or mostly slack
    /// in its first and last segments, does not compact again and again).
    /// </summary>
    private bool CompactionDue()
    {
        double fraction = options.LogCompactionLiveFraction;
        if (fraction == 0) return false;
        long begin = log.BeginAddress, tail = log.TailAddress, segment = log.SegmentSize;
        if (tail <= begin) return false;
        long live = Volatile.Read(ref counters.PersLogBytes);
        long spanned = ((tail - 1) / segment - begin / segment + 1) * segment;
        return live < fraction * spanned && (tail - begin) - live >= segment;
    }

    /// <summary>On the commit loop after each commit: starts a background compaction when one is due.</summary>
    public void MaybeStart()
    {
        if (!store.IsRecovered || store.IsClosing || log.Health.IsDegraded || log.TailAddress < Volatile.Read(ref _compactionRetryAfterTail) || !CompactionDue()) return;
        if (Interlocked.CompareExchange(ref _compactionRunning, 1, 0) != 0) return;
        _backgroundCompaction = Task.Factory.StartNew(() =>
        {
            try
            {
                CompactCore(force: false, _compactionStop.Token);
                _lastCompactionError = null;
            }
            catch (OperationCanceledException) when (_compactionStop.IsCancellationRequested)
            {
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Nothing was truncated. Try again only after another segment's worth of appends.
                _lastCompactionError = e;
                Interlocked.Increment(ref counters.LogCompactionFailures);
                Volatile.Write(ref _compactionRetryAfterTail, log.TailAddress + log.SegmentSize);
            }
            finally
            {
                Volatile.Write(ref _compactionRunning, 0);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Disposal: cancels a running compaction and waits for it (it leaves the log as it was).</summary>
    public void Stop()
    {
        _compactionStop.Cancel();
        try
        {
            _backgroundCompaction?.Wait();
        }
        catch (AggregateException)
        {
        }
    }

    private LogCompactionResult? CompactCore(bool force, CancellationToken cancellationToken)
    {
        lock (checkpointer.Lock)
        {
            if (store.IsClosing) return null;
            if (!force && !CompactionDue()) return null;
            ThrowIfStorageDegraded();
            var clock = Stopwatch.StartNew();
            long begin = log.BeginAddress;
            long bytesBefore = log.TailAddress - begin;
            long baseAddress;
            Dictionary<uint, Pool> pools;
            lock (store.PoolLock)
            {
                // One record restating every pool and member: appends of other threads (puts hold
                // only a bucket lock) cannot come between the base and the pools it restates.
                var live = store.PersistentPoolsLocked();
                pools = new Dictionary<uint, Pool>(live.Count);
                var members = new List<(uint, bool, PoolRecord)>();
                foreach (var pool in live.OrderBy(p => p.Serial))
                {
                    pools.Add((uint)pool.Serial, pool);
                    for (int i = 0; i < pool.LoggedMembers.Count; i++)
                    {
                        var (clientId, poolId) = pool.LoggedMembers[i];
                        members.Add(((uint)pool.Serial, i > 0, new PoolRecord(clientId, poolId, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, pool.StoreIncompressible)));
                    }
                }
                baseAddress = AppendCompactionBase(new CompactionBaseRecord(begin, members));
            }

            log.WaitCommitted(baseAddress);
            long copiedRecords = 0, copiedBytes = 0;
            foreach (var (address, entry) in log.ScanCommitted(begin, baseAddress))
            {
                cancellationToken.ThrowIfCancellationRequested();
                ThrowIfStorageDegraded();
                if (!LogRecord.TryRead(entry, out var record, out string? error))
                    throw new TmemCorruptionException(address, $"Log compaction found the record at address {address} damaged ({error}); nothing was truncated. Inspect the directory with the offline recovery tool.");
                if (record.Type != LogRecordType.Put || !pools.TryGetValue(record.PoolSerial, out var pool)) continue;
                if (pool.Relocate(record.ObjectId, record.Index, address, entry))
                {
                    copiedRecords++;
                    copiedBytes += PersistentLog.EntrySizeOfRecord(entry.Length);
                }
            }
            cancellationToken.ThrowIfCancellationRequested();

            // Every live page must now be at or after the base: the checkpoint's copy of the index
            // shows it, and is written once the truncation is durable.
            var checkpoint = checkpointer.Capture(baseAddress);
            foreach (var pool in checkpoint.Pools)
                foreach (var page in pool.Pages)
                    if (page.Address < baseAddress)
                        throw new InvalidOperationException($"Log compaction left page {page.ObjectId}/{page.Index} of pool serial {pool.Serial} at address {page.Address}, below the base {baseAddress}; nothing was truncated.");
            log.WaitCommitted(checkpoint.CoveredUntil - 1);
            diagnostics?.CompactionStageHook?.Invoke("before-truncate");
            log.TruncateUntilAsync(baseAddress, CancellationToken.None).GetAwaiter().GetResult();
            try
            {
                checkpointer.WriteWhenCommitted(checkpoint);
            }
            catch (IOException)
            {
                // The old checkpoint no longer fits the log; the next open replays from the base.
            }

            Interlocked.Increment(ref counters.LogCompactions);
            Interlocked.Add(ref counters.LogCompactionCopiedBytes, copiedBytes);
            Interlocked.Add(ref counters.LogTruncatedBytes, baseAddress - begin);
            return new LogCompactionResult(begin, baseAddress, bytesBefore, log.TailAddress - baseAddress, copiedRecords, copiedBytes, clock.Elapsed);
        }
    }

    /// <summary>
    /// Compaction's copies would eat the log's space reserve (kept for flushes and refusals while
    /// the disk is full) or pile up on a failing disk: it stops, truncating nothing.
    /// </summary>
    private void ThrowIfStorageDegraded()
    {
        if (log.Health.IsDegraded)
            throw new IOException($"Log compaction stopped: the data directory's storage is {log.Health.State.ToString().ToLowerInvariant()} ({log.Health.Snapshot().LastError}); nothing was truncated.");
    }

    /// <summary>Under the pool lock: appends the compaction base record; returns its address.</summary>
    private long AppendCompactionBase(CompactionBaseRecord payload)
    {
        var payloadBytes = new byte[payload.Size];
        payload.Write(payloadBytes);
        var record = new byte[LogRecord.SizeOf(payloadBytes.Length)];
        LogRecord.Write(record, LogRecordType.CompactionBase, LogRecordFlags.None, 0, default, 0, payloadBytes);
        return log.Append(record);
    }
}
