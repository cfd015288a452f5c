using FASTER.core;

namespace Tmem.Recovery.Offline;

/// <summary>
/// FASTER's commit metadata as read offline, without opening FasterLog (which would create
/// missing segment files while recovering): the newest commit file's begin and until addresses.
/// </summary>
internal sealed record CommitState(long BeginAddress, long CommittedUntil, long CommitNumber, string? File, string? Problem)
{
    public bool IsUsable => Problem is null;

    public static CommitState Read(string commitDirectory)
    {
        if (!Directory.Exists(commitDirectory))
            return new CommitState(0, 0, -1, null, $"the commit metadata folder {commitDirectory} does not exist");
        using var manager = NewManager(commitDirectory);
        long newest = -1;
        foreach (long number in manager.ListCommits()) newest = Math.Max(newest, number);
        if (newest < 0)
            return new CommitState(0, 0, -1, null, $"there is no commit metadata file under {commitDirectory}");
        string? file = FileOf(commitDirectory, newest);
        var info = new FasterLogRecoveryInfo();
        try
        {
            var bytes = manager.GetCommitMetadata(newest);
            if (bytes is null) return new CommitState(0, 0, newest, file, $"commit metadata file {file} could not be read");
            using var reader = new BinaryReader(new MemoryStream(bytes));
            info.Initialize(reader);
        }
        catch (Exception e) when (e is FasterException or IOException or EndOfStreamException or InvalidOperationException)
        {
            return new CommitState(info.BeginAddress, info.UntilAddress, newest, file, $"commit metadata file {file} is damaged ({e.Message})");
        }
        if (info.BeginAddress < 64 || info.UntilAddress < info.BeginAddress)
            return new CommitState(info.BeginAddress, info.UntilAddress, newest, file, $"commit metadata file {file} has begin address {info.BeginAddress} and commit point {info.UntilAddress}, which are not a valid range");
        return new CommitState(info.BeginAddress, info.UntilAddress, newest, file, null);
    }

    /// <summary>
    /// Writes a FASTER commit (the same file FasterLog's own commit writes) saying the log spans
    /// [<paramref name="begin"/>, <paramref name="until"/>), numbered after every existing one, and
    /// removes the older commit files. FasterLog recovers exactly that range on the next open.
    /// </summary>
    public static void WriteCommit(string commitDirectory, long begin, long until, long previousNumber)
    {
        Directory.CreateDirectory(commitDirectory);
        using var manager = NewManager(commitDirectory);
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
    private static DeviceLogCommitCheckpointManager NewManager(string commitDirectory) =>
        new(new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(commitDirectory));

    public static string? FileOf(string commitDirectory, long number) =>
        Directory.Exists(commitDirectory)
            ? Directory.EnumerateFiles(commitDirectory, $"commit.{number}*", SearchOption.AllDirectories).FirstOrDefault()
            : null;
}
