using System.Buffers.Binary;
using System.Diagnostics;
using FASTER.core;

namespace Tmem.LogTier;

/// <summary>What a slot of the commit file holds.</summary>
public enum CommitSlotKind
{
    /// <summary>All zeros: never written (a file created before genesis slots existed).</summary>
    Empty,

    /// <summary>Neither empty nor valid (bad magic, length or checksum).</summary>
    Damaged,

    /// <summary>Valid, holding no commit: how a new file starts (both slots).</summary>
    Genesis,

    /// <summary>Valid, holding one of FASTER's commits.</summary>
    Commit,
}

/// <summary>One slot of the commit file as read.</summary>
/// <param name="Index">0 or 1.</param>
/// <param name="Kind">What it holds.</param>
/// <param name="CommitNum">FASTER's commit number (commits only).</param>
/// <param name="Paired">The paired flag: the other slot was not empty when this one was written.</param>
/// <param name="Metadata">FASTER's commit metadata (commits only).</param>
/// <param name="Problem">Why it is damaged (damaged slots only).</param>
public readonly record struct CommitSlot(int Index, CommitSlotKind Kind, long CommitNum, bool Paired, byte[]? Metadata, string? Problem);

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
///  8  i64  FASTER commit number (0 in a genesis slot)
/// 16  i32  metadata length (0 in a genesis slot, else 1 .. 488)
/// 20  u32  flags: bit 0 = paired (the other slot was not empty when this one was written)
/// 24  ...  FASTER's commit metadata (FasterLogRecoveryInfo)
/// </code>
/// The file is created (through a temporary file and a rename) with a genesis slot in both
/// places, so a file made here never has an all-zero slot: every write replaces a valid slot by
/// another. An all-zero slot beside a slot that is paired or genesis was therefore zeroed after
/// it was written, and a slot that is neither empty nor valid is damage: either could have held
/// the newest commit, so opening stops rather than fall back to the other slot, which would
/// silently undo acknowledged operations. Files written before genesis slots existed start with
/// two zero slots and their commits are not paired: an empty slot beside an unpaired commit is
/// that file's first commit (see <see cref="Judge"/>).
/// </para>
/// <para>
/// Power-cut safety: one slot write is in flight at a time, and everything a slot holds lies in
/// its first 512 bytes (the metadata is limited to 488 bytes; FASTER's is 44 without persisted
/// iterators or cookies, which the store does not use), the rest being zeros before and after,
/// so a 4 KiB write that the device tears at 512-byte sector boundaries still leaves the old or
/// the new slot whole. A device that tears inside a sector leaves a damaged slot, which is
/// refused like any other (the offline tool then reports what may be lost).
/// </para>
/// </summary>
public sealed class LogCommitFile : ILogCommitManager
{
    /// <summary>The commit file's name in the commit folder.</summary>
    public const string FileName = "log.commit";
    /// <summary>Bytes per slot (the file holds two).</summary>
    public const int SlotSize = 4096;
    private const int HeaderSize = 24;
    /// <summary>A slot's contents must fit the first 512-byte sector (see the class remarks).</summary>
    public const int MaxMetadataLength = 512 - HeaderSize;
    private const uint Magic = 0x544D4354; // "TCMT" little-endian
    private const uint PairedFlag = 1;

    private readonly string _path;
    private readonly IStorageIo _io;
    private readonly IStorageFile _file;
    private readonly byte[] _buffer = GC.AllocateArray<byte>(SlotSize, pinned: true);
    private readonly Lock _lock = new();
    private int _newestSlot = -1;
    private bool _nextPaired;

    /// <param name="commitDirectory">Where the file is.</param>
    /// <param name="create">Create the file if it is missing: only for a log with no data yet (a
    /// missing commit file under existing segments is damage, reported without changing anything).
    /// A file of two empty slots is then replaced by a new one too (it holds nothing).</param>
    public LogCommitFile(string commitDirectory, bool create)
        : this(commitDirectory, create, NativeStorageIo.Instance)
    {
    }

    /// <summary><see cref="LogCommitFile(string, bool)"/> through <paramref name="io"/> (the store's file operations, see <see cref="IStorageIo"/>).</summary>
    internal LogCommitFile(string commitDirectory, bool create, IStorageIo io)
    {
        _path = PathIn(commitDirectory);
        _io = io;
        if (!File.Exists(_path))
        {
            if (!create)
                throw new TmemCorruptionException(0, $"The log has segment data but its commit file {_path} is missing: the commit metadata is lost. Nothing was changed; inspect the directory with the offline recovery tool before opening it.");
            CreateFresh(commitDirectory, io);
        }
        _file = OpenHandle(_path);
        if (_file.GetLength() != 2 * SlotSize)
        {
            _file.Dispose();
            throw new TmemCorruptionException(0, $"The commit file {_path} is {new FileInfo(_path).Length} bytes, not {2 * SlotSize}: it is damaged. Nothing was changed; repair the directory with the offline recovery tool.");
        }
        if (create && ReadAllSlots().All(s => s.Kind == CommitSlotKind.Empty))
        {
            // An older file that never held a commit, under a log with no data: give it genesis slots.
            _file.Dispose();
            CreateFresh(commitDirectory, io);
            _file = OpenHandle(_path);
        }
    }

    private IStorageFile OpenHandle(string path) =>
        _io.Open(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, FileOptions.WriteThrough);

    /// <summary>The commit file's path in a commit directory.</summary>
    public static string PathIn(string commitDirectory) => Path.Combine(commitDirectory, FileName);

    /// <summary>
    /// Creates (or replaces) the commit file with a genesis slot in both places, atomically: a
    /// temporary file written and fsync'd, renamed over the file, the directory fsync'd.
    /// </summary>
    public static void CreateFresh(string commitDirectory) => CreateFresh(commitDirectory, NativeStorageIo.Instance);

    /// <summary><see cref="CreateFresh(string)"/> through <paramref name="io"/>.</summary>
    internal static void CreateFresh(string commitDirectory, IStorageIo io)
    {
        io.CreateDirectoryDurably(commitDirectory);
        string path = PathIn(commitDirectory);
        string temp = path + ".tmp";
        var bytes = new byte[2 * SlotSize];
        WriteSlot(bytes.AsSpan(0, SlotSize), 0, [], paired: true);
        WriteSlot(bytes.AsSpan(SlotSize, SlotSize), 0, [], paired: true);
        io.WriteNewFile(temp, bytes);
        io.Move(temp, path, overwrite: true);
        io.FsyncDirectory(commitDirectory);
    }

    /// <summary>Fills <paramref name="slot"/> (zeroed first): a commit, or a genesis slot when <paramref name="metadata"/> is empty.</summary>
    private static void WriteSlot(Span<byte> slot, long commitNum, ReadOnlySpan<byte> metadata, bool paired)
    {
        slot.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(slot, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(slot[8..], commitNum);
        BinaryPrimitives.WriteInt32LittleEndian(slot[16..], metadata.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[20..], paired ? PairedFlag : 0);
        metadata.CopyTo(slot[HeaderSize..]);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[4..], LogRecord.Crc32C(slot[8..(HeaderSize + metadata.Length)]));
    }

    /// <summary>FASTER's commit: writes the metadata into the slot not holding the newest commit (O_DSYNC), retrying a failed write.</summary>
    public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
    {
        if (commitMetadata.Length is 0 or > MaxMetadataLength)
            throw new InvalidOperationException($"FASTER's commit metadata is {commitMetadata.Length} bytes; a commit slot holds 1 to {MaxMetadataLength} (its first 512-byte sector).");
        lock (_lock)
        {
            if (_newestSlot < 0) ReadSlots(); // first commit of this open: learn which slot is newest
            int slot = _newestSlot == 0 ? 1 : 0;
            WriteSlot(_buffer, commitNum, commitMetadata, _nextPaired);
            // O_DSYNC: durable when the write returns. A failed write is retried here, on
            // FASTER's commit thread, until it succeeds: an exception thrown into FASTER's commit
            // callback would leave the commit (and every later one) hanging. The slot written
            // is the older one, so a half-done attempt never touches the newest commit.
            WriteDurably(_buffer, slot);
            _newestSlot = slot;
            _nextPaired = true; // the next write goes to the other slot, beside this one
        }
        Written?.Invoke();
    }

    /// <summary>After each commit's metadata is durable (on FASTER's commit thread; FASTER then moves its commit point).</summary>
    public Action? Written { get; set; }

    /// <summary>
    /// For the offline tool's repairs: makes <paramref name="commitNum"/> (which must be above every
    /// readable commit) the file's only commit, with two slot writes that each leave a valid file: the
    /// commit first, into a slot not holding the newest valid commit (a damaged or empty slot when
    /// there is one), then a genesis slot over the other.
    /// </summary>
    public void WriteOnlyCommit(long commitNum, byte[] commitMetadata)
    {
        if (commitMetadata.Length is 0 or > MaxMetadataLength)
            throw new InvalidOperationException($"The commit metadata is {commitMetadata.Length} bytes; a commit slot holds 1 to {MaxMetadataLength}.");
        lock (_lock)
        {
            var slots = ReadAllSlots();
            int newest = -1;
            foreach (var s in slots)
                if (s.Kind == CommitSlotKind.Commit && (newest < 0 || s.CommitNum > slots[newest].CommitNum)) newest = s.Index;
            if (newest >= 0 && slots[newest].CommitNum >= commitNum)
                throw new InvalidOperationException($"Commit number {commitNum} is not above the newest commit {slots[newest].CommitNum} in {_path}.");
            int target = slots.FirstOrDefault(s => s.Kind is CommitSlotKind.Damaged or CommitSlotKind.Empty, new CommitSlot(-1, default, 0, false, null, null)).Index;
            if (target < 0) target = newest == 0 ? 1 : 0;
            WriteSlot(_buffer, commitNum, commitMetadata, paired: true);
            _file.Write(_buffer, (long)target * SlotSize);
            WriteSlot(_buffer, 0, [], paired: true);
            _file.Write(_buffer, (long)(1 - target) * SlotSize);
            _newestSlot = target;
            _nextPaired = true;
        }
    }

    /// <summary>Where failed commit writes are reported (the store's); null for the offline tool, which retries nothing.</summary>
    internal StorageHealth? Health { get; set; }

    private void WriteDurably(ReadOnlySpan<byte> buffer, int slot)
    {
        int backoffMs = 10;
        bool failing = false;
        while (true)
        {
            try
            {
                _file.Write(buffer, (long)slot * SlotSize);
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

    /// <summary>FASTER's read of the commit metadata with this commit number; null when no slot holds it.</summary>
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

    /// <summary>Replaces the commit's slot by a genesis slot (FasterLog 2.6.5 never calls this).</summary>
    public void RemoveCommit(long commitNum)
    {
        lock (_lock)
        {
            foreach (var (slot, number, _) in ReadSlots())
            {
                if (number != commitNum) continue;
                WriteSlot(_buffer, 0, [], paired: true);
                _file.Write(_buffer, (long)slot * SlotSize);
                if (slot == _newestSlot) _newestSlot = -1;
            }
        }
    }

    /// <summary>Replaces both slots by genesis slots (FasterLog 2.6.5 never calls this).</summary>
    public void RemoveAllCommits()
    {
        lock (_lock)
        {
            WriteSlot(_buffer, 0, [], paired: true);
            _file.Write(_buffer, 0);
            _file.Write(_buffer, SlotSize);
            _newestSlot = -1;
        }
    }

    /// <summary>FASTER's notice of the commit it recovered from (nothing to do here).</summary>
    public void OnRecovery(long commitNum)
    {
    }

    /// <summary>Both slots as they are on disk; never throws for their contents (the offline tool reports them).</summary>
    public IReadOnlyList<CommitSlot> ReadAllSlots()
    {
        lock (_lock)
        {
            var slots = new CommitSlot[2];
            var buffer = _buffer.AsSpan();
            for (int slot = 0; slot < 2; slot++)
            {
                int read = _file.Read(buffer, (long)slot * SlotSize);
                slots[slot] = read == SlotSize ? Parse(slot, buffer) : new CommitSlot(slot, CommitSlotKind.Damaged, 0, false, null, $"only {read} bytes could be read");
            }
            return slots;
        }
    }

    private static CommitSlot Parse(int index, ReadOnlySpan<byte> slot)
    {
        if (!slot.ContainsAnyExcept((byte)0)) return new CommitSlot(index, CommitSlotKind.Empty, 0, false, null, null);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(slot);
        int length = BinaryPrimitives.ReadInt32LittleEndian(slot[16..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(slot[20..]);
        string? problem = magic != Magic ? "bad magic"
            : length < 0 || length > SlotSize - HeaderSize ? $"metadata length {length}"
            : BinaryPrimitives.ReadUInt32LittleEndian(slot[4..]) != LogRecord.Crc32C(slot[8..(HeaderSize + length)]) ? "checksum mismatch"
            : (flags & ~PairedFlag) != 0 ? $"unknown flags 0x{flags:x}"
            : null;
        if (problem is not null) return new CommitSlot(index, CommitSlotKind.Damaged, 0, false, null, problem);
        long number = BinaryPrimitives.ReadInt64LittleEndian(slot[8..]);
        bool paired = (flags & PairedFlag) != 0;
        return length == 0
            ? new CommitSlot(index, CommitSlotKind.Genesis, number, paired, null, null)
            : new CommitSlot(index, CommitSlotKind.Commit, number, paired, slot.Slice(HeaderSize, length).ToArray(), null);
    }

    /// <summary>
    /// The rule that tells damage from the states writes and power cuts leave: null when
    /// <paramref name="slots"/> can be recovered from (the newest commit, if any, is then the
    /// newest that was written), else why not. Damage is a damaged slot, or an empty slot beside
    /// a genesis slot or a paired commit (the empty one was written once, and may have held the
    /// newest commit). Legitimate: two commits; a commit and a genesis slot (a new file's first
    /// commit); two genesis or two empty slots (no commit yet); an empty slot and an unpaired
    /// commit (an older file's first commit).
    /// </summary>
    public static string? Judge(IReadOnlyList<CommitSlot> slots, string path)
    {
        foreach (var s in slots)
        {
            var other = slots[1 - s.Index];
            if (s.Kind == CommitSlotKind.Damaged)
                return $"commit slot {s.Index} of {path} (bytes {s.Index * SlotSize} to {(s.Index + 1) * SlotSize}) is damaged ({s.Problem}); it may have held the newest commit{OtherSays(other)}, " +
                    "or be a commit write that a power cut tore inside a 512-byte sector (then never acknowledged)";
            if (s.Kind == CommitSlotKind.Empty && (other.Kind == CommitSlotKind.Genesis || other is { Kind: CommitSlotKind.Commit, Paired: true }))
                return $"commit slot {s.Index} of {path} (bytes {s.Index * SlotSize} to {(s.Index + 1) * SlotSize}) is all zeros, but slot {other.Index} " +
                    (other.Kind == CommitSlotKind.Genesis ? "is a genesis slot, which only a file whose slots are never empty has"
                        : "was written while it held a commit") +
                    $": it was zeroed, and may have held the newest commit{OtherSays(other)}";
        }
        return null;
    }

    private static string OtherSays(CommitSlot other) => other.Kind switch
    {
        CommitSlotKind.Commit => $" (slot {other.Index} holds commit {other.CommitNum}, which may be an older one)",
        CommitSlotKind.Genesis => $" (slot {other.Index} holds no commit)",
        _ => $" (slot {other.Index} is {other.Kind.ToString().ToLowerInvariant()} too)",
    };

    /// <summary>
    /// Under the lock: the commits, newest first; sets where the next commit goes. Throws
    /// <see cref="TmemCorruptionException"/> when <see cref="Judge"/> finds damage.
    /// </summary>
    private List<(int Slot, long CommitNum, byte[] Metadata)> ReadSlots()
    {
        var all = ReadAllSlots();
        if (Judge(all, _path) is { } problem)
            throw new TmemCorruptionException(0,
                $"The log's commit metadata is damaged: {problem}. The log is not opened from the other slot, which could undo acknowledged operations. " +
                $"Nothing was changed; run the offline recovery tool (tmem-admin verify, then recover) on the data directory: it says which commits may be lost and what each repair keeps.");
        var commits = all.Where(s => s.Kind == CommitSlotKind.Commit).Select(s => (s.Index, s.CommitNum, s.Metadata!)).ToList();
        commits.Sort((a, b) => b.CommitNum.CompareTo(a.CommitNum));
        // The next commit goes beside the newest (slot 0 when there is none), paired unless the slot beside it is empty.
        _newestSlot = commits.Count > 0 ? commits[0].Index : 1;
        _nextPaired = all[_newestSlot].Kind != CommitSlotKind.Empty;
        return commits;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _file.Dispose();
}
