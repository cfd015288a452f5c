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
}
