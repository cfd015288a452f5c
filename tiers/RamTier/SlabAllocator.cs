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
    public ulong Allocate(int length, uint owner)
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
            int slot = slab.TakeSlot(owner);
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
            if (ReferenceEquals(slab, c.Current) || slab.Draining) return;
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
    /// Picks a slab to empty: in the class with the most free slot bytes, provided at least a whole
    /// slab's worth of slots is free there, its emptiest partial slab. Allocation skips it until
    /// <see cref="EndDrain"/>. Null when no class is worth compacting.
    /// </summary>
    public Slab? BeginDrain()
    {
        SizeClass? best = null;
        long bestFree = 0;
        foreach (var c in Volatile.Read(ref _classList))
        {
            long free = c.FreeSlots;
            if (free >= c.SlotsPerSlab && free * c.SlotSize > bestFree && c.Partial.Count > 0)
            {
                best = c;
                bestFree = free * c.SlotSize;
            }
        }
        if (best is null) return null;
        lock (best.Lock)
        {
            if (_disposed) return null;
            var victim = best.EmptiestPartial();
            if (victim is null) return null;
            long freeElsewhere = best.FreeSlots - (victim.SlotCount - victim.Used);
            if (freeElsewhere < victim.Used) return null;
            best.RemovePartial(victim);
            victim.Draining = true;
            return victim;
        }
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
            var slab = new Slab(id, c);
            Volatile.Write(ref slabs[id], slab);
            c.SlabCount++;
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
