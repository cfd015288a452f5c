using Tmem.RamTier;

namespace Tmem.Translation;

/// <summary>
/// One hash bucket of a pool: its objects by id, under its own lock. Every translation change
/// (install, remove, evict, move) happens under this lock, and so does every read of a page's
/// bytes, which is what keeps a get from seeing a slot that is being freed or reused. To the RAM
/// tier a bucket is the group of its page owners (<see cref="PageOwnerGroup"/>: the lock, the pool's account).
/// <para>
/// An object of one page lives inline in an <see cref="InlinePages{TKey}"/> table (16 bytes of
/// entry for an id whose last two words are zero, 32 for others, in a second table made on first
/// use); its second page moves it to a <see cref="TmemObject"/> in the dictionary, where it stays
/// until it is empty. An object is in exactly one of the three.
/// </para>
/// </summary>
internal sealed class Bucket : PageOwnerGroup
{
    private readonly CompressedRamTier _ram;
    private readonly InlinePages<NarrowKey> _narrow;
    private InlinePages<WideKey>? _wide;
    private Dictionary<ObjectId, TmemObject>? _objects;

    public Bucket(Pool pool, CompressedRamTier ram) : base(pool.Account)
    {
        Pool = pool;
        _ram = ram;
        _narrow = new InlinePages<NarrowKey>(this);
    }

    public Pool Pool { get; }

    /// <summary>Objects in the bucket (single-page ones included).</summary>
    public int ObjectCount => (_objects?.Count ?? 0) + _narrow.Count + (_wide?.Count ?? 0);

    /// <summary>The object of more than one page with this id, or null.</summary>
    private TmemObject? FindObject(in ObjectId id) =>
        _objects is { Count: > 0 } objects && objects.TryGetValue(id, out var obj) ? obj : null;

    /// <summary>The descriptor mapped at (<paramref name="id"/>, <paramref name="index"/>), or 0.</summary>
    public uint Find(in ObjectId id, uint index)
    {
        return FindObject(id) is { } obj ? obj.Find(index) : InlinePage(id, index, remove: false);
    }

    /// <summary>The descriptor of an inline page, taken out of its table when <paramref name="remove"/>; 0 if there is none.</summary>
    private uint InlinePage(in ObjectId id, uint index, bool remove)
    {
        int hash = id.GetHashCode();
        if (NarrowKey.TryFrom(id, out var narrow)) return InlinePage(_narrow, narrow, hash, index, remove);
        return _wide is { } wide ? InlinePage(wide, new WideKey(id), hash, index, remove) : 0;
    }

    private static uint InlinePage<TKey>(InlinePages<TKey> table, in TKey key, int hash, uint index, bool remove) where TKey : struct, IInlineKey<TKey>
    {
        int at = table.Locate(key, hash);
        if (at < 0 || table.IndexAt(at) != index) return 0;
        return remove ? table.RemoveAt(at) : table.DescriptorAt(at);
    }

    /// <summary>
    /// Maps (<paramref name="id"/>, <paramref name="index"/>) to <paramref name="descriptor"/>,
    /// returning the descriptor it replaced (0 if none) and the owner and owner index the new
    /// descriptor must be installed with. A new object goes inline; a second page of an inline
    /// object moves it (and re-points its first page) to a <see cref="TmemObject"/>.
    /// </summary>
    public uint Set(in ObjectId id, uint index, uint descriptor, out PageOwner owner, out uint ownerIndex)
    {
        if (FindObject(id) is { } obj)
        {
            owner = obj;
            ownerIndex = index;
            return obj.Set(index, descriptor);
        }
        int hash = id.GetHashCode();
        return NarrowKey.TryFrom(id, out var narrow)
            ? SetInline(_narrow, narrow, id, hash, index, descriptor, out owner, out ownerIndex)
            : SetInline(_wide ??= new InlinePages<WideKey>(this), new WideKey(id), id, hash, index, descriptor, out owner, out ownerIndex);
    }

    private uint SetInline<TKey>(InlinePages<TKey> table, in TKey key, in ObjectId id, int hash, uint index, uint descriptor, out PageOwner owner, out uint ownerIndex)
        where TKey : struct, IInlineKey<TKey>
    {
        int at = table.Locate(key, hash);
        owner = table;
        ownerIndex = (uint)hash; // an inline page's owner index is its key's hash (InlinePages)
        if (at < 0)
        {
            table.Add(key, hash, index, descriptor);
            return 0;
        }
        if (table.IndexAt(at) == index) return table.Replace(at, descriptor);
        uint firstIndex = table.IndexAt(at);
        uint first = table.RemoveAt(at);
        var obj = new TmemObject(id, this);
        obj.Set(firstIndex, first);
        _ram.MoveOwner(first, obj, firstIndex);
        (_objects ??= new Dictionary<ObjectId, TmemObject>()).Add(id, obj);
        owner = obj;
        ownerIndex = index;
        return obj.Set(index, descriptor);
    }

    /// <summary>Unmaps (<paramref name="id"/>, <paramref name="index"/>); returns the descriptor it held, or 0. The object goes with its last page.</summary>
    public uint Remove(in ObjectId id, uint index)
    {
        if (FindObject(id) is { } obj)
        {
            uint removed = obj.Remove(index);
            if (obj.Count == 0) _objects!.Remove(id);
            return removed;
        }
        return InlinePage(id, index, remove: true);
    }

    /// <summary>An object left empty by eviction leaves the dictionary.</summary>
    public void RemoveIfEmpty(TmemObject obj)
    {
        if (obj.Count == 0) _objects!.Remove(obj.Id);
    }

    /// <summary>
    /// Unmaps every page of <paramref name="id"/>, calling <paramref name="release"/> for each
    /// (page index, descriptor); returns how many there were.
    /// </summary>
    public int RemoveObject<TState>(in ObjectId id, TState state, Action<TState, uint, uint> release)
    {
        if (FindObject(id) is { } obj)
        {
            int count = obj.Count;
            _objects!.Remove(id);
            obj.DrainTo(state, release);
            return count;
        }
        int hash = id.GetHashCode();
        if (NarrowKey.TryFrom(id, out var narrow)) return RemoveInlineObject(_narrow, narrow, hash, state, release);
        return _wide is { } wide ? RemoveInlineObject(wide, new WideKey(id), hash, state, release) : 0;
    }

    private static int RemoveInlineObject<TKey, TState>(InlinePages<TKey> table, in TKey key, int hash, TState state, Action<TState, uint, uint> release)
        where TKey : struct, IInlineKey<TKey>
    {
        int at = table.Locate(key, hash);
        if (at < 0) return 0;
        uint index = table.IndexAt(at);
        release(state, index, table.RemoveAt(at));
        return 1;
    }

    /// <summary>Calls <paramref name="action"/> for every (object id, page index, descriptor) (under the lock).</summary>
    public void ForEachPage<TState>(TState state, Action<TState, ObjectId, uint, uint> action)
    {
        _narrow.ForEach(state, action);
        _wide?.ForEach(state, action);
        if (_objects is null) return;
        foreach (var obj in _objects.Values)
            obj.ForEach((state, action, obj.Id), static (s, index, descriptor) => s.action(s.state, s.Id, index, descriptor));
    }

    /// <summary>Takes every page out of the bucket (pool destruction), calling <paramref name="release"/> for each (object id, page index, descriptor).</summary>
    public void DrainAll<TState>(TState state, Action<TState, ObjectId, uint, uint> release)
    {
        _narrow.DrainTo(state, release);
        _wide?.DrainTo(state, release);
        if (_objects is null) return;
        var all = _objects.Values.ToArray();
        _objects = null;
        foreach (var obj in all)
            obj.DrainTo((state, release, obj.Id), static (s, index, descriptor) => s.release(s.state, s.Id, index, descriptor));
    }
}
