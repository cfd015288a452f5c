namespace Tmem.Service.Tests;

/// <summary>
/// A block device cannot refuse a write the way a tmem put may fail: a persistent export whose
/// store is full answers ENOSPC (docs/nbd.md, "Exports"), keeps every write it acknowledged,
/// still takes overwrites of its pages, and takes new ones again once TRIM frees room.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class NbdFullStoreTests
{
    private const int P = 4096;

    private static byte[] Random(int pages, int seed)
    {
        var bytes = new byte[pages * P];
        new Random(seed).NextBytes(bytes); // incompressible: stored whole, never refused for its contents
        return bytes;
    }

    [Fact]
    public async Task AFullStore_AnswersEnospc_KeepsWhatItAcknowledged_AndTakesWritesAgainAfterTrim()
    {
        // 64 persistent pages: the export's header page and 63 blocks.
        await using var server = new NbdServer("--Tmem:MaxPersistentPages=64");
        await server.StartAsync();
        using var c = new NbdWire(server.Socket);
        c.Open("disk");
        var written = new List<(ulong Offset, byte[] Data)>();
        NbdWire.Reply? refused = null;
        for (int i = 0; i < 8; i++)
        {
            var data = Random(16, i);
            ulong offset = (ulong)(i * 16 * P);
            refused = c.Call(NbdWire.CmdWrite, offset, (uint)data.Length, NbdWire.FlagFua, data);
            if (refused.Error != 0) break;
            written.Add((offset, data));
        }
        Assert.Equal(3, written.Count); // 48 blocks fit, the next 16 do not
        Assert.NotNull(refused);
        Assert.True(refused.Error == NbdWire.ENOSPC, $"expected ENOSPC, got {refused.Error} '{refused.Message}'");
        Assert.Contains("Tmem:MaxPersistentPages", refused.Message);

        // Everything acknowledged is there; overwriting a stored page still works.
        foreach (var (offset, data) in written) Assert.Equal(data, c.Read(offset, (uint)data.Length));
        var again = Random(1, 99);
        c.Write(0, again, NbdWire.FlagFua);
        Assert.Equal(again, c.Read(0, P));

        // TRIM frees 16 blocks; a write of 16 new ones is taken.
        Assert.Equal(0u, c.Call(NbdWire.CmdTrim, 16 * P, 16 * P).Error);
        var late = Random(16, 100);
        Assert.Equal(0u, c.Call(NbdWire.CmdWrite, 48 * P, (uint)late.Length, NbdWire.FlagFua, late).Error);
        Assert.Equal(late, c.Read(48 * P, 16 * P));
        Assert.Equal(new byte[16 * P], c.Read(16 * P, 16 * P));
        Assert.Equal(written[2].Data, c.Read(32 * P, 16 * P));
    }
}
