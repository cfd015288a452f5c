using Tmem.Client;
using Tmem.Protocol;
using Tmem.Tests;

namespace Tmem.Service.Tests;

/// <summary>
/// The shared contract suite (<see cref="ContractSuite"/>, tests/Tmem.Tests/ContractTests.cs) over
/// the socket of a real service process (durable, Strict), through <see cref="TmemConnection"/>;
/// then what only the service has: isolation as its statuses tell it, the configured clients'
/// limits and allow lists, the handshake, cancellation.
/// </summary>
[Collection("Service")]
[Trait("Kind", "Integration")]
public sealed class ContractOverWireTests(ServiceFixture fixture) : ContractSuite
{
    private ServiceProcess Service => fixture.Service;

    protected override async Task<IContractClient> ConnectAsync(string name = "alice") => new WireClient(await Service.ConnectAsync(name));

    private static readonly ObjectId Oid = new(42, 7, 1);

    private static async Task<TmemRemoteException> Refused(Func<Task> call)
    {
        return await Assert.ThrowsAsync<TmemRemoteException>(call);
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

    /// <summary><see cref="TmemConnection"/> as the suite drives it; each status maps to one <see cref="ContractError"/>.</summary>
    private sealed class WireClient(TmemConnection connection) : IContractClient
    {
        public int ClientId => connection.ClientId;

        private static ContractException Map(TmemRemoteException e) => new(e.Status switch
        {
            ProtocolStatus.InvalidArgument => ContractError.InvalidArgument,
            ProtocolStatus.PoolNotFound => ContractError.PoolNotFound,
            ProtocolStatus.PoolOfAnotherClient => ContractError.PoolOfAnotherClient,
            ProtocolStatus.PoolLimitReached => ContractError.PoolLimitReached,
            ProtocolStatus.SharedPoolMismatch => ContractError.SharedPoolMismatch,
            ProtocolStatus.SharedPoolAlreadyJoined => ContractError.SharedPoolAlreadyJoined,
            _ => ContractError.Other,
        }, e.Message);

        private static async ValueTask<T> Call<T>(Func<ValueTask<T>> call)
        {
            try
            {
                return await call();
            }
            catch (TmemRemoteException e)
            {
                throw Map(e);
            }
        }

        public Task<int> CreatePoolAsync(PoolOptions options) => Call(async () => await connection.CreatePoolAsync(options)).AsTask();

        public Task DestroyPoolAsync(int poolId) => Call(async () =>
        {
            await connection.DestroyPoolAsync(poolId);
            return true;
        }).AsTask();

        public ValueTask<PutStatus> PutAsync(int poolId, ObjectId objectId, uint index, byte[] page) => Call(() => connection.PutAsync(poolId, objectId, index, page));

        public ValueTask<GetStatus> GetAsync(int poolId, ObjectId objectId, uint index, byte[] page) => Call(() => connection.GetAsync(poolId, objectId, index, page));

        public ValueTask<bool> FlushPageAsync(int poolId, ObjectId objectId, uint index) => Call(() => connection.FlushPageAsync(poolId, objectId, index));

        public ValueTask<int> FlushObjectAsync(int poolId, ObjectId objectId) => Call(() => connection.FlushObjectAsync(poolId, objectId));

        public Task<IReadOnlyList<PoolInfo>> GetPoolsAsync() => connection.GetPoolsAsync();

        public async Task<IReadOnlyDictionary<string, long>> GetStatsAsync() => (await connection.GetStatsAsync()).ToDictionary(kv => kv.Key, kv => kv.Value);

        public ValueTask DisposeAsync() => connection.DisposeAsync();
    }
}
