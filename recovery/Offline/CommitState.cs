using FASTER.core;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>A commit read from the commit file: FASTER's commit number, begin address and commit point.</summary>
internal sealed record ReadableCommit(long Number, long BeginAddress, long CommittedUntil);

/// <summary>
/// The log's commit metadata as read offline, without opening FasterLog (which would create
/// missing segment files while recovering): the newest commit's begin and until addresses.
/// </summary>
internal sealed record CommitState(long BeginAddress, long CommittedUntil, long CommitNumber, string? File, string? Problem)
{
    public bool IsUsable => Problem is null;

    /// <summary>The highest commit number on disk that can be read: a new commit is numbered after it.</summary>
    public long HighestNumber { get; init; } = CommitNumber;

    /// <summary>
    /// When the state is not usable though a commit can be read (the other slot is damaged or
    /// zeroed, or the checkpoint shows later commits): that commit. Commits after it may be lost;
    /// it is the point the log can be rolled back to.
    /// </summary>
    public ReadableCommit? Fallback { get; init; }

    /// <summary>
    /// The commit the store recovers from: the newest slot of <c>commits/log.commit</c>
    /// (<see cref="LogCommitFile"/>). As the store does, slots that <see cref="LogCommitFile.Judge"/>
    /// finds damaged make the commit state unusable (the damaged slot may have held the newest
    /// commit); so does a missing or resized file.
    /// </summary>
    public static CommitState Read(string commitDirectory)
    {
        string file = LogCommitFile.PathIn(commitDirectory);
        if (!System.IO.File.Exists(file))
            return new CommitState(0, 0, -1, null, $"the commit file {file} does not exist");
        IReadOnlyList<CommitSlot> slots;
        try
        {
            using var commits = new LogCommitFile(commitDirectory, create: false);
            slots = commits.ReadAllSlots();
        }
        catch (TmemCorruptionException e)
        {
            return new CommitState(0, 0, -1, file, e.Message);
        }
        // Newest first; each with FASTER's fields, or why they do not parse.
        var commitsRead = slots.Where(s => s.Kind == CommitSlotKind.Commit).OrderByDescending(s => s.CommitNum)
            .Select(s => (Slot: s, Info: Parse(s, out string? why), Why: why)).ToList();
        long highest = commitsRead.Count > 0 ? commitsRead[0].Slot.CommitNum : -1;
        var readable = commitsRead.Where(c => c.Why is null).Select(c => new ReadableCommit(c.Slot.CommitNum, c.Info.BeginAddress, c.Info.UntilAddress)).FirstOrDefault();
        if (LogCommitFile.Judge(slots, file) is { } damage)
            return new CommitState(0, 0, -1, file, damage) { HighestNumber = highest, Fallback = readable };
        if (commitsRead.Count == 0)
            return new CommitState(0, 0, -1, file, $"the commit file {file} holds no commit");
        var newest = commitsRead[0];
        if (newest.Why is { } problem)
            return new CommitState(0, 0, -1, file, $"the newest commit (number {newest.Slot.CommitNum}) in slot {newest.Slot.Index} of {file} {problem}") { HighestNumber = highest, Fallback = readable };
        return new CommitState(newest.Info.BeginAddress, newest.Info.UntilAddress, newest.Slot.CommitNum, file, null) { HighestNumber = highest };
    }

    /// <summary>FASTER's fields of a commit slot, or (in <paramref name="problem"/>) why they are not usable.</summary>
    private static FasterLogRecoveryInfo Parse(CommitSlot slot, out string? problem)
    {
        problem = null;
        var info = new FasterLogRecoveryInfo();
        try
        {
            using var reader = new BinaryReader(new MemoryStream(slot.Metadata!));
            info.Initialize(reader);
        }
        catch (Exception e) when (e is FasterException or IOException or EndOfStreamException or InvalidOperationException)
        {
            problem = $"does not parse ({e.Message})";
            return info;
        }
        if (info.BeginAddress < 64 || info.UntilAddress < info.BeginAddress)
            problem = $"has begin address {info.BeginAddress} and commit point {info.UntilAddress}, which are not a valid range";
        return info;
    }

    /// <summary>
    /// Writes a commit saying the log spans [<paramref name="begin"/>, <paramref name="until"/>),
    /// numbered after every readable one, as the commit file's only commit (a damaged or resized
    /// file is replaced first; see <see cref="LogCommitFile.WriteOnlyCommit"/> for the write
    /// order). FasterLog recovers exactly that range on the next open.
    /// </summary>
    public static void WriteCommit(string commitDirectory, long begin, long until, long previousNumber)
    {
        Directory.CreateDirectory(commitDirectory);
        string file = LogCommitFile.PathIn(commitDirectory);
        if (!System.IO.File.Exists(file) || new FileInfo(file).Length != 2 * LogCommitFile.SlotSize) LogCommitFile.CreateFresh(commitDirectory);
        using var commits = new LogCommitFile(commitDirectory, create: false);
        long number = previousNumber + 1;
        var info = new FasterLogRecoveryInfo();
        info.Initialize();
        info.BeginAddress = begin;
        info.UntilAddress = until;
        info.CommitNum = number;
        commits.WriteOnlyCommit(number, info.ToByteArray());
    }
}
