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

    public Slab(int id, SizeClass sizeClass)
    {
        Id = id;
        Class = sizeClass;
        SlotSize = sizeClass.SlotSize;
        SlotCount = sizeClass.SlotsPerSlab;
        Base = (byte*)NativeMemory.Alloc((nuint)Bytes);
        Owners = new uint[SlotCount];
    }

    public int Id { get; }

    public SizeClass Class { get; }

    public int SlotSize { get; }

    public int SlotCount { get; }

    public byte* Base { get; private set; }

    public long Bytes => (long)SlotSize * SlotCount;

    /// <summary>Descriptor id using each slot (0 when free); the reverse map compaction walks.</summary>
    public uint[] Owners { get; }

    public int Used { get; private set; }

    public bool IsFull => Used == SlotCount;

    /// <summary>Position in the class's partial list, or -1 when not in it.</summary>
    public int PartialIndex { get; set; } = -1;

    /// <summary>True while compaction empties this slab: allocation skips it.</summary>
    public bool Draining { get; set; }

    public int TakeSlot(uint owner)
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
        Owners[slot] = owner;
        Used++;
        return slot;
    }

    public void ReturnSlot(int slot)
    {
        *(int*)(Base + (long)slot * SlotSize) = _freeHead;
        _freeHead = slot;
        Owners[slot] = 0;
        Used--;
    }

    public void Release()
    {
        NativeMemory.Free(Base);
        Base = null;
    }
}
