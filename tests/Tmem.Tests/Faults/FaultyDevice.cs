using System.Collections.Concurrent;
using FASTER.core;

namespace Tmem.Tests.Faults;

/// <summary>
/// A FASTER device decorator for tests (after Garnet's SimulatedFlakyDevice): while
/// <see cref="FailWritesWith"/> is an errno, every write fails with it (as a full disk or an I/O
/// error would: the inner device never sees it); while <see cref="HoldWrites"/> is set, writes are
/// kept back until <see cref="ReleaseHeldWrites"/>. Reads and everything else pass through.
/// The store puts its retrying layer above this one (<c>StoreDiagnostics.WrapLogDevice</c>).
/// </summary>
internal sealed class FaultyDevice : StorageDeviceBase
{
    public const int Enospc = 28;
    public const int Eio = 5;

    private readonly IDevice _inner;
    private readonly ConcurrentQueue<Action> _held = new();

    public FaultyDevice(IDevice inner) : base(inner.FileName, inner.SectorSize, inner.Capacity) => _inner = inner;

    /// <summary>0: writes pass; otherwise the errno every write fails with.</summary>
    public volatile int FailWritesWith;

    public volatile bool HoldWrites;

    /// <summary>Writes failed so far.</summary>
    public long FailedWrites;

    /// <summary>Writes that reached the inner device.</summary>
    public long PassedWrites;

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        int errno = FailWritesWith;
        if (errno != 0)
        {
            Interlocked.Increment(ref FailedWrites);
            // Off the caller's thread, as the real devices complete.
            ThreadPool.UnsafeQueueUserWorkItem(_ => callback((uint)errno, 0, context), null);
            return;
        }
        void Pass()
        {
            Interlocked.Increment(ref PassedWrites);
            _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
        }
        if (HoldWrites) _held.Enqueue(Pass);
        else Pass();
    }

    /// <summary>Stops holding writes and issues those held back.</summary>
    public void ReleaseHeldWrites()
    {
        HoldWrites = false;
        while (_held.TryDequeue(out var write)) write();
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) => _inner.RemoveSegmentAsync(segment, callback, result);

    public override void RemoveSegment(int segment) => _inner.RemoveSegment(segment);

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override bool TryComplete() => _inner.TryComplete();

    public override void Reset() => _inner.Reset();

    public override void Dispose() => _inner.Dispose();
}
