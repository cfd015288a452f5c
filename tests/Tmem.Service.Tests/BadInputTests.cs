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
[Trait("Kind", "Integration")]
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

    [Fact]
    public async Task ListPoolsEntries_CarryTheFlagsCreatePoolWasGiven_AndFeedBackIntoCreatePool()
    {
        using var raw = Authenticated();
        var cases = new (byte Kind, byte Flags)[] { (0, 0), (1, 0), (1, Wire.FlagExclusiveGets) };
        var created = new List<int>();
        uint id = 40;
        foreach (var (kind, flags) in cases)
        {
            var payload = new byte[Wire.CreatePoolSize];
            payload[0] = kind;
            payload[1] = flags;
            BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), 4096);
            raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, id++, payload));
            var answer = raw.Receive();
            Assert.Equal(ProtocolStatus.Ok, answer.Status);
            created.Add(BinaryPrimitives.ReadInt32LittleEndian(answer.Payload));
        }
        raw.Send(RawSocket.Frame((byte)Opcode.ListPools, id++, []));
        var list = raw.Receive().Payload;
        int count = BinaryPrimitives.ReadUInt16LittleEndian(list);
        for (int c = 0; c < cases.Length; c++)
        {
            int at = Enumerable.Range(0, count).Single(i => BinaryPrimitives.ReadInt32LittleEndian(list.AsSpan(2 + i * Wire.PoolEntrySize)) == created[c]);
            var entry = list.AsSpan(2 + at * Wire.PoolEntrySize, Wire.PoolEntrySize);
            Assert.Equal(cases[c].Kind, entry[4]);
            Assert.True(cases[c].Flags == entry[5], $"pool created with kind {cases[c].Kind} flags 0x{cases[c].Flags:x2} is listed with flags 0x{entry[5]:x2}");
            // The entry's kind, flags, page size and UUID make a CreatePool payload the server takes.
            var again = new byte[Wire.CreatePoolSize];
            entry[4..6].CopyTo(again);
            entry[8..28].CopyTo(again.AsSpan(4));
            raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, id++, again));
            var answer = raw.Receive();
            Assert.True(answer.Status == ProtocolStatus.Ok, $"an entry fed back into CreatePool was refused: {answer.Status} {System.Text.Encoding.UTF8.GetString(answer.Payload)}");
            created.Add(BinaryPrimitives.ReadInt32LittleEndian(answer.Payload));
        }
        foreach (int pool in created)
        {
            raw.Send(RawSocket.Frame((byte)Opcode.DestroyPool, id++, BitConverter.GetBytes(pool)));
            Assert.Equal(ProtocolStatus.Ok, raw.Receive().Status);
        }
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task CreatePool_UnknownFlagBits_ReservedBytes_ZeroSharedUuid_NonZeroPrivateUuid_AreInvalidArguments()
    {
        using var raw = Authenticated();
        byte[] Payload(byte flags, byte reserved, bool uuid)
        {
            var p = new byte[Wire.CreatePoolSize];
            p[1] = flags;
            p[2] = reserved;
            BinaryPrimitives.WriteInt32LittleEndian(p.AsSpan(4), 4096);
            if (uuid) ServiceProcess.SharedUuid.TryWriteBytes(p.AsSpan(8), bigEndian: true, out _);
            return p;
        }
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 50, Payload(0x08, 0, false)));
        Assert.Contains("0x08", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 51, Payload(0, 1, false)));
        Assert.Contains("reserved", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 52, Payload(Wire.FlagShared, 0, false)));
        Assert.Contains("non-zero UUID", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 53, Payload(0, 0, true)));
        Assert.Contains("all zero for a private pool", raw.ReceiveError(ProtocolStatus.InvalidArgument));
        // A request opcode with the response bit set: UnknownOpcode, the byte comes back as it was.
        raw.Send(RawSocket.Frame(0x85, 54, []));
        var (opcode, status, rid, _) = raw.Receive();
        Assert.Equal((0x85, ProtocolStatus.UnknownOpcode, 54u), (opcode, status, rid));
        await AssertBystanderUnharmed();
    }

    [Fact]
    public async Task HalfClose_AfterPipelinedRequests_EveryOneIsAnsweredThenTheServerCloses()
    {
        using var raw = Authenticated();
        for (uint i = 0; i < 50; i++) raw.Send(RawSocket.Frame((byte)Opcode.ListPools, 100 + i, []));
        raw.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        for (uint i = 0; i < 50; i++) Assert.Equal(100 + i, raw.Receive().RequestId);
        Assert.True(raw.IsClosedByServer());
        await AssertBystanderUnharmed();
    }

    private static byte[] CreatePayload()
    {
        var payload = new byte[Wire.CreatePoolSize];
        Wire.WriteCreatePool(payload, PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        return payload;
    }
}
