using System.Runtime.CompilerServices;

namespace Tmem.RamTier;

/// <summary>
/// All page descriptors of a store, in chunks of 65,536 so growth never copies them.
/// Id 0 is never handed out (the translation uses 0 for "empty"). Free ids form a list
/// threaded through <see cref="PageDescriptor.Location"/>.
/// </summary>
internal sealed class DescriptorTable
{
    private const int ChunkBits = 16;
    private const int ChunkSize = 1 << ChunkBits;
    private const uint ChunkMask = ChunkSize - 1;

    private readonly Lock _lock = new();
    private PageDescriptor[][] _chunks = new PageDescriptor[4][];
    private long[]?[] _backingChunks = new long[]?[4]; // backing addresses (log addresses of logged pages), per chunk on first use
    private uint _highWater = 1; // next never-used id
    private uint _freeHead;      // 0 = empty list

    public DescriptorTable()
    {
        _chunks[0] = new PageDescriptor[ChunkSize];
    }

    /// <summary>One past the largest id ever handed out.</summary>
    public uint HighWater => Volatile.Read(ref _highWater);

    public ref PageDescriptor this[uint id]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref Volatile.Read(ref _chunks)[id >> ChunkBits][id & ChunkMask];
    }

    /// <summary>Where the tier below holds the page (a logged page's log address); 0 if none was set.</summary>
    public long GetBackingAddress(uint id)
    {
        var chunks = Volatile.Read(ref _backingChunks);
        uint chunk = id >> ChunkBits;
        return chunk < (uint)chunks.Length && Volatile.Read(ref chunks[chunk]) is { } addresses ? Volatile.Read(ref addresses[id & ChunkMask]) : 0;
    }

    /// <summary>
    /// Records where the tier below holds the page. Pure ephemeral workloads never allocate these
    /// 8 bytes a page; a chunk gets its array when its first backed page is installed.
    /// </summary>
    public void SetBackingAddress(uint id, long address)
    {
        uint chunk = id >> ChunkBits;
        var chunks = Volatile.Read(ref _backingChunks);
        long[]? addresses = chunk < (uint)chunks.Length ? Volatile.Read(ref chunks[chunk]) : null;
        if (addresses is null)
        {
            lock (_lock)
            {
                chunks = _backingChunks;
                if (chunk >= (uint)chunks.Length)
                {
                    Array.Resize(ref chunks, Math.Max(chunks.Length * 2, (int)chunk + 1));
                    Volatile.Write(ref _backingChunks, chunks);
                }
                addresses = chunks[chunk] ??= new long[ChunkSize];
            }
        }
        Volatile.Write(ref addresses[id & ChunkMask], address);
    }

    /// <summary>Hands out a descriptor in state <see cref="DescriptorFlags.Reserved"/>.</summary>
    public uint Allocate()
    {
        lock (_lock)
        {
            uint id = _freeHead;
            if (id != 0)
            {
                ref var d = ref this[id];
                _freeHead = (uint)d.Location;
                d.Location = 0;
                Volatile.Write(ref d.Flags, (byte)DescriptorFlags.Reserved);
                return id;
            }

            id = _highWater;
            if (id == uint.MaxValue)
                throw new InvalidOperationException("Page descriptor table is full (2^32 - 1 pages).");
            int chunk = (int)(id >> ChunkBits);
            var chunks = _chunks;
            if (chunk >= chunks.Length)
            {
                Array.Resize(ref chunks, chunks.Length * 2);
                Volatile.Write(ref _chunks, chunks);
            }
            chunks[chunk] ??= new PageDescriptor[ChunkSize];
            chunks[chunk][id & ChunkMask].Flags = (byte)DescriptorFlags.Reserved;
            Volatile.Write(ref _highWater, id + 1);
            return id;
        }
    }

    /// <summary>Returns a descriptor to the free list. The caller has unlinked it from any translation.</summary>
    public void Free(uint id)
    {
        lock (_lock)
        {
            ref var d = ref this[id];
            d.Owner = null;
            d.Length = 0;
            d.Index = 0;
            d.Clock = 0;
            Volatile.Write(ref d.Flags, (byte)DescriptorFlags.Free);
            d.Location = _freeHead;
            _freeHead = id;
        }
    }
}
