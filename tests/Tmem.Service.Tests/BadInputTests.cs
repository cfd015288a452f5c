using System.Buffers.Binary;
using System.Diagnostics;
using Tmem.Client;
using Tmem.Protocol;

namespace Tmem.Service.Tests;

/// <summary>
/// Bad input over the socket: each case gets an answer (or, for a frame that cannot be trusted,
/// an answer and then a closed connection), and only that connection is affected: a bystander
/// client keeps working and keeps its data.
/// </summary>
[Collection("Service")]
public sealed class BadInputTests(ServiceFixture fixture) : IAsyncLifetime
{
    private static readonly ObjectId Oid = new(77);
    private ServiceProcess Service => fixture.Service;
    private TmemConnection _bystander = null!;
    private int _pool;

    public async Task InitializeAsync()
    {
        _bystander = await Service.ConnectAsync("bob");
        _pool = await _bystander.CreatePoolAsync(PoolOptions.Persistent);
        for (uint i = 0; i < 8; i++) Assert.Equal(PutStatus.Stored, await _bystander.PutAsync(_pool, Oid, i, Pages.Make("bystander", (int)i)));
    }

    public async Task DisposeAsync()
    {
        await _bystander.DestroyPoolAsync(_pool);
        await _bystander.DisposeAsync();
    }

    /// <summary>The bystander's pages are all there and it can still write.</summary>
    private async Task AssertBystanderUnharmed()
    {
        var page = new byte[4096];
        for (uint i = 0; i < 8; i++)
        {
            Assert.Equal(GetStatus.Hit, await _bystander.GetAsync(_pool, Oid, i, page));
            Assert.Equal(Pages.Make("bystander", (int)i), page);
        }
        Assert.Equal(PutStatus.Stored, await _bystander.PutAsync(_pool, Oid, 100, Pages.Make("bystander", 100)));
    }

    private RawSocket Authenticated()
    {
        var raw = new RawSocket(Service.SocketPath);
        raw.Send(RawSocket.Hello("alice", "alice-secret"));
        var (opcode, status, _, payload) = raw.Receive();
        Assert.Equal(Wire.ResponseBit | (byte)Opcode.Hello, opcode);
        Assert.Equal(ProtocolStatus.Ok, status);
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(4)));
        return raw;
    }

    [Fact]
    public async Task GarbageBeforeTheHandshake_GetsAnErrorAndTheConnectionCloses()
    {
        using (var raw = new RawSocket(Service.SocketPath))
        {
            raw.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8); // "GET " read as a length: far over 1024
            string message = raw.ReceiveError(ProtocolStatus.FrameTooLarge);
            Assert.Contains("before the handshake", message);
            Assert.True(raw.IsClosedByServer());
        }
        using (var raw = new RawSocket(Service.SocketPath))
        {
            raw.Send(RawSocket.Frame((byte)Opcode.Stats, 5, []));
            raw.ReceiveError(ProtocolStatus.HandshakeRequired);
            Assert.True(raw.IsClosedByServer());
        }
        using (var raw = new RawSocket(Service.SocketPath))
        {
            raw.Send([3, 0, 0, 0, 1, 1, 1, 1]); // length 3: under the header
            raw.ReceiveError(ProtocolStatus.MalformedFrame);
            Assert.True(raw.IsClosedByServer());
        }
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task WrongVersion_WrongSecret_AreAnsweredThenClosed()
    {
        using (var raw = new RawSocket(Service.SocketPath))
        {
            raw.Send(RawSocket.Hello("alice", "alice-secret", version: 99));
            Assert.Contains("version 1", raw.ReceiveError(ProtocolStatus.UnsupportedVersion));
            Assert.True(raw.IsClosedByServer());
        }
        using (var raw = new RawSocket(Service.SocketPath))
        {
            raw.Send(RawSocket.Hello("alice", "guess"));
            raw.ReceiveError(ProtocolStatus.AuthenticationFailed);
            Assert.True(raw.IsClosedByServer());
        }
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task UnknownOpcode_AndBadPayloads_AreAnswered_TheConnectionStaysUsable()
    {
        using var raw = Authenticated();
        raw.Send(RawSocket.Frame(0x7e, 11, [1, 2, 3]));
        var (opcode, status, id, _) = raw.Receive();
        Assert.Equal((0x7e | Wire.ResponseBit, ProtocolStatus.UnknownOpcode, 11u), (opcode, status, id));
        raw.Send(RawSocket.Frame((byte)Opcode.Get, 12, [1, 2, 3])); // a get needs 32 payload bytes
        Assert.Contains("32", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        raw.Send(RawSocket.Frame((byte)Opcode.Hello, 13, []));
        raw.ReceiveError(ProtocolStatus.AlreadyAuthenticated);
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 14, new byte[24] { 9, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }));
        Assert.Contains("pool kind 9", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        // Still usable: stats answers.
        raw.Send(RawSocket.Frame((byte)Opcode.Stats, 15, []));
        var stats = raw.Receive();
        Assert.Equal((ProtocolStatus.Ok, 15u), (stats.Status, stats.RequestId));
        Assert.Contains(Wire.ReadStats(stats.Payload), kv => kv.Key == "pers_pages");
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task NonZeroReservedBytes_OversizedLength_TruncatedFrame_CloseOnlyThatConnection()
    {
        using (var raw = Authenticated())
        {
            raw.Send(RawSocket.Frame((byte)Opcode.Stats, 21, [], status: 7));
            raw.ReceiveError(ProtocolStatus.MalformedFrame);
            Assert.True(raw.IsClosedByServer());
        }
        using (var raw = Authenticated())
        {
            var header = new byte[Wire.HeaderSize];
            Wire.WriteHeader(header, 100 << 20, (byte)Opcode.Put, ProtocolStatus.Ok, 22);
            raw.Send(header);
            Assert.Contains("65580", raw.ReceiveError(ProtocolStatus.FrameTooLarge));
            Assert.True(raw.IsClosedByServer());
        }
        using (var raw = Authenticated())
        {
            // Half a put, then the client goes away: nothing is stored, nothing else is hurt.
            var frame = RawSocket.Frame((byte)Opcode.Put, 23, new byte[Wire.HandleSize + 4096]);
            raw.Send(frame.AsSpan(0, 1000));
        }
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task ClientThatStopsReading_IsBoundedAndClosed_OthersCarryOn()
    {
        long rssBefore = Service.ResidentBytes();
        using var raw = Authenticated();
        // A shared pool page that gets do not remove; then thousands of gets of it, never read.
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 1, CreatePayload()));
        var created = raw.Receive();
        Assert.Equal(ProtocolStatus.Ok, created.Status);
        int pool = BinaryPrimitives.ReadInt32LittleEndian(created.Payload);
        var put = new byte[Wire.HandleSize + 4096];
        Wire.WriteHandle(put, pool, Oid, 0);
        Pages.Make("flood", 1).CopyTo(put, Wire.HandleSize);
        raw.Send(RawSocket.Frame((byte)Opcode.Put, 2, put));
        Assert.Equal(ProtocolStatus.Ok, raw.Receive().Status);

        var get = new byte[Wire.HandleSize];
        Wire.WriteHandle(get, pool, Oid, 0);
        var oneGet = RawSocket.Frame((byte)Opcode.Get, 3, get);
        var burst = new byte[oneGet.Length * 1000];
        for (int i = 0; i < 1000; i++) oneGet.CopyTo(burst, i * oneGet.Length);
        // 50,000 gets = 200 MiB of responses if the server buffered them all. Sending blocks once
        // the server stops reading; that is the point, so it runs aside with a deadline.
        raw.Socket.SendTimeout = 1000;
        var flood = Task.Run(() =>
        {
            try
            {
                for (int i = 0; i < 50; i++) raw.Socket.Send(burst);
                return true;
            }
            catch (Exception)
            {
                return false; // blocked, then the server closed the connection
            }
        });
        await Task.Delay(1500);
        // Meanwhile another client is served as usual.
        var clock = Stopwatch.StartNew();
        await AssertBystanderUnharmed();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"the bystander took {clock.Elapsed}");
        long rssDuring = Service.ResidentBytes();
        Assert.True(rssDuring - rssBefore < 64L << 20, $"service RSS grew by {(rssDuring - rssBefore) >> 20} MiB while a client did not read");
        Assert.False(await flood, "all 50,000 gets were accepted although nothing was read: the server does not stop reading");
        // SendTimeoutSeconds=2: the stalled connection is closed (reading earlier would unstall it).
        await Task.Delay(3000);
        Assert.True(raw.IsClosedByServer(), "the connection of a client that stopped reading is still open:\n" + Service.Output);
        await AssertBystanderUnharmed();
    }

    private static byte[] CreatePayload()
    {
        var payload = new byte[Wire.CreatePoolSize];
        Wire.WriteCreatePool(payload, PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        return payload;
    }
}
