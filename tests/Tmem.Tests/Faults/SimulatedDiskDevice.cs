using FASTER.core;

namespace Tmem.Tests.Faults;

/// <summary>
/// FASTER's File device (<see cref="ManagedLocalStorageDevice"/>) seen by a <see cref="SimulatedDisk"/>:
/// that device opens, writes and deletes its segment files itself, so the disk cannot see inside
/// it; this decorator tells the disk about each write (write-through: durable when it completes;
/// in flight at a power cut, torn), read and segment removal, and fails the ones the disk says to
/// fail (after Garnet's SimulatedFlakyDevice). Set it through <c>StoreDiagnostics.WrapLogDevice</c>;
/// the store's retrying layer sits above it.
/// </summary>
internal sealed class SimulatedDiskDevice : StorageDeviceBase
{
    private readonly IDevice _inner;
    private readonly SimulatedDisk _disk;
    private int _pending;

    public SimulatedDiskDevice(IDevice inner, SimulatedDisk disk)
        : base(inner.FileName, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _disk = disk;
    }

    private string SegmentPath(int segment) => $"{_inner.FileName}.{segment}";

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        var write = _disk.BeginDeviceWrite(SegmentPath(segmentId), (long)destinationAddress, (int)numBytesToWrite, out int errno);
        if (write is null)
        {
            // Off the caller's thread, as the real device completes.
            ThreadPool.UnsafeQueueUserWorkItem(_ => callback((uint)errno, 0, context), null);
            return;
        }
        Interlocked.Increment(ref _pending);
        _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, (error, bytes, ctx) =>
        {
            _disk.EndDeviceWrite(write, sourceAddress, error == 0);
            Interlocked.Decrement(ref _pending);
            callback(error, bytes, ctx);
        }, context);
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context)
    {
        int errno = _disk.DeviceRead(SegmentPath(segmentId), (long)sourceAddress, readLength);
        if (errno != 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => callback((uint)errno, 0, context), null);
            return;
        }
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);
    }

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        if (_disk.DeviceDelete(SegmentPath(segment))) _inner.RemoveSegmentAsync(segment, callback, result);
        else callback(result);
    }

    public override void RemoveSegment(int segment)
    {
        if (_disk.DeviceDelete(SegmentPath(segment))) _inner.RemoveSegment(segment);
    }

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override bool TryComplete() => _inner.TryComplete();

    public override void Reset() => _inner.Reset();

    public override void Dispose()
    {
        // A write still in flight must land before the disk's files are replaced by their durable state.
        SpinWait.SpinUntil(() => Volatile.Read(ref _pending) == 0, 10_000);
        _inner.Dispose();
    }
}
