using System.Buffers.Binary;
using System.Text;

namespace Tmem.Remote.Tests;

/// <summary>Pages that name their handle and version, so any wrong or stale page is recognized.</summary>
public static class RemotePages
{
    public const int PageSize = 4096;

    /// <summary>A page of (tag, version): a 1 KiB random prefix seeded by both (so about 1.1 KiB compressed), then the name repeated.</summary>
    public static byte[] Page(string tag, long version)
    {
        var page = new byte[PageSize];
        new Random(HashCode.Combine(tag, version)).NextBytes(page.AsSpan(0, 1024));
        byte[] name = Encoding.ASCII.GetBytes($"[{tag} v{version}]");
        for (int at = 1024; at < PageSize; at += name.Length)
            name.AsSpan(0, Math.Min(name.Length, PageSize - at)).CopyTo(page.AsSpan(at));
        BinaryPrimitives.WriteInt64LittleEndian(page.AsSpan(1024 - 8), version);
        return page;
    }

    /// <summary>What a page says it is (for a failure message).</summary>
    public static string Describe(byte[] page)
    {
        int end = Array.IndexOf(page, (byte)']', 1024);
        return end < 0 ? "(not a test page)" : Encoding.ASCII.GetString(page, 1024, end - 1023);
    }

    public static ObjectId Oid(int n) => new((ulong)n, 0xC0FFEE, 13);

    /// <summary>Waits until the writeback queue is empty (every queued write answered).</summary>
    public static void WaitWritten(TmemStore store)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.GetStats().RemoteQueueBytes != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the writeback queue did not drain");
            Thread.Sleep(5);
        }
    }
}
