using System.Buffers.Binary;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>
/// One offline pass over a data directory: the commit metadata, every record below the commit
/// point (read by <see cref="RawLogReader"/>, which reads on past damage, checked with
/// <see cref="LogRecord.TryRead"/>, and replayed into a <see cref="LogModel"/>), what cutting the
/// log at its first damage would lose (<see cref="CutLosses"/>), the records past the commit
/// point, and the index checkpoint checked against the model at the address it covers. When the
/// commit metadata is not usable the records are read from the likeliest begin address to the
/// first bad spot instead, and a commit that can still be read is the fallback a rollback goes to.
/// The shared core of inspect, verify, recover and export.
/// </summary>
internal sealed class LogAnalysis
{
    private const int MaxCheckpointMessages = 20;

    /// <summary>From the cut on: the state the acknowledged records give and what is known about it (see <see cref="Losses"/>).</summary>
    private CutLosses? _afterCut;

    private LogAnalysis(OfflineDirectory directory, CommitState commit, LogModel model)
    {
        Directory = directory;
        Commit = commit;
        Model = model;
    }

    public OfflineDirectory Directory { get; }

    public CommitState Commit { get; private set; }

    /// <summary>The log's begin address (from the commit metadata, else where the first segment's data starts).</summary>
    public long Begin { get; private set; }

    /// <summary>The commit point (from the commit metadata, else the end of the readable records).</summary>
    public long Committed { get; private set; }

    public List<DataProblem> Problems { get; } = new();

    /// <summary>The state every readable record below the commit point gives (records after a damage included).</summary>
    public LogModel Model { get; }

    /// <summary>The address of the first damage below the commit point: where the log would be cut.</summary>
    public long? CutAddress { get; private set; }

    /// <summary>The state just before <see cref="CutAddress"/>.</summary>
    public LogModel? AtCut { get; private set; }

    /// <summary>Damaged records: address and, from the (unverifiable) header, the handle it names.</summary>
    public List<(long Address, uint PoolSerial, ObjectId ObjectId, uint Index, LogRecordType? Type)> DamagedRecords { get; } = new();

    /// <summary>
    /// When the commit metadata is not usable but a commit can be read (<see cref="CommitState.Fallback"/>):
    /// what rolling back to it would undo, from its commit point to the end of the whole records
    /// (null when the records end before its commit point).
    /// </summary>
    public CutLosses? AfterFallback { get; private set; }

    /// <summary>Whole records read at or after the fallback commit's commit point (see <see cref="AfterFallback"/>).</summary>
    public int RecordsAfterFallback { get; private set; }

    public IndexCheckpoint? Checkpoint { get; private set; }

    /// <summary>Whether the checkpoint is intact, fits the log and agrees with it (the store would use it).</summary>
    public bool CheckpointUsable { get; private set; }

    public long Records { get; private set; }

    public long RecordBytes { get; private set; }

    /// <summary>Whole, valid records past the commit point: [start, end) and how many.</summary>
    public (long Start, long End, int Records) UncommittedTail { get; private set; }

    public IReadOnlyList<SegmentFile> Segments { get; private set; } = [];

    public bool HasDamage => Problems.Any(p => p.Severity == ProblemSeverity.Damage);

    public static LogAnalysis Run(OfflineDirectory directory, bool keepPayloads, IProgress<OfflineProgress>? progress)
    {
        var commit = CommitState.Read(directory.CommitDirectory);
        var analysis = new LogAnalysis(directory, commit, new LogModel(keepPayloads));
        analysis.Scan(keepPayloads, progress);
        return analysis;
    }

    private void Scan(bool keepPayloads, IProgress<OfflineProgress>? progress)
    {
        var dir = Directory;
        Segments = dir.Segments();
        if (!dir.HasFormatFile)
            Problems.Add(new DataProblem(ProblemKind.FormatFile, ProblemSeverity.Notice, null, Path.Combine(dir.Path, DataFormat.FileName),
                $"{Path.Combine(dir.Path, DataFormat.FileName)} is missing; the legacy segment size {dir.Format.SegmentSize} was assumed (the store writes the file on its next open)"));

        Checkpoint = ReadCheckpoint(out var checkpointProblem);
        var reader = new RawLogReader(dir.LogDirectory, dir.Format.SegmentSizeBits);
        // Segment files that hold nothing but zeros are not log data. The one right after the
        // last segment with data (or the commit point's) is the store's space reserve, allocated
        // ahead of the log; any other is stray: FasterLog creates those when it recovers from
        // commit metadata whose commit point is damaged (it reads the "tail" page).
        var zeroFilled = Segments.Where(s => !HasData(s)).ToList();
        int bits = dir.Format.SegmentSizeBits;
        long lastData = Segments.Except(zeroFilled).Select(s => s.FirstAddress >> bits).DefaultIfEmpty(-1).Max();
        long commitSegment = Commit.IsUsable && Commit.CommittedUntil > 0 ? (Commit.CommittedUntil - 1) >> bits : -1;
        ReserveSegments = zeroFilled.Where(s => (s.FirstAddress >> bits) == Math.Max(lastData, commitSegment) + 1).ToList();
        StraySegments = zeroFilled.Except(ReserveSegments).ToList();
        foreach (var stray in StraySegments)
            Problems.Add(new DataProblem(ProblemKind.CommitMetadata, ProblemSeverity.Notice, stray.FirstAddress, stray.Path,
                $"segment file {stray.Path} holds no data (only zeros, {stray.Bytes} bytes): FasterLog creates such files when it opens a log whose commit metadata is damaged; recover --rebuild-commit-metadata moves it aside"));
        var withData = Segments.Except(zeroFilled).ToList();
        long dataEnd = withData.Count == 0 ? 0 : withData.Max(s => s.FirstAddress + s.Bytes);
        // FASTER adopts commit metadata whose fields are damaged without noticing: a commit point
        // more than a segment past the last segment file's data is not credible.
        if (Commit.IsUsable && Commit.CommittedUntil > Commit.BeginAddress && Commit.CommittedUntil > dataEnd + dir.Format.SegmentSize)
            Commit = Commit with { Problem = $"commit metadata file {Commit.File} puts the commit point at {Commit.CommittedUntil}, but the segment files end at {dataEnd}: its addresses are damaged" };
        // A checkpoint is written only once the log is committed past its address, and only after
        // the begin address it records is committed: one ahead of the newest commit means the
        // commit metadata lost commits (and the store refuses to open).
        if (Commit.IsUsable && Checkpoint is { } ahead && (ahead.CoveredUntil > Commit.CommittedUntil || ahead.LogBeginAddress > Commit.BeginAddress))
            Commit = Commit with
            {
                Problem = $"the index checkpoint {dir.CheckpointPath} covers the log from {ahead.LogBeginAddress} until {ahead.CoveredUntil}, but the newest commit in {Commit.File} says it is committed from {Commit.BeginAddress} until {Commit.CommittedUntil}; " +
                    "a checkpoint is written only after the log is committed that far, so the commit metadata has lost commits (records before the checkpoint's address were acknowledged)",
                Fallback = new ReadableCommit(Commit.CommitNumber, Commit.BeginAddress, Commit.CommittedUntil),
            };
        bool committedKnown = Commit.IsUsable;
        var fallback = committedKnown ? null : Commit.Fallback;
        int commitProblemAt = Problems.Count;
        if (committedKnown)
        {
            Begin = Commit.BeginAddress;
            Committed = Commit.CommittedUntil;
        }
        else
        {
            // The readable commit's begin address, while its segment is there (a lost newer commit
            // can only have moved it forward, and replaying from an older begin gives the same state).
            Begin = fallback is { } f && withData.Any(s => s.FirstAddress <= f.BeginAddress && f.BeginAddress < s.FirstAddress + s.Bytes) ? f.BeginAddress : GuessBegin(reader);
            Committed = dataEnd;
        }

        LogModel? atCheckpoint = null;
        long ckptAddress = Checkpoint?.CoveredUntil ?? long.MaxValue;
        bool checkpointApplied = false;
        void ApplyCheckpointAfterCut()
        {
            checkpointApplied = true;
            if (_afterCut is { } after && checkpointProblem is null && Checkpoint is { } c && c.LogBeginAddress == Begin && c.CoveredUntil > after.Cut && c.CoveredUntil <= Committed)
                after.ApplyCheckpoint(c);
        }
        long total = Math.Max(1, Committed - Begin);
        long lastEnd = Begin;
        foreach (var item in reader.Read(Begin, Committed, stopAtFirstDamage: !committedKnown,
            progress is null ? null : a => progress.Report(new OfflineProgress("reading the log", Math.Max(0, a - Begin), total))))
        {
            if (atCheckpoint is null && item.Address >= ckptAddress) atCheckpoint = Model.Clone();
            if (!checkpointApplied && _afterCut is not null && item.Address >= ckptAddress) ApplyCheckpointAfterCut();
            if (fallback is not null && AfterFallback is null && item.Address >= fallback.CommittedUntil) AfterFallback = new CutLosses(fallback.CommittedUntil, Model.Clone());
            if (item.Damage is { } damage)
            {
                if (!committedKnown) break;
                NoteDamage(damage);
                _afterCut!.Unknown(item.Address, item.Next, damage.Message);
                continue;
            }
            var entry = item.Entry!;
            if (!LogRecord.TryRead(entry, out var record, out string? error))
            {
                if (!committedKnown) break;
                var claim = HeaderClaims(item.Address, entry);
                DamagedRecords.Add(claim);
                NoteDamage(new DataProblem(ProblemKind.BadRecord, ProblemSeverity.Damage, item.Address, reader.SegmentPath(item.Address >> dir.Format.SegmentSizeBits),
                    $"the record at log address {item.Address} is damaged: {error}"));
                _afterCut!.Damaged(item.Address, item.Next, claim.PoolSerial, claim.ObjectId, claim.Index, claim.Type,
                    $"the record at log address {item.Address} is damaged ({error}): what it changed is known only from its header, which cannot be verified" +
                    (claim.Type is { } t ? $" (it says {t}, pool serial {claim.PoolSerial}{(t is LogRecordType.Put or LogRecordType.FlushPage or LogRecordType.FlushObject ? $", object {claim.ObjectId}" : "")}{(t is LogRecordType.Put or LogRecordType.FlushPage ? $", index {claim.Index}" : "")})" : ""));
                continue;
            }
            Records++;
            RecordBytes += entry.Length;
            lastEnd = item.Next;
            if (AfterFallback is not null) RecordsAfterFallback++;
            if (Model.Apply(item.Address, record) is { } inconsistency)
            {
                NoteDamage(new DataProblem(ProblemKind.InconsistentRecord, CutAddress is null ? ProblemSeverity.Damage : ProblemSeverity.Notice, item.Address, null,
                    $"the record at log address {item.Address} ({record.Type}, pool serial {record.PoolSerial}) passes its checksum but contradicts the records before it: {inconsistency}" +
                    (CutAddress is { } cut && cut < item.Address ? $" (probably a consequence of the damage at {cut})" : "")));
            }
            _afterCut?.Record(item.Address, item.Next, record);
            AfterFallback?.Record(item.Address, item.Next, record);
        }
        if (!committedKnown) Committed = lastEnd;
        if (!checkpointApplied && _afterCut is not null && ckptAddress <= Committed) ApplyCheckpointAfterCut();
        if (fallback is not null && AfterFallback is null && fallback.CommittedUntil == Committed) AfterFallback = new CutLosses(Committed, Model.Clone());
        atCheckpoint ??= Checkpoint is not null && ckptAddress <= Committed ? Model.Clone() : null;
        if (!committedKnown) Problems.Insert(commitProblemAt, CommitProblem(fallback));

        ScanUncommittedTail(reader, dataEnd, committedKnown);
        CheckCheckpoint(checkpointProblem, atCheckpoint);
    }

    /// <summary>
    /// Without commit metadata, where the log most likely begins: the intact checkpoint's begin
    /// address, else 64 when segment 0 exists, else the first compaction base record in the first
    /// segment (compaction truncates the log to one), else that segment's start.
    /// </summary>
    private long GuessBegin(RawLogReader reader)
    {
        var segments = Segments.Except(StraySegments).Except(ReserveSegments).ToList();
        if (segments.Count == 0) return 64;
        if (Checkpoint is { } checkpoint && checkpoint.LogBeginAddress >= segments[0].FirstAddress
            && checkpoint.LogBeginAddress < segments[0].FirstAddress + Directory.Format.SegmentSize)
            return checkpoint.LogBeginAddress;
        if (segments[0].Index == 0) return 64;
        long first = segments[0].FirstAddress;
        foreach (var item in reader.Read(first, first + segments[0].Bytes, stopAtFirstDamage: true))
            if (item.Entry is { } entry && LogRecord.TryRead(entry, out var record, out _) && record.Type == LogRecordType.CompactionBase)
                return item.Address;
        return first;
    }

    /// <summary>Segment files with no data (see <see cref="HasData"/>).</summary>
    public IReadOnlyList<SegmentFile> StraySegments { get; private set; } = [];

    /// <summary>The store's space reserve: the zero-filled segment file allocated ahead of the log (not data, not a problem).</summary>
    public IReadOnlyList<SegmentFile> ReserveSegments { get; private set; } = [];

    /// <summary>Whether a segment file holds anything but zeros in its first 64 KiB (every real segment starts with an entry, segment 0 at byte 64).</summary>
    private static bool HasData(SegmentFile segment)
    {
        if (segment.Bytes == 0) return false;
        var buffer = new byte[(int)Math.Min(segment.Bytes, 64 * 1024)];
        using var handle = File.OpenHandle(segment.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        int n = RandomAccess.Read(handle, buffer, 0);
        return buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0) >= 0;
    }

    /// <summary>Whether the begin address and commit point came from readable commit metadata (else they were rebuilt from the records).</summary>
    public bool CommitKnown => Commit.IsUsable;

    private void NoteDamage(DataProblem problem)
    {
        Problems.Add(problem);
        if (CutAddress is null && problem.Address is { } address && problem.Severity == ProblemSeverity.Damage)
        {
            CutAddress = address;
            AtCut = Model.Clone();
            _afterCut = new CutLosses(address, AtCut);
        }
    }

    /// <summary>What is known of whether the records in [<paramref name="from"/>, <paramref name="until"/>) past a readable commit were acknowledged.</summary>
    internal static string Acknowledged(long from, long until, IndexCheckpoint? checkpoint) => checkpoint is { } c && c.CoveredUntil > from
        ? c.CoveredUntil >= until
            ? $"the index checkpoint, which covers the log until {c.CoveredUntil}, shows that all of them were committed (acknowledged)"
            : $"the index checkpoint shows that those before address {c.CoveredUntil} were committed (acknowledged); whether the others were cannot be known"
        : "whether they were acknowledged cannot be known";

    /// <summary>The damage problem for unusable commit metadata: what is known, what is not, what recover can do.</summary>
    private DataProblem CommitProblem(ReadableCommit? fallback)
    {
        string file = Commit.File ?? Directory.CommitDirectory;
        if (fallback is null)
            return new DataProblem(ProblemKind.CommitMetadata, ProblemSeverity.Damage, null, file,
                $"{Commit.Problem}: the log's begin address and commit point are unknown and the store will not open. The records were read from the likeliest begin address until the first bad spot (recover --rebuild-commit-metadata writes a commit for that range)");
        string after = Committed < fallback.CommittedUntil
            ? $"The whole records end at address {Committed}, before that commit's point: the log is damaged too, and cannot be rolled back to it"
            : $"{RecordsAfterFallback} whole record(s) at log addresses {fallback.CommittedUntil} to {Committed} were written after it; " + Acknowledged(fallback.CommittedUntil, Committed, Checkpoint);
        return new DataProblem(ProblemKind.CommitMetadata, ProblemSeverity.Damage, null, file,
            $"{Commit.Problem}. The newest readable commit is commit {fallback.Number} (log addresses {fallback.BeginAddress} to {fallback.CommittedUntil}): commits after {fallback.Number} may be lost, and the store will not open. {after}. " +
            $"recover --rebuild-commit-metadata writes a commit for log addresses {Begin} to {Committed}, keeping every whole record" +
            (Committed >= fallback.CommittedUntil ? $"; recover --rollback-to-older-commit goes back to commit {fallback.Number}, cutting the log at address {fallback.CommittedUntil} (recover without a flag lists what that undoes)" : ""));
    }

    /// <summary>What a damaged record's header says (it may itself be damaged).</summary>
    private static (long Address, uint PoolSerial, ObjectId ObjectId, uint Index, LogRecordType? Type) HeaderClaims(long address, byte[] entry)
    {
        if (entry.Length < LogRecord.HeaderSize) return (address, 0, default, 0, null);
        var type = (LogRecordType)entry[5];
        return (address, BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(8)),
            new ObjectId(BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(24)), BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(32))),
            BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(12)),
            Enum.IsDefined(type) ? type : null);
    }

    private void ScanUncommittedTail(RawLogReader reader, long dataEnd, bool committedKnown)
    {
        UncommittedTail = (Committed, Committed, 0);
        if (!committedKnown || dataEnd <= Committed) return;
        long end = Committed;
        int count = 0;
        foreach (var item in reader.Read(Committed, dataEnd, stopAtFirstDamage: true))
        {
            if (item.Entry is null || !LogRecord.TryRead(item.Entry, out _, out _)) break;
            count++;
            end = item.Next;
        }
        if (count == 0) return;
        UncommittedTail = (Committed, end, count);
        Problems.Add(new DataProblem(ProblemKind.UncommittedTail, ProblemSeverity.Notice, Committed, reader.SegmentPath(Committed >> Directory.Format.SegmentSizeBits),
            $"{count} whole record(s) at log addresses {Committed} to {end}, past the commit point {Committed}, were written but never committed (a torn tail: Strict mode never acknowledged them, Relaxed mode may lose them); FASTER writes over them, and recover drops them"));
    }

    private IndexCheckpoint? ReadCheckpoint(out string? problem)
    {
        problem = null;
        string path = Directory.CheckpointPath;
        if (!File.Exists(path)) return null;
        var checkpoint = IndexCheckpoint.TryParse(File.ReadAllBytes(path), out problem);
        return checkpoint;
    }

    private void CheckCheckpoint(string? parseProblem, LogModel? atCheckpoint)
    {
        string path = Directory.CheckpointPath;
        if (parseProblem is not null)
        {
            Problems.Add(new DataProblem(ProblemKind.CheckpointDamaged, ProblemSeverity.Damage, null, path,
                $"the index checkpoint {path} is damaged ({parseProblem}); the store replays the whole log instead, and recover writes a fresh one"));
            return;
        }
        if (Checkpoint is not { } checkpoint) return;
        if (checkpoint.CoveredUntil > Committed || checkpoint.CoveredUntil < Begin || checkpoint.LogBeginAddress != Begin)
        {
            // Stale, not wrong: a crash between a compaction's truncation and its new checkpoint
            // leaves this, and the store then replays the whole log.
            Problems.Add(new DataProblem(ProblemKind.CheckpointMismatch, ProblemSeverity.Notice, checkpoint.CoveredUntil, path,
                $"the index checkpoint {path} covers the log from {checkpoint.LogBeginAddress} until {checkpoint.CoveredUntil}, which does not fit the log ({Begin} to {Committed}); the store ignores it and replays the whole log, and recover writes a fresh one"));
            return;
        }
        if (CutAddress is { } cut && cut < checkpoint.CoveredUntil)
        {
            Problems.Add(new DataProblem(ProblemKind.CheckpointMismatch, ProblemSeverity.Notice, checkpoint.CoveredUntil, path,
                $"the index checkpoint {path} covers the log until {checkpoint.CoveredUntil}, past the damage at {cut}: it was not compared with the log"));
            return;
        }
        var mismatches = Compare(checkpoint, atCheckpoint!);
        foreach (var message in mismatches.Take(MaxCheckpointMessages))
            Problems.Add(new DataProblem(ProblemKind.CheckpointMismatch, ProblemSeverity.Damage, checkpoint.CoveredUntil, path,
                $"the index checkpoint {path} disagrees with the log replayed until {checkpoint.CoveredUntil}: {message}"));
        if (mismatches.Count > MaxCheckpointMessages)
            Problems.Add(new DataProblem(ProblemKind.CheckpointMismatch, ProblemSeverity.Damage, checkpoint.CoveredUntil, path,
                $"... and {mismatches.Count - MaxCheckpointMessages} more disagreements between the checkpoint and the log"));
        CheckpointUsable = mismatches.Count == 0;
    }

    /// <summary>Every way the checkpoint differs from the replayed state at the address it covers.</summary>
    internal static List<string> Compare(IndexCheckpoint checkpoint, LogModel state)
    {
        var problems = new List<string>();
        var listed = new HashSet<uint>();
        if (checkpoint.PoolSerialHighWater < state.SerialHighWater)
            problems.Add($"its pool serial high-water mark {checkpoint.PoolSerialHighWater} is below the log's {state.SerialHighWater}");
        foreach (var pool in checkpoint.Pools)
        {
            if (!listed.Add(pool.Serial)) { problems.Add($"pool serial {pool.Serial} is listed twice"); continue; }
            if (!state.Pools.TryGetValue(pool.Serial, out var live)) { problems.Add($"it lists pool serial {pool.Serial}, which the log does not have live"); continue; }
            if (live.PageSize != pool.PageSize || live.ExclusiveGets != pool.ExclusiveGets || live.SharedUuid != pool.SharedUuid || live.StoreIncompressible != pool.StoreIncompressible)
                problems.Add($"pool serial {pool.Serial}: settings (page size {pool.PageSize}, exclusive gets {pool.ExclusiveGets}, shared {pool.SharedUuid?.ToString() ?? "no"}, store incompressible {pool.StoreIncompressible}) differ from the log's ({live.PageSize}, {live.ExclusiveGets}, {live.SharedUuid?.ToString() ?? "no"}, {live.StoreIncompressible})");
            if (!live.Members.SequenceEqual(pool.Members))
                problems.Add($"pool serial {pool.Serial}: members [{string.Join(", ", pool.Members)}] differ from the log's [{string.Join(", ", live.Members)}]");
            if (pool.Pages.Count != live.Pages.Count)
                problems.Add($"pool serial {pool.Serial}: {pool.Pages.Count} pages, the log has {live.Pages.Count}");
            foreach (var page in pool.Pages)
            {
                if (!live.Pages.TryGetValue(new LogModel.PageKey(page.ObjectId, page.Index), out var logged))
                    problems.Add($"pool serial {pool.Serial}: page {page.ObjectId}/{page.Index} at log address {page.Address} is not live in the log");
                else if (logged.Address != page.Address || logged.SameFilled != page.SameFilled || (page.SameFilled ? logged.Pattern != page.Pattern || page.Length != 0 : logged.PayloadLength != page.Length))
                    problems.Add($"pool serial {pool.Serial}: page {page.ObjectId}/{page.Index} is at log address {page.Address} ({page.Length} bytes{(page.SameFilled ? ", same-filled" : "")}), the log has it at {logged.Address} ({logged.PayloadLength} bytes{(logged.SameFilled ? ", same-filled" : "")})");
            }
        }
        foreach (var serial in state.Pools.Keys)
            if (!listed.Contains(serial)) problems.Add($"it does not list pool serial {serial}, which is live in the log");
        return problems;
    }

    /// <summary>
    /// What cutting the log at <see cref="CutAddress"/> loses: every handle whose state after the
    /// committed records differs from its state at the cut, exact where the records (and an intact
    /// checkpoint past the cut) tell, with the ranges of unknown records otherwise (see <see cref="CutLosses"/>).
    /// </summary>
    public LossList Losses() => _afterCut?.Losses() ?? LossList.None;
}
