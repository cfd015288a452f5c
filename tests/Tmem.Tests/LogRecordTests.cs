using System.Text;
using Tmem.LogTier;

namespace Tmem.Tests;

[Trait("Kind", "Unit")]
public class LogRecordTests
{
    [Fact]
    public void Crc32C_KnownVector_MatchesTheStandard()
    {
        // The CRC-32C check value (RFC 3720 / the CRC catalogue): "123456789" -> 0xE3069283.
        Assert.Equal(0xE3069283u, LogRecord.Crc32C(Encoding.ASCII.GetBytes("123456789")));
        Assert.Equal(0u, LogRecord.Crc32C(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void WriteThenRead_RoundTripsEveryField()
    {
        var payload = Enumerable.Range(0, 37).Select(i => (byte)(i * 7)).ToArray();
        var buffer = new byte[LogRecord.SizeOf(payload.Length)];
        var oid = new ObjectId(1, 0xFFFF_0000_1234_5678, 3);
        LogRecord.Write(buffer, LogRecordType.Put, LogRecordFlags.SameFilled, 42, oid, 9, payload);

        Assert.True(LogRecord.TryRead(buffer, out var record, out var error));
        Assert.Null(error);
        Assert.Equal(LogRecordType.Put, record.Type);
        Assert.Equal(LogRecordFlags.SameFilled, record.Flags);
        Assert.Equal(42u, record.PoolSerial);
        Assert.Equal(oid, record.ObjectId);
        Assert.Equal(9u, record.Index);
        Assert.Equal(payload, record.Payload.ToArray());
    }

    [Fact]
    public void TryRead_AnyFlippedBit_IsRejected()
    {
        var buffer = new byte[LogRecord.SizeOf(16)];
        LogRecord.Write(buffer, LogRecordType.FlushPage, LogRecordFlags.None, 7, new ObjectId(5), 1, new byte[16]);
        for (int bit = 0; bit < buffer.Length * 8; bit++)
        {
            var damaged = (byte[])buffer.Clone();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(LogRecord.TryRead(damaged, out _, out var error));
            Assert.False(string.IsNullOrEmpty(error));
        }
        Assert.False(LogRecord.TryRead(buffer.AsSpan(0, 40), out _, out var shortError));
        Assert.Contains("shorter", shortError);
    }

    [Fact]
    public void PoolRecord_RoundTrips()
    {
        var record = new PoolRecord(3, 15, 16384, true, Guid.NewGuid());
        var bytes = new byte[PoolRecord.Size];
        record.Write(bytes);
        Assert.Equal(record, PoolRecord.Read(bytes));
        var priv = new PoolRecord(1, 0, 4096, false, null);
        priv.Write(bytes);
        Assert.Equal(priv, PoolRecord.Read(bytes));
        Assert.Throws<InvalidDataException>(() => PoolRecord.Read(bytes.AsSpan(0, 35)));
    }

    [Theory]
    [InlineData(1000, 1000, true)]                         // back to back
    [InlineData(4194304 - 40, 4194304, true)]              // padding at a page end
    [InlineData(4194304 - 1188, 4194304, true)]            // padding larger than the page's first entry: another appender's entry did not fit
    [InlineData(4194304 - 65000, 4194304, true)]           // up to the largest entry
    [InlineData(4194304 - 70000, 4194304, false)]          // more than any entry: zeroed records
    [InlineData(1000, 1200, false)]                        // a gap inside a page
    [InlineData(1000, 900, false)]                         // overlap
    public void FollowsOn_AcceptsOnlyBackToBackEntriesOrPagePadding(long expected, long address, bool ok) =>
        Assert.Equal(ok, LogFraming.FollowsOn(expected, address));
}
