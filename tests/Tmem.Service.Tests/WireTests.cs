using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>The shared wire code (tiers/Contracts/Protocol) on its own: the frame reader both sides use, handles, pool entries.</summary>
[Trait("Kind", "Unit")]
public sealed class WireTests
{
    private static byte[] Frame(uint id, int payloadBytes)
    {
        var payload = new byte[payloadBytes];
        for (int i = 0; i < payload.Length; i++) payload[i] = (byte)(id + i);
        return RawSocket.Frame((byte)Opcode.Put, id, payload);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4096)]
    [InlineData(100_000)]
    public void FrameReader_FramesCutAtAnyReceiveBoundary_ComeOutWholeAndInOrder(int chunk)
    {
        var frames = Enumerable.Range(0, 50).Select(i => Frame((uint)i, (i * 977) % 70_000)).ToList();
        var stream = frames.SelectMany(f => f).ToArray();
        using var reader = new FrameReader(1024);
        var seen = new List<byte[]>();
        for (int at = 0; at < stream.Length;)
        {
            var room = reader.GetReceiveMemory();
            int n = Math.Min(Math.Min(chunk, room.Length), stream.Length - at);
            stream.AsSpan(at, n).CopyTo(room.Span);
            reader.Advance(n);
            at += n;
            while (reader.TryRead(1 << 20, out var frame, out _) == FrameResult.Complete) seen.Add(frame.ToArray());
            if (reader.Buffered == 0) Assert.True(reader.ReleaseIfEmpty());
        }
        Assert.Equal(frames.Count, seen.Count);
        for (int i = 0; i < frames.Count; i++) Assert.Equal(frames[i], seen[i]);
        Assert.False(reader.HoldsBuffer);
    }

    [Fact]
    public void FrameReader_HoldsNoBufferWhenEmpty_AndTellsBadLengthsWithoutConsuming()
    {
        using var reader = new FrameReader(1024);
        Assert.False(reader.HoldsBuffer);
        Assert.Equal(FrameResult.Incomplete, reader.TryRead(1024, out _, out int none));
        Assert.Equal(-1, none);
        var room = reader.GetReceiveMemory();
        Assert.True(reader.HoldsBuffer);
        Assert.True(room.Length >= 1024);
        new byte[] { 3, 0, 0, 0, 1 }.CopyTo(room.Span);
        reader.Advance(5);
        Assert.Equal(FrameResult.TooShort, reader.TryRead(1024, out _, out int shortLength));
        Assert.Equal(3, shortLength);
        Assert.Equal(5, reader.Buffered);
        Assert.False(reader.ReleaseIfEmpty());
        reader.Dispose();
        var big = Frame(9, 2000);
        big.AsSpan(0, 12).CopyTo(reader.GetReceiveMemory().Span);
        reader.Advance(12);
        Assert.Equal(FrameResult.TooLarge, reader.TryRead(1024, out _, out int largeLength));
        Assert.Equal(big.Length, largeLength);
        // Under a larger limit the buffer grows to the frame's length.
        Assert.Equal(FrameResult.Incomplete, reader.TryRead(4096, out _, out _));
        var rest = reader.GetReceiveMemory();
        Assert.True(rest.Length >= big.Length - 12);
        big.AsSpan(12).CopyTo(rest.Span);
        reader.Advance(big.Length - 12);
        Assert.Equal(FrameResult.Complete, reader.TryRead(4096, out var frame, out _));
        Assert.Equal(big, frame.ToArray());
        Assert.True(reader.ReleaseIfEmpty());
    }

    [Fact]
    public void Handle_And_PoolEntry_RoundTrip()
    {
        var handle = new byte[Wire.HandleSize];
        Wire.WriteHandle(handle, 7, new ObjectId(1, 2, 3), 99);
        Wire.ReadHandle(handle, out int pool, out var oid, out uint index);
        Assert.Equal((7, new ObjectId(1, 2, 3), 99u), (pool, oid, index));

        var uuid = Guid.NewGuid();
        foreach (var (info, flags) in new[]
        {
            (new PoolInfo(0, PoolKind.Ephemeral, 4096, null, true, 5), (byte)0),
            (new PoolInfo(1, PoolKind.Ephemeral, 512, uuid, false, 0), Wire.FlagShared),
            (new PoolInfo(2, PoolKind.Persistent, 65536, null, false, 1), (byte)0),
            (new PoolInfo(3, PoolKind.Persistent, 8192, uuid, true, 2), (byte)(Wire.FlagShared | Wire.FlagExclusiveGets)),
        })
        {
            var entry = new byte[Wire.PoolEntrySize];
            Wire.WritePoolEntry(entry, info);
            Assert.Equal(flags, entry[5]);
            Assert.Equal(info, Wire.ReadPoolEntry(entry));
            var create = new byte[Wire.CreatePoolSize];
            Wire.WriteCreatePool(create, Wire.ToCreateOptions(info));
            Assert.Equal(Wire.ToCreateOptions(info), Wire.ReadCreatePool(create, out string? error));
            Assert.Null(error);
        }
    }
}
