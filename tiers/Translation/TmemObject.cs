using System.Runtime.CompilerServices;
using Tmem.RamTier;

namespace Tmem.Translation;

/// <summary>
/// One object of a pool: its pages by index. An open-addressing table (linear probing,
/// backward-shift deletion) of 8-byte entries <c>index &lt;&lt; 32 | descriptor id</c>, id 0 meaning
/// empty; about 11-16 bytes per page, where the kernel's radix tree node costs more.
/// Guarded by its bucket's lock, which is the lock the RAM tier knows it by (<see cref="PageOwner"/>).
/// </summary>
internal sealed class TmemObject : PageOwner
{
    private ulong[] _entries = new ulong[2];
    private int _shift = 63; // 64 - log2(capacity)

    public TmemObject(in ObjectId id, Bucket bucket) : base(bucket) => Id = id;

    public ObjectId Id { get; }

    /// <summary>The bucket holding the object (the owner group the RAM tier knows it by).</summary>
    public Bucket Bucket => (Bucket)Group;

    public int Count { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(uint index) => (int)((index * 0x9E3779B97F4A7C15UL) >> _shift);

    /// <summary>The descriptor id at <paramref name="index"/>, or 0.</summary>
    public uint Find(uint index)
    {
        var entries = _entries;
        int mask = entries.Length - 1;
        for (int i = Home(index); ; i = (i + 1) & mask)
        {
            ulong e = entries[i];
            if (e == 0) return 0;
            if ((uint)(e >> 32) == index) return (uint)e;
        }
    }

    public override bool Holds(uint index, uint descriptor, out uint position)
    {
        position = index;
        return Find(index) == descriptor;
    }

    public override PageHandle HandleAt(uint position) => new(Account.Serial, Id, position);

    /// <summary>Eviction: unmaps <paramref name="index"/>, and leaves the bucket when that was the last page.</summary>
    public override void Unlink(uint index)
    {
        Remove(index);
        Bucket.RemoveIfEmpty(this);
    }

    /// <summary>Maps <paramref name="index"/> to <paramref name="id"/>; returns the id it replaced, or 0.</summary>
    public uint Set(uint index, uint id)
    {
        if ((Count + 1) * 4 > _entries.Length * 3) Grow();
        var entries = _entries;
        int mask = entries.Length - 1;
        ulong entry = ((ulong)index << 32) | id;
        for (int i = Home(index); ; i = (i + 1) & mask)
        {
            ulong e = entries[i];
            if (e == 0)
            {
                entries[i] = entry;
                Count++;
                return 0;
            }
            if ((uint)(e >> 32) == index)
            {
                entries[i] = entry;
                return (uint)e;
            }
        }
    }

    /// <summary>Unmaps <paramref name="index"/>; returns the id it held, or 0.</summary>
    public uint Remove(uint index)
    {
        var entries = _entries;
        int mask = entries.Length - 1;
        int i = Home(index);
        while (true)
        {
            ulong e = entries[i];
            if (e == 0) return 0;
            if ((uint)(e >> 32) == index) break;
            i = (i + 1) & mask;
        }
        uint removed = (uint)entries[i];
        // Backward-shift deletion: pull later entries of the probe run into the hole so that
        // lookups never need tombstones.
        int hole = i;
        for (int j = (i + 1) & mask; ; j = (j + 1) & mask)
        {
            ulong e = entries[j];
            if (e == 0) break;
            int home = Home((uint)(e >> 32));
            // Move e into the hole if its home is not in the cyclic range (hole, j].
            bool homeInRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!homeInRange)
            {
                entries[hole] = e;
                hole = j;
            }
        }
        entries[hole] = 0;
        Count--;
        return removed;
    }

    /// <summary>Calls <paramref name="action"/> for every (index, id).</summary>
    public void ForEach<TState>(TState state, Action<TState, uint, uint> action)
    {
        foreach (ulong e in _entries)
            if (e != 0) action(state, (uint)(e >> 32), (uint)e);
    }

    /// <summary>Calls <paramref name="action"/> for every (index, id) and empties the object.</summary>
    public void DrainTo<TState>(TState state, Action<TState, uint, uint> action)
    {
        foreach (ulong e in _entries)
            if (e != 0) action(state, (uint)(e >> 32), (uint)e);
        _entries = new ulong[2];
        _shift = 63;
        Count = 0;
    }

    private void Grow()
    {
        var old = _entries;
        _entries = new ulong[old.Length * 2];
        _shift--;
        int mask = _entries.Length - 1;
        foreach (ulong e in old)
        {
            if (e == 0) continue;
            int i = Home((uint)(e >> 32));
            while (_entries[i] != 0) i = (i + 1) & mask;
            _entries[i] = e;
        }
    }
}
