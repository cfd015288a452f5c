using Tmem.LogTier;

namespace Tmem.Tests;

/// <summary>The two-slot commit file under FasterLog: which commit survives, and how damage is refused.</summary>
[Trait("Kind", "Unit")]
public sealed class LogCommitFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tmem-commitfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string FilePath => Path.Combine(_dir, LogCommitFile.FileName);

    private static byte[] Metadata(int n) => Enumerable.Range(0, 40 + n).Select(i => (byte)(i * 31 + n)).ToArray();

    [Fact]
    public void Commits_AlternateSlots_AndTheNewestTwoAreListedNewestFirst()
    {
        using (var commits = new LogCommitFile(_dir, create: true))
        {
            Assert.Empty(commits.ListCommits());
            for (int n = 1; n <= 5; n++) commits.Commit(0, 0, Metadata(n), n, forceWriteMetadata: false);
            Assert.Equal(new long[] { 5, 4 }, commits.ListCommits());
        }
        Assert.Equal(2 * LogCommitFile.SlotSize, new FileInfo(FilePath).Length);
        using (var reopened = new LogCommitFile(_dir, create: false))
        {
            Assert.Equal(new long[] { 5, 4 }, reopened.ListCommits());
            Assert.Equal(Metadata(5), reopened.GetCommitMetadata(5));
            Assert.Equal(Metadata(4), reopened.GetCommitMetadata(4));
            Assert.Null(reopened.GetCommitMetadata(3));
            // The next commit replaces the older slot (4), never the newest.
            reopened.Commit(0, 0, Metadata(6), 6, forceWriteMetadata: false);
            Assert.Equal(new long[] { 6, 5 }, reopened.ListCommits());
        }
    }

    [Theory]
    [InlineData(0)]   // magic
    [InlineData(9)]   // commit number
    [InlineData(30)]  // metadata
    public void DamagedSlot_IsRefused_NotSkippedForTheOlderCommit(int offset)
    {
        using (var commits = new LogCommitFile(_dir, create: true))
            for (int n = 1; n <= 2; n++) commits.Commit(0, 0, Metadata(n), n, forceWriteMetadata: false);
        var bytes = File.ReadAllBytes(FilePath);
        bytes[LogCommitFile.SlotSize + offset] ^= 0x20; // commit 2 is in slot 1
        File.WriteAllBytes(FilePath, bytes);
        using var reopened = new LogCommitFile(_dir, create: false);
        var e = Assert.Throws<TmemCorruptionException>(() => reopened.ListCommits());
        Assert.Contains("slot 1", e.Message);
        Assert.Contains(FilePath, e.Message);
    }

    [Fact]
    public void MissingOrResizedFile_IsRefusedWithoutCreatingOne()
    {
        Assert.Contains("missing", Assert.Throws<TmemCorruptionException>(() => new LogCommitFile(_dir, create: false)).Message);
        Assert.False(File.Exists(FilePath));
        File.WriteAllBytes(FilePath, new byte[100]);
        Assert.Contains("100 bytes", Assert.Throws<TmemCorruptionException>(() => new LogCommitFile(_dir, create: false)).Message);
    }

    private byte[] Snapshot() => File.ReadAllBytes(FilePath);

    /// <summary>What the store sees in a file with these bytes: the commits newest first, or the refusal.</summary>
    private (long[]? Commits, string? Refusal) Open(byte[] bytes)
    {
        File.WriteAllBytes(FilePath, bytes);
        using var file = new LogCommitFile(_dir, create: false);
        try
        {
            return (file.ListCommits().ToArray(), null);
        }
        catch (TmemCorruptionException e)
        {
            return (null, e.Message);
        }
    }

    [Fact]
    public void EveryStateAPowerCutCanLeave_OpensFromTheNewestCommitWritten()
    {
        // One slot write is in flight at a time and lands whole: a power cut leaves the file as it
        // was before some write or after it, i.e. one of these snapshots.
        var states = new List<(byte[] Bytes, long Newest)>();
        using (var commits = new LogCommitFile(_dir, create: true))
        {
            states.Add((Snapshot(), -1));
            for (int n = 1; n <= 6; n++)
            {
                commits.Commit(0, 0, Metadata(n), n * 10, forceWriteMetadata: false); // numbers need not be consecutive
                states.Add((Snapshot(), n * 10));
            }
        }
        // The offline tool's repair: two writes (the commit, then a genesis slot over the other).
        using (var commits = new LogCommitFile(_dir, create: false))
        {
            var before = Snapshot();
            commits.WriteOnlyCommit(100, Metadata(9));
            var after = Snapshot();
            // The state between its two writes: the repair commit in the older slot, the newest old commit beside it.
            var between = (byte[])before.Clone();
            int olderSlot = BitConverter.ToInt64(before, 8) < BitConverter.ToInt64(before, LogCommitFile.SlotSize + 8) ? 0 : 1;
            after.AsSpan(olderSlot * LogCommitFile.SlotSize, LogCommitFile.SlotSize).CopyTo(between.AsSpan(olderSlot * LogCommitFile.SlotSize));
            states.Add((between, 100));
            states.Add((after, 100));
            Assert.Equal(new long[] { 100 }, commits.ListCommits());
        }
        foreach (var (bytes, newest) in states)
        {
            var (list, refusal) = Open(bytes);
            Assert.Null(refusal);
            Assert.Equal(newest, list!.Length == 0 ? -1 : list[0]);
        }
    }

    [Fact]
    public void ZeroedSlot_OnceBothWereWritten_IsRefusedWhicheverHeldTheNewest()
    {
        using (var commits = new LogCommitFile(_dir, create: true))
            for (int n = 1; n <= 3; n++) commits.Commit(0, 0, Metadata(n), n, forceWriteMetadata: false);
        var bytes = Snapshot();
        for (int slot = 0; slot < 2; slot++)
        {
            var zeroed = (byte[])bytes.Clone();
            zeroed.AsSpan(slot * LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear();
            var (_, refusal) = Open(zeroed);
            Assert.NotNull(refusal);
            Assert.Contains($"slot {slot}", refusal);
            Assert.Contains("all zeros", refusal);
        }
    }

    [Fact]
    public void FirstTwoCommits_ZeroingTheSecond_IsRefused()
    {
        // The state a file holds after its first commit (a commit beside a genesis slot) must not
        // be confused with the second commit's slot zeroed: the first commit's neighbour is genesis, not zeros.
        byte[] afterFirst;
        using (var commits = new LogCommitFile(_dir, create: true))
        {
            commits.Commit(0, 0, Metadata(1), 1, forceWriteMetadata: false);
            afterFirst = Snapshot();
            commits.Commit(0, 0, Metadata(2), 2, forceWriteMetadata: false);
        }
        Assert.Equal(new long[] { 1 }, Open(afterFirst).Commits);
        var bytes = Snapshot();
        bytes.AsSpan(LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear(); // commit 2 is in slot 1
        Assert.Contains("slot 1", Open(bytes).Refusal);
        afterFirst.AsSpan(0, LogCommitFile.SlotSize).Clear(); // the only commit gone, beside a genesis slot
        Assert.Contains("slot 0", Open(afterFirst).Refusal);
    }

    [Fact]
    public void FileOfAnEarlierVersion_WithEmptySlots_StillOpens_AndIsProtectedOnceBothAreWritten()
    {
        // Earlier files were created as zeros and their commits carry no paired flag.
        File.WriteAllBytes(FilePath, new byte[2 * LogCommitFile.SlotSize]);
        using (var commits = new LogCommitFile(_dir, create: false))
        {
            Assert.Empty(commits.ListCommits());
            commits.Commit(0, 0, Metadata(1), 1, forceWriteMetadata: false);
        }
        Assert.Equal(new long[] { 1 }, Open(Snapshot()).Commits); // an empty slot beside an unpaired first commit
        using (var commits = new LogCommitFile(_dir, create: false))
            for (int n = 2; n <= 3; n++) commits.Commit(0, 0, Metadata(n), n, forceWriteMetadata: false);
        var bytes = Snapshot();
        for (int slot = 0; slot < 2; slot++)
        {
            var zeroed = (byte[])bytes.Clone();
            zeroed.AsSpan(slot * LogCommitFile.SlotSize, LogCommitFile.SlotSize).Clear();
            Assert.NotNull(Open(zeroed).Refusal);
        }
        // A zeroed file under a log with no data is given genesis slots.
        File.WriteAllBytes(FilePath, new byte[2 * LogCommitFile.SlotSize]);
        using (new LogCommitFile(_dir, create: true))
        {
        }
        Assert.All(new[] { 0, 1 }, slot => Assert.True(Snapshot().AsSpan(slot * LogCommitFile.SlotSize, LogCommitFile.SlotSize).ContainsAnyExcept((byte)0)));
    }

    [Fact]
    public void Metadata_MustFitTheSlotsFirstSector()
    {
        using var commits = new LogCommitFile(_dir, create: true);
        commits.Commit(0, 0, new byte[LogCommitFile.MaxMetadataLength], 1, forceWriteMetadata: false);
        Assert.Throws<InvalidOperationException>(() => commits.Commit(0, 0, new byte[LogCommitFile.MaxMetadataLength + 1], 2, forceWriteMetadata: false));
        Assert.True(Snapshot().AsSpan(512, LogCommitFile.SlotSize - 512).IndexOfAnyExcept((byte)0) < 0); // slot 0 beyond its first sector: zeros
    }
}
