using Tmem.Client;
using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>DESIGN.md section 3, rule by rule, over the socket of a real service process (durable, Strict).</summary>
[Collection("Service")]
public sealed class ContractOverWireTests(ServiceFixture fixture)
{
    private ServiceProcess Service => fixture.Service;

    private static readonly ObjectId Oid = new(42, 7, 1);

    private static async Task<TmemRemoteException> Refused(Func<Task> call)
    {
        return await Assert.ThrowsAsync<TmemRemoteException>(call);
    }

    [Fact]
    public async Task Rule1_PutMayFail_RefusalIsVisibleAsItsStatus()
    {
        await using var alice = await Service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            Assert.Equal(PutStatus.RejectedPoorCompression, await alice.PutAsync(pool, Oid, 0, Pages.Incompressible(1)));
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 1, Pages.Make("r1", 1)));
            var page = new byte[4096];
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 1, page));
            Assert.Equal(Pages.Make("r1", 1), page);
            // Bad arguments are refused with a status, and the connection carries on.
            var wrongSize = await Refused(() => alice.PutAsync(pool, Oid, 2, new byte[1000]).AsTask());
            Assert.Equal(ProtocolStatus.InvalidArgument, wrongSize.Status);
            var invalidOid = await Refused(() => alice.PutAsync(pool, ObjectId.Invalid, 2, Pages.Make("r1", 2)).AsTask());
            Assert.Equal(ProtocolStatus.InvalidArgument, invalidOid.Status);
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 1, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule2_PutPutCoherency_LaterPutWins_FailedPutFlushesTheOldPage()
    {
        await using var alice = await Service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            var page = new byte[4096];
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 5, Pages.Make("r2", 1)));
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 5, Pages.Make("r2", 2)));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 5, page));
            Assert.Equal(Pages.Make("r2", 2), page);
            Assert.Equal(PutStatus.RejectedPoorCompression, await alice.PutAsync(pool, Oid, 5, Pages.Incompressible(2)));
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 5, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule3_GetGetCoherency_AMissStaysAMissUntilAPut()
    {
        await using var alice = await Service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            var page = new byte[4096];
            await alice.PutAsync(pool, Oid, 0, Pages.Make("r3", 1));
            Assert.True(await alice.FlushPageAsync(pool, Oid, 0));
            for (int i = 0; i < 3; i++) Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, 0, page));
            Assert.False(await alice.FlushPageAsync(pool, Oid, 0));
            await alice.PutAsync(pool, Oid, 0, Pages.Make("r3", 2));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 0, page));
            Assert.Equal(Pages.Make("r3", 2), page);
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Rule4_PrivateEphemeralGetIsExclusive_SharedEphemeralKeepsThePage()
    {
        await using var alice = await Service.ConnectAsync();
        await using var bob = await Service.ConnectAsync("bob");
        int priv = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
        int sharedA = await alice.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        int sharedB = await bob.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        try
        {
            var page = new byte[4096];
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(priv, Oid, 0, Pages.Make("r4", 1)));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(priv, Oid, 0, page));
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(priv, Oid, 0, page));

            // A page alice puts in the shared pool is read by bob, twice: it stays.
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(sharedA, Oid, 0, Pages.Make("r4", 2)));
            Assert.Equal(GetStatus.Hit, await bob.GetAsync(sharedB, Oid, 0, page));
            Assert.Equal(Pages.Make("r4", 2), page);
            Assert.Equal(GetStatus.Hit, await bob.GetAsync(sharedB, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(sharedA, Oid, 0, page));
        }
        finally
        {
            await alice.DestroyPoolAsync(priv);
            await alice.DestroyPoolAsync(sharedA);
            await bob.DestroyPoolAsync(sharedB);
        }
    }

    [Fact]
    public async Task Rule5_PersistentGetKeepsThePage_UnlessExclusiveGets()
    {
        await using var alice = await Service.ConnectAsync();
        int keep = await alice.CreatePoolAsync(PoolOptions.Persistent);
        int swap = await alice.CreatePoolAsync(PoolOptions.Persistent with { ExclusiveGets = true });
        try
        {
            var page = new byte[4096];
            await alice.PutAsync(keep, Oid, 0, Pages.Make("r5", 1));
            await alice.PutAsync(swap, Oid, 0, Pages.Make("r5", 2));
            for (int i = 0; i < 2; i++) Assert.Equal(GetStatus.Hit, await alice.GetAsync(keep, Oid, 0, page));
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(swap, Oid, 0, page));
            Assert.Equal(Pages.Make("r5", 2), page);
            Assert.Equal(GetStatus.Miss, await alice.GetAsync(swap, Oid, 0, page));
            var pools = await alice.GetPoolsAsync();
            Assert.Contains(pools, p => p.PoolId == swap && p.ExclusiveGets && p.Kind == PoolKind.Persistent);
        }
        finally
        {
            await alice.DestroyPoolAsync(keep);
            await alice.DestroyPoolAsync(swap);
        }
    }

    [Fact]
    public async Task Rule6_FlushObjectRemovesEveryPage_DestroyedPoolIsUnusable()
    {
        await using var alice = await Service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        var other = new ObjectId(43);
        for (uint i = 0; i < 10; i++) await alice.PutAsync(pool, Oid, i, Pages.Make("r6", (int)i));
        await alice.PutAsync(pool, other, 0, Pages.Make("r6o", 0));
        Assert.Equal(10, await alice.FlushObjectAsync(pool, Oid));
        Assert.Equal(0, await alice.FlushObjectAsync(pool, Oid));
        var page = new byte[4096];
        for (uint i = 0; i < 10; i++) Assert.Equal(GetStatus.Miss, await alice.GetAsync(pool, Oid, i, page));
        Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, other, 0, page));
        await alice.DestroyPoolAsync(pool);
        var gone = await Refused(() => alice.GetAsync(pool, other, 0, page).AsTask());
        Assert.Contains(gone.Status, new[] { ProtocolStatus.PoolNotFound, ProtocolStatus.PoolOfAnotherClient });
        Assert.Equal(ProtocolStatus.PoolNotFound, (await Refused(() => alice.DestroyPoolAsync(1000))).Status);
    }

    [Fact]
    public async Task Rule7_Isolation_AnotherClientsPoolIdIsItsOwnStatus_AndItsPagesAreUnreachable()
    {
        await using var alice = await Service.ConnectAsync();
        await using var carol = await Service.ConnectAsync("carol");
        int pool = await alice.CreatePoolAsync(PoolOptions.Persistent);
        try
        {
            await alice.PutAsync(pool, Oid, 0, Pages.Make("r7", 1));
            var page = new byte[4096];
            // carol has no pool under alice's id: the answer says it is another client's, and nothing leaks.
            var refused = await Refused(() => carol.GetAsync(pool, Oid, 0, page).AsTask());
            Assert.Equal(ProtocolStatus.PoolOfAnotherClient, refused.Status);
            Assert.Equal(ProtocolStatus.PoolOfAnotherClient, (await Refused(() => carol.PutAsync(pool, Oid, 0, Pages.Make("x", 0)).AsTask())).Status);
            Assert.Equal(ProtocolStatus.PoolOfAnotherClient, (await Refused(() => carol.FlushObjectAsync(pool, Oid).AsTask())).Status);
            Assert.Equal(ProtocolStatus.PoolOfAnotherClient, (await Refused(() => carol.DestroyPoolAsync(pool))).Status);
            Assert.Equal(ProtocolStatus.PoolNotFound, (await Refused(() => carol.GetAsync(9999, Oid, 0, page).AsTask())).Status);
            Assert.All(page, b => Assert.Equal(0, b));
            // carol's own pool under (possibly) the same id number is a different pool.
            int own = await carol.CreatePoolAsync(PoolOptions.Persistent);
            try
            {
                Assert.Equal(GetStatus.Miss, await carol.GetAsync(own, Oid, 0, page));
                // A shared pool not in carol's allow list.
                var notAllowed = await Refused(() => carol.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid }));
                Assert.Equal(ProtocolStatus.SharedPoolNotAllowed, notAllowed.Status);
                var forbidden = await Refused(() => alice.CreatePoolAsync(PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.ForbiddenUuid }));
                Assert.Equal(ProtocolStatus.SharedPoolNotAllowed, forbidden.Status);
            }
            finally
            {
                await carol.DestroyPoolAsync(own);
            }
            Assert.Equal(GetStatus.Hit, await alice.GetAsync(pool, Oid, 0, page));
            Assert.Equal(Pages.Make("r7", 1), page);
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }

    [Fact]
    public async Task Limits_PoolsPerClient_FrameSize_InFlight()
    {
        await using var carol = await Service.ConnectAsync("carol");
        Assert.Equal(2, carol.MaxPools);
        Assert.Equal(4, carol.MaxInFlight);
        int a = await carol.CreatePoolAsync(PoolOptions.Ephemeral);
        int b = await carol.CreatePoolAsync(PoolOptions.Ephemeral);
        try
        {
            Assert.Equal(ProtocolStatus.PoolLimitReached, (await Refused(() => carol.CreatePoolAsync(PoolOptions.Ephemeral))).Status);
            // 16 KiB pages need frames over carol's 8 KiB limit.
            Assert.Equal(ProtocolStatus.InvalidArgument, (await Refused(() => carol.CreatePoolAsync(PoolOptions.Ephemeral with { PageSize = 16384 }))).Status);
            // Many requests at once: never more than 4 in flight, all answered.
            var puts = Enumerable.Range(0, 200).Select(i => carol.PutAsync(a, new ObjectId((ulong)i), 0, Pages.Make("lim", i)).AsTask()).ToArray();
            Assert.All(await Task.WhenAll(puts), s => Assert.Equal(PutStatus.Stored, s));
        }
        finally
        {
            await carol.DestroyPoolAsync(a);
            await carol.DestroyPoolAsync(b);
        }
    }

    [Fact]
    public async Task Rule8_ConcurrentClients_PipelinedRequests_EachSeesItsOwnPages()
    {
        await using var bob = await Service.ConnectAsync("bob");
        int shared = await bob.CreatePoolAsync(PoolOptions.Persistent with { SharedUuid = ServiceProcess.SharedUuid });
        var clients = new List<TmemConnection>();
        try
        {
            for (int c = 0; c < 4; c++) clients.Add(await Service.ConnectAsync(c % 2 == 0 ? "alice" : "bob"));
            // Each connection pipelines puts and gets of its own objects in the one shared pool,
            // which every alice and bob connection maps (bob's id here; alice joins under hers).
            await using var aliceJoin = await Service.ConnectAsync();
            int aliceShared = await aliceJoin.CreatePoolAsync(PoolOptions.Persistent with { SharedUuid = ServiceProcess.SharedUuid });
            try
            {
                var work = clients.Select((conn, c) => Task.Run(async () =>
                {
                    int pool = c % 2 == 0 ? aliceShared : shared;
                    var puts = new List<Task<PutStatus>>();
                    for (int i = 0; i < 300; i++)
                        puts.Add(conn.PutAsync(pool, new ObjectId((ulong)(1000 + c)), (uint)i, Pages.Make($"c{c}", i)).AsTask());
                    Assert.All(await Task.WhenAll(puts), s => Assert.Equal(PutStatus.Stored, s));
                    var pages = Enumerable.Range(0, 300).Select(_ => new byte[4096]).ToArray();
                    var gets = Enumerable.Range(0, 300).Select(i => conn.GetAsync(pool, new ObjectId((ulong)(1000 + c)), (uint)i, pages[i]).AsTask()).ToArray();
                    Assert.All(await Task.WhenAll(gets), s => Assert.Equal(GetStatus.Hit, s));
                    for (int i = 0; i < 300; i++) Assert.Equal(Pages.Make($"c{c}", i), pages[i]);
                })).ToArray();
                await Task.WhenAll(work);
                var stats = (await bob.GetStatsAsync()).ToDictionary(kv => kv.Key, kv => kv.Value);
                Assert.True(stats["pers_pages"] >= 1200, $"pers_pages {stats["pers_pages"]}");
            }
            finally
            {
                await aliceJoin.DestroyPoolAsync(aliceShared);
            }
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
            await bob.DestroyPoolAsync(shared);
        }
    }

    [Fact]
    public async Task Handshake_WrongSecret_UnknownName_AreRefused()
    {
        var wrong = await Assert.ThrowsAsync<TmemRemoteException>(() => TmemConnection.ConnectAsync(Service.SocketPath, "alice", "not-her-secret"));
        Assert.Equal(ProtocolStatus.AuthenticationFailed, wrong.Status);
        var unknown = await Assert.ThrowsAsync<TmemRemoteException>(() => TmemConnection.ConnectAsync(Service.SocketPath, "mallory", "x"));
        Assert.Equal(ProtocolStatus.AuthenticationFailed, unknown.Status);
        await using var alice = await Service.ConnectAsync();
        Assert.Equal(1, alice.ClientId);
    }

    [Fact]
    public async Task Cancellation_StopsTheWait_TheConnectionCarriesOn()
    {
        await using var alice = await Service.ConnectAsync();
        int pool = await alice.CreatePoolAsync(PoolOptions.Ephemeral);
        try
        {
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => alice.GetAsync(pool, Oid, 0, new byte[4096], cancelled.Token).AsTask());
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(pool, Oid, 0, Pages.Make("cancel", 1)));
        }
        finally
        {
            await alice.DestroyPoolAsync(pool);
        }
    }
}
