using Tmem.Client;

namespace Tmem.Service.Tests;

/// <summary>
/// Many requests in flight on one connection: responses sent by the reader (ephemeral puts,
/// gets) and by the writer loop (persistent puts, which wait for the log's commit) interleave,
/// some calls are cancelled, and every answer still reaches its own request.
/// </summary>
[Collection("Service")]
[Trait("Kind", "Integration")]
public sealed class PipeliningTests(ServiceFixture fixture)
{
    private const int Workers = 64;
    private const int Rounds = 30;

    private ServiceProcess Service => fixture.Service;

    [Fact]
    public async Task ManyPipelinedRequests_MixedSenders_WithCancellations_EachAnswerReachesItsRequest()
    {
        await using var connection = await Service.ConnectAsync();
        int ephemeral = await connection.CreatePoolAsync(PoolOptions.Ephemeral);
        int persistent = await connection.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            int cancelled = 0;
            var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
            {
                var oid = new ObjectId(7, (ulong)w, 3);
                var page = new byte[4096];
                for (int round = 0; round < Rounds; round++)
                {
                    var expected = Pages.Make($"w{w}", round);
                    int pool = round % 2 == 0 ? ephemeral : persistent;
                    uint index = (uint)(round % 4);
                    Assert.Equal(PutStatus.Stored, await connection.PutAsync(pool, oid, index, expected));
                    if (round % 4 == 3)
                    {
                        // A get cancelled while in flight (persistent pool: a hit keeps the page;
                        // a private ephemeral pool's get would take it): answered or not, the
                        // calls after it must get their own answers.
                        using var cancel = new CancellationTokenSource();
                        var get = connection.GetAsync(pool, oid, index, new byte[4096], cancel.Token).AsTask();
                        cancel.Cancel();
                        try
                        {
                            await get;
                        }
                        catch (OperationCanceledException)
                        {
                            Interlocked.Increment(ref cancelled);
                        }
                    }
                    page.AsSpan().Clear();
                    Assert.Equal(GetStatus.Hit, await connection.GetAsync(pool, oid, index, page));
                    Assert.Equal(expected, page);
                }
            })).ToArray();
            await Task.WhenAll(workers);
            // The connection is still in step after all that: a fresh request gets its own answer.
            var last = new byte[4096];
            Assert.Equal(PutStatus.Stored, await connection.PutAsync(ephemeral, new ObjectId(8), 0, Pages.Make("last", 1)));
            Assert.Equal(GetStatus.Hit, await connection.GetAsync(ephemeral, new ObjectId(8), 0, last));
            Assert.Equal(Pages.Make("last", 1), last);
        }
        finally
        {
            await connection.DestroyPoolAsync(ephemeral);
            await connection.DestroyPoolAsync(persistent);
        }
    }
}
