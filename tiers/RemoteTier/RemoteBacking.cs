using System.Collections.Concurrent;
using System.Threading.Channels;
using Tmem.Diagnostics;
using Tmem.RamTier;

namespace Tmem.RemoteTier;

/// <summary>
/// The tier below the RAM tier for ephemeral pages: a remote cluster reached through an
/// <see cref="IRemotePageStore"/> (Tmem.Remote's Redis-protocol client). docs/remote-tier.md.
/// <para>
/// Eviction (<see cref="TryKeep"/>, under the page owner's lock) never touches the network: it
/// gives the page the next version of a per-open counter (kept as the descriptor's backing
/// address), builds the remote value (<see cref="RemoteValue"/>: a header naming the page, its
/// version and a checksum, then the compressed bytes) and queues it; the queue's bytes are bounded
/// (<see cref="RemoteTierOptions.QueueBytes"/>), and a full queue, a full capacity or a tier that
/// is down drops the page instead, as eviction did before. One writer issues the queue in order.
/// A get of a page still queued or being written is served from the queue.
/// </para>
/// <para>
/// The local descriptor's version is the truth: a put, flush or destroy releases the descriptor,
/// after which nothing names the old version again (versions are never reused within an open, and
/// each open has a new random incarnation), so an old copy stays unreachable even when its delete
/// is lost or a node comes back with old data. A missing descriptor is a miss without asking the
/// cluster. Deletes only give the cluster's memory back.
/// </para>
/// <para>
/// Failures are misses: a fetch that fails, times out or returns anything but the exact value is a
/// miss (the translation then drops the descriptor, so later gets miss too); a write that fails
/// loses the page (its next get misses).
/// </para>
/// </summary>
internal sealed class RemoteBacking : ITierBelow, IDisposable
{
    /// <summary>Queue bytes a delete counts for (its key and field, roughly).</summary>
    private const int DeleteCost = 64;

    /// <summary>The most puts the writer sends as one batch.</summary>
    private const int MaxBatch = 256;

    private readonly RemoteTierOptions _options;
    private readonly IRemotePageStore _store;
    private readonly StoreCounters _counters;
    private readonly ConcurrentDictionary<long, WriteOp> _pending = new(); // version → queued or in-flight write
    private readonly Channel<WriteOp> _queue = Channel.CreateUnbounded<WriteOp>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private long _version;
    private volatile bool _closing;
    private Action<uint, long>? _copyLost;

    public RemoteBacking(RemoteTierOptions options, IRemotePageStore store, StoreCounters counters)
    {
        _options = options;
        _store = store;
        _counters = counters;
        Incarnation = (ulong)Random.Shared.NextInt64() | 1;
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Random per open of the store, never 0: the first part of every remote page's name.</summary>
    public ulong Incarnation { get; }

    /// <summary>The cluster's state, as the client judges it.</summary>
    public RemoteTierStatus Status => _store.Status;

    /// <summary>The name of one version of a page.</summary>
    public RemotePageKey KeyOf(int poolSerial, in ObjectId id, uint index, long version) =>
        new(new RemoteObjectKey(Incarnation, (uint)poolSerial, id), index, version);

    // ---- Under the owner's lock: eviction and release ---------------------------------------

    /// <summary>Near capacity (within 64 KiB): eviction also drops remote pages, least recently used first.</summary>
    public bool WantsRoom => Volatile.Read(ref _counters.RemoteBytes) + (64 << 10) > _options.CapacityBytes;

    public bool TryKeep(uint descriptor, in PageHandle page, bool uncompressed, ref long backingAddress, ReadOnlySpan<byte> bytes)
    {
        int size = RemoteValue.HeaderSize + bytes.Length;
        if (_closing || _store.Status.State == RemoteTierState.Down
            || Volatile.Read(ref _counters.RemoteBytes) + size > _options.CapacityBytes
            || !TryReserveQueue(size))
        {
            Interlocked.Increment(ref _counters.RemoteWriteDrops);
            return false;
        }
        long version = Interlocked.Increment(ref _version);
        var key = KeyOf(page.PoolSerial, page.Id, page.Index, version);
        var op = new WriteOp(WriteKind.Put, key, RemoteValue.Build(key, uncompressed, bytes), size) { Descriptor = descriptor };
        _pending[version] = op;
        _queue.Writer.TryWrite(op); // unbounded channel: bounded by the bytes reserved above
        Interlocked.Increment(ref _counters.RemotePages);
        Interlocked.Add(ref _counters.RemoteBytes, size);
        backingAddress = version;
        return true;
    }

    public void OnCopyLost(Action<uint, long> lost) => _copyLost = lost;

    private bool TryReserveQueue(int size)
    {
        if (Interlocked.Add(ref _counters.RemoteQueueBytes, size) <= _options.QueueBytes) return true;
        Interlocked.Add(ref _counters.RemoteQueueBytes, -size);
        return false;
    }

    public void Account(bool pattern, int storedLength, bool added)
    {
        // Counted in TryKeep and Forget, which know the remote value's size.
    }

    public void Forget(in PageHandle page, long backingAddress, int storedLength, BelowRelease how)
    {
        Interlocked.Decrement(ref _counters.RemotePages);
        Interlocked.Add(ref _counters.RemoteBytes, -(RemoteValue.HeaderSize + storedLength));
        if (how == BelowRelease.Taken) return; // the exclusive get takes the copy itself (from the queue, or read-and-delete)
        if (_pending.TryRemove(backingAddress, out var queued))
        {
            queued.Cancel(); // never written, or deleted once its write completes
            return;
        }
        if (how == BelowRelease.Forget)
            Enqueue(new WriteOp(WriteKind.DeletePage, KeyOf(page.PoolSerial, page.Id, page.Index, backingAddress), null, DeleteCost));
    }

    public void ForgetObject(int poolSerial, in ObjectId id) =>
        Enqueue(new WriteOp(WriteKind.DeleteObject, KeyOf(poolSerial, id, 0, 0), null, DeleteCost));

    /// <summary>A delete: queued if the queue has room, else left to the key's expiry (it only gives memory back).</summary>
    private void Enqueue(WriteOp op)
    {
        if (_closing || !TryReserveQueue(op.Size)) return;
        if (!_queue.Writer.TryWrite(op)) Interlocked.Add(ref _counters.RemoteQueueBytes, -op.Size);
    }

    // ---- Outside any lock: gets ---------------------------------------------------------------

    /// <summary>
    /// A get of a remote page (<paramref name="take"/>: an exclusive get, whose descriptor is
    /// already gone; the copy goes too). A hit only for exactly this page at this version.
    /// </summary>
    public GetStatus Read(in RemotePageKey key, bool take, Span<byte> page)
    {
        if (TryReadQueued(key, take, page, out var status)) return status;
        RemoteRead read;
        try
        {
            read = _store.Read(key, take);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            read = new RemoteRead(RemoteReadStatus.Failed); // the client must not throw; if it does, a failure
        }
        using (read) return Decode(read, key, page);
    }

    /// <summary><see cref="Read"/> without holding a thread while the cluster answers.</summary>
    public async ValueTask<GetStatus> ReadAsync(RemotePageKey key, bool take, Memory<byte> page)
    {
        if (TryReadQueued(key, take, page.Span, out var status)) return status;
        RemoteRead read;
        try
        {
            read = await _store.ReadAsync(key, take).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            read = new RemoteRead(RemoteReadStatus.Failed); // the client must not throw; if it does, a failure
        }
        using (read) return Decode(read, key, page.Span);
    }

    private bool TryReadQueued(in RemotePageKey key, bool take, Span<byte> page, out GetStatus status)
    {
        WriteOp? op;
        if (take ? _pending.TryRemove(key.Version, out op) : _pending.TryGetValue(key.Version, out op))
        {
            if (take) op.Cancel();
            status = Verified(RemoteValue.TryDecode(op.Value, key, page));
            if (status == GetStatus.Hit) Interlocked.Increment(ref _counters.RemoteQueueHits);
            return true;
        }
        status = GetStatus.Miss;
        return false;
    }

    private GetStatus Decode(RemoteRead read, in RemotePageKey key, Span<byte> page)
    {
        switch (read.Status)
        {
            case RemoteReadStatus.Found:
                var status = Verified(RemoteValue.TryDecode(read.Value, key, page));
                if (status == GetStatus.Hit) Interlocked.Increment(ref _counters.RemoteHits);
                return status;
            case RemoteReadStatus.TimedOut:
                Interlocked.Increment(ref _counters.RemoteTimeouts);
                break;
            case RemoteReadStatus.Failed:
                Interlocked.Increment(ref _counters.RemoteFailures);
                break;
        }
        Interlocked.Increment(ref _counters.RemoteMisses);
        return GetStatus.Miss;
    }

    private GetStatus Verified(bool matches)
    {
        if (matches) return GetStatus.Hit;
        Interlocked.Increment(ref _counters.RemoteMismatches);
        Interlocked.Increment(ref _counters.RemoteMisses);
        return GetStatus.Miss;
    }

    // ---- The writer -------------------------------------------------------------------------

    private async Task WriteLoopAsync()
    {
        var reader = _queue.Reader;
        var puts = new List<WriteOp>();
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            // A burst of evictions gathers for a moment: one wake-up of this writer and one send per
            // batch of pages, not per page.
            await Task.Delay(1).ConfigureAwait(false);
            while (reader.TryRead(out var op))
            {
                if (op.Kind != WriteKind.Put)
                {
                    Send(puts); // in queue order: an object's delete goes after its earlier puts
                    Issue(op);
                }
                else if (!op.Start() || _closing)
                {
                    Done(op); // cancelled while it waited: never written
                }
                else
                {
                    puts.Add(op);
                    if (puts.Count == MaxBatch) Send(puts);
                }
            }
            Send(puts);
        }
    }

    /// <summary>Issues the gathered puts as one batch (their completion gives the queue bytes back) and empties the list.</summary>
    private void Send(List<WriteOp> puts)
    {
        if (puts.Count == 0) return;
        var batch = puts.ToArray();
        puts.Clear();
        var writes = new RemotePageWrite[batch.Length];
        for (int i = 0; i < batch.Length; i++) writes[i] = new RemotePageWrite(batch[i].Key, batch[i].Value);
        Task<RemoteWriteStatus[]> write;
        try
        {
            write = _store.WriteAsync(writes);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            write = Task.FromException<RemoteWriteStatus[]>(e); // the client must not throw; if it does, a failure
        }
        _ = CompleteAsync(batch, write);
    }

    private void Issue(WriteOp op)
    {
        try
        {
            if (op.Kind == WriteKind.DeletePage) _store.Delete(op.Key);
            else _store.DeleteObject(op.Key.Object);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The client must not throw; a delete only gives memory back.
        }
        Done(op);
    }

    private async Task CompleteAsync(WriteOp[] batch, Task<RemoteWriteStatus[]> write)
    {
        RemoteWriteStatus[]? statuses;
        try
        {
            statuses = await write.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            statuses = null;
        }
        for (int i = 0; i < batch.Length; i++)
        {
            var op = batch[i];
            var status = statuses is not null && i < statuses.Length ? statuses[i] : RemoteWriteStatus.Failed;
            if (status == RemoteWriteStatus.Written)
            {
                Interlocked.Increment(ref _counters.RemoteWrites);
                _pending.TryRemove(KeyValuePair.Create(op.Key.Version, op));
                // Released (put over, flushed, taken) while it was being written: give the memory back.
                if (op.IsCancelled && !_closing) _store.Delete(op.Key);
            }
            else
            {
                Lost(op, status);
            }
            Done(op);
        }
    }

    /// <summary>
    /// A write that failed or timed out: the page is lost. The RAM tier drops it (if the handle still
    /// holds this version), so that its gets miss at once instead of asking the cluster, and it
    /// stops taking remote capacity and metadata; its delete goes out like any other (a write that
    /// timed out may have landed).
    /// </summary>
    private void Lost(WriteOp op, RemoteWriteStatus status)
    {
        _pending.TryRemove(KeyValuePair.Create(op.Key.Version, op));
        Interlocked.Increment(ref _counters.RemoteWriteFailures);
        Interlocked.Increment(ref status == RemoteWriteStatus.TimedOut ? ref _counters.RemoteTimeouts : ref _counters.RemoteFailures);
        if (!op.IsCancelled && !_closing) _copyLost?.Invoke(op.Descriptor, op.Key.Version);
    }

    private void Done(WriteOp op) => Interlocked.Add(ref _counters.RemoteQueueBytes, -op.Size);

    /// <summary>
    /// Stops the writer and disposes the client (which bounds its own close: a dead or paused node
    /// cannot hold the store's disposal). What is still queued is dropped.
    /// </summary>
    public void Dispose()
    {
        if (_closing) return;
        _closing = true;
        _queue.Writer.TryComplete();
        try
        {
            _writer.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        _store.Dispose();
    }

    private enum WriteKind : byte { Put, DeletePage, DeleteObject }

    /// <summary>One queued request; a put's value is what gets of the page read while it waits.</summary>
    private sealed class WriteOp(WriteKind kind, RemotePageKey key, byte[]? value, int size)
    {
        private int _state; // 0 queued, 1 issued, 2 cancelled

        public WriteKind Kind { get; } = kind;
        public RemotePageKey Key { get; } = key;
        public byte[] Value { get; } = value ?? [];
        public int Size { get; } = size;

        /// <summary>A put's page descriptor in the RAM tier (named back when the write is lost).</summary>
        public uint Descriptor { get; init; }

        public bool IsCancelled => Volatile.Read(ref _state) == 2;

        /// <summary>The writer takes it: false if it was cancelled first.</summary>
        public bool Start() => Interlocked.CompareExchange(ref _state, 1, 0) == 0;

        public void Cancel() => Volatile.Write(ref _state, 2);
    }
}
