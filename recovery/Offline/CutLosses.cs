using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>Log addresses whose records are unknown: pages and pools they changed are not in a loss list.</summary>
/// <param name="From">The first address.</param>
/// <param name="Until">The address after the last.</param>
/// <param name="Reason">Why the records there are unknown (damaged, missing, cut off).</param>
public sealed record UnknownLogRange(long From, long Until, string Reason);

/// <summary>What cutting the log at an address loses: exact, or <see cref="Complete"/> false with the ranges it cannot see into.</summary>
/// <param name="Pages">Every handle whose state changes, as far as known.</param>
/// <param name="Pools">Every pool or membership change, as far as known.</param>
/// <param name="UnknownRanges">Log addresses after the cut whose records are unknown and that no later record or checkpoint makes up for.</param>
internal sealed record LossList(IReadOnlyList<PageLoss> Pages, IReadOnlyList<PoolLoss> Pools, IReadOnlyList<UnknownLogRange> UnknownRanges)
{
    /// <summary>Whether the lists are exact: no records after the cut are unknown.</summary>
    public bool Complete => UnknownRanges.Count == 0;

    /// <summary>Nothing lost: no cut.</summary>
    public static LossList None { get; } = new([], [], []);
}

/// <summary>
/// The state the acknowledged log gives after a cut, built record by record from the cut on, with
/// what is known about each handle: to list exactly what cutting there loses. The state at the cut
/// is exact (every record before it is readable). After it, a readable record makes the handles it
/// sets exact (a put or page flush its page, an object flush every page of its object, a pool's
/// creation or destruction every page of the pool); an unknown range (unreadable or missing records)
/// makes every handle not set again after it unknown; a damaged record whose header names a page is
/// listed as damaged; an intact index checkpoint at an address after the cut makes every handle
/// exact there (it is the store's state at that address).
/// </summary>
internal sealed class CutLosses(long cut, LogModel atCut)
{
    private LogModel _state = atCut.Clone();
    private long _exactFrom = cut; // every handle is exact before this address
    private readonly Dictionary<(uint, LogModel.PageKey), long> _pageExact = new();
    private readonly Dictionary<(uint, ObjectId), long> _objectExact = new();
    private readonly Dictionary<uint, long> _poolExact = new();
    private readonly List<UnknownLogRange> _ranges = new();
    private readonly Dictionary<(uint, LogModel.PageKey), (long Address, LogRecordType? Type)> _claims = new();
    private readonly HashSet<(uint, LogModel.PageKey)> _fromCheckpoint = new();
    private IndexCheckpoint? _checkpoint;

    public long Cut { get; } = cut;

    /// <summary>The (exact) state at the cut.</summary>
    public LogModel AtCut { get; } = atCut;

    /// <summary>Whether anything after the cut is unknown (so far).</summary>
    public bool HasUnknown => _ranges.Count > 0;

    /// <summary>A readable record at <paramref name="address"/> (ending at <paramref name="next"/>).</summary>
    public void Record(long address, long next, LogRecord record)
    {
        string? misfit = _state.ApplyLeniently(address, record);
        if (misfit is not null && _ranges.Count == 0)
            Unknown(address, next, $"the record at {address} ({record.Type}, pool serial {record.PoolSerial}) contradicts the records before it ({misfit})");
        long exact = address + 1;
        var serial = record.PoolSerial;
        switch (record.Type)
        {
            case LogRecordType.Put or LogRecordType.FlushPage:
                _pageExact[(serial, new LogModel.PageKey(record.ObjectId, record.Index))] = exact;
                _fromCheckpoint.Remove((serial, new LogModel.PageKey(record.ObjectId, record.Index)));
                break;
            case LogRecordType.FlushObject:
                _objectExact[(serial, record.ObjectId)] = exact;
                break;
            case LogRecordType.PoolCreate when misfit is null:
                _poolExact[serial] = exact; // a new pool: no pages
                break;
            case LogRecordType.PoolLeave when !_state.Pools.ContainsKey(serial):
                _poolExact[serial] = exact; // its last member left: no pages
                break;
        }
    }

    /// <summary>A damaged record: its effect is unknown; its header (unverifiable) may name the page it changed.</summary>
    public void Damaged(long address, long next, uint serial, ObjectId objectId, uint index, LogRecordType? type, string reason)
    {
        Unknown(address, next, reason);
        switch (type)
        {
            case LogRecordType.Put or LogRecordType.FlushPage:
                _claims[(serial, new LogModel.PageKey(objectId, index))] = (address, type);
                break;
            case LogRecordType.FlushObject when _state.Pools.TryGetValue(serial, out var pool):
                foreach (var key in pool.Pages.Keys.Where(k => k.ObjectId == objectId)) _claims[(serial, key)] = (address, type);
                break;
        }
    }

    /// <summary>Records in [<paramref name="from"/>, <paramref name="until"/>) are unknown.</summary>
    public void Unknown(long from, long until, string reason)
    {
        if (until <= from) return;
        if (_ranges.Count > 0 && _ranges[^1].Until == from)
            _ranges[^1] = new UnknownLogRange(_ranges[^1].From, until, $"{_ranges[^1].Reason}; then {reason}"); // one damage, seen in steps
        else
            _ranges.Add(new UnknownLogRange(from, until, reason));
    }

    /// <summary>
    /// The index checkpoint's address is reached (it is after the cut): its state replaces what the
    /// records gave, so everything unknown before its address is known again.
    /// </summary>
    public void ApplyCheckpoint(IndexCheckpoint checkpoint)
    {
        long at = checkpoint.CoveredUntil;
        _checkpoint = checkpoint;
        _state = LogModel.FromCheckpoint(checkpoint);
        _exactFrom = at;
        _pageExact.Clear();
        _objectExact.Clear();
        _poolExact.Clear();
        var later = _ranges.Where(r => r.Until > at).Select(r => r with { From = Math.Max(r.From, at) }).ToList();
        _ranges.Clear();
        _ranges.AddRange(later);
        foreach (var key in _claims.Where(c => c.Value.Address < at).Select(c => c.Key).ToList()) _claims.Remove(key);
        _fromCheckpoint.Clear();
        foreach (var pool in _state.Pools.Values)
            foreach (var key in pool.Pages.Keys) _fromCheckpoint.Add((pool.Serial, key));
    }

    /// <summary>Before which address the handle's state in <see cref="_state"/> is exact.</summary>
    private long ExactFrom(uint serial, LogModel.PageKey key) =>
        Math.Max(Math.Max(_exactFrom, _pageExact.GetValueOrDefault((serial, key))),
            Math.Max(_objectExact.GetValueOrDefault((serial, key.ObjectId)), _poolExact.GetValueOrDefault(serial)));

    /// <summary>Every known difference between the state after the cut's records and the state at the cut.</summary>
    public LossList Losses()
    {
        var pages = new List<PageLoss>();
        var pools = new List<PoolLoss>();
        IReadOnlyList<PoolMember> MembersOf(uint serial)
        {
            var found = (_state.Pools.GetValueOrDefault(serial) is { Members.Count: > 0 } now ? now : AtCut.Pools.GetValueOrDefault(serial))?.Members
                ?? _checkpoint?.Pools.FirstOrDefault(p => p.Serial == serial)?.Members;
            return found?.Select(m => new PoolMember(m.ClientId, m.PoolId)).ToArray() ?? [];
        }

        foreach (var (serial, pool) in _state.Pools)
        {
            if (!AtCut.Pools.TryGetValue(serial, out var before))
                pools.Add(new PoolLoss(serial, MembersOf(serial), pool.Placeholder
                    ? $"pool serial {serial} was created after the cut at {Cut}, in records that are unreadable (later records name it): the pool and its pages are gone"
                    : $"pool serial {serial} was created at or after the cut at {Cut}: the pool and its pages are gone"));
            else
                foreach (var member in pool.Members.Except(before.Members))
                    pools.Add(new PoolLoss(serial, MembersOf(serial), $"client {member.ClientId} joined pool serial {serial} as pool id {member.PoolId} at or after the cut at {Cut}: that membership is gone"));
        }
        foreach (var (serial, before) in AtCut.Pools)
        {
            if (!_state.Pools.TryGetValue(serial, out var after))
                pools.Add(new PoolLoss(serial, before.Members.Select(m => new PoolMember(m.ClientId, m.PoolId)).ToArray(), $"pool serial {serial} was destroyed at or after the cut at {Cut}: it comes back"));
            else
                foreach (var member in before.Members.Except(after.Members))
                    pools.Add(new PoolLoss(serial, MembersOf(serial), $"client {member.ClientId} left pool serial {serial} (pool id {member.PoolId}) at or after the cut at {Cut}: that membership comes back"));
        }

        var handles = new SortedSet<(uint Serial, ulong W0, ulong W1, ulong W2, uint Index)>();
        void Add(uint serial, LogModel.PageKey key) => handles.Add((serial, key.ObjectId.Word0, key.ObjectId.Word1, key.ObjectId.Word2, key.Index));
        foreach (var (serial, pool) in _state.Pools) foreach (var key in pool.Pages.Keys) Add(serial, key);
        foreach (var (serial, pool) in AtCut.Pools) foreach (var key in pool.Pages.Keys) Add(serial, key);
        foreach (var (serial, key) in _claims.Keys) Add(serial, key);
        foreach (var (serial, w0, w1, w2, index) in handles)
        {
            var key = new LogModel.PageKey(new ObjectId(w0, w1, w2), index);
            var kept = AtCut.Pools.GetValueOrDefault(serial)?.Pages.GetValueOrDefault(key);
            long exact = ExactFrom(serial, key);
            string oid = key.ObjectId.ToString();
            if (_claims.TryGetValue((serial, key), out var claim) && claim.Address >= exact)
            {
                pages.Add(new PageLoss(LossKind.Damaged, serial, MembersOf(serial), oid, index, claim.Address, kept?.Address,
                    $"the record at log address {claim.Address} is damaged; its header, which cannot be verified, says it is a {claim.Type} of this page"));
                continue;
            }
            if (_ranges.Any(r => r.From >= exact)) continue; // unknown: covered by the ranges the list reports
            var now = _state.Pools.GetValueOrDefault(serial)?.Pages.GetValueOrDefault(key);
            if (now is not null && kept is not null && now.Address == kept.Address) continue;
            if (now is null && kept is null) continue;
            bool checkpointSays = _fromCheckpoint.Contains((serial, key)) || (now is null && _checkpoint is not null && exact == _exactFrom);
            if (now is null)
                pages.Add(new PageLoss(LossKind.Resurrected, serial, MembersOf(serial), oid, index, null, kept!.Address,
                    checkpointSays
                        ? $"the index checkpoint (covering the log until {_checkpoint!.CoveredUntil}, past the cut at {Cut}) no longer has it: it was flushed after the cut; its version at log address {kept.Address} comes back"
                        : $"it was flushed (or its pool destroyed) at or after the cut at {Cut}; its version at log address {kept.Address} comes back"));
            else if (kept is null)
                pages.Add(new PageLoss(LossKind.Lost, serial, MembersOf(serial), oid, index, now.Address, null,
                    checkpointSays
                        ? $"the index checkpoint places it at log address {now.Address}, at or after the cut at {Cut}"
                        : $"its only version was put at log address {now.Address}, at or after the cut at {Cut}"));
            else
                pages.Add(new PageLoss(LossKind.Reverted, serial, MembersOf(serial), oid, index, now.Address, kept.Address,
                    checkpointSays
                        ? $"the index checkpoint places its version at log address {now.Address}, at or after the cut at {Cut}; the older version at {kept.Address} comes back"
                        : $"its version put at log address {now.Address} is at or after the cut at {Cut}; the older version at {kept.Address} comes back"));
        }
        return new LossList(pages, pools, _ranges.ToList());
    }
}
