using System.Buffers;
using System.Diagnostics;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Tmem.Client;
using Tmem.Client.Caching;

namespace Tmem.Service.Tests;

/// <summary>
/// The client's <see cref="IDistributedCache"/>/<see cref="IBufferDistributedCache"/> against the
/// real service: HybridCache itself (a client nobody here wrote) using Tmem as its L2 across two
/// applications, values over many pages, expiry as the interface requires, refused values,
/// and a persistent cache that outlives a restart of the service through a reconnecting factory.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class DistributedCacheTests : IAsyncLifetime
{
    private readonly ServiceProcess _service = new("--Tmem:DataDirectory=");

    public Task InitializeAsync() => _service.StartAsync();

    public async Task DisposeAsync() => await _service.DisposeAsync();

    /// <summary>An application's services: the Tmem distributed cache as <paramref name="client"/>, and HybridCache on top.</summary>
    private static ServiceProvider App(ServiceProcess service, string client, Action<TmemDistributedCacheOptions>? configure = null)
    {
        var services = new Microsoft.Extensions.DependencyInjection.ServiceCollection(); // (this namespace has an xunit ServiceCollection)
        services.AddTmemDistributedCache(o =>
        {
            o.PoolUuid = ServiceProcess.SharedUuid; // alice and bob may both use it
            configure?.Invoke(o);
        }, c =>
        {
            c.Address = service.SocketPath;
            c.ClientName = client;
            c.Secret = client + "-secret";
        });
        services.AddHybridCache();
        return services.BuildServiceProvider();
    }

    private static byte[] Text(int length, int seed)
    {
        var random = new Random(seed);
        var words = new[] { "tmem ", "page ", "pool ", "cache ", "hybrid ", "value ", "store " };
        var bytes = new byte[length];
        int at = 0;
        while (at < length)
        {
            var word = System.Text.Encoding.ASCII.GetBytes(words[random.Next(words.Length)]);
            int n = Math.Min(word.Length, length - at);
            word.AsSpan(0, n).CopyTo(bytes.AsSpan(at));
            at += n;
        }
        return bytes;
    }

    [Fact]
    public async Task HybridCache_UsesTmemAsItsL2_AnotherApplicationOfAnotherClientGetsTheValueWithoutItsFactory()
    {
        await using var first = App(_service, "alice");
        await using var second = App(_service, "bob");
        var cache1 = first.GetRequiredService<HybridCache>();
        var cache2 = second.GetRequiredService<HybridCache>();
        Assert.IsType<TmemDistributedCache>(first.GetRequiredService<IDistributedCache>());

        int calls = 0;
        string big = System.Text.Encoding.ASCII.GetString(Text(100_000, 1)); // about 25 pages
        Assert.Equal("v1", await cache1.GetOrCreateAsync("small", _ => { calls++; return ValueTask.FromResult("v1"); }));
        Assert.Equal(big, await cache1.GetOrCreateAsync("big", _ => { calls++; return ValueTask.FromResult(big); }));
        Assert.Equal(2, calls);

        // HybridCache writes its L2 as it returns; wait (bounded) until the other application's Tmem cache has both.
        var l2 = second.GetRequiredService<IDistributedCache>();
        var clock = Stopwatch.StartNew();
        while ((await l2.GetAsync("small") is null || await l2.GetAsync("big") is null) && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);

        // A fresh L1 in another process-like application: the values come from Tmem, not its factory.
        Assert.Equal("v1", await cache2.GetOrCreateAsync<string>("small", _ => throw new InvalidOperationException("the factory ran: L2 missed")));
        Assert.Equal(big, await cache2.GetOrCreateAsync<string>("big", _ => throw new InvalidOperationException("the factory ran: L2 missed")));

        // Removal reaches L2: a third application computes the value again.
        await cache1.RemoveAsync("small");
        await using var third = App(_service, "bob");
        Assert.Equal("v2", await third.GetRequiredService<HybridCache>().GetOrCreateAsync("small", _ => ValueTask.FromResult("v2")));
    }

    [Fact]
    public async Task Values_SpanPagesOfOneObject_EveryLengthAroundPageBoundariesComesBackWhole_ThroughBothInterfaces()
    {
        await using var app = App(_service, "alice", o => o.KeyPrefix = "lengths:");
        var cache = app.GetRequiredService<TmemDistributedCache>();
        int first = cache.FirstPageCapacity, other = PoolOptions.DefaultPageSize - 8;
        foreach (int length in new[] { 0, 1, first - 1, first, first + 1, first + other, first + other + 1, first + 5 * other - 1, 300_000 })
        {
            var value = Text(length, length);
            await cache.SetAsync($"k{length}", value, new DistributedCacheEntryOptions());
            Assert.Equal(value, await cache.GetAsync($"k{length}"));
            var writer = new ArrayBufferWriter<byte>();
            Assert.True(await cache.TryGetAsync($"k{length}", writer));
            Assert.Equal(value, writer.WrittenSpan.ToArray());
        }
        // A shorter value over a longer one leaves nothing of the longer one.
        await cache.SetAsync("k300000", Text(10, 3), new DistributedCacheEntryOptions());
        Assert.Equal(Text(10, 3), cache.Get("k300000"));
        Assert.Null(await cache.GetAsync("never set"));
        Assert.False(cache.TryGet("never set", new ArrayBufferWriter<byte>()));
        await cache.RemoveAsync("k1");
        Assert.Null(await cache.GetAsync("k1"));
    }

    private sealed class ManualClock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public async Task Expiry_AbsoluteRelativeAndSliding_AsTheInterfaceRequires()
    {
        var clock = new ManualClock(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var app = App(_service, "alice", o =>
        {
            o.KeyPrefix = "expiry:";
            o.TimeProvider = clock;
        });
        var cache = app.GetRequiredService<IDistributedCache>();
        var value = Text(9000, 7); // three pages
        var t0 = clock.Now;

        await cache.SetAsync("absolute", value, new DistributedCacheEntryOptions { AbsoluteExpiration = t0.AddSeconds(30) });
        await cache.SetAsync("relative", value, new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = TimeSpan.FromSeconds(10) });
        await cache.SetAsync("sliding", value, new DistributedCacheEntryOptions { SlidingExpiration = TimeSpan.FromSeconds(10) });
        await cache.SetAsync("capped", value, new DistributedCacheEntryOptions { SlidingExpiration = TimeSpan.FromSeconds(10), AbsoluteExpirationRelativeToNow = TimeSpan.FromSeconds(25) });
        await cache.SetAsync("forever", value, new DistributedCacheEntryOptions());

        clock.Now = t0.AddSeconds(8);
        Assert.Equal(value, await cache.GetAsync("relative"));
        Assert.Equal(value, await cache.GetAsync("sliding"));     // moves its deadline to 18 s
        Assert.Equal(value, await cache.GetAsync("capped"));      // to 18 s
        clock.Now = t0.AddSeconds(10);
        Assert.Null(await cache.GetAsync("relative"));
        clock.Now = t0.AddSeconds(16);
        Assert.Equal(value, await cache.GetAsync("sliding"));     // to 26 s
        await cache.RefreshAsync("capped");                        // to 25 s (the absolute cap), not 26
        clock.Now = t0.AddSeconds(25);
        Assert.Equal(value, await cache.GetAsync("sliding"));     // to 35 s
        Assert.Null(await cache.GetAsync("capped"));
        Assert.Equal(value, await cache.GetAsync("absolute"));
        clock.Now = t0.AddSeconds(30);
        Assert.Null(await cache.GetAsync("absolute"));
        clock.Now = t0.AddSeconds(45);
        Assert.Null(await cache.GetAsync("sliding"));             // not read for 20 s
        Assert.Equal(value, await cache.GetAsync("forever"));

        // An expired value is removed from the store, not just hidden: going back in time finds nothing.
        clock.Now = t0;
        Assert.Null(await cache.GetAsync("relative"));
        Assert.Null(await cache.GetAsync("absolute"));

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => cache.SetAsync("past", value, new DistributedCacheEntryOptions { AbsoluteExpiration = t0.AddSeconds(-1) }));
    }

    [Fact]
    public async Task AValueTheStoreRefuses_IsNotCached_AndSetDoesNotThrow()
    {
        await using var app = App(_service, "alice", o => o.KeyPrefix = "refused:");
        var cache = app.GetRequiredService<TmemDistributedCache>();
        var random = new byte[20_000];
        new Random(5).NextBytes(random); // LZ4 cannot compress it: the store refuses its pages
        await cache.SetAsync("k", Text(100, 1), new DistributedCacheEntryOptions());
        await cache.SetAsync("k", random, new DistributedCacheEntryOptions());
        Assert.Equal(1, cache.RefusedSets);
        Assert.Null(await cache.GetAsync("k")); // neither the refused value nor the one it replaced
    }

    [Fact]
    public async Task APersistentCache_OutlivesARestartOfTheService_TheFactoryReconnectsWithBackOff()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        await using var app = App(service, "alice", o => o.PoolKind = PoolKind.Persistent);
        var cache = app.GetRequiredService<IDistributedCache>();
        var factory = app.GetRequiredService<TmemConnectionFactory>();
        var value = Text(20_000, 9);
        await cache.SetAsync("durable", value, new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = TimeSpan.FromHours(1) });
        Assert.Equal(1, factory.Connects);

        Assert.Equal(0, await service.StopAsync());
        // Down: the call fails with IOException (not a hang), and calls within the back-off fail at once.
        await Assert.ThrowsAsync<IOException>(() => cache.GetAsync("durable"));
        var clock = Stopwatch.StartNew();
        await Assert.ThrowsAsync<IOException>(() => cache.GetAsync("durable"));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"a call while the service is down took {clock.Elapsed}");

        await service.StartAsync();
        var connection = await factory.WaitForConnectionAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        Assert.True(connection.IsConnected);
        Assert.Equal(value, await cache.GetAsync("durable"));
        Assert.Equal(2, factory.Connects);
    }

    [Fact]
    public async Task AnEphemeralCache_AfterARestartOfTheService_FindsItsPoolAgainAndWorks()
    {
        await using var service = new ServiceProcess("--Tmem:DataDirectory=");
        await service.StartAsync();
        await using var app = App(service, "alice");
        var cache = app.GetRequiredService<IDistributedCache>();
        await cache.SetAsync("k", Text(100, 2), new DistributedCacheEntryOptions());
        Assert.Equal(0, await service.StopAsync());
        await service.StartAsync();
        await app.GetRequiredService<TmemConnectionFactory>().WaitForConnectionAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        Assert.Null(await cache.GetAsync("k")); // a cache that may forget: the restart forgot it
        await cache.SetAsync("k", Text(100, 3), new DistributedCacheEntryOptions());
        Assert.Equal(Text(100, 3), await cache.GetAsync("k"));
    }

    [Fact]
    public void Options_AreChecked_WhenTheCacheIsMade()
    {
        var factory = new TmemConnectionFactory(new TmemClientOptions());
        Assert.Throws<ArgumentOutOfRangeException>(() => new TmemDistributedCache(factory, Options.Create(new TmemDistributedCacheOptions { PageSize = 1000 })));
        Assert.Throws<ArgumentException>(() => new TmemDistributedCache(factory, Options.Create(new TmemDistributedCacheOptions { PoolUuid = Guid.Empty })));
        Assert.Throws<FormatException>(() => new TmemConnectionFactory(new TmemClientOptions { Address = "tcp:nohost" }));
    }
}
