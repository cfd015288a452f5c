using System.Buffers.Binary;
using System.Diagnostics;
using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace Tmem.LogTier;

/// <summary>
/// FasterLog's commit metadata in one preallocated file, <c>DATA/commits/log.commit</c>, instead
/// of FASTER's one-new-file-per-commit (<c>DeviceLogCommitCheckpointManager</c>), which creates
/// and deletes a file on every commit without syncing the directory (after a power loss no commit
/// file need survive) and does its write through a thread-pool task it blocks on.
/// <para>
/// Two 4 KiB slots; each commit overwrites the slot not holding the newest commit with one
/// sector-aligned write through O_DSYNC, so the newest complete commit is always on disk and no
/// directory entry changes after creation. Slot layout (little-endian):
/// <code>
///  0  u32  magic "TCMT"
///  4  u32  CRC-32C of bytes [8, 24 + metadata length)
///  8  i64  FASTER commit number
/// 16  i32  metadata length (at most 4072)
/// 20  u32  reserved, 0
/// 24  ...  FASTER's commit metadata (FasterLogRecoveryInfo)
/// </code>
/// An all-zero slot is empty. A slot that is neither empty nor valid is damage, and opening
/// stops rather than fall back to the older slot: that would silently undo acknowledged
/// operations (a torn write of one aligned 4 KiB sector is assumed not to happen).
/// </para>
/// </summary>
internal sealed class LogCommitFile : ILogCommitManager
{
    public const string FileName = "log.commit";
    public const int SlotSize = 4096;
    private const int HeaderSize = 24;
    private const uint Magic = 0x544D4354; // "TCMT" little-endian

    private readonly string _path;
    private readonly SafeFileHandle _file;
    private readonly byte[] _buffer = GC.AllocateArray<byte>(SlotSize, pinned: true);
    private readonly Lock _lock = new();
    private int _newestSlot = -1;

    /// <param name="commitDirectory">Where the file is.</param>
    /// <param name="create">Create the file if it is missing: only for a log with no data yet (a
    /// missing commit file under existing segments is damage, reported without changing anything).</param>
    public LogCommitFile(string commitDirectory, bool create)
    {
        _path = PathIn(commitDirectory);
        if (!File.Exists(_path))
        {
            if (!create)
                throw new TmemCorruptionException(0, $"The log has segment data but its commit file {_path} is missing: the commit metadata is lost. Nothing was changed; inspect the directory with the offline recovery tool before opening it.");
            // Created once, zeroed (both slots empty) and made durable with its directory entry.
            string temp = _path + ".tmp";
            using (var fresh = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                fresh.Write(new byte[2 * SlotSize]);
                fresh.Flush(flushToDisk: true);
            }
            File.Move(temp, _path);
            DirectorySync.Fsync(commitDirectory);
        }
        _file = File.OpenHandle(_path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, FileOptions.WriteThrough);
        if (RandomAccess.GetLength(_file) != 2 * SlotSize)
        {
            _file.Dispose();
            throw new TmemCorruptionException(0, $"The commit file {_path} is {new FileInfo(_path).Length} bytes, not {2 * SlotSize}: it is damaged. Nothing was changed; repair the directory with the offline recovery tool.");
        }
    }

    /// <summary>The commit file's path in a commit directory.</summary>
    public static string PathIn(string commitDirectory) => Path.Combine(commitDirectory, FileName);

    public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
    {
        if (commitMetadata.Length > SlotSize - HeaderSize)
            throw new InvalidOperationException($"FASTER's commit metadata is {commitMetadata.Length} bytes, over the {SlotSize - HeaderSize} a commit slot holds.");
        lock (_lock)
        {
            if (_newestSlot < 0) ReadSlots(); // first commit of a new log: learn which slot is newest
            int slot = _newestSlot == 0 ? 1 : 0;
            var buffer = _buffer.AsSpan();
            buffer.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(buffer, Magic);
            BinaryPrimitives.WriteInt64LittleEndian(buffer[8..], commitNum);
            BinaryPrimitives.WriteInt32LittleEndian(buffer[16..], commitMetadata.Length);
            commitMetadata.CopyTo(buffer[HeaderSize..]);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer[4..], LogRecord.Crc32C(buffer[8..(HeaderSize + commitMetadata.Length)]));
            // O_DSYNC: durable when the write returns. A failed write is retried here, on
            // FASTER's commit thread, until it succeeds: an exception thrown into FASTER's commit
            // callback would leave the commit (and every later one) hanging. The slot written
            // is the older one, so a half-done attempt never touches the newest commit.
            WriteSlot(buffer, slot);
            _newestSlot = slot;
        }
    }

    /// <summary>Where failed commit writes are reported (the store's); null for the offline tool, which retries nothing.</summary>
    internal StorageHealth? Health { get; set; }

    private void WriteSlot(ReadOnlySpan<byte> buffer, int slot)
    {
        int backoffMs = 10;
        bool failing = false;
        while (true)
        {
            try
            {
                RandomAccess.Write(_file, buffer, (long)slot * SlotSize);
                if (failing) Health!.WriteRecovered();
                return;
            }
            catch (IOException e) when (Health is { Closing: false } health)
            {
                health.WriteFailed($"writing commit slot {slot} of {_path} failed ({e.Message}); retrying", firstFailure: !failing);
                failing = true;
                Thread.Sleep(backoffMs);
                backoffMs = Math.Min(1000, backoffMs * 2);
            }
            catch when (failing)
            {
                Health!.WriteRecovered();
                throw;
            }
        }
    }

    public byte[] GetCommitMetadata(long commitNum)
    {
        lock (_lock)
        {
            foreach (var (slot, number, metadata) in ReadSlots())
                if (number == commitNum) return metadata;
            return null!; // FASTER's contract: null when there is no such commit
        }
    }

    /// <summary>Commit numbers present, newest first (FASTER recovers from the first that parses).</summary>
    public IEnumerable<long> ListCommits()
    {
        lock (_lock)
        {
            return ReadSlots().Select(s => s.CommitNum).ToArray();
        }
    }

    public void RemoveCommit(long commitNum)
    {
        lock (_lock)
        {
            foreach (var (slot, number, _) in ReadSlots())
            {
                if (number != commitNum) continue;
                _buffer.AsSpan().Clear();
                RandomAccess.Write(_file, _buffer, (long)slot * SlotSize);
                if (slot == _newestSlot) _newestSlot = -1;
            }
        }
    }

    public void RemoveAllCommits()
    {
        lock (_lock)
        {
            _buffer.AsSpan().Clear();
            RandomAccess.Write(_file, _buffer, 0);
            RandomAccess.Write(_file, _buffer, SlotSize);
            _newestSlot = -1;
        }
    }

    public void OnRecovery(long commitNum)
    {
    }

    /// <summary>
    /// Under <see cref="_lock"/>: the valid slots, newest first; sets the newest slot. Throws
    /// <see cref="TmemCorruptionException"/> for a slot that is neither empty nor valid.
    /// </summary>
    private List<(int Slot, long CommitNum, byte[] Metadata)> ReadSlots()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        var slots = new List<(int, long, byte[])>(2);
        var buffer = _buffer.AsSpan();
        for (int slot = 0; slot < 2; slot++)
        {
            int read = RandomAccess.Read(_file, buffer, (long)slot * SlotSize);
            if (read != SlotSize || !buffer.ContainsAnyExcept((byte)0)) continue;
            uint magic = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
            int length = BinaryPrimitives.ReadInt32LittleEndian(buffer[16..]);
            string? problem = magic != Magic ? "bad magic"
                : length < 0 || length > SlotSize - HeaderSize ? $"metadata length {length}"
                : BinaryPrimitives.ReadUInt32LittleEndian(buffer[4..]) != LogRecord.Crc32C(buffer[8..(HeaderSize + length)]) ? "checksum mismatch"
                : null;
            if (problem is not null)
                throw new TmemCorruptionException(0,
                    $"Commit slot {slot} of {_path} is damaged ({problem}). It may hold the newest commit, so the log is not opened from the older one (that could undo acknowledged operations). Nothing was changed; repair the directory with the offline recovery tool.");
            slots.Add((slot, BinaryPrimitives.ReadInt64LittleEndian(buffer[8..]), buffer.Slice(HeaderSize, length).ToArray()));
        }
        slots.Sort((a, b) => b.Item2.CompareTo(a.Item2));
        _newestSlot = slots.Count > 0 ? slots[0].Item1 : 1; // an empty file: the first commit goes to slot 0
        return slots;
    }

    public void Dispose() => _file.Dispose();
}
