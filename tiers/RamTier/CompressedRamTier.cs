using Tmem.Compression;
using Tmem.Diagnostics;
using Tmem.LogTier;
using Tmem.Translation;

namespace Tmem.RamTier;

/// <summary>
/// The compressed RAM tier: page descriptors, slabs, the byte budget and page limit, CLOCK
/// eviction (bottom-up: from a descriptor to its handle) and slab compaction.
/// <para>
/// Locking (DESIGN.md section 5): a put reserves room with <see cref="TryReserve"/> before it
/// takes any bucket lock, so eviction (which takes bucket locks) never runs under one. Eviction
/// and compaction only <c>TryEnter</c> a bucket lock, re-check under it that the translation
/// still points at the descriptor, and skip the page otherwise. Installing, reading, moving and
/// releasing a page's bytes all happen under the bucket lock of its object; the class and
/// descriptor-table locks are leaves.
/// </para>
/// </summary>
internal sealed unsafe class CompressedRamTier : IDisposable
{
    private const long MinCompactionWasteBytes = 256 * 1024;

    private readonly DescriptorTable _descriptors = new();
    private readonly SlabAllocator _slabs = new();
    private readonly StoreCounters _counters;
    private readonly PersistentLog? _log;
    private readonly long _budgetBytes;
    private readonly long _maxPages;
    private readonly double _compactionThreshold;

    private long _slotBytes;      // reserved + installed slot bytes
    private long _pages;          // reserved + installed descriptors
    private long _hand;           // CLOCK hand
    private int _compacting;
    private long _compactRetryWaste; // after a fruitless pass: wait for the waste to grow past this
    private long _compactRetryTicks; // ... or for this time (Environment.TickCount64) to pass

    public CompressedRamTier(TmemOptions options, StoreCounters counters, PersistentLog? log)
    {
        _counters = counters;
        _log = log;
        _budgetBytes = options.RamBudgetBytes;
        _maxPages = options.EffectiveMaxPages;
        _compactionThreshold = options.CompactionThreshold;
    }

    public long BudgetBytes => _budgetBytes;

    public long SlotBytes => Volatile.Read(ref _slotBytes);

    public long SlabBytes => _slabs.SlabBytes;

    public long Pages => Volatile.Read(ref _pages);

    /// <summary>
    /// Reserves a descriptor and <paramref name="slotBytes"/> of budget, evicting ephemeral pages
    /// (approximate LRU) while either the budget or the page limit is full. False when nothing
    /// evictable is left.
    /// </summary>
    public bool TryReserve(int slotBytes, out uint id, bool allowEviction = true)
    {
        id = 0;
        while (Interlocked.Increment(ref _pages) > _maxPages)
        {
            Interlocked.Decrement(ref _pages);
            if (!allowEviction || !EvictOne(needBytes: false)) return false;
        }
        while (true)
        {
            long used = Volatile.Read(ref _slotBytes);
            if (used + slotBytes <= _budgetBytes)
            {
                if (Interlocked.CompareExchange(ref _slotBytes, used + slotBytes, used) == used) break;
                continue;
            }
            if (!allowEviction || !EvictOne(needBytes: true))
            {
                Interlocked.Decrement(ref _pages);
                return false;
            }
        }
        id = _descriptors.Allocate();
        return true;
    }

    /// <summary>Gives back a reservation that was never installed.</summary>
    public void CancelReservation(uint id, int slotBytes)
    {
        _descriptors.Free(id);
        Interlocked.Add(ref _slotBytes, -slotBytes);
        Interlocked.Decrement(ref _pages);
    }

    /// <summary>
    /// Under the bucket lock: stores the page's bytes (a slab slot for compressed pages, the
    /// pattern for same-filled ones) and makes the descriptor live for (owner, index). The caller
    /// then links it into the translation.
    /// </summary>
    /// <remarks>
    /// A logged persistent page records <paramref name="logAddress"/> (its Put record); with
    /// <paramref name="spilled"/> it gets no RAM copy (its reservation had no slot bytes) and is
    /// read from the log.
    /// </remarks>
    public void Install(uint id, TmemObject owner, uint index, ReadOnlySpan<byte> compressed, ulong pattern, bool sameFilled, bool persistent,
        long logAddress = 0, bool spilled = false)
    {
        ref var d = ref _descriptors[id];
        var flags = DescriptorFlags.Installed;
        if (logAddress != 0)
        {
            flags |= DescriptorFlags.Logged;
            _descriptors.SetLogAddress(id, logAddress);
            Interlocked.Add(ref _counters.PersLogBytes, PersistentLog.EntrySize(sameFilled ? 8 : compressed.Length));
        }
        if (sameFilled)
        {
            d.Location = pattern;
            d.Length = 0;
            flags |= DescriptorFlags.SameFilled;
            Interlocked.Increment(ref _counters.ZeroFilledPages);
        }
        else if (spilled)
        {
            d.Location = 0;
            d.Length = (ushort)compressed.Length;
            flags |= DescriptorFlags.Spilled;
            Interlocked.Increment(ref _counters.PersSpilledPages);
        }
        else
        {
            ulong location = _slabs.Allocate(compressed.Length);
            compressed.CopyTo(new Span<byte>(_slabs.AddressOf(location), compressed.Length));
            d.Location = location;
            d.Length = (ushort)compressed.Length;
        }
        if (persistent)
        {
            flags |= DescriptorFlags.Persistent;
            Interlocked.Increment(ref _counters.PersPages);
            Interlocked.Add(ref _counters.PersZbytes, compressed.Length);
            Interlocked.Add(ref _counters.PersZscaled, Scaled(compressed.Length, owner));
        }
        else
        {
            Interlocked.Increment(ref _counters.EphPages);
            Interlocked.Add(ref _counters.EphZbytes, compressed.Length);
        }
        d.Owner = owner;
        d.Index = index;
        d.Clock = 1;
        Volatile.Write(ref d.Flags, (byte)flags);
        Interlocked.Increment(ref owner.Bucket.Pool.Pages);
    }

    /// <summary>Recovery from a checkpoint: a logged persistent page with no RAM copy, known by its record's address and length.</summary>
    public void InstallSpilled(uint id, TmemObject owner, uint index, int compressedLength, long logAddress)
    {
        ref var d = ref _descriptors[id];
        _descriptors.SetLogAddress(id, logAddress);
        Interlocked.Add(ref _counters.PersLogBytes, PersistentLog.EntrySize(compressedLength));
        d.Location = 0;
        d.Length = (ushort)compressedLength;
        Interlocked.Increment(ref _counters.PersSpilledPages);
        Interlocked.Increment(ref _counters.PersPages);
        Interlocked.Add(ref _counters.PersZbytes, compressedLength);
        Interlocked.Add(ref _counters.PersZscaled, Scaled(compressedLength, owner));
        d.Owner = owner;
        d.Index = index;
        d.Clock = 0;
        Volatile.Write(ref d.Flags, (byte)(DescriptorFlags.Installed | DescriptorFlags.Persistent | DescriptorFlags.Logged | DescriptorFlags.Spilled));
        Interlocked.Increment(ref owner.Bucket.Pool.Pages);
    }

    /// <summary>A compressed length scaled to a <see cref="PoolOptions.MaxPageSize"/> page (page sizes are powers of two).</summary>
    private static long Scaled(int length, TmemObject owner) => (long)length * (PoolOptions.MaxPageSize / owner.Bucket.Pool.PageSize);

    /// <summary>
    /// Under the bucket lock: true when the page has no RAM copy, with where its Put record is;
    /// the caller reads it from the log outside the lock.
    /// </summary>
    public bool TryGetSpilled(uint id, out long logAddress, out int compressedLength)
    {
        ref var d = ref _descriptors[id];
        if ((d.Flags & (byte)DescriptorFlags.Spilled) == 0)
        {
            logAddress = 0;
            compressedLength = 0;
            return false;
        }
        logAddress = _descriptors.GetLogAddress(id);
        compressedLength = d.Length;
        return true;
    }

    /// <summary>Under the bucket lock: where a logged page's Put record is (0 when not logged).</summary>
    public long LogAddressOf(uint id) =>
        (_descriptors[id].Flags & (byte)DescriptorFlags.Logged) != 0 ? _descriptors.GetLogAddress(id) : 0;

    /// <summary>Under the bucket lock: a logged page's record was copied to <paramref name="address"/> (log compaction).</summary>
    public void MoveLogAddress(uint id, long address) => _descriptors.SetLogAddress(id, address);

    /// <summary>Under the bucket lock: what a checkpoint records of a logged persistent page.</summary>
    public IndexCheckpoint.PageEntry CheckpointEntry(in ObjectId objectId, uint index, uint id)
    {
        ref var d = ref _descriptors[id];
        long address = _descriptors.GetLogAddress(id);
        if ((d.Flags & (byte)DescriptorFlags.Logged) == 0 || address == 0)
            throw new InvalidOperationException($"Persistent page {objectId}/{index} (descriptor {id}) has no log address.");
        return (d.Flags & (byte)DescriptorFlags.SameFilled) != 0
            ? new IndexCheckpoint.PageEntry(objectId, index, 0, true, address, d.Location)
            : new IndexCheckpoint.PageEntry(objectId, index, d.Length, false, address, 0);
    }

    /// <summary>Under the bucket lock: copies or decompresses a RAM-resident page into <paramref name="page"/>.</summary>
    public void Read(uint id, Span<byte> page)
    {
        ref var d = ref _descriptors[id];
        if ((d.Flags & (byte)DescriptorFlags.SameFilled) != 0)
        {
            PageCodec.Fill(page, d.Location);
        }
        else
        {
            var compressed = new ReadOnlySpan<byte>(_slabs.AddressOf(d.Location), d.Length);
            int decoded = PageCodec.Decompress(compressed, page);
            if (decoded != page.Length)
                ThrowHelper.ThrowCorrupt($"RAM-tier page (descriptor {id}, {d.Length} compressed bytes) decoded to {decoded} bytes, expected {page.Length}.");
        }
        if (d.Clock == 0) d.Clock = 1; // only write when needed: concurrent readers share no dirty line
    }

    /// <summary>
    /// Under the bucket lock, after the caller unlinked the page from the translation: frees its
    /// slot and descriptor and updates the counters.
    /// </summary>
    public void Release(uint id)
    {
        ref var d = ref _descriptors[id];
        var flags = (DescriptorFlags)d.Flags;
        int length = d.Length;
        if ((flags & DescriptorFlags.SameFilled) != 0)
        {
            Interlocked.Decrement(ref _counters.ZeroFilledPages);
        }
        else if ((flags & DescriptorFlags.Spilled) != 0)
        {
            Interlocked.Decrement(ref _counters.PersSpilledPages);
        }
        else
        {
            _slabs.Free(d.Location);
            Interlocked.Add(ref _slotBytes, -SlabAllocator.SlotSizeFor(length));
        }
        if ((flags & DescriptorFlags.Logged) != 0)
        {
            _descriptors.SetLogAddress(id, 0);
            Interlocked.Add(ref _counters.PersLogBytes, -PersistentLog.EntrySize((flags & DescriptorFlags.SameFilled) != 0 ? 8 : length));
        }
        if ((flags & DescriptorFlags.Persistent) != 0)
        {
            Interlocked.Decrement(ref _counters.PersPages);
            Interlocked.Add(ref _counters.PersZbytes, -length);
            Interlocked.Add(ref _counters.PersZscaled, -Scaled(length, d.Owner!));
        }
        else
        {
            Interlocked.Decrement(ref _counters.EphPages);
            Interlocked.Add(ref _counters.EphZbytes, -length);
        }
        if (d.Owner is { } owner) Interlocked.Decrement(ref owner.Bucket.Pool.Pages);
        Interlocked.Decrement(ref _pages);
        _descriptors.Free(id);
    }

    /// <summary>
    /// One step of CLOCK: sweeps descriptors, clearing reference bits, until it evicts one page.
    /// An ephemeral page is dropped; a logged persistent page whose record is committed is
    /// spilled (its RAM copy goes, the log keeps it). When <paramref name="needBytes"/>, pages
    /// that hold no slot bytes are skipped. False if two full sweeps find nothing.
    /// </summary>
    private bool EvictOne(bool needBytes)
    {
        long limit = 2L * _descriptors.HighWater + 64;
        long committed = _log?.CommittedUntilAddress ?? 0;
        for (long scanned = 0; scanned < limit; scanned++)
        {
            if (!AnythingEvictable()) return false;
            uint highWater = _descriptors.HighWater;
            uint id = (uint)((ulong)Interlocked.Increment(ref _hand) % (highWater - 1)) + 1;
            ref var d = ref _descriptors[id];
            var flags = (DescriptorFlags)Volatile.Read(ref d.Flags);
            if (!IsVictim(flags, needBytes)) continue;
            if (d.Clock != 0)
            {
                d.Clock = 0;
                continue;
            }
            var owner = Volatile.Read(ref d.Owner);
            if (owner is null) continue;
            uint index = d.Index;
            var bucket = owner.Bucket;
            if (!bucket.Lock.TryEnter()) continue;
            try
            {
                // The hint may be stale (freed and reused meanwhile); only the translation is truth.
                flags = (DescriptorFlags)d.Flags;
                if (owner.Find(index) != id || !IsVictim(flags, needBytes)) continue;
                if ((flags & DescriptorFlags.Persistent) == 0)
                {
                    owner.Remove(index);
                    bucket.RemoveIfEmpty(owner);
                    Release(id);
                    Interlocked.Increment(ref _counters.EvictedEphPages);
                    return true;
                }
                // Spill only what the log can already give back: FasterLog reads committed data only.
                if (_descriptors.GetLogAddress(id) >= committed) continue;
                _slabs.Free(d.Location);
                Interlocked.Add(ref _slotBytes, -SlabAllocator.SlotSizeFor(d.Length));
                d.Location = 0;
                Volatile.Write(ref d.Flags, (byte)(flags | DescriptorFlags.Spilled));
                Interlocked.Increment(ref _counters.PersSpilledPages);
                return true;
            }
            finally
            {
                bucket.Lock.Exit();
            }
        }
        return false;
    }

    /// <summary>Ephemeral pages, or persistent RAM copies that can spill.</summary>
    private bool AnythingEvictable() =>
        Volatile.Read(ref _counters.EphPages) > 0
        || (_log is not null && Volatile.Read(ref _counters.PersPages) > Volatile.Read(ref _counters.PersSpilledPages));

    private static bool IsVictim(DescriptorFlags flags, bool needBytes)
    {
        if ((flags & DescriptorFlags.Installed) == 0) return false;
        if (needBytes && (flags & DescriptorFlags.SameFilled) != 0) return false;
        if ((flags & DescriptorFlags.Persistent) == 0) return true;
        // A persistent page can only lose a RAM copy it has, and only if the log holds it; that
        // frees bytes but not the page's place under MaxPages.
        if (!needBytes) return false;
        return (flags & (DescriptorFlags.Logged | DescriptorFlags.Spilled | DescriptorFlags.SameFilled)) == DescriptorFlags.Logged;
    }

    /// <summary>
    /// Called after a put, holding no lock: when slabs hold more than the threshold beyond the slot
    /// bytes in use, runs one compaction pass.
    /// </summary>
    public void MaybeCompact()
    {
        long used = Volatile.Read(ref _slotBytes);
        long waste = _slabs.SlabBytes - used;
        if (waste <= MinCompactionWasteBytes || waste <= used * _compactionThreshold) return;
        if (waste <= Volatile.Read(ref _compactRetryWaste) && Environment.TickCount64 < Volatile.Read(ref _compactRetryTicks)) return;
        if (Interlocked.CompareExchange(ref _compacting, 1, 0) != 0) return;
        try
        {
            // A pass that can move nothing (the waste sits in slabs no other slab can absorb) is
            // not retried until the waste grows by MinCompactionWasteBytes or 100 ms pass.
            bool fruitless = Compact() == 0;
            Volatile.Write(ref _compactRetryWaste, fruitless ? waste + MinCompactionWasteBytes : 0);
            Volatile.Write(ref _compactRetryTicks, fruitless ? Environment.TickCount64 + 100 : 0);
        }
        finally
        {
            Volatile.Write(ref _compacting, 0);
        }
    }

    /// <summary>
    /// One compaction pass: marks the sparse slabs of each class as draining, then walks the
    /// descriptor table once and moves every page found in a draining slab into another slab of
    /// its class (under the page's bucket lock, re-checked there). Emptied slabs are released.
    /// Returns pages moved.
    /// </summary>
    public int Compact()
    {
        var victims = _slabs.BeginDrain();
        if (victims.Count == 0) return 0;
        int moved = 0;
        try
        {
            uint highWater = _descriptors.HighWater;
            for (uint id = 1; id < highWater; id++)
            {
                ref var d = ref _descriptors[id];
                if ((Volatile.Read(ref d.Flags) & (byte)(DescriptorFlags.Installed | DescriptorFlags.SameFilled | DescriptorFlags.Spilled)) != (byte)DescriptorFlags.Installed) continue;
                if (_slabs.SlabOf(d.Location) is not { Draining: true }) continue;
                var owner = Volatile.Read(ref d.Owner);
                if (owner is null) continue;
                var bucket = owner.Bucket;
                if (!bucket.Lock.TryEnter()) continue;
                try
                {
                    // Re-check under the lock: the page may have been freed, replaced or moved.
                    if (owner.Find(d.Index) != id || (d.Flags & (byte)(DescriptorFlags.SameFilled | DescriptorFlags.Spilled)) != 0) continue;
                    ulong oldLocation = d.Location;
                    if (_slabs.SlabOf(oldLocation) is not { Draining: true }) continue;
                    int length = d.Length;
                    ulong newLocation = _slabs.Allocate(length);
                    Buffer.MemoryCopy(_slabs.AddressOf(oldLocation), _slabs.AddressOf(newLocation), length, length);
                    d.Location = newLocation;
                    _slabs.Free(oldLocation);
                    moved++;
                }
                finally
                {
                    bucket.Lock.Exit();
                }
            }
        }
        finally
        {
            foreach (var victim in victims) _slabs.EndDrain(victim);
        }
        Interlocked.Add(ref _counters.CompactedPages, moved);
        return moved;
    }

    public void Dispose() => _slabs.Dispose();
}
