namespace Tmem.Tests;

/// <summary>The engine's async surface: <c>await using</c> a store, and cancellation tokens on every async method.</summary>
[Trait("Kind", "Unit")]
public sealed class AsyncApiTests
{
    [Fact]
    public async Task DisposeAsync_OfADurableStore_CommitsAndTheNextOpenHasThePool()
    {
        string dir = Directory.CreateTempSubdirectory("tmem-async-").FullName;
        try
        {
            var page = TestPages.Compressible(4096, 1);
            int pool;
            await using (var store = TmemStore.Open(new TmemOptions { DataDirectory = dir }, out _))
            {
                var client = store.GetClient(1);
                pool = client.CreatePool(PoolOptions.Persistent);
                Assert.Equal(PutStatus.Stored, await client.PutAsync(pool, TestPages.Oid(1), 0, page, CancellationToken.None));
            }
            await using (var again = TmemStore.Open(new TmemOptions { DataDirectory = dir }, out var report))
            {
                Assert.Equal(1, report.PagesRecovered);
                var buffer = new byte[4096];
                Assert.Equal(GetStatus.Hit, await again.GetClient(1).GetAsync(pool, TestPages.Oid(1), 0, buffer, CancellationToken.None));
                Assert.Equal(page, buffer);
                await again.DisposeAsync();
                await again.DisposeAsync(); // twice is harmless
                Assert.Throws<ObjectDisposedException>(() => again.GetClient(1).Put(pool, TestPages.Oid(2), 0, page));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ACancelledToken_StopsEveryAsyncMethodBeforeItDoesAnything()
    {
        await using var store = Stores.Open();
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Persistent);
        var page = TestPages.Compressible(4096, 2);
        Assert.Equal(PutStatus.Stored, client.Put(pool, TestPages.Oid(1), 0, page));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.PutAsync(pool, TestPages.Oid(2), 0, page, cancelled.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.FlushPageAsync(pool, TestPages.Oid(1), 0, cancelled.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.FlushObjectAsync(pool, TestPages.Oid(1), cancelled.Token).AsTask());
        var buffer = new byte[4096];
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetAsync(pool, TestPages.Oid(1), 0, buffer, cancelled.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.WaitForCommitAsync(cancelled.Token).AsTask());

        // Nothing was put, flushed or read.
        Assert.Equal(GetStatus.Miss, client.Get(pool, TestPages.Oid(2), 0, buffer));
        Assert.All(buffer, b => Assert.Equal(0, b));
        Assert.Equal(GetStatus.Hit, client.Get(pool, TestPages.Oid(1), 0, buffer));
    }
}
