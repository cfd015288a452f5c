using System.Runtime.CompilerServices;
using Tmem.RamTier;

namespace Tmem.Translation;

/// <summary>
/// A bucket's objects of a single page, kept inline instead of as a <see cref="TmemObject"/>
/// (about 64 bytes, its own table and a dictionary entry: some 140 bytes an object): an
/// open-addressing table (linear probing, backward-shift deletion, grown at 3/4 full) of 32-byte
/// entries (object id, page index, descriptor id; descriptor 0 means empty). An object's second
/// page moves it out to a <see cref="TmemObject"/> (<see cref="Bucket"/> does that).
/// <para>
/// To the RAM tier this is the owner of those pages, and an entry's position is the owner index
/// its descriptor records (<see cref="PageDescriptor.Index"/>): entries move when deletion shifts
/// them back or the table grows, and every move re-points the descriptor (under the bucket lock,
/// like every change here; eviction reads the position as a hint and re-checks it under the lock).
/// </para>
/// </summary>
internal sealed class InlinePages(Bucket bucket, CompressedRamTier ram) : PageOwner(bucket)
{
    private struct Entry
    {
        public ObjectId Id;
        public uint Index;
        public uint Descriptor;
    }

    private Entry[] _entries = [];
    private int _shift = 64; // 64 - log2(capacity); 64 while there is no table

    public int Count { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(int hash) => (int)(((ulong)(uint)hash * 0x9E3779B97F4A7C15UL) >> _shift);

    /// <summary>The position of <paramref name="id"/>'s entry, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Locate(in ObjectId id, int hash)
    {
        if (Count == 0) return -1;
        var entries = _entries;
        int mask = entries.Length - 1;
        for (int i = Home(hash); ; i = (i + 1) & mask)
        {
            ref var e = ref entries[i];
            if (e.Descriptor == 0) return -1;
            if (e.Id.Equals(id)) return i;
        }
    }

    /// <summary>The page index of the entry at <paramref name="position"/>.</summary>
    public uint IndexAt(int position) => _entries[position].Index;

    /// <summary>The descriptor of the entry at <paramref name="position"/>.</summary>
    public uint DescriptorAt(int position) => _entries[position].Descriptor;

    /// <summary>Replaces the descriptor of the entry at <paramref name="position"/> (a put over the page); returns the old one.</summary>
    public uint Replace(int position, uint descriptor)
    {
        ref var e = ref _entries[position];
        uint old = e.Descriptor;
        e.Descriptor = descriptor;
        return old;
    }

    /// <summary>Adds an entry for an object not in the table; returns its position (the descriptor's owner index).</summary>
    public int Add(in ObjectId id, int hash, uint index, uint descriptor)
    {
        if ((Count + 1) * 4 > _entries.Length * 3) Grow();
        var entries = _entries;
        int mask = entries.Length - 1;
        int i = Home(hash);
        while (entries[i].Descriptor != 0) i = (i + 1) & mask;
        entries[i] = new Entry { Id = id, Index = index, Descriptor = descriptor };
        Count++;
        return i;
    }

    /// <summary>Removes the entry at <paramref name="position"/>; returns its descriptor.</summary>
    public uint RemoveAt(int position)
    {
        var entries = _entries;
        int mask = entries.Length - 1;
        uint removed = entries[position].Descriptor;
        // Backward-shift deletion (no tombstones): pull later entries of the probe run into the
        // hole, re-pointing each moved entry's descriptor at its new position.
        int hole = position;
        for (int j = (position + 1) & mask; ; j = (j + 1) & mask)
        {
            ref var e = ref entries[j];
            if (e.Descriptor == 0) break;
            int home = Home(e.Id.GetHashCode());
            bool homeInRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!homeInRange)
            {
                entries[hole] = e;
                ram.MoveOwnerIndex(e.Descriptor, (uint)hole);
                hole = j;
            }
        }
        entries[hole] = default;
        Count--;
        if (Count == 0)
        {
            _entries = []; // an emptied bucket gives its table back
            _shift = 64;
        }
        return removed;
    }

    /// <summary>Calls <paramref name="action"/> for every (object id, page index, descriptor).</summary>
    public void ForEach<TState>(TState state, Action<TState, ObjectId, uint, uint> action)
    {
        foreach (ref readonly var e in _entries.AsSpan())
            if (e.Descriptor != 0) action(state, e.Id, e.Index, e.Descriptor);
    }

    /// <summary>Calls <paramref name="action"/> for every (object id, page index, descriptor) and empties the table.</summary>
    public void DrainTo<TState>(TState state, Action<TState, ObjectId, uint, uint> action)
    {
        var entries = _entries;
        _entries = [];
        _shift = 64;
        Count = 0;
        foreach (ref readonly var e in entries.AsSpan())
            if (e.Descriptor != 0) action(state, e.Id, e.Index, e.Descriptor);
    }

    // ---- PageOwner: what the RAM tier sees (owner index = position) ----

    public override uint Find(uint index) => index < (uint)_entries.Length ? _entries[index].Descriptor : 0;

    public override void Unlink(uint index) => RemoveAt((int)index);

    public override PageHandle HandleOf(uint index)
    {
        ref readonly var e = ref _entries[index];
        return new PageHandle(Account.Serial, e.Id, e.Index);
    }

    private void Grow()
    {
        var old = _entries;
        _entries = new Entry[old.Length == 0 ? 2 : old.Length * 2];
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)_entries.Length);
        int mask = _entries.Length - 1;
        foreach (ref readonly var e in old.AsSpan())
        {
            if (e.Descriptor == 0) continue;
            int i = Home(e.Id.GetHashCode());
            while (_entries[i].Descriptor != 0) i = (i + 1) & mask;
            _entries[i] = e;
            ram.MoveOwnerIndex(e.Descriptor, (uint)i);
        }
    }
}
