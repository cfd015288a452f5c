using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Tmem.Service.Tests;

/// <summary>
/// What no real client sends: garbage before and after the handshake, unknown options and
/// commands, bad lengths, ranges past the end, a client that stops reading. Each gets the answer
/// the NBD specification names, or loses only its own connection; others carry on.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class NbdBadInputTests : IAsyncLifetime
{
    private const int P = 4096;
    private readonly NbdServer _server = new("--Tmem:Service:HandshakeTimeoutSeconds=3", "--Tmem:Nbd:MaxPayloadBytes=1048576", "--Tmem:Service:Clients:0:Admin=true");

    public Task InitializeAsync() => _server.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>A connection in the transmission phase that must keep working while others misbehave.</summary>
    private static void AssertWorks(NbdWire good, ulong at)
    {
        var page = new byte[P];
        new Random((int)at).NextBytes(page);
        good.Write(at, page);
        Assert.Equal(page, good.Read(at, P));
    }

    [Fact]
    public async Task GarbageBeforeTheHandshake_ClosesOnlyThatConnection()
    {
        using var good = new NbdWire(_server.Socket);
        good.Open("disk");
        // Instead of client flags: bytes with unknown flag bits.
        using (var bad = new NbdWire(_server.Socket))
        {
            bad.Greet(clientFlags: 0xDEADBEEF);
            Assert.True(bad.ClosedByServer());
        }
        // Instead of an option: random bytes.
        using (var bad = new NbdWire(_server.Socket))
        {
            bad.Greet();
            var junk = new byte[256];
            new Random(1).NextBytes(junk);
            bad.Send(junk);
            Assert.True(bad.ClosedByServer());
        }
        // An HTTP request at the NBD socket.
        using (var bad = new NbdWire(_server.Socket))
        {
            bad.ReceiveExactly(18);
            bad.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8);
            Assert.True(bad.ClosedByServer());
        }
        AssertWorks(good, 0);
        await _server.AssertLoggedAsync("client flags 0xdeadbeef have bits this server did not offer");
        await _server.AssertLoggedAsync("expected an option (magic IHAVEOPT)");
    }

    [Fact]
    public void UnknownAndMalformedOptions_AreAnsweredWithErrors_AndTheHandshakeGoesOn()
    {
        using var c = new NbdWire(_server.Socket);
        c.Greet();
        c.SendOption(99, "data"u8);
        Assert.Contains("not supported", c.ExpectOptionError(99, NbdWire.RepErrUnsup));
        c.SendOption(NbdWire.OptStartTls, []);
        Assert.Contains("TLS", c.ExpectOptionError(NbdWire.OptStartTls, NbdWire.RepErrPolicy));
        c.SendOption(NbdWire.OptList, "x"u8);
        c.ExpectOptionError(NbdWire.OptList, NbdWire.RepErrInvalid);
        c.SendOption(NbdWire.OptSetMeta, NbdWire.MetaData("disk", "base:allocation"));
        Assert.Contains("STRUCTURED_REPLY first", c.ExpectOptionError(NbdWire.OptSetMeta, NbdWire.RepErrInvalid));
        // GO whose name length points past its data; GO with a count of requests that does not match.
        var go = NbdWire.GoData("disk");
        BinaryPrimitives.WriteUInt32BigEndian(go, 1000);
        c.SendOption(NbdWire.OptGo, go);
        c.ExpectOptionError(NbdWire.OptGo, NbdWire.RepErrInvalid);
        go = NbdWire.GoData("disk", 1, 3);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(8), 7);
        c.SendOption(NbdWire.OptGo, go);
        Assert.Contains("information requests", c.ExpectOptionError(NbdWire.OptGo, NbdWire.RepErrInvalid));
        c.SendOption(NbdWire.OptInfo, NbdWire.GoData("nope"));
        Assert.Contains("no export 'nope'", c.ExpectOptionError(NbdWire.OptInfo, NbdWire.RepErrUnknown));
        c.SendOption(NbdWire.OptGo, NbdWire.GoData("")); // no default export: this client has two
        Assert.Contains("name one", c.ExpectOptionError(NbdWire.OptGo, NbdWire.RepErrUnknown));
        c.SendOption(77, new byte[70_000]);
        c.ExpectOptionError(77, NbdWire.RepErrTooBig);
        c.SendOption(NbdWire.OptStructuredReply, []);
        Assert.Equal(NbdWire.RepAck, c.ReceiveOptionReply().Type);
        c.SendOption(NbdWire.OptStructuredReply, []);
        c.ExpectOptionError(NbdWire.OptStructuredReply, NbdWire.RepErrInvalid);
        // ... and after all that, GO works.
        c.SendOption(NbdWire.OptGo, NbdWire.GoData("disk"));
        uint type;
        do type = c.ReceiveOptionReply().Type; while (type == NbdWire.RepInfo);
        Assert.Equal(NbdWire.RepAck, type);
        AssertWorks(c, 4 * P);

        // Another client's export is unknown on alice's listener; ABORT is acknowledged and closes.
        using var alice = new NbdWire(_server.AliceSocket);
        alice.Greet();
        alice.SendOption(NbdWire.OptGo, NbdWire.GoData("disk"));
        Assert.Contains("client alice has no export 'disk'", alice.ExpectOptionError(NbdWire.OptGo, NbdWire.RepErrUnknown));
        alice.SendOption(NbdWire.OptAbort, []);
        Assert.Equal(NbdWire.RepAck, alice.ReceiveOptionReply().Type);
        Assert.True(alice.ClosedByServer());
    }

    [Fact]
    public void BadRequests_GetTheErrorsTheSpecificationNames_AndTheConnectionGoesOn()
    {
        using var c = new NbdWire(_server.Socket);
        c.Open("disk");
        ulong size = c.Size;
        void Expect(uint error, string contains, ushort type, ulong offset, uint length, ushort flags = 0, byte[]? payload = null)
        {
            var reply = c.Call(type, offset, length, flags, payload);
            Assert.True(reply.Error == error, $"{type} at {offset} length {length} flags {flags}: expected error {error}, got {reply.Error} '{reply.Message}'");
            Assert.Contains(contains, reply.Message);
        }
        Expect(NbdWire.EINVAL, "unknown command 99", 99, 0, 0);
        Expect(NbdWire.EINVAL, "not valid for READ", NbdWire.CmdRead, 0, P, NbdWire.FlagNoHole);
        Expect(NbdWire.EINVAL, "past the end", NbdWire.CmdRead, size - 512, 1024);
        Expect(NbdWire.EINVAL, "past the end", NbdWire.CmdRead, ulong.MaxValue - 10, 100); // offset + length wraps
        Expect(NbdWire.ENOSPC, "past the end", NbdWire.CmdWrite, size - 512, 1024, 0, new byte[1024]); // payload consumed
        Expect(NbdWire.ENOSPC, "past the end", NbdWire.CmdWriteZeroes, size, P);
        Expect(NbdWire.EINVAL, "past the end", NbdWire.CmdTrim, size, P);
        Expect(NbdWire.EINVAL, "past the end", NbdWire.CmdBlockStatus, size, P);
        Expect(NbdWire.EOVERFLOW, "maximum payload", NbdWire.CmdRead, 0, 2 << 20);
        Expect(NbdWire.EINVAL, "maximum payload", NbdWire.CmdWrite, 0, 2 << 20, 0, new byte[2 << 20]); // skipped, stream in step
        Expect(NbdWire.EINVAL, "offset and length 0", NbdWire.CmdFlush, 1, 0);
        Expect(NbdWire.EINVAL, "not valid for FLUSH", NbdWire.CmdFlush, 0, 0, NbdWire.FlagReqOne);
        Assert.Equal(0u, c.Call(NbdWire.CmdRead, 0, 0).Error); // zero-length: nothing to do
        AssertWorks(c, 8 * P);

        // Without the base:allocation context BLOCK_STATUS is refused.
        using var plain = new NbdWire(_server.Socket);
        plain.Open("disk", meta: false);
        var status = plain.Call(NbdWire.CmdBlockStatus, 0, P);
        Assert.Equal(NbdWire.EINVAL, status.Error);
        Assert.Contains("base:allocation", status.Message);

        // Simple replies carry errors too (no message).
        using var simple = new NbdWire(_server.Socket);
        simple.Open("disk", structured: false);
        Assert.Equal(NbdWire.EINVAL, simple.Call(NbdWire.CmdRead, size, 1).Error);
        Assert.Equal(NbdWire.EINVAL, simple.Call(NbdWire.CmdRead, 0, P, NbdWire.FlagDf).Error); // DF needs structured replies
        AssertWorks(simple, 12 * P);
    }

    [Fact]
    public async Task GarbageAfterTheHandshake_ClosesThatConnectionAfterAnsweringWhatCameBefore()
    {
        using var good = new NbdWire(_server.Socket);
        good.Open("disk");
        using var bad = new NbdWire(_server.Socket);
        bad.Open("disk");
        ulong cookie = bad.SendRequest(NbdWire.CmdWrite, 16 * P, P, payload: new byte[P]);
        var junk = new byte[64];
        new Random(2).NextBytes(junk);
        bad.Send(junk);
        Assert.Equal(cookie, bad.ReceiveReply().Cookie);
        Assert.True(bad.ClosedByServer());
        AssertWorks(good, 20 * P);
        await _server.AssertLoggedAsync("the stream cannot be followed any further");

        // DISC: the server answers what is in flight, then closes.
        using var leaving = new NbdWire(_server.Socket);
        leaving.Open("disk");
        ulong last = leaving.SendRequest(NbdWire.CmdRead, 0, P);
        leaving.SendRequest(NbdWire.CmdDisc, 0, 0);
        var reply = leaving.ReceiveReply(new Dictionary<ulong, (ulong, uint)> { [last] = (0, P) });
        Assert.Equal(last, reply.Cookie);
        Assert.True(leaving.ClosedByServer());
    }

    [Fact]
    public void ConnectionsThatNeverFinishTheirHandshake_AreClosedAtTheDeadline()
    {
        using var silent = new NbdWire(_server.Socket);
        using var halfway = new NbdWire(_server.Socket);
        halfway.Greet();
        halfway.SendOption(NbdWire.OptStructuredReply, []);
        halfway.ReceiveOptionReply();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(silent.ClosedByServer());
        Assert.True(halfway.ClosedByServer());
        Assert.InRange(clock.Elapsed.TotalSeconds, 1, 10); // HandshakeTimeoutSeconds is 3 here
    }

    [Fact]
    public async Task AClientThatStopsReading_IsCutOff_OthersAreServedMeanwhile()
    {
        using var good = new NbdWire(_server.Socket);
        good.Open("disk");
        using var hog = new NbdWire(_server.Socket);
        hog.Open("disk");
        hog.Socket.ReceiveBufferSize = 4096;
        // Floods 1 MiB reads and reads no answer: its answers pile up until the service stops
        // reading from it, then its send times out (SendTimeoutSeconds is 2 here).
        var flood = Task.Run(() =>
        {
            try
            {
                for (int i = 0; i < 4096; i++) hog.SendRequest(NbdWire.CmdRead, 0, 1 << 20);
            }
            catch (SocketException)
            {
                // the server stopped reading, then closed
            }
        });
        await Task.Delay(500);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        AssertWorks(good, 24 * P);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"a good client waited {clock.Elapsed} behind one that does not read");
        var stats = await _server.StatsAsync();
        Assert.True(stats["queued_response_bytes"] < 8 << 20, $"{stats["queued_response_bytes"]} answer bytes queued for a client that reads nothing");
        await _server.AssertLoggedAsync("an answer made no progress for 2s");
        await flood.WaitAsync(TimeSpan.FromSeconds(30));
        AssertWorks(good, 28 * P);
    }

    [Fact]
    public async Task AClientThatStopsReading_AnswersFromTheBackingFile_IsCutOff_OthersAreServedMeanwhile()
    {
        // Cache misses are answered away from the connection's reader (a backing-file read), and
        // sent by the connection's sender thread: that send blocks for the client that does not
        // read until SendTimeoutSeconds (2 here), and holds up nobody else.
        using var good = new NbdWire(_server.Socket);
        good.Open("cache");
        using var hog = new NbdWire(_server.Socket);
        hog.Open("cache", structured: false); // simple replies carry the (zero) data whole: no holes
        hog.Socket.ReceiveBufferSize = 4096;
        var flood = Task.Run(() =>
        {
            try
            {
                for (int i = 0; i < 4096; i++) hog.SendRequest(NbdWire.CmdRead, (ulong)(i % 48) << 20, 1 << 20);
            }
            catch (SocketException)
            {
                // the server stopped reading, then closed
            }
        });
        await Task.Delay(500);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        AssertWorks(good, (48UL << 20) + 8 * P);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"a good client waited {clock.Elapsed} behind one that does not read");
        await _server.AssertLoggedAsync("an answer made no progress for 2s");
        await flood.WaitAsync(TimeSpan.FromSeconds(30));
        AssertWorks(good, (48UL << 20) + 12 * P);
    }

    [Fact]
    public async Task AnOperator_SeesNbdConnectionsInTheClientList_AndClosesOne_OthersCarryOn()
    {
        using var good = new NbdWire(_server.Socket);
        good.Open("disk");
        using var victim = new NbdWire(_server.Socket);
        victim.Open("disk");
        AssertWorks(victim, 36 * P); // two requests
        await using var alice = await _server.Service.ConnectAsync("alice"); // an administrator here
        var nbd = (await alice.ListClientsAsync()).Where(c => c["client"] == "nbd").ToList();
        Assert.Equal(2, nbd.Count);
        Assert.All(nbd, c => Assert.Equal("9", c["client_id"]));
        Assert.All(nbd, c => Assert.Equal(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), c["pid"])); // SO_PEERCRED
        var entry = Assert.Single(nbd, c => c["requests"] == "2");
        Assert.True(await alice.KillClientAsync(long.Parse(entry["id"], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.True(victim.ClosedByServer());
        AssertWorks(good, 40 * P);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((await alice.ListClientsAsync()).Count(c => c["client"] == "nbd") > 1 && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);
        Assert.Single(await alice.ListClientsAsync(), c => c["client"] == "nbd");
        await _server.AssertLoggedAsync("an administrator closed it (ClientKill)");
    }

    [Fact]
    public async Task Sigterm_AnswersWhatWasReceived_AndClosesNbdConnections()
    {
        using var c = new NbdWire(_server.Socket);
        c.Open("disk");
        AssertWorks(c, 32 * P);
        int exit = await _server.Service.StopAsync();
        Assert.Equal(0, exit);
        Assert.True(c.ClosedByServer());
        Assert.Contains("NBD listeners closed", _server.Service.Output);
        Assert.False(File.Exists(_server.Socket));
        await _server.StartAsync(); // for DisposeAsync's sake (and: it comes back)
        using var again = new NbdWire(_server.Socket);
        again.Open("disk");
        var page = new byte[P];
        new Random(32 * P).NextBytes(page);
        Assert.Equal(page, again.Read(32 * P, P));
    }
}
