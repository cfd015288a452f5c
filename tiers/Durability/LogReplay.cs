using Tmem.LogTier;

namespace Tmem.Durability;

/// <summary>
/// What replaying the persistent log does to a state: the store's own recovery applies it to a
/// store (<see cref="StoreRecovery"/>), the offline tool to a model of the directory. Each method
/// throws <see cref="InvalidDataException"/> when the record contradicts the state before it
/// (a put into a pool that is not live, a pool created twice, ...).
/// </summary>
public interface IReplayTarget
{
    /// <summary>
    /// A persistent pool was created under <paramref name="serial"/>, mapped for its first member.
    /// <paramref name="restated"/>: the compaction base restating a pool that may already be
    /// live (then it must agree, and only a missing member is added).
    /// </summary>
    void CreatePool(uint serial, in PoolRecord pool, bool restated);

    /// <summary>A client joined the shared pool <paramref name="serial"/> (<paramref name="restated"/> as for <see cref="CreatePool"/>).</summary>
    void JoinPool(uint serial, in PoolRecord member, bool restated);

    /// <summary>A member left the pool; the pool goes with its last member.</summary>
    void LeavePool(uint serial, in PoolRecord member);

    /// <summary>
    /// A page was stored: its payload is the 8-byte pattern of a same-filled page, the page itself
    /// when <paramref name="uncompressed"/>, else its LZ4 bytes; <paramref name="address"/> is the record's.
    /// </summary>
    void Put(uint serial, in ObjectId objectId, uint index, bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload, long address);

    /// <summary>A page was flushed (or taken by an exclusive get).</summary>
    void FlushPage(uint serial, in ObjectId objectId, uint index);

    /// <summary>Every page of an object was flushed.</summary>
    void FlushObject(uint serial, in ObjectId objectId);
}

/// <summary>
/// The one replay of the log's records (docs/storage-format.md, "Records" and "Replay"): used by
/// a store's recovery when it opens and by the offline tool's model, so a new record type is
/// added here once.
/// </summary>
public static class LogReplay
{
    /// <summary>
    /// Applies one record (already checked by <see cref="LogRecord.TryRead"/>) at
    /// <paramref name="address"/> to <paramref name="target"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">The record's payload is malformed, its type unknown, or it contradicts the state.</exception>
    public static void Apply(IReplayTarget target, in LogRecord record, long address)
    {
        ArgumentNullException.ThrowIfNull(target);
        switch (record.Type)
        {
            case LogRecordType.PoolCreate:
                target.CreatePool(record.PoolSerial, PoolRecord.Read(record.Payload), restated: false);
                break;
            case LogRecordType.PoolJoin:
                target.JoinPool(record.PoolSerial, PoolRecord.Read(record.Payload), restated: false);
                break;
            case LogRecordType.CompactionBase:
                // Restates every live pool and member; only what is not live yet is applied.
                foreach (var (serial, join, pool) in CompactionBaseRecord.Read(record.Payload).Members)
                {
                    if (join) target.JoinPool(serial, pool, restated: true);
                    else target.CreatePool(serial, pool, restated: true);
                }
                break;
            case LogRecordType.PoolLeave:
                target.LeavePool(record.PoolSerial, PoolRecord.Read(record.Payload));
                break;
            case LogRecordType.Put:
                bool sameFilled = (record.Flags & LogRecordFlags.SameFilled) != 0;
                bool uncompressed = (record.Flags & LogRecordFlags.Uncompressed) != 0;
                if ((record.Flags & ~(LogRecordFlags.SameFilled | LogRecordFlags.Uncompressed)) != 0 || (sameFilled && uncompressed))
                    throw new InvalidDataException($"a put with flags 0x{(ushort)record.Flags:x4}");
                if (sameFilled ? record.Payload.Length != sizeof(ulong) : record.Payload.Length == 0)
                    throw new InvalidDataException($"a put with a {record.Payload.Length}-byte payload");
                target.Put(record.PoolSerial, record.ObjectId, record.Index, sameFilled, uncompressed, record.Payload, address);
                break;
            case LogRecordType.FlushPage:
                target.FlushPage(record.PoolSerial, record.ObjectId, record.Index);
                break;
            case LogRecordType.FlushObject:
                target.FlushObject(record.PoolSerial, record.ObjectId);
                break;
            default:
                throw new InvalidDataException($"record type {record.Type} is not known here");
        }
    }
}
