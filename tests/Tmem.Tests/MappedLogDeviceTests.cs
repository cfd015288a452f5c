using System.Runtime.InteropServices;
using FASTER.core;
using Tmem.LogTier;

namespace Tmem.Tests;

/// <summary>
/// <see cref="MappedLogDevice"/>: the FASTER device contract (alone and under a real FasterLog),
/// file-format compatibility with FASTER's <see cref="ManagedLocalStorageDevice"/> in both
/// directions, truncation, and direct reads racing segment removal.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class MappedLogDeviceTests : IDisposable
{
    // PersistentLog's settings, but 16 MiB segments so that a few tens of MiB span several.
    private const int PageSizeBits = 22;
    private const int MemorySizeBits = 24;
    private const int SegmentSizeBits = 24;
    private const long SegmentSize = 1L << SegmentSizeBits;

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "tmem-mapped-" + Guid.NewGuid().ToString("N"));

    private string LogDir => Path.Combine(_dir, "log");

    private string BaseName => Path.Combine(LogDir, "segment");

    private string CommitDir => Path.Combine(_dir, "commits");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private FasterLog OpenLog(IDevice device)
    {
        var log = new FasterLog(new FasterLogSettings
        {
            LogDevice = device,
            PageSizeBits = PageSizeBits,
            MemorySizeBits = MemorySizeBits,
            SegmentSizeBits = SegmentSizeBits,
            LogCommitDir = CommitDir,
            TryRecoverLatest = false,
            RemoveOutdatedCommits = true,
        });
        log.Recover();
        return log;
    }

    /// <summary>
    /// Entries of varied sizes (1 B to 64 KiB + 48, the store's largest record), deterministic per
    /// seed. Not 0 B: FasterLog writes an empty entry as a zero header, which its scan takes for
    /// page padding (it skips the rest of the page).
    /// </summary>
    private static List<byte[]> Entries(int seed, long totalBytes)
    {
        var random = new Random(seed);
        var entries = new List<byte[]>();
        long total = 0;
        while (total < totalBytes)
        {
            int length = random.Next(10) switch
            {
                0 => random.Next(1, 16),
                < 5 => random.Next(1024, 4097),
                < 9 => random.Next(4097, 20000),
                _ => ushort.MaxValue + 48,
            };
            var entry = new byte[length];
            random.NextBytes(entry);
            entries.Add(entry);
            total += length + 4;
        }
        return entries;
    }

    private static List<long> Append(FasterLog log, List<byte[]> entries)
    {
        var addresses = new List<long>(entries.Count);
        foreach (var entry in entries) addresses.Add(log.Enqueue(entry));
        log.Commit(spinWait: true);
        return addresses;
    }

    private static List<(long Address, byte[] Entry)> ScanAll(FasterLog log)
    {
        var result = new List<(long, byte[])>();
        using var iterator = log.Scan(log.BeginAddress, log.CommittedUntilAddress);
        while (iterator.GetNext(out byte[] entry, out int length, out long address))
            result.Add((address, entry.AsSpan(0, length).ToArray()));
        return result;
    }

    private static void AssertScan(List<long> addresses, List<byte[]> entries, List<(long Address, byte[] Entry)> scanned)
    {
        Assert.Equal(entries.Count, scanned.Count);
        for (int i = 0; i < entries.Count; i++)
        {
            Assert.Equal(addresses[i], scanned[i].Address);
            Assert.True(entries[i].AsSpan().SequenceEqual(scanned[i].Entry), $"entry {i} at {addresses[i]} differs");
        }
    }

    private static (uint Error, uint Bytes) Io(Action<DeviceIOCompletionCallback> issue)
    {
        using var done = new ManualResetEventSlim();
        uint error = 0, bytes = 0;
        issue((e, n, _) =>
        {
            error = e;
            bytes = n;
            done.Set();
        });
        Assert.True(done.Wait(TimeSpan.FromSeconds(30)), "the device never completed the I/O");
        return (error, bytes);
    }

    private static unsafe (uint Error, uint Bytes) Write(IDevice device, ulong address, byte[] data)
    {
        fixed (byte* p = data)
        {
            var source = (IntPtr)p;
            return Io(callback => device.WriteAsync(source, address, (uint)data.Length, callback, null!));
        }
    }

    private static unsafe (uint Error, uint Bytes, byte[] Data) Read(IDevice device, ulong address, int length)
    {
        var buffer = new byte[length];
        buffer.AsSpan().Fill(0xEE); // the device must overwrite all of it
        fixed (byte* p = buffer)
        {
            var destination = (IntPtr)p;
            var (error, bytes) = Io(callback => device.ReadAsync(address, destination, (uint)length, callback, null!));
            return (error, bytes, buffer);
        }
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public void Device_WriteRead_RoundTripsAcrossSegmentBoundaries_AndPersists()
    {
        const long segment = 1 << 20;
        var first = Pattern(64 << 10, 1);   // the last 64 KiB of segment 0
        var second = Pattern(128 << 10, 2); // the first 128 KiB of segment 1
        var third = Pattern(512, 3);        // a sector in the middle of segment 3 (segment 2 never written)
        using (var device = new MappedLogDevice(BaseName, segment))
        {
            Assert.Equal(512u, device.SectorSize);
            Assert.Equal(segment, device.SegmentSize);
            Assert.Equal(segment, device.GetFileSize(0));
            Assert.Equal((0u, (uint)first.Length), Write(device, (ulong)(segment - first.Length), first));
            Assert.Equal((0u, (uint)second.Length), Write(device, (ulong)segment, second));
            Assert.Equal((0u, 512u), Write(device, (ulong)(3 * segment + 4096 + 512), third));

            var (error, bytes, data) = Read(device, (ulong)(segment - first.Length), first.Length);
            Assert.Equal((0u, (uint)first.Length), (error, bytes));
            Assert.Equal(first, data);
        }

        // Files named and laid out like ManagedLocalStorageDevice's, each allocated whole.
        Assert.Equal(segment, new FileInfo(BaseName + ".0").Length);
        Assert.Equal(segment, new FileInfo(BaseName + ".1").Length);
        Assert.False(File.Exists(BaseName + ".2"));
        Assert.Equal(segment, new FileInfo(BaseName + ".3").Length);
        using (var file = File.OpenRead(BaseName + ".1"))
        {
            var head = new byte[second.Length];
            file.ReadExactly(head);
            Assert.Equal(second, head);
        }

        // A new instance maps the existing files.
        using (var device = new MappedLogDevice(BaseName, segment))
        {
            Assert.Equal(first, Read(device, (ulong)(segment - first.Length), first.Length).Data);
            Assert.Equal(second, Read(device, (ulong)segment, second.Length).Data);
            var around = Read(device, (ulong)(3 * segment + 4096), 2048).Data;
            Assert.True(around.AsSpan(0, 512).IndexOfAnyExcept((byte)0) < 0);
            Assert.Equal(third, around.AsSpan(512, 512).ToArray());
            Assert.True(around.AsSpan(1024).IndexOfAnyExcept((byte)0) < 0);

            // A segment with no file reads as zeros, successfully, with no bytes read, and stays missing.
            var (error, bytes, missing) = Read(device, (ulong)(2 * segment + 512), 4096);
            Assert.Equal((0u, 0u), (error, bytes));
            Assert.True(missing.AsSpan().IndexOfAnyExcept((byte)0) < 0);
            Assert.False(File.Exists(BaseName + ".2"));
        }
    }

    [Fact]
    public unsafe void Device_Errors_AreReportedThroughTheCallback_NotThrown()
    {
        const long segment = 1 << 20;
        using var device = new MappedLogDevice(BaseName, segment);
        // A write that would run past its segment.
        var data = Pattern(8192, 4);
        fixed (byte* p = data)
        {
            var source = (IntPtr)p;
            var (error, _) = Io(callback => device.WriteAsync(source, 0, (ulong)(segment - 4096), (uint)data.Length, callback, null!));
            Assert.NotEqual(0u, error);
        }
        // A segment file longer than the segment size (written with other settings).
        File.WriteAllBytes(BaseName + ".5", new byte[segment + 4096]);
        Assert.NotEqual(0u, Write(device, (ulong)(5 * segment), data).Error);
        Assert.NotEqual(0u, Read(device, (ulong)(5 * segment), 4096).Error);
        Assert.Throws<IOException>(() => device.TryAcquire(5 * segment, 16, out _));
        // FasterLog's settings must agree with the device's.
        Assert.Throws<FasterException>(() => device.Initialize(segment * 2));
    }

    [Fact]
    public void Dispose_IsIdempotent_AndLaterAccessFailsCleanly()
    {
        const long segment = 1 << 20;
        var device = new MappedLogDevice(BaseName, segment);
        var data = Pattern(4096, 5);
        Assert.Equal(0u, Write(device, 0, data).Error);
        device.Dispose();
        device.Dispose();
        Assert.False(device.TryRead(0, 16, 0, static (bytes, _) => bytes.Length, out _));
        Assert.NotEqual(0u, Write(device, 0, data).Error);
        Assert.Equal(data, File.ReadAllBytes(BaseName + ".0").AsSpan(0, 4096).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FasterLog_ReopenedOverANewDevice_ScansEveryEntryBackByteExact(bool completeWritesInline)
    {
        var entries = Entries(10, 40L << 20); // three 16 MiB segments, more than the 16 MiB in memory
        List<long> addresses;
        using (var device = new MappedLogDevice(BaseName, SegmentSize, completeWritesInline: completeWritesInline))
        using (var log = OpenLog(device))
        {
            addresses = Append(log, entries);
            Assert.True(log.CommittedUntilAddress > 2 * SegmentSize);
            // Reads of flushed entries through FasterLog go through the device's ReadAsync.
            for (int i = 0; i < entries.Count; i += 97)
            {
                var (bytes, length) = await log.ReadAsync(addresses[i]);
                Assert.Equal(entries[i], bytes.AsSpan(0, length).ToArray());
            }
        }
        Assert.True(File.Exists(BaseName + ".2"));

        using (var device = new MappedLogDevice(BaseName, SegmentSize))
        using (var log = OpenLog(device))
        {
            AssertScan(addresses, entries, ScanAll(log));
            // And the recovered log appends after its tail.
            var more = Entries(11, 1L << 20);
            addresses.AddRange(Append(log, more));
            entries.AddRange(more);
        }
        using (var device = new MappedLogDevice(BaseName, SegmentSize))
        using (var log = OpenLog(device))
            AssertScan(addresses, entries, ScanAll(log));
    }

    [Fact]
    public void Format_IsCompatibleWithManagedLocalStorageDevice_BothWays()
    {
        // Written by the mapped device, read by FASTER's own ...
        var entries = Entries(20, 20L << 20);
        List<long> addresses;
        using (var device = new MappedLogDevice(BaseName, SegmentSize))
        using (var log = OpenLog(device))
            addresses = Append(log, entries);

        using (var device = Devices.CreateLogDevice(BaseName, preallocateFile: false, deleteOnClose: false))
        using (var log = OpenLog(device))
        {
            Assert.IsType<ManagedLocalStorageDevice>(device);
            AssertScan(addresses, entries, ScanAll(log));
            // ... which appends into a new segment of its own (an unallocated, short file) ...
            var more = Entries(21, 20L << 20);
            addresses.AddRange(Append(log, more));
            entries.AddRange(more);
        }
        Assert.True(new FileInfo(BaseName + ".2").Length < SegmentSize);

        // ... and the mapped device reads both, and extends the short file to append after them.
        using (var device = new MappedLogDevice(BaseName, SegmentSize))
        using (var log = OpenLog(device))
        {
            AssertScan(addresses, entries, ScanAll(log));
            var more = Entries(22, 1L << 20);
            addresses.AddRange(Append(log, more));
            entries.AddRange(more);
            for (int i = 0; i < entries.Count; i += 50)
                Assert.True(device.TryReadEntry(addresses[i], entries[i], static (bytes, expected) => bytes.SequenceEqual(expected), out bool same) && same);
        }
        Assert.Equal(SegmentSize, new FileInfo(BaseName + ".2").Length);
        using (var device = Devices.CreateLogDevice(BaseName, preallocateFile: false, deleteOnClose: false))
        using (var log = OpenLog(device))
            AssertScan(addresses, entries, ScanAll(log));
    }

    [Fact]
    public void TruncateUntil_AndACommit_DeleteWholeSegmentFiles()
    {
        var entries = Entries(30, 40L << 20);
        using var device = new MappedLogDevice(BaseName, SegmentSize);
        using var log = OpenLog(device);
        var addresses = Append(log, entries);
        int firstKept = addresses.FindIndex(a => a >= 2 * SegmentSize + 4096);
        long until = addresses[firstKept];

        log.TruncateUntil(until);
        log.Commit(spinWait: true);
        // FASTER deletes the segments below the new begin address on a task of its own.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((File.Exists(BaseName + ".0") || File.Exists(BaseName + ".1")) && DateTime.UtcNow < deadline)
            Thread.Sleep(10);
        Assert.False(File.Exists(BaseName + ".0"));
        Assert.False(File.Exists(BaseName + ".1"));
        Assert.True(File.Exists(BaseName + ".2"));
        Assert.Equal(until, log.BeginAddress);

        // Direct reads of the removed segments say so; the rest still read.
        Assert.False(device.TryReadEntry(addresses[0], 0, static (bytes, _) => bytes.Length, out _));
        Assert.True(device.TryReadEntry(addresses[firstKept], 0, static (bytes, _) => bytes.Length, out int length));
        Assert.Equal(entries[firstKept].Length, length);
        var scanned = ScanAll(log);
        AssertScan(addresses[firstKept..], entries[firstKept..], scanned);
    }

    [Fact]
    public void DirectRead_ReturnsExactlyTheCommittedEntry_AfterFasterLogsFourByteHeader()
    {
        var entries = Entries(40, 24L << 20);
        // Last, an entry whose payload starts like an impossible header (length int.MaxValue).
        entries.Add([0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3]);
        using var device = new MappedLogDevice(BaseName, SegmentSize);
        using var log = OpenLog(device);
        var addresses = Append(log, entries);
        for (int i = 0; i < entries.Count; i++)
        {
            // The address Enqueue returned holds the entry's length (an int, LogChecksumType.None) ...
            Assert.True(device.TryRead(addresses[i], LogFraming.EntryHeaderSize, 0, static (bytes, _) => BitConverter.ToInt32(bytes), out int stored));
            Assert.Equal(entries[i].Length, stored);
            // ... and the entry follows it.
            Assert.True(device.TryRead(addresses[i] + LogFraming.EntryHeaderSize, entries[i].Length, entries[i],
                static (bytes, expected) => bytes.SequenceEqual(expected), out bool same));
            Assert.True(same, $"entry {i} at {addresses[i]} differs");
            Assert.True(device.TryReadEntry(addresses[i], 0, static (bytes, _) => bytes.ToArray(), out byte[] entry));
            Assert.Equal(entries[i], entry);
        }

        // The state may be a ref struct: decode straight into the caller's buffer.
        var destination = new byte[entries[3].Length];
        Assert.True(device.TryReadEntry(addresses[3], destination.AsSpan(), static (bytes, target) =>
        {
            bytes.CopyTo(target);
            return bytes.Length;
        }, out int copied));
        Assert.Equal(entries[3].Length, copied);
        Assert.Equal(entries[3], destination);

        // The guard form.
        Assert.True(device.TryAcquire(addresses[5] + 4, entries[5].Length, out var read));
        using (read)
            Assert.True(read.Bytes.SequenceEqual(entries[5]));

        // An address that is no entry's header is refused, not misread.
        Assert.Throws<InvalidDataException>(() => device.TryReadEntry(addresses[^1] + LogFraming.EntryHeaderSize, 0, static (bytes, _) => 0, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => device.TryAcquire(SegmentSize - 8, 16, out _));
    }

    [Fact]
    public async Task DirectReads_RacingSegmentRemovalAndDispose_SucceedWithTheRightBytesOrReturnFalse()
    {
        const long segment = 256 << 10;
        const int segments = 64;
        var device = new MappedLogDevice(BaseName, segment);
        var block = new byte[segment];
        for (int s = 0; s < segments; s++)
        {
            // Every 8-byte word holds its own log address: any misplaced or stale read shows.
            var words = MemoryMarshal.Cast<byte, long>(block.AsSpan());
            for (int w = 0; w < words.Length; w++) words[w] = s * segment + w * 8L;
            Assert.Equal(0u, Write(device, (ulong)(s * segment), block).Error);
        }

        int removedBelow = 0; // segments below this are removed (or being removed)
        long successes = 0, refusals = 0, failures = 0;
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 3).Select(r => Task.Run(() =>
        {
            var random = new Random(r);
            while (!stop.IsCancellationRequested)
            {
                int floor = Volatile.Read(ref removedBelow);
                // Mostly the segment removed next (the race), some already removed, some later.
                int s = random.Next(4) switch
                {
                    0 => random.Next(Math.Clamp(floor - 2, 0, segments - 1), segments),
                    _ => Math.Min(floor, segments - 1),
                };
                int length = random.Next(1, 1024) * 8;
                long address = s * segment + random.Next(0, (int)((segment - length) / 8)) * 8L;
                bool read = device.TryRead(address, length, address, static (bytes, start) =>
                {
                    var words = MemoryMarshal.Cast<byte, long>(bytes);
                    for (int w = 0; w < words.Length; w++)
                        if (words[w] != start + w * 8L) return false;
                    return true;
                }, out bool correct);
                if (!read)
                {
                    Interlocked.Increment(ref refusals);
                    // A refusal is only allowed once removal of that segment has begun.
                    if (s >= Volatile.Read(ref removedBelow)) Interlocked.Increment(ref failures);
                }
                else if (correct) Interlocked.Increment(ref successes);
                else Interlocked.Increment(ref failures);
            }
        })).ToArray();

        for (int s = 0; s < segments - 4; s++)
        {
            while (Interlocked.Read(ref successes) < (s + 1) * 100L && !readers.Any(t => t.IsCompleted)) Thread.Yield();
            Volatile.Write(ref removedBelow, s + 1);
            device.RemoveSegment(s);
            Assert.False(File.Exists($"{BaseName}.{s}"));
            Assert.False(device.TryRead(s * segment, 8, 0, static (bytes, _) => 0, out _));
        }
        Volatile.Write(ref removedBelow, int.MaxValue); // from here on anything may be refused
        device.Dispose(); // while the readers still run
        Thread.Sleep(20);
        stop.Cancel();
        await Task.WhenAll(readers);

        Assert.Equal(0, Interlocked.Read(ref failures));
        Assert.True(successes > 0 && refusals > 0);
        Assert.False(device.TryRead((segments - 1) * segment, 8, 0, static (bytes, _) => 0, out _));
    }
}
