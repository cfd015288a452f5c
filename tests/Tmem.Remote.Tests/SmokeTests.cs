namespace Tmem.Remote.Tests;

[Trait("Kind", "Remote")]
public sealed class SmokeTests(GarnetFixture garnet) : IClassFixture<GarnetFixture>
{
    [Fact]
    public void Cluster_Answers()
    {
        var db = garnet.Connection.GetDatabase();
        for (int i = 0; i < 50; i++) db.StringSet("k" + i, "v" + i);
        for (int i = 0; i < 50; i++) Assert.Equal("v" + i, (string?)db.StringGet("k" + i));
    }
}
