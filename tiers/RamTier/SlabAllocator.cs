using System.Runtime.CompilerServices;

namespace Tmem.RamTier;

/// <summary>
/// Compressed pages packed by size class (16-byte steps) into native slabs, zsmalloc-style.
/// A location is <c>slab id &lt;&lt; 16 | slot</c>. Lock order: a bucket lock may be held when
/// calling in; class locks are leaves; the slab-table lock is taken only inside a class lock.
/// </summary>
internal sealed unsafe class SlabAllocator : IDisposable
{
    public const int ClassShift = 4;
    public const int ClassStep = 1 << ClassShift;

    private readonly SizeClass?[] _classes = new SizeClass?[(PoolOptions.MaxPageSize >> ClassShift) + 1];
    private SizeClass[] _classList = [];
    private readonly Lock _tableLock = new();
    private readonly Stack<int> _freeSlabIds = new();
    private Slab?[] _slabs = new Slab?[1024];
    private int _nextSlabId;
    private long _slabBytes;
    private volatile bool _disposed;

    /// <summary>Bytes of native memory held in slabs (slots in use, free slots and slack).</summary>
    public long SlabBytes => Volatile.Read(ref _slabBytes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SlotSizeFor(int length) => (length + ClassStep - 1) & ~(ClassStep - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MakeLocation(int slabId, int slot) => ((ulong)(uint)slabId << 16) | (uint)slot;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* AddressOf(ulong location)
    {
        var slab = Volatile.Read(ref _slabs)[(int)(location >> 16)]!;
        return slab.Base + (long)(int)(location & 0xFFFF) * slab.SlotSize;
    }

    /// <summary>Takes a slot for a compressed page of <paramref name="length"/> bytes.</summary>
    public ulong Allocate(int length)
    {
        var c = ClassFor(length);
        lock (c.Lock)
        {
            if (_disposed) ThrowHelper.ThrowDisposed();
            var slab = c.Current;
            if (slab is null || slab.IsFull)
            {
                slab = c.FullestPartial();
                if (slab is not null) c.RemovePartial(slab);
                else slab = NewSlab(c);
                c.Current = slab;
            }
            int slot = slab.TakeSlot();
            c.UsedSlots++;
            return MakeLocation(slab.Id, slot);
        }
    }

    /// <summary>Frees a slot; the caller has unlinked every reference to it.</summary>
    public void Free(ulong location)
    {
        var slab = Volatile.Read(ref _slabs)[(int)(location >> 16)];
        if (slab is null) return; // only after Dispose released every slab
        var c = slab.Class;
        lock (c.Lock)
        {
            if (_disposed) return;
            bool wasFull = slab.IsFull;
            slab.ReturnSlot((int)(location & 0xFFFF));
            c.UsedSlots--;
            if (slab.Draining) return; // EndDrain decides
            if (ReferenceEquals(slab, c.Current))
            {
                // An empty current slab goes too, or a class that emptied would keep it forever.
                if (slab.Used == 0)
                {
                    c.Current = null;
                    ReleaseSlab(c, slab);
                }
                return;
            }
            if (slab.Used == 0)
            {
                if (!wasFull) c.RemovePartial(slab);
                ReleaseSlab(c, slab);
            }
            else if (wasFull)
            {
                c.AddPartial(slab);
            }
        }
    }

    /// <summary>
    /// The slab a location is in, or null. Tolerates any value (the compactor reads locations
    /// without the bucket lock and checks again under it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Slab? SlabOf(ulong location)
    {
        var slabs = Volatile.Read(ref _slabs);
        ulong index = location >> 16;
        return index < (ulong)slabs.Length ? Volatile.Read(ref slabs[index]) : null;
    }

    /// <summary>
    /// Picks slabs to empty: in each class, its emptiest partial slabs, as many as the class's
    /// other free slots can take in. Allocation skips them until <see cref="EndDrain"/>.
    /// </summary>
    public List<Slab> BeginDrain()
    {
        var victims = new List<Slab>();
        foreach (var c in Volatile.Read(ref _classList))
        {
            if (c.Partial.Count == 0) continue;
            lock (c.Lock)
            {
                if (_disposed) break;
                // The current slab is a candidate too: in a shrinking class it empties like any other.
                var candidates = c.Partial.ToList();
                if (c.Current is { IsFull: false } current) candidates.Add(current);
                long freeElsewhere = c.FreeSlots;
                long toMove = 0;
                foreach (var victim in candidates.OrderBy(s => s.Used))
                {
                    // Draining a slab removes its free slots from the class and adds its pages to move.
                    long free = freeElsewhere - (victim.SlotCount - victim.Used);
                    if (free < toMove + victim.Used) break;
                    freeElsewhere = free;
                    toMove += victim.Used;
                    if (ReferenceEquals(victim, c.Current)) c.Current = null;
                    else c.RemovePartial(victim);
                    victim.Draining = true;
                    victims.Add(victim);
                }
            }
        }
        return victims;
    }

    /// <summary>Ends a drain: releases the slab if it is empty, else makes it allocatable again.</summary>
    public void EndDrain(Slab slab)
    {
        var c = slab.Class;
        lock (c.Lock)
        {
            if (_disposed) return;
            slab.Draining = false;
            if (slab.Used == 0) ReleaseSlab(c, slab);
            else if (!slab.IsFull) c.AddPartial(slab);
        }
    }

    private SizeClass ClassFor(int length)
    {
        int index = (length + ClassStep - 1) >> ClassShift;
        var c = Volatile.Read(ref _classes[index]);
        if (c is not null) return c;
        lock (_tableLock)
        {
            c = _classes[index];
            if (c is null)
            {
                c = new SizeClass(index << ClassShift);
                Volatile.Write(ref _classList, [.. _classList, c]);
                Volatile.Write(ref _classes[index], c);
            }
            return c;
        }
    }

    private Slab NewSlab(SizeClass c)
    {
        lock (_tableLock)
        {
            int id = _freeSlabIds.Count > 0 ? _freeSlabIds.Pop() : _nextSlabId++;
            var slabs = _slabs;
            if (id >= slabs.Length)
            {
                Array.Resize(ref slabs, slabs.Length * 2);
                Volatile.Write(ref _slabs, slabs);
            }
            var slab = new Slab(id, c, c.SlotsForNewSlab());
            Volatile.Write(ref slabs[id], slab);
            c.SlabCount++;
            c.TotalSlots += slab.SlotCount;
            Interlocked.Add(ref _slabBytes, slab.Bytes);
            return slab;
        }
    }

    private void ReleaseSlab(SizeClass c, Slab slab)
    {
        lock (_tableLock)
        {
            _slabs[slab.Id] = null;
            _freeSlabIds.Push(slab.Id);
            c.SlabCount--;
            c.TotalSlots -= slab.SlotCount;
            Interlocked.Add(ref _slabBytes, -slab.Bytes);
            slab.Release();
        }
    }

    /// <summary>Frees every slab. Callers must have stopped all operations (the store destroys every pool first).</summary>
    public void Dispose()
    {
        foreach (var c in Volatile.Read(ref _classList))
        {
            lock (c.Lock)
            {
                _disposed = true;
            }
        }
        _disposed = true;
        lock (_tableLock)
        {
            foreach (var slab in _slabs)
                slab?.Release();
            Array.Clear(_slabs);
            _slabBytes = 0;
        }
    }
}
