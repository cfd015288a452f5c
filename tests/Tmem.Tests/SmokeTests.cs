namespace Tmem.Tests;

public class SmokeTests
{
    [Fact]
    public void PutThenGet_ReturnsSameBytes()
    {
        using var store = TmemStore.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        var page = new byte[4096];
        for (int i = 0; i < page.Length; i++) page[i] = (byte)(i % 251 ^ i / 97);
        Assert.Equal(PutStatus.Stored, client.Put(pool, new ObjectId(7), 3, page));
        var back = new byte[4096];
        Assert.Equal(GetStatus.Hit, client.Get(pool, new ObjectId(7), 3, back));
        Assert.Equal(page, back);
    }
}
