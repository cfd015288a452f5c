using Tmem.Durability;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>
/// The persistent state the log's records describe, rebuilt offline by the store's own replay
/// (<see cref="LogReplay"/>, with this model as its target): pools by serial with their settings and members, and per page the
/// address of its Put record (and, for export, the record's payload). A record that contradicts
/// the state before it is not applied; <see cref="Apply"/> says why.
/// </summary>
internal sealed class LogModel : IReplayTarget
{
    public readonly record struct PageKey(ObjectId ObjectId, uint Index);

    /// <summary>
    /// A live page: its Put record's address, payload length and flags (and the payload when kept).
    /// <paramref name="Uncompressed"/>: the payload is the page itself (known from the log, not from a checkpoint).
    /// </summary>
    public sealed record PageState(long Address, int PayloadLength, bool SameFilled, ulong Pattern, byte[]? Payload, bool Uncompressed = false)
    {
        /// <summary>Log bytes the page's record takes (FasterLog header, record, padding).</summary>
        public int EntryBytes => LogFraming.EntrySize(PayloadLength);
    }

    public sealed class PoolState(uint serial, int pageSize, bool exclusiveGets, Guid? sharedUuid)
    {
        public uint Serial { get; } = serial;
        /// <summary>Known only from records that name it (its creation is in an unreadable part of the log): settings and members unknown.</summary>
        public bool Placeholder { get; init; }
        public int PageSize { get; } = pageSize;
        public bool ExclusiveGets { get; } = exclusiveGets;
        public Guid? SharedUuid { get; } = sharedUuid;
        public bool StoreIncompressible { get; init; }
        public List<(int ClientId, int PoolId)> Members { get; init; } = new();
        public Dictionary<PageKey, PageState> Pages { get; init; } = new();

        public PoolState Clone() => new(Serial, PageSize, ExclusiveGets, SharedUuid) { Members = new(Members), Pages = new(Pages), Placeholder = Placeholder, StoreIncompressible = StoreIncompressible };
    }

    private readonly bool _keepPayloads;

    public LogModel(bool keepPayloads) => _keepPayloads = keepPayloads;

    public SortedDictionary<uint, PoolState> Pools { get; private init; } = new();

    /// <summary>(client, pool id) to pool serial.</summary>
    public Dictionary<(int ClientId, int PoolId), uint> ClientPools { get; private init; } = new();

    public uint SerialHighWater { get; internal set; }

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
            var pool = new PoolState(entry.Serial, entry.PageSize, entry.ExclusiveGets, entry.SharedUuid) { Members = new(entry.Members), StoreIncompressible = entry.StoreIncompressible };
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
        try
        {
            LogReplay.Apply(new LenientTarget(this), record, address);
        }
        catch (InvalidDataException)
        {
            // A record whose payload does not parse passed its checksum: nothing it says can be applied.
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
            LogReplay.Apply(this, record, address);
            return null;
        }
        catch (InvalidDataException e)
        {
            return e.Message;
        }
    }

    void IReplayTarget.CreatePool(uint serial, in PoolRecord pool, bool restated) => Check(Create(serial, pool, restated));

    void IReplayTarget.JoinPool(uint serial, in PoolRecord member, bool restated) => Check(Join(serial, member, restated));

    void IReplayTarget.LeavePool(uint serial, in PoolRecord member) => Check(Leave(serial, member));

    void IReplayTarget.Put(uint serial, in ObjectId objectId, uint index, bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload, long address)
    {
        if (!Pools.TryGetValue(serial, out var pool)) throw new InvalidDataException($"a put into pool serial {serial}, which is not a live persistent pool here");
        if (uncompressed && payload.Length != pool.PageSize)
            throw new InvalidDataException($"an uncompressed put of {payload.Length} bytes into pool serial {serial}, whose pages are {pool.PageSize} bytes");
        ulong pattern = sameFilled ? BitConverter.ToUInt64(payload) : 0;
        pool.Pages[new PageKey(objectId, index)] = new PageState(address, payload.Length, sameFilled, pattern, _keepPayloads && !sameFilled ? payload.ToArray() : null, uncompressed);
    }

    void IReplayTarget.FlushPage(uint serial, in ObjectId objectId, uint index)
    {
        if (!Pools.TryGetValue(serial, out var pool)) throw new InvalidDataException($"a page flush in pool serial {serial}, which is not a live persistent pool here");
        pool.Pages.Remove(new PageKey(objectId, index));
    }

    void IReplayTarget.FlushObject(uint serial, in ObjectId objectId)
    {
        if (!Pools.TryGetValue(serial, out var pool)) throw new InvalidDataException($"an object flush in pool serial {serial}, which is not a live persistent pool here");
        RemoveObject(pool, objectId);
    }

    private static void RemoveObject(PoolState pool, ObjectId id)
    {
        foreach (var key in pool.Pages.Keys.Where(k => k.ObjectId == id).ToList()) pool.Pages.Remove(key);
    }

    private static void Check(string? misfit)
    {
        if (misfit is not null) throw new InvalidDataException(misfit);
    }

    /// <summary>
    /// Replay into a state that may lack what a record names (the records before it are
    /// unreadable): a pool it names that is not live is taken as created there, with unknown
    /// settings and members; a member leaving that is not there is ignored.
    /// </summary>
    private sealed class LenientTarget(LogModel model) : IReplayTarget
    {
        private PoolState PoolOf(uint serial)
        {
            if (!model.Pools.TryGetValue(serial, out var pool))
            {
                pool = new PoolState(serial, 0, false, null) { Placeholder = true };
                model.Pools.Add(serial, pool);
                model.SerialHighWater = Math.Max(model.SerialHighWater, serial);
            }
            return pool;
        }

        private void AddMember(uint serial, PoolRecord member)
        {
            var pool = PoolOf(serial);
            if (model.ClientPools.TryGetValue((member.ClientId, member.PoolId), out uint other) && other != serial && model.Pools.TryGetValue(other, out var old))
                old.Members.Remove((member.ClientId, member.PoolId));
            if (!pool.Members.Contains((member.ClientId, member.PoolId))) pool.Members.Add((member.ClientId, member.PoolId));
            model.ClientPools[(member.ClientId, member.PoolId)] = serial;
        }

        public void CreatePool(uint serial, in PoolRecord pool, bool restated)
        {
            if (!restated && model.Pools.TryGetValue(serial, out var placeholder) && placeholder.Placeholder)
            {
                // Its creation after all: the settings are known now.
                model.Pools[serial] = new PoolState(serial, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid) { Members = placeholder.Members, Pages = placeholder.Pages, StoreIncompressible = pool.StoreIncompressible };
            }
            AddMember(serial, pool);
        }

        public void JoinPool(uint serial, in PoolRecord member, bool restated) => AddMember(serial, member);

        public void LeavePool(uint serial, in PoolRecord member)
        {
            if (model.Pools.TryGetValue(serial, out var left) && left.Members.Remove((member.ClientId, member.PoolId)))
            {
                model.ClientPools.Remove((member.ClientId, member.PoolId));
                if (left.Members.Count == 0 && !left.Placeholder) model.Pools.Remove(serial);
            }
        }

        public void Put(uint serial, in ObjectId objectId, uint index, bool sameFilled, bool uncompressed, ReadOnlySpan<byte> payload, long address) =>
            PoolOf(serial).Pages[new PageKey(objectId, index)] = new PageState(address, payload.Length, sameFilled, sameFilled ? BitConverter.ToUInt64(payload) : 0, null, uncompressed);

        public void FlushPage(uint serial, in ObjectId objectId, uint index) => PoolOf(serial).Pages.Remove(new PageKey(objectId, index));

        public void FlushObject(uint serial, in ObjectId objectId) => RemoveObject(PoolOf(serial), objectId);
    }

    private string? Create(uint serial, PoolRecord record, bool restated)
    {
        if (Pools.TryGetValue(serial, out var live))
        {
            if (!restated) return $"pool serial {serial} is created twice";
            if (live.PageSize != record.PageSize || live.ExclusiveGets != record.ExclusiveGets || live.SharedUuid != record.SharedUuid || live.StoreIncompressible != record.StoreIncompressible)
                return $"the compaction base restates pool serial {serial}, which does not match the live pool of that serial";
            return live.Members.Contains((record.ClientId, record.PoolId)) ? null : Join(serial, record, restated: false);
        }
        if (record.PageSize < 512 || record.PageSize > 65536 || (record.PageSize & (record.PageSize - 1)) != 0)
            return $"pool serial {serial} has page size {record.PageSize}";
        if (record.SharedUuid is { } uuid && Pools.Values.Any(p => p.SharedUuid == uuid))
            return $"shared pool {uuid} is created while it exists";
        if (ClientPools.TryGetValue((record.ClientId, record.PoolId), out uint other))
            return $"client {record.ClientId} pool id {record.PoolId} is created as pool serial {serial} while it is pool serial {other}";
        if (record.StoreIncompressible && record.PageSize > PoolOptions.MaxIncompressiblePageSize)
            return $"pool serial {serial} stores incompressible pages with page size {record.PageSize}, over {PoolOptions.MaxIncompressiblePageSize}";
        var pool = new PoolState(serial, record.PageSize, record.ExclusiveGets, record.SharedUuid) { StoreIncompressible = record.StoreIncompressible };
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
