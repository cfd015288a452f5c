using FASTER.core;

namespace Tmem.Recovery.Offline;

/// <summary>
/// FASTER's commit metadata as read offline, without opening FasterLog (which would create
/// missing segment files while recovering): the newest commit file's begin and until addresses.
/// </summary>
internal sealed record CommitState(long BeginAddress, long CommittedUntil, long CommitNumber, string? File, string? Problem)
{
    public bool IsUsable => Problem is null;

    /// <summary>The highest commit number on disk, damaged or not: a new commit is numbered after it.</summary>
    public long HighestNumber { get; init; } = CommitNumber;

    /// <summary>Newer commit files that were skipped because they are damaged (a crash while one was written).</summary>
    public IReadOnlyList<string> SkippedDamaged { get; init; } = [];

    /// <summary>
    /// The commit FasterLog recovers from: the newest commit file that reads cleanly. A newer,
    /// damaged one is what a crash while FASTER wrote it leaves (it deletes the older file only
    /// after writing the new one); FasterLog falls back past it, and so does this.
    /// </summary>
    public static CommitState Read(string commitDirectory)
    {
        if (!Directory.Exists(commitDirectory))
            return new CommitState(0, 0, -1, null, $"the commit metadata folder {commitDirectory} does not exist");
        using var manager = NewManager(commitDirectory, removeOutdated: false);
        var numbers = manager.ListCommits().OrderDescending().ToList();
        if (numbers.Count == 0)
            return new CommitState(0, 0, -1, null, $"there is no commit metadata file under {commitDirectory}");
        var skipped = new List<string>();
        CommitState? firstBad = null;
        foreach (long number in numbers)
        {
            string? file = FileOf(commitDirectory, number);
            var info = new FasterLogRecoveryInfo();
            string? problem = null;
            try
            {
                var bytes = manager.GetCommitMetadata(number);
                if (bytes is null) problem = $"commit metadata file {file} could not be read";
                else
                {
                    using var reader = new BinaryReader(new MemoryStream(bytes));
                    info.Initialize(reader);
                }
            }
            catch (Exception e) when (e is FasterException or IOException or EndOfStreamException or InvalidOperationException)
            {
                problem = $"commit metadata file {file} is damaged ({e.Message})";
            }
            if (problem is null && (info.BeginAddress < 64 || info.UntilAddress < info.BeginAddress))
                problem = $"commit metadata file {file} has begin address {info.BeginAddress} and commit point {info.UntilAddress}, which are not a valid range";
            if (problem is null)
                return new CommitState(info.BeginAddress, info.UntilAddress, number, file, null) { SkippedDamaged = skipped, HighestNumber = numbers[0] };
            firstBad ??= new CommitState(info.BeginAddress, info.UntilAddress, number, file, problem);
            skipped.Add(problem);
        }
        return firstBad! with { Problem = string.Join("; ", skipped) };
    }

    /// <summary>
    /// Writes a FASTER commit (the same file FasterLog's own commit writes) saying the log spans
    /// [<paramref name="begin"/>, <paramref name="until"/>), numbered after every existing one, and
    /// removes the older commit files. FasterLog recovers exactly that range on the next open.
    /// </summary>
    public static void WriteCommit(string commitDirectory, long begin, long until, long previousNumber)
    {
        Directory.CreateDirectory(commitDirectory);
        using var manager = NewManager(commitDirectory, removeOutdated: true);
        long number = previousNumber + 1;
        var info = new FasterLogRecoveryInfo();
        info.Initialize();
        info.BeginAddress = begin;
        info.UntilAddress = until;
        info.CommitNum = number;
        manager.Commit(begin, until, info.ToByteArray(), number, forceWriteMetadata: true);
        foreach (long old in manager.ListCommits().ToArray())
            if (old != number) manager.RemoveCommit(old);
    }

    /// <summary>The commit manager FasterLog builds for its LogCommitDir (local files, default naming).</summary>
    private static DeviceLogCommitCheckpointManager NewManager(string commitDirectory, bool removeOutdated) =>
        new(new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(commitDirectory), removeOutdated);

    public static string? FileOf(string commitDirectory, long number) =>
        Directory.Exists(commitDirectory)
            ? Directory.EnumerateFiles(commitDirectory, $"commit.{number}*", SearchOption.AllDirectories).FirstOrDefault()
            : null;
}
