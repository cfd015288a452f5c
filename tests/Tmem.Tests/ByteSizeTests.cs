namespace Tmem.Tests;

[Trait("Kind", "Unit")]
public sealed class ByteSizeTests
{
    [Theory]
    [InlineData("268435456", 268435456L)]
    [InlineData("256MiB", 256L << 20)]
    [InlineData("4GiB", 4L << 30)]
    [InlineData("64 KiB", 64L << 10)]
    [InlineData("1.5gib", 3L << 29)]
    [InlineData("2G", 2L << 30)]
    [InlineData("512B", 512L)]
    [InlineData("1TB", 1L << 40)]
    public void TryParse_BytesOrANumberWithAUnit(string text, long expected)
    {
        Assert.True(ByteSize.TryParse(text, out long bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData("MiB")]
    [InlineData("12XB")]
    [InlineData("1.5")]
    [InlineData("0.3B")]
    [InlineData("99999999999TiB")]
    public void TryParse_RefusesWhatIsNotASize(string text) => Assert.False(ByteSize.TryParse(text, out _));

    [Theory]
    [InlineData(512L, "512 B")]
    [InlineData(256L << 20, "256 MiB")]
    [InlineData(3L << 29, "1.5 GiB")]
    public void Format_IsReadable(long bytes, string expected) => Assert.Equal(expected, ByteSize.Format(bytes));
}
