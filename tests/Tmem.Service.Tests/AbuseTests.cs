using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Tmem.Protocol;
using Xunit.Abstractions;

namespace Tmem.Service.Tests;

/// <summary>
/// The socket front end under abuse: connections that never authenticate, a Hello at a byte at a
/// time, idle and stalled connections, their memory, the bound on queued responses, log
/// injection, SIGTERM with pipelined frames received. Each test runs a service of its own.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class AbuseTests(ITestOutputHelper output)
{
    private static byte[] Handle(int pool, uint index)
    {
        var handle = new byte[Wire.HandleSize];
        Wire.WriteHandle(handle, pool, new ObjectId(99), index);
        return handle;
    }

    private static RawSocket Authenticated(ServiceProcess service, string name = "alice")
    {
        var raw = new RawSocket(service.SocketPath);
        raw.Send(RawSocket.Hello(name, name + "-secret"));
        var hello = raw.Receive();
        Assert.True(hello.Status == ProtocolStatus.Ok, $"Hello answered {hello.Status}: {Encoding.UTF8.GetString(hello.Payload)}");
        return raw;
    }

    /// <summary>A shared ephemeral pool (gets keep the page) holding one page at index 0; returns its id.</summary>
    private static int PoolWithAPage(RawSocket raw)
    {
        var create = new byte[Wire.CreatePoolSize];
        Wire.WriteCreatePool(create, PoolOptions.Ephemeral with { SharedUuid = ServiceProcess.SharedUuid });
        raw.Send(RawSocket.Frame((byte)Opcode.CreatePool, 1, create));
        var created = raw.Receive();
        Assert.Equal(ProtocolStatus.Ok, created.Status);
        int pool = BinaryPrimitives.ReadInt32LittleEndian(created.Payload);
        var put = new byte[Wire.HandleSize + 4096];
        Handle(pool, 0).CopyTo(put, 0);
        Pages.Make("abuse", 1).CopyTo(put, Wire.HandleSize);
        raw.Send(RawSocket.Frame((byte)Opcode.Put, 2, put));
        Assert.Equal(ProtocolStatus.Ok, raw.Receive().Status);
        return pool;
    }

    private static bool ClosedWithin(RawSocket raw, TimeSpan within)
    {
        raw.Socket.ReceiveTimeout = (int)within.TotalMilliseconds;
        return raw.IsClosedByServer();
    }

    [Fact]
    public async Task ConnectionsThatNeverSendHello_CannotLockClientsOut_AndAreClosedAtTheHandshakeDeadline()
    {
        await using var service = new ServiceProcess("--Tmem:Service:MaxConnections=8", "--Tmem:Service:MaxUnauthenticatedConnections=16",
            "--Tmem:Service:HandshakeTimeoutSeconds=3");
        await service.StartAsync();
        // Far more silent connections than either limit.
        var silent = Enumerable.Range(0, 200).Select(_ => new RawSocket(service.SocketPath)).ToList();
        try
        {
            await Task.Delay(300);
            for (int i = 0; i < 3; i++)
            {
                await using var alice = await service.ConnectAsync();
                Assert.Equal(1, alice.ClientId);
                Assert.NotEmpty(await alice.GetStatsAsync());
            }
            var stats = await service.StatsAsync();
            Assert.InRange(stats["connections_unauthenticated"], 1, 16);
            Assert.True(stats["connections_evicted"] >= 200 - 16, $"connections_evicted {stats["connections_evicted"]}");
            // The newest silent ones are still open now; at the deadline they are closed.
            Assert.True(ClosedWithin(silent[^1], TimeSpan.FromSeconds(6)), "a connection that never sent a Hello is still open after the handshake deadline");
            Assert.True((await service.StatsAsync())["handshake_timeouts"] >= 1);
        }
        finally
        {
            foreach (var s in silent) s.Dispose();
        }
    }

    [Fact]
    public async Task HelloAtOneByteAtATime_IsClosedAtTheHandshakeDeadline()
    {
        await using var service = new ServiceProcess("--Tmem:Service:HandshakeTimeoutSeconds=2");
        await service.StartAsync();
        using var raw = new RawSocket(service.SocketPath);
        var hello = RawSocket.Hello("alice", "alice-secret");
        var clock = Stopwatch.StartNew();
        bool closed = false;
        for (int i = 0; i < hello.Length - 1 && !closed; i++)
        {
            try
            {
                raw.Send(hello.AsSpan(i, 1));
            }
            catch (SocketException)
            {
                closed = true;
                break;
            }
            raw.Socket.ReceiveTimeout = 300;
            closed = raw.IsClosedByServer();
        }
        Assert.True(closed, "a Hello trickling in a byte at a time was held past the deadline");
        Assert.InRange(clock.Elapsed.TotalSeconds, 1.5, 5);
    }

    [Fact]
    public async Task AuthenticatedConnectionsBeyondMaxConnections_AreRefusedTooManyConnections()
    {
        await using var service = new ServiceProcess("--Tmem:Service:MaxConnections=3");
        await service.StartAsync();
        var open = Enumerable.Range(0, 3).Select(_ => Authenticated(service)).ToList();
        try
        {
            using var fourth = new RawSocket(service.SocketPath);
            fourth.Send(RawSocket.Hello("bob", "bob-secret"));
            Assert.Contains("MaxConnections", fourth.ReceiveError(ProtocolStatus.TooManyConnections));
            Assert.True(fourth.IsClosedByServer());
            open[0].Dispose();
            await Task.Delay(300);
            using var again = Authenticated(service, "bob");
        }
        finally
        {
            foreach (var s in open) s.Dispose();
        }
    }

    [Fact]
    public async Task IdleTimeout_ClosesAnAuthenticatedConnectionWithoutRequests_NotABusyOne()
    {
        await using var service = new ServiceProcess("--Tmem:Service:IdleTimeoutSeconds=2");
        await service.StartAsync();
        using var idle = Authenticated(service);
        using var busy = Authenticated(service, "bob");
        var clock = Stopwatch.StartNew();
        uint id = 10;
        while (clock.Elapsed < TimeSpan.FromSeconds(4))
        {
            busy.Send(RawSocket.Frame((byte)Opcode.ListPools, id, []));
            Assert.Equal(id++, busy.Receive().RequestId);
            await Task.Delay(400);
        }
        Assert.True(ClosedWithin(idle, TimeSpan.FromSeconds(2)), "an idle connection outlived IdleTimeoutSeconds");
        busy.Send(RawSocket.Frame((byte)Opcode.ListPools, id, []));
        Assert.Equal(ProtocolStatus.Ok, busy.Receive().Status);
        Assert.True((await service.StatsAsync())["idle_timeouts"] >= 1);
    }

    [Fact]
    public async Task MemoryPerConnection_Idle_Authenticated_Stalled_MeasuredFromProc()
    {
        const int Idle = 400, Stalled = 16;
        await using var service = new ServiceProcess("--Tmem:Service:MaxUnauthenticatedConnections=1000", "--Tmem:Service:HandshakeTimeoutSeconds=120",
            "--Tmem:Service:SendTimeoutSeconds=120", "--Tmem:DataDirectory=");
        await service.StartAsync();
        // Warm up every path once (JIT, pools), then measure steps of many connections.
        using (var warm = Authenticated(service, "bob")) PoolWithAPage(warm);
        await Task.Delay(500);
        long baseline = service.ResidentBytes();
        var idle = Enumerable.Range(0, Idle).Select(_ => new RawSocket(service.SocketPath)).ToList();
        await Task.Delay(1000);
        long afterIdle = service.ResidentBytes();
        foreach (var raw in idle)
        {
            raw.Send(RawSocket.Hello("alice", "alice-secret"));
            Assert.Equal(ProtocolStatus.Ok, raw.Receive().Status);
        }
        await Task.Delay(1000);
        long afterAuthenticated = service.ResidentBytes();

        // Stalled: each floods gets of a 4 KiB page and reads nothing.
        var stalled = Enumerable.Range(0, Stalled).Select(_ => Authenticated(service)).ToList();
        int pool = PoolWithAPage(stalled[0]);
        var oneGet = RawSocket.Frame((byte)Opcode.Get, 3, Handle(pool, 0));
        var burst = new byte[oneGet.Length * 20_000];
        for (int i = 0; i < 20_000; i++) oneGet.CopyTo(burst, i * oneGet.Length);
        long beforeStalled = service.ResidentBytes();
        var floods = stalled.Select(raw => Task.Run(() =>
        {
            raw.Socket.Blocking = false;
            int sent = 0;
            try
            {
                while (sent < burst.Length) sent += raw.Socket.Send(burst, sent, burst.Length - sent, SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
            }
            return sent;
        })).ToArray();
        var sentBytes = await Task.WhenAll(floods);
        await Task.Delay(1000);
        // The least of a few samples: what the stalled connections hold, not garbage the service's
        // GC has not collected yet at one instant (on a busy machine that alone varies by ~100 KiB).
        long afterStalled = long.MaxValue;
        for (int sample = 0; sample < 5; sample++, await Task.Delay(200)) afterStalled = Math.Min(afterStalled, service.ResidentBytes());
        var stats = await service.StatsAsync();

        double perIdle = (afterIdle - baseline) / (double)Idle, perAuthenticated = (afterAuthenticated - afterIdle) / (double)Idle,
            perStalled = (afterStalled - beforeStalled) / (double)Stalled;
        output.WriteLine($"RSS per connection: idle (no Hello) {perIdle / 1024:0.0} KiB, authenticated idle {perAuthenticated / 1024:0.0} KiB more, " +
            $"stalled {perStalled / 1024:0.0} KiB ({Stalled} stalled, {sentBytes.Min() / oneGet.Length}..{sentBytes.Max() / oneGet.Length} gets sent each, queued_response_bytes {stats.GetValueOrDefault("queued_response_bytes")})");
        Assert.True(perIdle < 16 << 10, $"an idle connection costs {perIdle / 1024:0.0} KiB");
        Assert.True(perAuthenticated < 16 << 10, $"authenticating costs {perAuthenticated / 1024:0.0} KiB per connection");
        // By design a stalled connection holds its queued responses (192 KiB), a response buffer
        // (256 KiB) and an input buffer (64 KiB): about 0.5 MiB. Measured through RSS that varies
        // by 100+ KiB with the service's GC on a busy machine, so the bound is 1 MiB: well clear of
        // the noise, and well under the 2.9 MiB a stalled connection held before responses were bounded.
        Assert.True(perStalled < 1 << 20, $"a stalled connection costs {perStalled / 1024:0.0} KiB");
        Assert.InRange(stats.GetValueOrDefault("queued_response_bytes"), 1, Stalled * (FrameConnectionHighWater + 70_000));
        foreach (var s in idle.Concat(stalled)) s.Dispose();
    }

    private const long FrameConnectionHighWater = 192 * 1024;

    [Fact]
    public async Task QueuedResponseBytes_AreBoundAcrossConnections_ByMaxQueuedResponseBytes()
    {
        const int Stalled = 16;
        const long Limit = 1 << 20;
        await using var service = new ServiceProcess($"--Tmem:Service:MaxQueuedResponseBytes={Limit}", "--Tmem:Service:SendTimeoutSeconds=120", "--Tmem:DataDirectory=");
        await service.StartAsync();
        var stalled = Enumerable.Range(0, Stalled).Select(_ => Authenticated(service)).ToList();
        try
        {
            int pool = PoolWithAPage(stalled[0]);
            var oneGet = RawSocket.Frame((byte)Opcode.Get, 3, Handle(pool, 0));
            var burst = new byte[oneGet.Length * 20_000];
            for (int i = 0; i < 20_000; i++) oneGet.CopyTo(burst, i * oneGet.Length);
            foreach (var raw in stalled)
            {
                raw.Socket.Blocking = false;
                try
                {
                    int sent = 0;
                    while (sent < burst.Length) sent += raw.Socket.Send(burst, sent, burst.Length - sent, SocketFlags.None);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
                {
                }
            }
            await Task.Delay(1500);
            var clock = Stopwatch.StartNew();
            var stats = await service.StatsAsync();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"a bystander's stats took {clock.Elapsed}");
            output.WriteLine($"queued_response_bytes {stats["queued_response_bytes"]}, reads_paused {stats["reads_paused"]}");
            // Without the bound each would hold its own 192 KiB high-water mark: 3 MiB in all.
            Assert.InRange(stats["queued_response_bytes"], Limit / 2, Limit + Stalled * 2 * 4109);
            Assert.True(stats["reads_paused"] >= 1);
        }
        finally
        {
            foreach (var s in stalled) s.Dispose();
        }
    }

    [Fact]
    public async Task ControlCharactersInAClientName_AreEscapedInTheLog()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        using (var raw = new RawSocket(service.SocketPath))
        {
            raw.Send(RawSocket.Hello("mallory\nfake: forged log line\u001b[31m\u0007", "x"));
            raw.ReceiveError(ProtocolStatus.AuthenticationFailed);
        }
        await Task.Delay(500);
        string log = service.Output;
        Assert.Contains(@"mallory\x0afake: forged log line\x1b[31m\x07", log);
        Assert.DoesNotContain('\u0007', log);
        Assert.DoesNotContain("\u001b[31m", log);
        Assert.DoesNotContain(log.Split('\n'), line => line.TrimStart().StartsWith("fake: forged log line", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Sigterm_WithAClientThatReadsNothing_StopsWithinSeconds_AndServesOthersUntilThen()
    {
        await using var service = new ServiceProcess("--Tmem:Service:SendTimeoutSeconds=60", "--Tmem:DataDirectory=");
        await service.StartAsync();
        using var raw = Authenticated(service);
        int pool = PoolWithAPage(raw);
        var oneGet = RawSocket.Frame((byte)Opcode.Get, 3, Handle(pool, 0));
        var burst = new byte[oneGet.Length * 20_000];
        for (int i = 0; i < 20_000; i++) oneGet.CopyTo(burst, i * oneGet.Length);
        raw.Socket.Blocking = false;
        try
        {
            int sent = 0;
            while (sent < burst.Length) sent += raw.Socket.Send(burst, sent, burst.Length - sent, SocketFlags.None);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
        {
        }
        await Task.Delay(500);
        await using (var bob = await service.ConnectAsync("bob"))
            Assert.NotEmpty(await bob.GetStatsAsync());
        var clock = Stopwatch.StartNew();
        Assert.Equal(0, await service.StopAsync());
        output.WriteLine($"stopped in {clock.Elapsed.TotalSeconds:0.0} s with a client that reads nothing");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"the stop took {clock.Elapsed} (a send nobody reads held it)");
    }

    [Fact]
    public async Task Sigterm_AnswersEveryPipelinedFrameItReceived()
    {
        await using var service = new ServiceProcess("--Tmem:Service:SendTimeoutSeconds=60", "--Tmem:DataDirectory=");
        await service.StartAsync();
        using var raw = Authenticated(service);
        int pool = PoolWithAPage(raw);
        // Gets of a 4 KiB page, never read until the stop: the server stops reading at its
        // high-water mark while the rest of the frames wait in its socket's receive queue.
        const int Frames = 20_000;
        var burst = new byte[Frames * (Wire.HeaderSize + Wire.HandleSize)];
        for (int i = 0; i < Frames; i++) RawSocket.Frame((byte)Opcode.Get, (uint)(1000 + i), Handle(pool, 0)).CopyTo(burst, i * (Wire.HeaderSize + Wire.HandleSize));
        raw.Socket.Blocking = false;
        int sent = 0;
        try
        {
            while (sent < burst.Length)
            {
                sent += raw.Socket.Send(burst, sent, burst.Length - sent, SocketFlags.None);
                await Task.Delay(50);
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
        {
        }
        await Task.Delay(500);
        int whole = sent / (Wire.HeaderSize + Wire.HandleSize);
        Assert.True(whole > 100 && whole < Frames, $"{whole} frames sent whole");
        var stop = service.StopAsync();
        raw.Socket.Blocking = true;
        raw.Socket.ReceiveTimeout = 30_000;
        var answered = new HashSet<uint>();
        int shuttingDown = 0;
        while (true)
        {
            (byte Opcode, ProtocolStatus Status, uint RequestId, byte[] Payload) r;
            try
            {
                r = raw.Receive();
            }
            catch (IOException)
            {
                break; // the end of the stream
            }
            Assert.True(r.Status is ProtocolStatus.Ok or ProtocolStatus.ShuttingDown, $"request {r.RequestId} answered {r.Status}");
            if (r.Status == ProtocolStatus.ShuttingDown) shuttingDown++;
            Assert.True(answered.Add(r.RequestId), $"request {r.RequestId} answered twice");
        }
        Assert.Equal(0, await stop);
        output.WriteLine($"{whole} frames sent whole, {answered.Count} answered, {shuttingDown} of them ShuttingDown");
        Assert.Equal(whole, answered.Count);
        Assert.True(shuttingDown > 0, "no frame was answered ShuttingDown: the test did not stop the service with frames waiting");
    }
}
