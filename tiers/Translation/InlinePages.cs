using System.Runtime.CompilerServices;
using Tmem.RamTier;

namespace Tmem.Translation;

/// <summary>How an inline table stores an object id: its key type, and the id's hash from it.</summary>
internal interface IInlineKey<TKey> where TKey : struct
{
    /// <summary>The id as this table keys it, if it fits.</summary>
    static abstract bool TryFrom(in ObjectId id, out TKey key);

    static abstract ObjectId ToId(in TKey key);

    /// <summary>Must equal <see cref="ObjectId.GetHashCode"/> of <see cref="ToId"/>.</summary>
    static abstract int HashOf(in TKey key);

    static abstract bool Same(in TKey a, in TKey b);
}

/// <summary>An id whose second and third words are zero (an inode or block number: what most clients send), as its first word.</summary>
internal readonly record struct NarrowKey(ulong Word0) : IInlineKey<NarrowKey>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryFrom(in ObjectId id, out NarrowKey key)
    {
        key = new NarrowKey(id.Word0);
        return (id.Word1 | id.Word2) == 0;
    }

    public static ObjectId ToId(in NarrowKey key) => new(key.Word0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HashOf(in NarrowKey key) => new ObjectId(key.Word0).GetHashCode();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Same(in NarrowKey a, in NarrowKey b) => a.Word0 == b.Word0;
}

/// <summary>Any id, whole.</summary>
internal readonly record struct WideKey(ObjectId Id) : IInlineKey<WideKey>
{
    public static bool TryFrom(in ObjectId id, out WideKey key)
    {
        key = new WideKey(id);
        return true;
    }

    public static ObjectId ToId(in WideKey key) => key.Id;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HashOf(in WideKey key) => key.Id.GetHashCode();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Same(in WideKey a, in WideKey b) => a.Id.Equals(b.Id);
}

/// <summary>
/// A bucket's objects of a single page, kept inline instead of as a <see cref="TmemObject"/>
/// (about 64 bytes, its own table and a dictionary entry: some 140 bytes an object). A Robin Hood
/// open-addressing table (linear probing, entries of a probe run kept in order of their home
/// slot, backward-shift deletion, no tombstones) of entries (key, page index, descriptor id;
/// descriptor 0 means empty): 16 bytes for a <see cref="NarrowKey"/>, 32 for a
/// <see cref="WideKey"/>. Its capacity is any number, not a power of two (a slot's home is the
/// hash scaled to the capacity), grown by a quarter at 7/8 full and rebuilt half full when under 1/4, so the
/// table is between 7/10 and 7/8 full as it grows: about 18-23 bytes a page for narrow keys.
/// Robin Hood order keeps a look-up short at that load, a miss included: it stops at the first
/// entry nearer its home than the probe is to the key's.
/// An object's second page moves it out to a <see cref="TmemObject"/> (<see cref="Bucket"/> does that).
/// <para>
/// To the RAM tier this is the owner of those pages. The owner index a descriptor records
/// (<see cref="PageDescriptor.Index"/>) is its key's hash, which does not change when entries
/// move (an insertion or deletion shifts a run, growth rehashes), so no move touches a
/// descriptor: the RAM tier finds the entry by scanning from the hash's home slot for its
/// descriptor id (<see cref="Holds"/>), under the bucket lock like every change here.
/// </para>
/// </summary>
internal sealed class InlinePages<TKey>(Bucket bucket) : PageOwner(bucket) where TKey : struct, IInlineKey<TKey>
{
    private struct Entry
    {
        public TKey Key;
        public uint Index;
        public uint Descriptor;
    }

    private const int MinCapacity = 4;

    private Entry[] _entries = [];

    public int Count { get; private set; }

    /// <summary>Slots in the table (for the tests: the load it keeps).</summary>
    public int Capacity => _entries.Length;

    /// <summary>The slot a hash starts at in a table of <paramref name="capacity"/> slots (mixed, then scaled: Lemire's multiply-shift).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Home(int hash, int capacity)
    {
        ulong mixed = ((ulong)(uint)hash * 0x9E3779B97F4A7C15UL) >> 32;
        return (int)((mixed * (uint)capacity) >> 32);
    }

    /// <summary>How far the entry at <paramref name="position"/> is from its home slot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Distance(Entry[] entries, int position)
    {
        int home = Home(TKey.HashOf(entries[position].Key), entries.Length);
        int d = position - home;
        return d < 0 ? d + entries.Length : d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Next(int position, int capacity) => ++position == capacity ? 0 : position;

    /// <summary>The position of <paramref name="key"/>'s entry, or -1. <paramref name="hash"/> is the id's hash.</summary>
    public int Locate(in TKey key, int hash)
    {
        if (Count == 0) return -1;
        var entries = _entries;
        int capacity = entries.Length;
        int i = Home(hash, capacity);
        for (int probe = 0; ; probe++, i = Next(i, capacity))
        {
            ref var e = ref entries[i];
            if (e.Descriptor == 0) return -1;
            if (TKey.Same(e.Key, key)) return i;
            if (Distance(entries, i) < probe) return -1; // the key would sit before this entry
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

    /// <summary>Adds an entry for a key not in the table.</summary>
    public void Add(in TKey key, int hash, uint index, uint descriptor)
    {
        if ((Count + 1) * 8 > _entries.Length * 7) Resize(Math.Max(MinCapacity, _entries.Length + _entries.Length / 4));
        Insert(_entries, new Entry { Key = key, Index = index, Descriptor = descriptor }, hash);
        Count++;
    }

    /// <summary>
    /// Robin Hood insertion: the entry goes before the first one nearer its own home than the
    /// entry would be to its, and the rest of the run shifts one slot on (there is a free slot:
    /// the table is never full).
    /// </summary>
    private static void Insert(Entry[] entries, in Entry entry, int hash)
    {
        int capacity = entries.Length;
        int i = Home(hash, capacity);
        for (int probe = 0; entries[i].Descriptor != 0 && Distance(entries, i) >= probe; probe++) i = Next(i, capacity);
        int free = i;
        while (entries[free].Descriptor != 0) free = Next(free, capacity);
        while (free != i)
        {
            int previous = free == 0 ? capacity - 1 : free - 1;
            entries[free] = entries[previous];
            free = previous;
        }
        entries[i] = entry;
    }

    /// <summary>Removes the entry at <paramref name="position"/>; returns its descriptor.</summary>
    public uint RemoveAt(int position)
    {
        var entries = _entries;
        int capacity = entries.Length;
        uint removed = entries[position].Descriptor;
        // Backward-shift deletion: pull the rest of the run back one slot, up to an empty slot or
        // an entry already at its home.
        int hole = position;
        for (int j = Next(hole, capacity); entries[j].Descriptor != 0 && Distance(entries, j) > 0; j = Next(j, capacity))
        {
            entries[hole] = entries[j];
            hole = j;
        }
        entries[hole] = default;
        Count--;
        if (Count == 0) _entries = []; // an emptied bucket gives its table back
        else if (capacity > 4 * MinCapacity && Count * 4 < capacity) Resize(Math.Max(MinCapacity, Count * 2));
        return removed;
    }

    /// <summary>Calls <paramref name="action"/> for every (object id, page index, descriptor).</summary>
    public void ForEach<TState>(TState state, Action<TState, ObjectId, uint, uint> action)
    {
        foreach (ref readonly var e in _entries.AsSpan())
            if (e.Descriptor != 0) action(state, TKey.ToId(e.Key), e.Index, e.Descriptor);
    }

    /// <summary>Calls <paramref name="action"/> for every (object id, page index, descriptor) and empties the table.</summary>
    public void DrainTo<TState>(TState state, Action<TState, ObjectId, uint, uint> action)
    {
        var entries = _entries;
        _entries = [];
        Count = 0;
        foreach (ref readonly var e in entries.AsSpan())
            if (e.Descriptor != 0) action(state, TKey.ToId(e.Key), e.Index, e.Descriptor);
    }

    // ---- PageOwner: what the RAM tier sees (owner index = the key's hash; position = where the entry is now) ----

    public override bool Holds(uint index, uint descriptor, out uint position)
    {
        position = 0;
        if (Count == 0) return false;
        var entries = _entries;
        int capacity = entries.Length;
        int i = Home((int)index, capacity);
        for (int probe = 0; ; probe++, i = Next(i, capacity))
        {
            ref var e = ref entries[i];
            if (e.Descriptor == 0) return false;
            if (e.Descriptor == descriptor)
            {
                position = (uint)i;
                return true;
            }
            if (Distance(entries, i) < probe) return false;
        }
    }

    public override void Unlink(uint position) => RemoveAt((int)position);

    public override PageHandle HandleAt(uint position)
    {
        ref readonly var e = ref _entries[position];
        return new PageHandle(Account.Serial, TKey.ToId(e.Key), e.Index);
    }

    private void Resize(int capacity)
    {
        var old = _entries;
        var entries = new Entry[capacity];
        foreach (ref readonly var e in old.AsSpan())
            if (e.Descriptor != 0) Insert(entries, e, TKey.HashOf(e.Key));
        _entries = entries;
    }
}
