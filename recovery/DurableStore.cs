using System.Diagnostics;
using Tmem.LogTier;

namespace Tmem.Recovery;

/// <summary>
/// Opens a store whose persistent pools live in a data directory (<see cref="TmemOptions.DataDirectory"/>):
/// takes the directory's lock, recovers the FASTER log explicitly, replays every committed record
/// in order and rebuilds each persistent pool under the same client and pool ids. Ephemeral
/// pools are not recovered. A damaged record below the commit point stops the open with a
/// <see cref="TmemCorruptionException"/> naming its address; nothing is dropped or changed.
/// </summary>
public static class DurableStore
{
    /// <summary>Opens (and recovers) the store in <see cref="TmemOptions.DataDirectory"/>.</summary>
    public static TmemStore Open(TmemOptions options) => Open(options, out _);

    /// <summary>Opens (and recovers) the store, reporting what recovery did.</summary>
    /// <exception cref="ArgumentException">A bad setting, or no data directory.</exception>
    /// <exception cref="IOException">The directory is in use by another process.</exception>
    /// <exception cref="TmemCorruptionException">Damaged data below the commit point.</exception>
    public static TmemStore Open(TmemOptions options, out RecoveryReport report)
    {
        ArgumentNullException.ThrowIfNull(options);
        options = options.Clone();
        options.Validate();
        string dir = options.DataDirectory
            ?? throw new ArgumentException($"{TmemOptions.SectionName}:{nameof(TmemOptions.DataDirectory)} is not set; a memory-only store is opened with TmemStore.Open.", nameof(options));

        var clock = Stopwatch.StartNew();
        var directoryLock = DataDirectoryLock.Acquire(dir);
        PersistentLog log;
        try
        {
            log = PersistentLog.Open(dir, options.Durability, options.CommitIntervalMs);
        }
        catch
        {
            directoryLock.Dispose();
            throw;
        }
        var store = TmemStore.CreateDurable(options, log, directoryLock);
        try
        {
            var (records, bytes) = Replay(store, log, dir);
            var stats = store.GetStats();
            report = new RecoveryReport
            {
                DataDirectory = Path.GetFullPath(dir),
                BeginAddress = log.BeginAddress,
                CommittedUntilAddress = log.CommittedUntilAddress,
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

    private static (long Records, long Bytes) Replay(TmemStore store, PersistentLog log, string dir)
    {
        long records = 0, bytes = 0;
        foreach (var (address, entry) in log.ScanCommitted())
        {
            var record = LogRecord.TryRead(entry, out string? error)
                ?? throw Corrupt(dir, address, $"is damaged: {error}");
            try
            {
                Apply(store, record, address);
            }
            catch (InvalidDataException e)
            {
                throw Corrupt(dir, address, $"({record.Type}, pool serial {record.PoolSerial}) contradicts the records before it: {e.Message}");
            }
            records++;
            bytes += entry.Length;
        }
        return (records, bytes);
    }

    private static void Apply(TmemStore store, in LogRecord record, long address)
    {
        switch (record.Type)
        {
            case LogRecordType.PoolCreate:
                store.RestorePool(record.PoolSerial, PoolRecord.Read(record.Payload));
                break;
            case LogRecordType.PoolJoin:
                store.RestoreJoin(record.PoolSerial, PoolRecord.Read(record.Payload));
                break;
            case LogRecordType.PoolLeave:
                store.RestoreLeave(record.PoolSerial, PoolRecord.Read(record.Payload));
                break;
            case LogRecordType.Put:
                bool sameFilled = (record.Flags & LogRecordFlags.SameFilled) != 0;
                if (sameFilled ? record.Payload.Length != 8 : record.Payload.Length == 0)
                    throw new InvalidDataException($"put payload of {record.Payload.Length} bytes");
                store.RestoredPool(record.PoolSerial).RestorePut(record.ObjectId, record.Index, sameFilled, record.Payload, address);
                break;
            case LogRecordType.FlushPage:
                store.RestoredPool(record.PoolSerial).RestoreFlushPage(record.ObjectId, record.Index);
                break;
            case LogRecordType.FlushObject:
                store.RestoredPool(record.PoolSerial).RestoreFlushObject(record.ObjectId);
                break;
        }
    }

    private static TmemCorruptionException Corrupt(string dir, long address, string what) =>
        new(address, $"Log record at address {address} in {Path.GetFullPath(dir)} {what}. It is below the commit point, so it was acknowledged: the store was not opened and nothing was changed or dropped. Inspect and repair the directory with the offline recovery tool (verify, then recover) before opening it.");
}
