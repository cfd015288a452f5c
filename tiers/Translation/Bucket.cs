using Tmem.RamTier;

namespace Tmem.Translation;

/// <summary>
/// One hash bucket of a pool: its objects by id, under its own lock. Every translation change
/// (install, remove, evict, move) happens under this lock, and so does every read of a page's
/// bytes, which is what keeps a get from seeing a slot that is being freed or reused. To the RAM
/// tier a bucket is the group of its objects (<see cref="PageOwnerGroup"/>: the lock, the pool's account).
/// </summary>
internal sealed class Bucket(Pool pool) : PageOwnerGroup(pool.Account)
{
    private Dictionary<ObjectId, TmemObject>? _objects;

    public Pool Pool { get; } = pool;

    public int ObjectCount => _objects?.Count ?? 0;

    public TmemObject? Find(in ObjectId id) =>
        _objects is not null && _objects.TryGetValue(id, out var obj) ? obj : null;

    public TmemObject GetOrAdd(in ObjectId id)
    {
        _objects ??= new Dictionary<ObjectId, TmemObject>();
        if (!_objects.TryGetValue(id, out var obj))
        {
            obj = new TmemObject(id, this);
            _objects.Add(id, obj);
        }
        return obj;
    }

    /// <summary>An object disappears when its last page does.</summary>
    public void RemoveIfEmpty(TmemObject obj)
    {
        if (obj.Count == 0) _objects!.Remove(obj.Id);
    }

    public void Remove(TmemObject obj) => _objects!.Remove(obj.Id);

    /// <summary>The objects (under the lock).</summary>
    public IEnumerable<TmemObject> Objects => (IEnumerable<TmemObject>?)_objects?.Values ?? [];

    /// <summary>Takes every object out of the bucket (pool destruction).</summary>
    public TmemObject[] TakeAll()
    {
        if (_objects is null) return [];
        var all = _objects.Values.ToArray();
        _objects = null;
        return all;
    }
}
