using System.Runtime.InteropServices;
using FASTER.core;

namespace Tmem.LogTier;

/// <summary>
/// A FASTER device decorator that never hands FasterLog a failed write: a write that fails (a full
/// disk, an I/O error, a failed msync) is issued again, with back-off from 10 ms to 1 s, until it
/// succeeds; meanwhile the store's <see cref="StorageHealth"/> is <see cref="StorageState.Failing"/>.
/// <para>
/// Why: FasterLog 2.6.5 records a failed page flush in its allocator's error list, stops its
/// flushed-until address there for good and fails every later commit (the only way past it is
/// to skip the range, losing it), so one ENOSPC or EIO would make the log unusable until a
/// restart. Retrying below FASTER keeps the log's order and content: the source buffer stays
/// valid until FASTER's callback runs, and a write of the same bytes to the same place is
/// idempotent. Commits simply wait, and complete once the storage recovers.
/// </para>
/// <para>
/// While <see cref="StorageHealth.Closing"/> is set, errors go to FASTER at once (so that closing a
/// store whose disk fails ends; what was not committed is then lost, as in a crash). A failed read
/// is issued again a few times (<see cref="MaxReadRetries"/>: an EIO that a retry cures should not
/// fail a get), then handed to FASTER, which reports it as no data; <see cref="StorageHealth.ReadErrors"/>
/// lets the reader tell that from damage. Segment removal and everything else pass straight
/// through to the inner device.
/// </para>
/// </summary>
internal sealed class RetryingDevice : StorageDeviceBase
{
    private const int FirstBackoffMs = 10;
    private const int MaxBackoffMs = 1000;
    private const int MaxReadRetries = 4;

    private readonly IDevice _inner;
    private readonly StorageHealth _health;

    public RetryingDevice(IDevice inner, StorageHealth health)
        : base(inner.FileName, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _health = health;
    }

    /// <summary>The device underneath (the mapped device's direct reads go to it).</summary>
    public IDevice Inner => _inner;

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context) =>
        new Write(this, sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context).Issue();

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        new Read(this, segmentId, sourceAddress, destinationAddress, readLength, callback, context).Issue();

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) =>
        _inner.RemoveSegmentAsync(segment, callback, result);

    public override void RemoveSegment(int segment) => _inner.RemoveSegment(segment);

    public override bool TryComplete() => _inner.TryComplete();

    public override bool Throttle() => _inner.Throttle();

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override void Reset() => _inner.Reset();

    public override void Dispose() => _inner.Dispose();

    /// <summary>Describes an errno for logs: the number and the C library's text.</summary>
    public static string Describe(uint errorCode) =>
        errorCode is > 0 and < 4096 ? $"errno {errorCode}, {Marshal.GetPInvokeErrorMessage((int)errorCode)}" : $"error code {errorCode}";

    /// <summary>One read of FASTER's, issued again (10, 20, 40, 80 ms later) while it fails; then the error goes to FASTER.</summary>
    private sealed class Read(RetryingDevice device, int segmentId, ulong source, IntPtr destination, uint length, DeviceIOCompletionCallback callback, object context)
    {
        private int _attempts;

        public void Issue() => device._inner.ReadAsync(segmentId, source, destination, length, Completed, context);

        private void Completed(uint errorCode, uint numBytes, object _)
        {
            if (errorCode == 0)
            {
                callback(0, numBytes, context);
                return;
            }
            bool retry = ++_attempts <= MaxReadRetries && !device._health.Closing;
            device._health.ReadFailed($"reading {length} bytes of log segment {segmentId} at offset {source} failed ({Describe(errorCode)}){(retry ? "; retrying" : "")}");
            if (!retry)
            {
                callback(errorCode, numBytes, context);
                return;
            }
            _ = Task.Delay(FirstBackoffMs << (_attempts - 1)).ContinueWith(static (_, state) => ((Read)state!).Issue(), this, CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>One write of FASTER's, issued until it succeeds (or the log closes).</summary>
    private sealed class Write(RetryingDevice device, IntPtr source, int segmentId, ulong destination, uint length, DeviceIOCompletionCallback callback, object context)
    {
        private int _attempts;
        private int _backoffMs = FirstBackoffMs;

        public void Issue() => device._inner.WriteAsync(source, segmentId, destination, length, Completed, context);

        private void Completed(uint errorCode, uint numBytes, object _)
        {
            bool failedBefore = _attempts > 0;
            _attempts++;
            if (errorCode == 0)
            {
                if (failedBefore) device._health.WriteRecovered();
                callback(0, numBytes, context);
                return;
            }
            if (device._health.Closing)
            {
                if (failedBefore) device._health.WriteRecovered();
                callback(errorCode, numBytes, context);
                return;
            }
            device._health.WriteFailed($"writing {length} bytes of log segment {segmentId} at offset {destination} failed ({Describe(errorCode)}); retrying", firstFailure: !failedBefore);
            int delay = _backoffMs;
            _backoffMs = Math.Min(MaxBackoffMs, _backoffMs * 2);
            // A timer, not a blocked thread: FASTER completes its own writes on pool threads.
            _ = Task.Delay(delay).ContinueWith(static (_, state) => ((Write)state!).Issue(), this, CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }
}
