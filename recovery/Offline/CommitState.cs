using FASTER.core;
using Tmem.LogTier;

namespace Tmem.Recovery.Offline;

/// <summary>
/// The log's commit metadata as read offline, without opening FasterLog (which would create
/// missing segment files while recovering): the newest commit's begin and until addresses.
/// </summary>
internal sealed record CommitState(long BeginAddress, long CommittedUntil, long CommitNumber, string? File, string? Problem)
{
    public bool IsUsable => Problem is null;

    /// <summary>The highest commit number on disk, damaged or not: a new commit is numbered after it.</summary>
    public long HighestNumber { get; init; } = CommitNumber;

    /// <summary>Newer commits that were skipped because they are damaged; always empty with the two-slot commit file, which refuses instead.</summary>
    public IReadOnlyList<string> SkippedDamaged { get; init; } = [];

    /// <summary>
    /// The commit the store recovers from: the newest slot of <c>commits/log.commit</c>
    /// (<see cref="LogCommitFile"/>). As the store does, a damaged slot makes the commit state
    /// unusable (it may have held the newest commit); so does a missing or resized file.
    /// </summary>
    public static CommitState Read(string commitDirectory)
    {
        string file = LogCommitFile.PathIn(commitDirectory);
        if (!System.IO.File.Exists(file))
            return new CommitState(0, 0, -1, null, $"the commit file {file} does not exist");
        List<long> numbers;
        LogCommitFile commits;
        try
        {
            commits = new LogCommitFile(commitDirectory, create: false);
        }
        catch (TmemCorruptionException e)
        {
            return new CommitState(0, 0, -1, file, e.Message);
        }
        using (commits)
        {
            try
            {
                numbers = commits.ListCommits().ToList();
            }
            catch (TmemCorruptionException e)
            {
                return new CommitState(0, 0, -1, file, e.Message);
            }
            if (numbers.Count == 0)
                return new CommitState(0, 0, -1, file, $"the commit file {file} holds no commit");
            var info = new FasterLogRecoveryInfo();
            string? problem = null;
            try
            {
                using var reader = new BinaryReader(new MemoryStream(commits.GetCommitMetadata(numbers[0])));
                info.Initialize(reader);
            }
            catch (Exception e) when (e is FasterException or IOException or EndOfStreamException or InvalidOperationException)
            {
                problem = $"the newest commit in {file} does not parse ({e.Message})";
            }
            if (problem is null && (info.BeginAddress < 64 || info.UntilAddress < info.BeginAddress))
                problem = $"the newest commit in {file} has begin address {info.BeginAddress} and commit point {info.UntilAddress}, which are not a valid range";
            return new CommitState(info.BeginAddress, info.UntilAddress, numbers[0], file, problem) { HighestNumber = numbers[0] };
        }
    }

    /// <summary>
    /// Writes a commit saying the log spans [<paramref name="begin"/>, <paramref name="until"/>),
    /// numbered after every existing one, into a commit file cleared of every other commit (a
    /// damaged or resized file is replaced). FasterLog recovers exactly that range on the next open.
    /// </summary>
    public static void WriteCommit(string commitDirectory, long begin, long until, long previousNumber)
    {
        Directory.CreateDirectory(commitDirectory);
        string file = LogCommitFile.PathIn(commitDirectory);
        if (System.IO.File.Exists(file) && new FileInfo(file).Length != 2 * LogCommitFile.SlotSize) System.IO.File.Delete(file);
        using var commits = new LogCommitFile(commitDirectory, create: true);
        commits.RemoveAllCommits();
        long number = previousNumber + 1;
        var info = new FasterLogRecoveryInfo();
        info.Initialize();
        info.BeginAddress = begin;
        info.UntilAddress = until;
        info.CommitNum = number;
        commits.Commit(begin, until, info.ToByteArray(), number, forceWriteMetadata: true);
    }

    /// <summary>The commit file, when it exists.</summary>
    public static string? FileOf(string commitDirectory, long number) =>
        System.IO.File.Exists(LogCommitFile.PathIn(commitDirectory)) ? LogCommitFile.PathIn(commitDirectory) : null;
}
