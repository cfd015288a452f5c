using System.Runtime.InteropServices;

namespace Tmem.RamTier;

/// <summary>
/// One slab: a native block of <see cref="SlotCount"/> equal slots of one size class. Free slots
/// are threaded through their own first four bytes (a slot is free only when no translation
/// points at it, so nothing reads it meanwhile). All mutable state is guarded by the class lock.
/// </summary>
internal sealed unsafe class Slab
{
    private const int EndOfList = -1;

    private int _freeHead = EndOfList;
    private int _nextUnused;

    public Slab(int id, SizeClass sizeClass, int slotCount)
    {
        Id = id;
        Class = sizeClass;
        SlotSize = sizeClass.SlotSize;
        SlotCount = slotCount;
        Base = (byte*)NativeMemory.Alloc((nuint)Bytes);
    }

    public int Id { get; }

    public SizeClass Class { get; }

    public int SlotSize { get; }

    public int SlotCount { get; }

    public byte* Base { get; private set; }

    public long Bytes => (long)SlotSize * SlotCount;

    public int Used { get; private set; }

    public bool IsFull => Used == SlotCount;

    /// <summary>Position in the class's partial list, or -1 when not in it.</summary>
    public int PartialIndex { get; set; } = -1;

    /// <summary>True while compaction empties this slab: allocation skips it. Read without the lock by the compactor's scan.</summary>
    public volatile bool Draining;

    public int TakeSlot()
    {
        int slot;
        if (_freeHead != EndOfList)
        {
            slot = _freeHead;
            _freeHead = *(int*)(Base + (long)slot * SlotSize);
        }
        else
        {
            slot = _nextUnused++;
        }
        Used++;
        return slot;
    }

    public void ReturnSlot(int slot)
    {
        *(int*)(Base + (long)slot * SlotSize) = _freeHead;
        _freeHead = slot;
        Used--;
    }

    public void Release()
    {
        NativeMemory.Free(Base);
        Base = null;
    }
}
