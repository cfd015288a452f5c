using System.Net.Sockets;
using System.Text;
using Tmem.Tests.Faults;

namespace Tmem.Service.Tests;

/// <summary>The systemd watchdog: fed every half WATCHDOG_USEC while the store is healthy, with a STATUS line.</summary>
[Trait("Kind", "Integration")]
public sealed class WatchdogTests
{
    [Fact]
    public async Task UnderSystemdsWatchdog_TheServiceFeedsItWhileHealthy_AndSaysItsStatus()
    {
        await using var service = new ServiceProcess("--Tmem:DataDirectory=");
        string notify = Path.Combine(service.Root, "notify.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(notify));
        service.Environment["NOTIFY_SOCKET"] = notify;
        service.Environment["WATCHDOG_USEC"] = "400000"; // 0.4 s: fed every 0.2 s
        await service.StartAsync();

        var messages = new List<string>();
        var buffer = new byte[4096];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (messages.Count(m => m == "WATCHDOG=1") < 4)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
            messages.Add(Encoding.UTF8.GetString(buffer, 0, n).Trim());
        }
        Assert.Contains(messages, m => m.StartsWith("STATUS=serving 0 connection(s); storage healthy", StringComparison.Ordinal));
    }

    [TmpfsFact]
    public async Task WhileTheStorageIsFull_TheWatchdogIsNotFed_AndOnceSpaceIsFreedItIsFedAgain()
    {
        await using var service = new ServiceProcess("--Tmem:LogSegmentSizeBytes=16777216", "--Tmem:Service:CommitCheckIntervalMs=100");
        using var disk = Tmpfs.MountAt(service.DataDirectory, 64L << 20);
        string ballast = disk.Ballast(52L << 20); // no room for the 16 MiB segment the log keeps in reserve
        string notify = Path.Combine(service.Root, "notify.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(notify));
        service.Environment["NOTIFY_SOCKET"] = notify;
        service.Environment["WATCHDOG_USEC"] = "400000";
        await service.StartAsync();

        var buffer = new byte[4096];
        async Task<string> NextAsync(CancellationToken token)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, token);
            return Encoding.UTF8.GetString(buffer, 0, n).Trim();
        }
        // The space reserve is allocated just after the store opens: once the status says full,
        // no WATCHDOG=1 comes (five rounds of 0.2 s).
        using (var window = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            int full = 0;
            while (full < 5)
            {
                string message = await NextAsync(window.Token);
                if (full > 0) Assert.NotEqual("WATCHDOG=1", message);
                if (message.EndsWith("storage full", StringComparison.Ordinal)) full++;
            }
        }
        await WaitForOutputAsync(service, "Not feeding the systemd watchdog: storage is Full");

        File.Delete(ballast);
        using var recovered = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (await NextAsync(recovered.Token) != "WATCHDOG=1")
        {
        }
        await WaitForOutputAsync(service, "feeding the systemd watchdog again");
    }

    /// <summary>The console logger writes a moment after the event: waits (bounded) for the line.</summary>
    private static async Task WaitForOutputAsync(ServiceProcess service, string text)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!service.Output.Contains(text, StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
        Assert.Contains(text, service.Output);
    }
}
