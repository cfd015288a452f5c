using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>
/// The persistent state the log's records describe, rebuilt offline by the rules recovery uses
/// (DurableStore's replay): pools by serial with their settings and members, and per page the
/// address of its Put record (and, for export, the record's payload). A record that contradicts
/// the state before it is not applied; <see cref="Apply"/> says why.
/// </summary>
internal sealed class LogModel
{
    public readonly record struct PageKey(ObjectId ObjectId, uint Index);

    /// <summary>A live page: its Put record's address, payload length and flags (and the payload when kept).</summary>
    public sealed record PageState(long Address, int PayloadLength, bool SameFilled, ulong Pattern, byte[]? Payload)
    {
        /// <summary>Log bytes the page's record takes (FasterLog header, record, padding).</summary>
        public int EntryBytes => PersistentLog.EntrySize(PayloadLength);
    }

    public sealed class PoolState(uint serial, int pageSize, bool exclusiveGets, Guid? sharedUuid)
    {
        public uint Serial { get; } = serial;
        /// <summary>Known only from records that name it (its creation is in an unreadable part of the log): settings and members unknown.</summary>
        public bool Placeholder { get; init; }
        public int PageSize { get; } = pageSize;
        public bool ExclusiveGets { get; } = exclusiveGets;
        public Guid? SharedUuid { get; } = sharedUuid;
        public List<(int ClientId, int PoolId)> Members { get; init; } = new();
        public Dictionary<PageKey, PageState> Pages { get; init; } = new();

        public PoolState Clone() => new(Serial, PageSize, ExclusiveGets, SharedUuid) { Members = new(Members), Pages = new(Pages), Placeholder = Placeholder };
    }

    private readonly bool _keepPayloads;

    public LogModel(bool keepPayloads) => _keepPayloads = keepPayloads;

    public SortedDictionary<uint, PoolState> Pools { get; private init; } = new();

    /// <summary>(client, pool id) to pool serial.</summary>
    public Dictionary<(int ClientId, int PoolId), uint> ClientPools { get; private init; } = new();

    public uint SerialHighWater { get; private set; }

    public LogModel Clone()
    {
        var copy = new LogModel(_keepPayloads) { ClientPools = new(ClientPools), SerialHighWater = SerialHighWater };
        foreach (var (serial, pool) in Pools) copy.Pools.Add(serial, pool.Clone());
        return copy;
    }

    /// <summary>The state an index checkpoint records (as of its covered-until address).</summary>
    public static LogModel FromCheckpoint(IndexCheckpoint checkpoint)
    {
        var model = new LogModel(keepPayloads: false) { SerialHighWater = (uint)Math.Max(0, checkpoint.PoolSerialHighWater) };
        foreach (var entry in checkpoint.Pools)
        {
            var pool = new PoolState(entry.Serial, entry.PageSize, entry.ExclusiveGets, entry.SharedUuid) { Members = new(entry.Members) };
            foreach (var page in entry.Pages)
                pool.Pages[new PageKey(page.ObjectId, page.Index)] = new PageState(page.Address, page.SameFilled ? 8 : page.Length, page.SameFilled, page.Pattern, null);
            model.Pools[entry.Serial] = pool;
            foreach (var member in entry.Members) model.ClientPools[member] = entry.Serial;
        }
        return model;
    }

    /// <summary>
    /// Applies a valid record to a state that may lack what it names (records before it are
    /// unreadable): a pool it names that is not live is taken as created there, with unknown
    /// settings and members; a member leaving that is not there is ignored. Returns why the record
    /// did not fit the state (null when it applied as <see cref="Apply"/> would).
    /// </summary>
    public string? ApplyLeniently(long address, LogRecord record)
    {
        if (Apply(address, record) is not { } misfit) return null;
        PoolState PoolOf(uint serial)
        {
            if (!Pools.TryGetValue(serial, out var pool))
            {
                pool = new PoolState(serial, 0, false, null) { Placeholder = true };
                Pools.Add(serial, pool);
                SerialHighWater = Math.Max(SerialHighWater, serial);
            }
            return pool;
        }
        void AddMember(uint serial, PoolRecord member)
        {
            var pool = PoolOf(serial);
            if (ClientPools.TryGetValue((member.ClientId, member.PoolId), out uint other) && other != serial && Pools.TryGetValue(other, out var old))
                old.Members.Remove((member.ClientId, member.PoolId));
            if (!pool.Members.Contains((member.ClientId, member.PoolId))) pool.Members.Add((member.ClientId, member.PoolId));
            ClientPools[(member.ClientId, member.PoolId)] = serial;
        }
        try
        {
            switch (record.Type)
            {
                case LogRecordType.PoolCreate when Pools.TryGetValue(record.PoolSerial, out var placeholder) && placeholder.Placeholder:
                    // Its creation after all: the settings are known now.
                    var created = PoolRecord.Read(record.Payload);
                    Pools[record.PoolSerial] = new PoolState(record.PoolSerial, created.PageSize, created.ExclusiveGets, created.SharedUuid) { Members = placeholder.Members, Pages = placeholder.Pages };
                    AddMember(record.PoolSerial, created);
                    break;
                case LogRecordType.PoolCreate or LogRecordType.PoolJoin:
                    AddMember(record.PoolSerial, PoolRecord.Read(record.Payload));
                    break;
                case LogRecordType.CompactionBase:
                    foreach (var (serial, _, member) in CompactionBaseRecord.Read(record.Payload).Members) AddMember(serial, member);
                    break;
                case LogRecordType.PoolLeave:
                    var leaving = PoolRecord.Read(record.Payload);
                    if (Pools.TryGetValue(record.PoolSerial, out var left) && left.Members.Remove((leaving.ClientId, leaving.PoolId)))
                    {
                        ClientPools.Remove((leaving.ClientId, leaving.PoolId));
                        if (left.Members.Count == 0 && !left.Placeholder) Pools.Remove(record.PoolSerial);
                    }
                    break;
                case LogRecordType.Put:
                    var pool = PoolOf(record.PoolSerial);
                    bool sameFilled = (record.Flags & LogRecordFlags.SameFilled) != 0;
                    pool.Pages[new PageKey(record.ObjectId, record.Index)] =
                        new PageState(address, record.Payload.Length, sameFilled, sameFilled && record.Payload.Length == 8 ? BitConverter.ToUInt64(record.Payload) : 0, null);
                    break;
                case LogRecordType.FlushPage:
                    PoolOf(record.PoolSerial).Pages.Remove(new PageKey(record.ObjectId, record.Index));
                    break;
                case LogRecordType.FlushObject:
                    var flushed = PoolOf(record.PoolSerial);
                    var id = record.ObjectId;
                    foreach (var key in flushed.Pages.Keys.Where(k => k.ObjectId == id).ToList()) flushed.Pages.Remove(key);
                    break;
            }
        }
        catch (InvalidDataException)
        {
            // A pool record that does not parse passed its checksum: nothing it says can be applied.
        }
        return misfit;
    }

    public long LiveEntryBytes => Pools.Values.Sum(p => p.Pages.Values.Sum(page => (long)page.EntryBytes));

    public long PageCount => Pools.Values.Sum(p => (long)p.Pages.Count);

    /// <summary>Applies one record (already checked by <see cref="LogRecord.TryRead"/>); returns why it cannot be applied, or null.</summary>
    public string? Apply(long address, LogRecord record)
    {
        try
        {
            switch (record.Type)
            {
                case LogRecordType.PoolCreate:
                    return Create(record.PoolSerial, PoolRecord.Read(record.Payload), restated: false);
                case LogRecordType.PoolJoin:
                    return Join(record.PoolSerial, PoolRecord.Read(record.Payload), restated: false);
                case LogRecordType.PoolLeave:
                    return Leave(record.PoolSerial, PoolRecord.Read(record.Payload));
                case LogRecordType.CompactionBase:
                    foreach (var (serial, join, pool) in CompactionBaseRecord.Read(record.Payload).Members)
                    {
                        string? error = join ? Join(serial, pool, restated: true) : Create(serial, pool, restated: true);
                        if (error is not null) return error;
                    }
                    return null;
                case LogRecordType.Put:
                {
                    if (!Pools.TryGetValue(record.PoolSerial, out var pool)) return $"a put into pool serial {record.PoolSerial}, which is not a live persistent pool here";
                    bool sameFilled = (record.Flags & LogRecordFlags.SameFilled) != 0;
                    if (sameFilled ? record.Payload.Length != 8 : record.Payload.Length == 0) return $"a put with a {record.Payload.Length}-byte payload";
                    ulong pattern = sameFilled ? BitConverter.ToUInt64(record.Payload) : 0;
                    pool.Pages[new PageKey(record.ObjectId, record.Index)] =
                        new PageState(address, record.Payload.Length, sameFilled, pattern, _keepPayloads && !sameFilled ? record.Payload.ToArray() : null);
                    return null;
                }
                case LogRecordType.FlushPage:
                {
                    if (!Pools.TryGetValue(record.PoolSerial, out var pool)) return $"a page flush in pool serial {record.PoolSerial}, which is not a live persistent pool here";
                    pool.Pages.Remove(new PageKey(record.ObjectId, record.Index));
                    return null;
                }
                case LogRecordType.FlushObject:
                {
                    if (!Pools.TryGetValue(record.PoolSerial, out var pool)) return $"an object flush in pool serial {record.PoolSerial}, which is not a live persistent pool here";
                    var id = record.ObjectId;
                    foreach (var key in pool.Pages.Keys.Where(k => k.ObjectId == id).ToList()) pool.Pages.Remove(key);
                    return null;
                }
                default:
                    return $"record type {record.Type} is not known here";
            }
        }
        catch (InvalidDataException e)
        {
            return e.Message;
        }
    }

    private string? Create(uint serial, PoolRecord record, bool restated)
    {
        if (Pools.TryGetValue(serial, out var live))
        {
            if (!restated) return $"pool serial {serial} is created twice";
            if (live.PageSize != record.PageSize || live.ExclusiveGets != record.ExclusiveGets || live.SharedUuid != record.SharedUuid)
                return $"the compaction base restates pool serial {serial}, which does not match the live pool of that serial";
            return live.Members.Contains((record.ClientId, record.PoolId)) ? null : Join(serial, record, restated: false);
        }
        if (record.PageSize < 512 || record.PageSize > 65536 || (record.PageSize & (record.PageSize - 1)) != 0)
            return $"pool serial {serial} has page size {record.PageSize}";
        if (record.SharedUuid is { } uuid && Pools.Values.Any(p => p.SharedUuid == uuid))
            return $"shared pool {uuid} is created while it exists";
        if (ClientPools.TryGetValue((record.ClientId, record.PoolId), out uint other))
            return $"client {record.ClientId} pool id {record.PoolId} is created as pool serial {serial} while it is pool serial {other}";
        var pool = new PoolState(serial, record.PageSize, record.ExclusiveGets, record.SharedUuid);
        pool.Members.Add((record.ClientId, record.PoolId));
        Pools.Add(serial, pool);
        ClientPools[(record.ClientId, record.PoolId)] = serial;
        SerialHighWater = Math.Max(SerialHighWater, serial);
        return null;
    }

    private string? Join(uint serial, PoolRecord record, bool restated)
    {
        if (!Pools.TryGetValue(serial, out var pool)) return $"client {record.ClientId} joins pool serial {serial}, which is not a live persistent pool here";
        if (pool.Members.Contains((record.ClientId, record.PoolId))) return restated ? null : $"client {record.ClientId} joins pool serial {serial} twice";
        if (ClientPools.TryGetValue((record.ClientId, record.PoolId), out uint other))
            return $"client {record.ClientId} joins pool serial {serial} as pool id {record.PoolId}, which is pool serial {other}";
        pool.Members.Add((record.ClientId, record.PoolId));
        ClientPools[(record.ClientId, record.PoolId)] = serial;
        return null;
    }

    private string? Leave(uint serial, PoolRecord record)
    {
        if (!Pools.TryGetValue(serial, out var pool)) return $"client {record.ClientId} leaves pool serial {serial}, which is not a live persistent pool here";
        if (!ClientPools.TryGetValue((record.ClientId, record.PoolId), out uint mapped) || mapped != serial)
            return $"client {record.ClientId} leaves pool id {record.PoolId}, which is not pool serial {serial}";
        pool.Members.Remove((record.ClientId, record.PoolId));
        ClientPools.Remove((record.ClientId, record.PoolId));
        if (pool.Members.Count == 0) Pools.Remove(serial);
        return null;
    }
}
