namespace Tmem.Bench;

/// <summary>An exact LRU cache of sized items with a byte capacity: the reference for hit ratios.</summary>
internal sealed class ExactLru
{
    private readonly long _capacity;
    private readonly LinkedList<(int Key, int Size)> _order = new();
    private readonly Dictionary<int, LinkedListNode<(int Key, int Size)>> _map = new();
    private long _used;

    public ExactLru(long capacityBytes) => _capacity = capacityBytes;

    /// <summary>Accesses a key: true on a hit (which becomes most recent); on a miss inserts it.</summary>
    public bool Access(int key, int size)
    {
        if (_map.TryGetValue(key, out var node))
        {
            _order.Remove(node);
            _order.AddFirst(node);
            return true;
        }
        if (size > _capacity) return false;
        while (_used + size > _capacity)
        {
            var last = _order.Last!;
            _order.RemoveLast();
            _map.Remove(last.Value.Key);
            _used -= last.Value.Size;
        }
        _map[key] = _order.AddFirst((key, size));
        _used += size;
        return false;
    }
}
