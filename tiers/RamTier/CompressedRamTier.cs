using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using Tmem.Compression;
using Tmem.Diagnostics;

namespace Tmem.RamTier;

/// <summary>
/// The compressed RAM tier: page descriptors, slabs, the byte budget and page limit, CLOCK
/// eviction (bottom-up: from a descriptor to its handle) and slab compaction.
/// <para>
/// Locking: a put reserves room with <see cref="TryReserve"/> before it
/// takes any bucket lock, so eviction (which takes bucket locks) never runs under one. Eviction
/// and compaction only <c>TryEnter</c> a bucket lock, re-check under it that the translation
/// still points at the descriptor, and skip the page otherwise. Installing, reading, moving and
/// releasing a page's bytes all happen under its owner's lock (the bucket lock of its object);
/// the class and descriptor-table locks are leaves.
/// </para>
/// <para>
/// Reclaim ahead of demand (kswapd's watermarks, on by default: <see cref="TmemOptions.BackgroundReclaim"/>):
/// a reservation that leaves less than half of <see cref="HeadroomBytes"/> free (or of the page
/// limit's headroom) queues one background pass that evicts down to the whole headroom, and slab
/// compaction runs in that pass too; so a put into a full store usually finds room already made
/// and pays only for its own page. A put that finds the budget full anyway (the pass is behind)
/// evicts for itself, as it does with reclaim ahead off. At most one pass runs at a time.
/// </para>
/// <para>
/// Seams: the RAM tier knows its pages' holders only as <see cref="PageOwner"/>s, a page's
/// representation as a <see cref="PageForm"/>, and the tiers under it as <see cref="ITierBelow"/>
/// (one for persistent pages, the log of a durable store; one for ephemeral pages, the remote
/// tier when it is on).
/// </para>
/// </summary>
internal sealed unsafe class CompressedRamTier : IDisposable
{
    private const long MinCompactionWasteBytes = 256 * 1024;

    private readonly DescriptorTable _descriptors = new();
    private readonly SlabAllocator _slabs = new();
    private readonly StoreCounters _counters;
    private readonly ITierBelow? _persistentBelow; // the log of a durable store
    private readonly ITierBelow? _ephemeralBelow;  // the remote tier, or none: evicted ephemeral pages are dropped
    private readonly long _remoteCapacityBytes;   // counts in the derived page limit
    private readonly bool _maxPagesFollowsBudget; // MaxPages unset: budget / 256, so it follows a new budget
    private long _budgetBytes;   // changed at run time by SetBudget
    private long _maxPages;      // ditto
    private readonly double _slabCompactionThreshold;

    private long _slotBytes;      // reserved + installed slot bytes
    private long _pages;          // reserved + installed descriptors
    private long _hand;           // CLOCK hand
    private int _compacting;
    private readonly bool _reclaimAhead;
    private int _reclaiming;          // 1 while a background pass is queued or running, or the thread lingers after one
    private long _reclaimIdleUntil;   // after a pass that could evict nothing: no new pass before this (Environment.TickCount64)
    private volatile bool _stopped;   // Dispose: no pass starts, a running one stops
    private Thread? _reclaimer;       // started by the first pass; blocks on _reclaimWake between passes
    private readonly AutoResetEvent _reclaimWake = new(false);
    private long _compactRetryWaste; // after a fruitless pass: wait for the waste to grow past this
    private long _compactRetryTicks; // ... or for this time (Environment.TickCount64) to pass

    public CompressedRamTier(TmemOptions options, StoreCounters counters, ITierBelow? persistentBelow, ITierBelow? ephemeralBelow = null)
    {
        _counters = counters;
        _persistentBelow = persistentBelow;
        _ephemeralBelow = ephemeralBelow;
        _budgetBytes = options.RamBudgetBytes;
        _maxPages = options.EffectiveMaxPages;
        _maxPagesFollowsBudget = options.MaxPages == 0;
        _remoteCapacityBytes = ephemeralBelow is null ? 0 : options.RemoteCapacityBytes;
        _slabCompactionThreshold = options.SlabCompactionThreshold;
        _reclaimAhead = options.BackgroundReclaim;
        ephemeralBelow?.OnCopyLost(DropLost);
    }

    /// <summary>
    /// The ephemeral tier below lost its copy of a page (its remote write failed): the page leaves
    /// the store if descriptor <paramref name="id"/> still holds that copy. Bottom-up, as eviction
    /// is: the descriptor names its owner, whose map is the truth once its lock is held (the
    /// descriptor may have been freed and reused meanwhile; a backing address, a version, is never
    /// reused). Outside any lock; counted as an eviction (the page left without a flush).
    /// </summary>
    private void DropLost(uint id, long backingAddress)
    {
        if (_stopped || id == 0 || id >= _descriptors.HighWater) return;
        ref var d = ref _descriptors[id];
        var owner = Volatile.Read(ref d.Owner);
        if (owner is null) return;
        uint index = d.Index;
        lock (owner.Lock)
        {
            if (!owner.Holds(index, id, out uint at) || PageDescriptor.FormOf(d.Flags) != PageForm.Below
                || (d.State & DescriptorFlags.Persistent) != 0 || _descriptors.GetBackingAddress(id) != backingAddress)
                return;
            var gone = owner.HandleAt(at);
            owner.Unlink(at);
            Release(id, gone.Id, gone.Index);
            Interlocked.Increment(ref _counters.EvictedEphPages);
        }
    }

    /// <summary>Smallest budget reclaim ahead runs for: under it, puts evict for themselves (a headroom of under 64 KiB saves nothing).</summary>
    public const long MinReclaimAheadBudgetBytes = 8L << 20;

    /// <summary>
    /// What reclaim ahead keeps free under the budget: 1/128 of it, at most 16 MiB, so it costs
    /// under 1% of the capacity (and of the page limit: 1/128 of it, at least 16 pages).
    /// </summary>
    public static long HeadroomBytes(long budgetBytes) => Math.Min(budgetBytes / 128, 16L << 20);

    private static long HeadroomPages(long maxPages) => Math.Max(16, maxPages / 128);

    /// <summary>Whether reclaim ahead is on now (it is off for budgets under <see cref="MinReclaimAheadBudgetBytes"/>).</summary>
    public bool ReclaimAhead => _reclaimAhead && Volatile.Read(ref _budgetBytes) >= MinReclaimAheadBudgetBytes;

    public long BudgetBytes => Volatile.Read(ref _budgetBytes);

    /// <summary>
    /// A new budget, in force for every reservation from now on (and the page limit with it, when
    /// <c>MaxPages</c> was left to follow the budget). Shrinking evicts nothing by itself: the next
    /// reservations evict (or a caller reclaims) down to it.
    /// </summary>
    public void SetBudget(long budgetBytes)
    {
        Volatile.Write(ref _budgetBytes, budgetBytes);
        if (_maxPagesFollowsBudget) Volatile.Write(ref _maxPages, TmemOptions.DerivedMaxPages(budgetBytes, _remoteCapacityBytes));
    }

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
        while (Interlocked.Increment(ref _pages) > Volatile.Read(ref _maxPages))
        {
            Interlocked.Decrement(ref _pages);
            if (!allowEviction || !EvictOne(needBytes: false)) return false;
        }
        while (true)
        {
            long used = Volatile.Read(ref _slotBytes);
            if (used + slotBytes <= Volatile.Read(ref _budgetBytes))
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
        if (allowEviction && ReclaimAhead && OverHighWater()) StartReclaimPass();
        return true;
    }

    /// <summary>Less than half the headroom is left (bytes or pages): time for a pass ahead of demand.</summary>
    private bool OverHighWater() => HeadroomLeftUnder(quarters: 2);

    /// <summary>Less than <paramref name="quarters"/>/4 of the headroom is left (bytes or pages).</summary>
    private bool HeadroomLeftUnder(int quarters)
    {
        long budget = Volatile.Read(ref _budgetBytes), maxPages = Volatile.Read(ref _maxPages);
        return Volatile.Read(ref _slotBytes) > budget - HeadroomBytes(budget) * quarters / 4
            || Volatile.Read(ref _pages) > maxPages - HeadroomPages(maxPages) * quarters / 4;
    }

    /// <summary>
    /// Wakes the reclaim thread for a pass unless one is queued or running, or it lingers after
    /// one (or the last one found nothing to evict).
    /// </summary>
    private void StartReclaimPass()
    {
        if (_stopped || Environment.TickCount64 < Volatile.Read(ref _reclaimIdleUntil)) return;
        if (Volatile.Read(ref _reclaiming) != 0 || Interlocked.CompareExchange(ref _reclaiming, 1, 0) != 0) return;
        if (_reclaimer is null)
        {
            // Only the caller that set _reclaiming gets here, so one thread is ever started. A
            // thread of its own rather than the thread pool: a pool worker spins for more work
            // after each short pass (measured: more CPU in spinning and switching than in the
            // pass), while this one blocks on a kernel event until the next pass is due.
            _reclaimer = new Thread(ReclaimLoop) { IsBackground = true, Name = "Tmem reclaim" };
            _reclaimer.Start();
        }
        _reclaimWake.Set();
    }

    /// <summary>
    /// After a pass the reclaim thread keeps looking, every <see cref="LookMicroseconds"/>, for
    /// <see cref="LingerLooks"/> looks in a row (20 ms) without work before it blocks again.
    /// Under a steady stream of puts it then never blocks, so no put pays for waking it (on
    /// these VMs a futex wake that interrupts an idle vCPU cost a put about 10 µs, 1-2% of the
    /// puts at budget). Looks are short sleeps of the thread's own, not waits on the event, so
    /// nothing a put does can shorten them; 0.2 ms apart, they keep up with a put stream that
    /// uses three quarters of the headroom in 0.2 ms (32 MiB budget: about 1 GB/s of slots).
    /// A put that finds no room meanwhile evicts for itself, as without reclaim ahead.
    /// </summary>
    private const int LookMicroseconds = 200;

    private const int LingerLooks = 100;

    private void ReclaimLoop()
    {
        while (!_stopped)
        {
            _reclaimWake.WaitOne();
            if (_stopped) break;
            bool idle = ReclaimPass();
            // Lingering, _reclaiming stays 1, so puts do not signal; a look that finds a quarter
            // of the headroom used runs a pass.
            for (int quiet = 0; !idle && !_stopped && quiet < LingerLooks;)
            {
                ShortSleep.Microseconds(LookMicroseconds);
                if (HeadroomLeftUnder(quarters: 3))
                {
                    idle = ReclaimPass();
                    quiet = 0;
                }
                else
                {
                    quiet++;
                }
            }
            Volatile.Write(ref _reclaiming, 0);
            // A reservation that crossed the high water after the last look saw the thread busy
            // and signalled nothing: look once more.
            if (!idle && !_stopped && OverHighWater()) StartReclaimPass();
        }
        Volatile.Write(ref _reclaiming, 0);
    }

    /// <summary>
    /// The background pass: evicts until the whole headroom is free, then compacts slabs if they
    /// need it. Eviction is the same CLOCK step a put runs (it takes bucket locks only with
    /// TryEnter), so puts, gets and other evictors run alongside. True when it found nothing to
    /// evict (or failed): then no pass starts for 10 ms.
    /// </summary>
    private bool ReclaimPass()
    {
        bool idle = false;
        try
        {
            while (!_stopped)
            {
                long budget = Volatile.Read(ref _budgetBytes), maxPages = Volatile.Read(ref _maxPages);
                bool needBytes = Volatile.Read(ref _slotBytes) > budget - HeadroomBytes(budget);
                if (!needBytes && Volatile.Read(ref _pages) <= maxPages - HeadroomPages(maxPages)) break;
                if (!EvictOne(needBytes))
                {
                    idle = true; // nothing evictable now (persistent pages only, or all in use): puts evict or refuse for themselves
                    break;
                }
            }
            if (!_stopped) CompactIfWasteful();
        }
        catch (Exception)
        {
            // Nothing is lost: puts evict for themselves meanwhile. Counted (reclaim_failures).
            Interlocked.Increment(ref _counters.ReclaimFailures);
            idle = true;
        }
        if (idle) Volatile.Write(ref _reclaimIdleUntil, Environment.TickCount64 + 10);
        return idle;
    }

    /// <summary>No slot taken ahead (<see cref="TakeSlot"/>): not a location the slab allocator hands out (those are under 2^48).</summary>
    public const ulong NoSlot = ulong.MaxValue;

    /// <summary>
    /// Takes the slab slot for a reserved page of <paramref name="length"/> bytes ahead of its
    /// install, and asks the CPU for the slot's memory: a slot freed by eviction was last
    /// touched long ago (or by the reclaim thread's core), and the caller has the handle to
    /// map before it copies the bytes in, time in which the lines arrive. Given to
    /// <see cref="Install"/>, or back through <see cref="CancelReservation"/>.
    /// </summary>
    public ulong TakeSlot(int length)
    {
        ulong location = _slabs.Allocate(length);
        byte* slot = _slabs.AddressOf(location);
        // The first 4 KiB at most (a 4 KiB page's slot is all of it): past that the hardware's own
        // prefetch follows the copy, and more requests than it can track would only queue.
        if (Sse.IsSupported)
            for (int offset = 0, end = Math.Min(length, 4096); offset < end; offset += 64) Sse.Prefetch0(slot + offset);
        return location;
    }

    /// <summary>Gives back a reservation that was never installed (and its slot, if one was taken ahead).</summary>
    public void CancelReservation(uint id, int slotBytes, ulong slot = NoSlot)
    {
        if (slot != NoSlot) _slabs.Free(slot);
        _descriptors.Free(id);
        Interlocked.Add(ref _slotBytes, -slotBytes);
        Interlocked.Decrement(ref _pages);
    }

    /// <summary>
    /// Under the owner's lock: stores the page (its bytes in a slab slot, or its pattern) and makes
    /// the descriptor live for (<paramref name="owner"/>, <paramref name="index"/>). The caller
    /// then maps it in the owner. A page the tier below also holds (a logged persistent page)
    /// gives its <paramref name="backingAddress"/> (its Put record's). The bytes go into
    /// <paramref name="slot"/> when one was taken ahead for them (<see cref="TakeSlot"/>).
    /// </summary>
    public void Install(uint id, PageOwner owner, uint index, in EncodedPage page, bool persistent, long backingAddress = 0, ulong slot = NoSlot)
    {
        Debug.Assert(owner.Lock.IsHeldByCurrentThread);
        ref var d = ref _descriptors[id];
        PageForm form;
        if (page.SameFilled)
        {
            Debug.Assert(slot == NoSlot, "a same-filled page takes no slot");
            form = PageForm.Pattern;
            d.Location = page.Pattern;
            d.Length = 0;
            Interlocked.Increment(ref _counters.ZeroFilledPages);
        }
        else
        {
            form = page.Uncompressed ? PageForm.Uncompressed : PageForm.Slot;
            var bytes = page.Bytes;
            ulong location = slot != NoSlot ? slot : _slabs.Allocate(bytes.Length);
            bytes.CopyTo(new Span<byte>(_slabs.AddressOf(location), bytes.Length));
            d.Location = location;
            d.Length = (ushort)bytes.Length;
        }
        MakeLive(id, ref d, owner, index, form, persistent, backingAddress, clock: 1);
    }

    /// <summary>
    /// Under the owner's lock: a persistent page with no RAM copy, which the tier below holds at
    /// <paramref name="backingAddress"/> (<paramref name="storedLength"/> bytes): a Strict put that
    /// found no RAM, or recovery from a checkpoint.
    /// </summary>
    public void InstallBelow(uint id, PageOwner owner, uint index, int storedLength, long backingAddress)
    {
        Debug.Assert(owner.Lock.IsHeldByCurrentThread);
        ref var d = ref _descriptors[id];
        d.Location = 0;
        d.Length = (ushort)storedLength;
        Interlocked.Increment(ref _counters.PersSpilledPages);
        MakeLive(id, ref d, owner, index, PageForm.Below, persistent: true, backingAddress, clock: 0);
    }

    /// <summary>The accounting every install shares; publishes the flags last.</summary>
    private void MakeLive(uint id, ref PageDescriptor d, PageOwner owner, uint index, PageForm form, bool persistent, long backingAddress, byte clock)
    {
        var state = DescriptorFlags.Installed;
        if (backingAddress != 0)
        {
            state |= DescriptorFlags.Backed;
            _descriptors.SetBackingAddress(id, backingAddress);
            BelowFor(persistent)?.Account(form == PageForm.Pattern, d.Length, added: true);
        }
        if (persistent)
        {
            state |= DescriptorFlags.Persistent;
            Interlocked.Increment(ref _counters.PersPages);
            Interlocked.Add(ref _counters.PersZbytes, d.Length);
            Interlocked.Add(ref _counters.PersZscaled, Scaled(d.Length, owner));
        }
        else
        {
            Interlocked.Increment(ref _counters.EphPages);
            Interlocked.Add(ref _counters.EphZbytes, d.Length);
        }
        d.Owner = owner;
        d.Index = index;
        d.Clock = clock;
        Volatile.Write(ref d.Flags, PageDescriptor.Pack(state, form));
        Interlocked.Increment(ref owner.Account.Pages);
    }

    private ITierBelow? BelowFor(bool persistent) => persistent ? _persistentBelow : _ephemeralBelow;

    /// <summary>A compressed length scaled to a <see cref="PoolOptions.MaxPageSize"/> page (page sizes are powers of two).</summary>
    private static long Scaled(int length, PageOwner owner) => (long)length * (PoolOptions.MaxPageSize / owner.Account.PageSize);

    /// <summary>
    /// Under the owner's lock: true when the page has no RAM copy (<see cref="PageForm.Below"/>),
    /// with where the tier below holds it; the caller reads it from there outside the lock.
    /// </summary>
    public bool TryGetBelow(uint id, out long backingAddress, out int storedLength)
    {
        AssertOwnerLocked(id);
        ref var d = ref _descriptors[id];
        if (d.Form != PageForm.Below)
        {
            backingAddress = 0;
            storedLength = 0;
            return false;
        }
        if (d.Clock == 0) d.Clock = 1; // an ephemeral page below is dropped least recently used first
        backingAddress = _descriptors.GetBackingAddress(id);
        storedLength = d.Length;
        return true;
    }

    /// <summary>Under the owner's lock: where the tier below holds the page (a logged page's Put record), 0 when it does not.</summary>
    public long BackingAddressOf(uint id)
    {
        AssertOwnerLocked(id);
        return (_descriptors[id].State & DescriptorFlags.Backed) != 0 ? _descriptors.GetBackingAddress(id) : 0;
    }

    /// <summary>Under the owner's lock: the tier below moved its copy of the page (log compaction copied the record).</summary>
    public void MoveBackingAddress(uint id, long address)
    {
        AssertOwnerLocked(id);
        _descriptors.SetBackingAddress(id, address);
    }

    /// <summary>The owner's lock must be held for anything that reads or changes an installed page.</summary>
    [Conditional("DEBUG")]
    private void AssertOwnerLocked(uint id) => Debug.Assert(_descriptors[id].Owner?.Lock.IsHeldByCurrentThread != false, $"descriptor {id} is used without its owner's lock");

    /// <summary>Under the owner's lock: how a backed page is stored (for an index checkpoint).</summary>
    public StoredPage Describe(uint id)
    {
        AssertOwnerLocked(id);
        ref var d = ref _descriptors[id];
        long address = _descriptors.GetBackingAddress(id);
        if ((d.State & DescriptorFlags.Backed) == 0 || address == 0)
            throw new InvalidOperationException($"Descriptor {id} is not backed by the tier below.");
        return new StoredPage(d.Form, d.Length, d.Form == PageForm.Pattern ? d.Location : 0, address);
    }

    /// <summary>Under the owner's lock: copies or decompresses a page held in RAM into <paramref name="page"/>.</summary>
    public void Read(uint id, Span<byte> page)
    {
        AssertOwnerLocked(id);
        ref var d = ref _descriptors[id];
        switch (d.Form)
        {
            case PageForm.Pattern:
                PageCodec.Fill(page, d.Location);
                break;
            case PageForm.Slot:
                var compressed = new ReadOnlySpan<byte>(_slabs.AddressOf(d.Location), d.Length);
                int decoded = PageCodec.Decompress(compressed, page);
                if (decoded != page.Length)
                    ThrowHelper.ThrowCorrupt($"RAM-tier page (descriptor {id}, {d.Length} compressed bytes) decoded to {decoded} bytes, expected {page.Length}.");
                break;
            case PageForm.Uncompressed:
                if (d.Length != page.Length)
                    ThrowHelper.ThrowCorrupt($"RAM-tier uncompressed page (descriptor {id}) holds {d.Length} bytes, expected {page.Length}.");
                new ReadOnlySpan<byte>(_slabs.AddressOf(d.Location), d.Length).CopyTo(page);
                break;
            default:
                throw new InvalidOperationException($"Descriptor {id} has no RAM copy; its page is read from the tier below.");
        }
        if (d.Clock == 0) d.Clock = 1; // only write when needed: concurrent readers share no dirty line
    }

    /// <summary>Under the lock both owners share: the page now belongs to <paramref name="owner"/> at <paramref name="ownerIndex"/> (an inline object that got a second page).</summary>
    public void MoveOwner(uint id, PageOwner owner, uint ownerIndex)
    {
        ref var d = ref _descriptors[id];
        Debug.Assert(owner.Lock.IsHeldByCurrentThread && ReferenceEquals(d.Owner?.Group, owner.Group));
        d.Index = ownerIndex;
        Volatile.Write(ref d.Owner, owner);
    }

    /// <summary>
    /// Under the owner's lock, after the caller unmapped the page (object <paramref name="objectId"/>,
    /// page <paramref name="pageIndex"/>): frees its slot and descriptor and updates the counters.
    /// A page the tier below holds is forgotten there as <paramref name="how"/> says (by default
    /// the tier below deletes its copy). True when the page was an ephemeral page only the tier
    /// below held.
    /// </summary>
    public bool Release(uint id, in ObjectId objectId, uint pageIndex, BelowRelease how = BelowRelease.Forget)
    {
        AssertOwnerLocked(id);
        ref var d = ref _descriptors[id];
        var state = d.State;
        var form = d.Form;
        int length = d.Length;
        switch (form)
        {
            case PageForm.Pattern:
                Interlocked.Decrement(ref _counters.ZeroFilledPages);
                break;
            case PageForm.Below:
                if ((state & DescriptorFlags.Persistent) != 0) Interlocked.Decrement(ref _counters.PersSpilledPages);
                break;
            default:
                _slabs.Free(d.Location);
                Interlocked.Add(ref _slotBytes, -SlabAllocator.SlotSizeFor(length));
                break;
        }
        bool persistent = (state & DescriptorFlags.Persistent) != 0;
        if ((state & DescriptorFlags.Backed) != 0)
        {
            long address = _descriptors.GetBackingAddress(id);
            _descriptors.SetBackingAddress(id, 0);
            if (BelowFor(persistent) is { } below)
            {
                below.Account(form == PageForm.Pattern, length, added: false);
                below.Forget(new PageHandle(d.Owner!.Account.Serial, objectId, pageIndex), address, length, how);
            }
        }
        if (persistent)
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
        if (d.Owner is { } owner) Interlocked.Decrement(ref owner.Account.Pages);
        Interlocked.Decrement(ref _pages);
        _descriptors.Free(id);
        return form == PageForm.Below && !persistent;
    }

    /// <summary>
    /// Under the object's lock, after releasing every page of object <paramref name="id"/> of pool
    /// <paramref name="poolSerial"/> with <see cref="BelowRelease.ObjectGone"/>: the ephemeral tier
    /// below forgets the object's copies at once.
    /// </summary>
    public void ForgetObject(int poolSerial, in ObjectId id) => _ephemeralBelow?.ForgetObject(poolSerial, id);

    /// <summary>
    /// One step of CLOCK: sweeps descriptors, clearing reference bits, until it evicts one page.
    /// A page with a RAM copy goes to the tier below for its kind if that tier keeps it (a
    /// persistent page whose record is committed: it becomes <see cref="PageForm.Below"/>); an
    /// ephemeral page no tier keeps is dropped; a persistent one stays. When
    /// <paramref name="needBytes"/>, pages that hold no slot bytes are skipped, except ephemeral
    /// pages only the tier below holds while it is nearly full (they are dropped and the sweep goes
    /// on). False if two full sweeps find nothing.
    /// </summary>
    private bool EvictOne(bool needBytes)
    {
        long limit = 2L * _descriptors.HighWater + 64;
        for (long scanned = 0; scanned < limit; scanned++)
        {
            if (!AnythingEvictable(needBytes)) return false;
            uint highWater = _descriptors.HighWater;
            uint id = (uint)((ulong)Interlocked.Increment(ref _hand) % (highWater - 1)) + 1;
            ref var d = ref _descriptors[id];
            byte flags = Volatile.Read(ref d.Flags);
            if (!IsVictim(flags, needBytes)) continue;
            if (d.Clock != 0)
            {
                d.Clock = 0;
                continue;
            }
            var owner = Volatile.Read(ref d.Owner);
            if (owner is null) continue;
            uint index = d.Index;
            if (!owner.Lock.TryEnter()) continue;
            try
            {
                // The hint may be stale (freed and reused meanwhile); only the owner's map is truth.
                flags = d.Flags;
                if (!owner.Holds(index, id, out uint at) || !IsVictim(flags, needBytes)) continue;
                bool persistent = ((DescriptorFlags)flags & DescriptorFlags.Persistent) != 0;
                var form = PageDescriptor.FormOf(flags);
                if (form == PageForm.Below)
                {
                    // An ephemeral page only the tier below holds: it leaves the store.
                    var gone = owner.HandleAt(at);
                    owner.Unlink(at);
                    Release(id, gone.Id, gone.Index);
                    Interlocked.Increment(ref _counters.EvictedEphPages);
                    Interlocked.Increment(ref _counters.RemoteEvictedPages);
                    if (needBytes) continue; // that freed no RAM
                    return true;
                }
                var handle = owner.HandleAt(at);
                if (HoldsSlot(form) && BelowFor(persistent) is { } below)
                {
                    long address = _descriptors.GetBackingAddress(id);
                    if (below.TryKeep(id, handle, form == PageForm.Uncompressed, ref address, new ReadOnlySpan<byte>(_slabs.AddressOf(d.Location), d.Length)))
                    {
                        MoveBelow(id, ref d, address);
                        return true;
                    }
                }
                if (persistent) continue; // never dropped; its tier below cannot take it yet
                owner.Unlink(at);
                Release(id, handle.Id, handle.Index);
                Interlocked.Increment(ref _counters.EvictedEphPages);
                return true;
            }
            finally
            {
                owner.Lock.Exit();
            }
        }
        return false;
    }

    /// <summary>Under the owner's lock: the tier below keeps the page; its RAM copy goes.</summary>
    private void MoveBelow(uint id, ref PageDescriptor d, long backingAddress)
    {
        _slabs.Free(d.Location);
        Interlocked.Add(ref _slotBytes, -SlabAllocator.SlotSizeFor(d.Length));
        d.Location = 0;
        var state = d.State;
        if ((state & DescriptorFlags.Backed) == 0 || _descriptors.GetBackingAddress(id) != backingAddress)
        {
            // A tier that copied the bytes out now (not one that had them already) starts backing it.
            if ((state & DescriptorFlags.Backed) == 0) BelowFor((state & DescriptorFlags.Persistent) != 0)!.Account(false, d.Length, added: true);
            state |= DescriptorFlags.Backed;
            _descriptors.SetBackingAddress(id, backingAddress);
        }
        Volatile.Write(ref d.Flags, PageDescriptor.Pack(state, PageForm.Below));
        if ((state & DescriptorFlags.Persistent) != 0) Interlocked.Increment(ref _counters.PersSpilledPages);
    }

    /// <summary>
    /// Ephemeral pages with a RAM copy, ephemeral pages below when they may go (the page limit, or
    /// the tier below nearly full), or persistent RAM copies that the tier below may take.
    /// </summary>
    private bool AnythingEvictable(bool needBytes)
    {
        long ephemeral = Volatile.Read(ref _counters.EphPages), below = Volatile.Read(ref _counters.RemotePages);
        return ephemeral > below
            || (below > 0 && (!needBytes || _ephemeralBelow?.WantsRoom == true))
            || (_persistentBelow is not null && Volatile.Read(ref _counters.PersPages) > Volatile.Read(ref _counters.PersSpilledPages));
    }

    private bool IsVictim(byte flags, bool needBytes)
    {
        var state = (DescriptorFlags)(flags & 0x0F);
        if ((state & DescriptorFlags.Installed) == 0) return false;
        var form = PageDescriptor.FormOf(flags);
        if (form == PageForm.Below)
        {
            // No RAM copy left to take. An ephemeral page only the tier below holds may still go:
            // it frees a descriptor (the page limit) and room in that tier (when it is nearly full).
            return (state & DescriptorFlags.Persistent) == 0 && (!needBytes || _ephemeralBelow?.WantsRoom == true);
        }
        if (needBytes && !HoldsSlot(form)) return false; // frees no bytes
        if ((state & DescriptorFlags.Persistent) == 0) return true;
        // A persistent page can only lose a RAM copy the tier below holds too; that frees bytes
        // but not the page's place under MaxPages.
        return needBytes && (state & DescriptorFlags.Backed) != 0;
    }

    /// <summary>Whether pages of this form keep their bytes in a slab slot (compressed or not).</summary>
    private static bool HoldsSlot(PageForm form) => form is PageForm.Slot or PageForm.Uncompressed;

    /// <summary>
    /// Called after a put, holding no lock: when slabs hold more than the threshold beyond the slot
    /// bytes in use, runs one compaction pass.
    /// </summary>
    public void MaybeCompactSlabs()
    {
        if (!ReclaimAhead)
        {
            CompactIfWasteful();
            return;
        }
        if (SlabsWasteful(out _, out _)) StartReclaimPass();
    }

    /// <summary>Whether slab waste is over the threshold and not in its hysteresis wait.</summary>
    private bool SlabsWasteful(out long used, out long waste)
    {
        used = Volatile.Read(ref _slotBytes);
        waste = _slabs.SlabBytes - used;
        if (waste <= MinCompactionWasteBytes || waste <= used * _slabCompactionThreshold) return false;
        return waste > Volatile.Read(ref _compactRetryWaste) || Environment.TickCount64 >= Volatile.Read(ref _compactRetryTicks);
    }

    /// <summary>Runs one compaction pass when <see cref="SlabsWasteful"/> (at most one at a time).</summary>
    private void CompactIfWasteful()
    {
        if (!SlabsWasteful(out long used, out long waste)) return;
        if (Interlocked.CompareExchange(ref _compacting, 1, 0) != 0) return;
        try
        {
            bool fruitless = CompactSlabs() == 0;
            // Hysteresis: a pass leaves waste it cannot move (every class's current slab is part
            // full), often still over the threshold. The next pass waits until the waste grows by
            // a step beyond what this one left (a quarter of the threshold, at least
            // MinCompactionWasteBytes), so under eviction churn a pass runs every few hundred puts
            // and moves many pages, instead of one every hundred puts moving a few (each pass
            // walks the whole descriptor table). A pass that moved nothing is retried after 100 ms
            // too. Flushes that empty slabs lower the waste by themselves.
            long left = _slabs.SlabBytes - Volatile.Read(ref _slotBytes);
            long step = Math.Max(MinCompactionWasteBytes, (long)(used * _slabCompactionThreshold / 4));
            Volatile.Write(ref _compactRetryWaste, Math.Max(left, fruitless ? waste : 0) + step);
            Volatile.Write(ref _compactRetryTicks, fruitless ? Environment.TickCount64 + 100 : long.MaxValue);
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
    public int CompactSlabs()
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
                byte flags = Volatile.Read(ref d.Flags);
                if (((DescriptorFlags)flags & DescriptorFlags.Installed) == 0 || !HoldsSlot(PageDescriptor.FormOf(flags))) continue;
                if (_slabs.SlabOf(d.Location) is not { Draining: true }) continue;
                var owner = Volatile.Read(ref d.Owner);
                if (owner is null) continue;
                if (!owner.Lock.TryEnter()) continue;
                try
                {
                    // Re-check under the lock: the page may have been freed, replaced or moved.
                    if (!owner.Holds(d.Index, id, out _) || !HoldsSlot(d.Form)) continue;
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
                    owner.Lock.Exit();
                }
            }
        }
        finally
        {
            foreach (var victim in victims) _slabs.EndDrain(victim);
        }
        Interlocked.Add(ref _counters.SlabCompactedPages, moved);
        return moved;
    }

    public void Dispose()
    {
        // A background pass touches slabs: stop it before they go. It checks _stopped between
        // evictions, so the wait is one eviction (or one compaction pass) long.
        _stopped = true;
        if (_reclaimer is { } reclaimer)
        {
            _reclaimWake.Set();
            reclaimer.Join();
        }
        WaitForReclaimPass();
        _reclaimWake.Dispose();
        _slabs.Dispose();
    }

    /// <summary>Returns once no background pass is queued or running.</summary>
    public void WaitForReclaimPass()
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref _reclaiming) != 0) spin.SpinOnce(sleep1Threshold: 10);
    }
}
