using System.Net.Sockets;

namespace Tmem.Service.Tests;

/// <summary>
/// Failures to start (issue: defined exit codes, one clear line): each is a few lines on stderr
/// naming the key, path or address and what to do, with its exit code (docs/service.md), no
/// stack trace, no crit line, and nothing left on disk.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class StartupTests
{
    private static void AssertOneClearMessage(string output, params string[] expected)
    {
        foreach (var e in expected) Assert.Contains(e, output);
        Assert.DoesNotContain("Unhandled exception", output);
        Assert.DoesNotContain("crit:", output);
        Assert.DoesNotContain("   at ", output); // no stack frame
        Assert.True(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length <= 6, $"more than a few lines:\n{output}");
    }

    [Fact]
    public async Task SocketPathInAMissingDirectory_ExitsCannotListen_NamingKeyAndPath_CreatesNoDataDirectory()
    {
        await using var service = new ServiceProcess("--Tmem:Service:SocketPath=/nonexistent/dir/tmem.sock");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(5, code);
        AssertOneClearMessage(output, "Tmem:Service:SocketPath", "/nonexistent/dir/tmem.sock", "/nonexistent/dir does not exist");
        Assert.False(Directory.Exists(service.DataDirectory), "the data directory was created although the start failed");
    }

    [Fact]
    public async Task SocketPathThatIsADirectory_ExitsCannotListen()
    {
        await using var service = new ServiceProcess();
        Directory.CreateDirectory(service.SocketPath);
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(5, code);
        AssertOneClearMessage(output, "Tmem:Service:SocketPath", service.SocketPath, "is a directory");
        Assert.False(Directory.Exists(service.DataDirectory));
    }

    [Fact]
    public async Task SocketAlreadyServed_ExitsCannotListen_DataDirectoryInUse_ExitsInUse_NeitherLeavesFiles()
    {
        await using var first = new ServiceProcess();
        await first.StartAsync();
        // Same socket, own data directory: the bind fails before that directory is created.
        await using (var second = new ServiceProcess($"--Tmem:Service:SocketPath={first.SocketPath}"))
        {
            var (code, output) = await second.RunUntilExitAsync();
            Assert.Equal(5, code);
            AssertOneClearMessage(output, "Tmem:Service:SocketPath", first.SocketPath, "another process is listening");
            Assert.False(Directory.Exists(second.DataDirectory));
        }
        // Same data directory, own socket: the lock is held; the socket file bound is removed again.
        await using (var third = new ServiceProcess($"--Tmem:DataDirectory={first.DataDirectory}"))
        {
            var (code, output) = await third.RunUntilExitAsync();
            Assert.Equal(3, code);
            AssertOneClearMessage(output, "Tmem:DataDirectory", first.DataDirectory, "is in use");
            Assert.False(File.Exists(third.SocketPath), "the socket file of a failed start was left behind");
        }
        // The first one was not disturbed.
        await using (var alice = await first.ConnectAsync())
            Assert.Equal(1, alice.ClientId);
        Assert.Equal(0, await first.StopAsync());
    }

    [Fact]
    public async Task DamagedDataDirectory_ExitsDamaged_PointsAtTheOfflineTool()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        Assert.Equal(0, await service.StopAsync());
        string commit = Directory.GetFiles(Path.Combine(service.DataDirectory, "commits")).Single();
        await using (var file = new FileStream(commit, FileMode.Open, FileAccess.Write))
        {
            file.Position = 10;
            file.Write("garbage-garbage"u8);
        }
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(4, code);
        AssertOneClearMessage(output, "Tmem:DataDirectory", service.DataDirectory, "damaged", "tmem-admin verify", "tmem-admin recover");
        Assert.False(File.Exists(service.SocketPath));
    }

    [Fact]
    public async Task StoreNeedingMorePoolsThanConfigured_ExitsBadConfiguration_NamingTheKey_AndChangesNothing()
    {
        await using var service = new ServiceProcess();
        await service.StartAsync();
        var handle = new ObjectId(7);
        int last;
        await using (var alice = await service.ConnectAsync())
        {
            for (int i = 0; i < 2; i++) await alice.CreatePoolAsync(PoolOptions.Persistent);
            last = await alice.CreatePoolAsync(PoolOptions.Persistent);
            Assert.Equal(PutStatus.Stored, await alice.PutAsync(last, handle, 0, Pages.Make("mismatch", 1)));
        }
        Assert.Equal(0, await service.StopAsync());

        service.ExtraArguments = [$"--Tmem:MaxPoolsPerClient={last}"];
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(2, code);
        AssertOneClearMessage(output, "Tmem:MaxPoolsPerClient", $"raise it to at least {last + 1}", "nothing was changed");

        // Nothing was changed: with the setting back, the page is there.
        service.ExtraArguments = [];
        await service.StartAsync();
        await using var again = await service.ConnectAsync();
        var page = new byte[4096];
        Assert.Equal(GetStatus.Hit, await again.GetAsync(last, handle, 0, page));
        Assert.Equal(Pages.Make("mismatch", 1), page);
    }

    [Fact]
    public async Task MisspelledKey_AndInvalidEnum_AreRefused_WithTheNearestNameAndTheAllowedValues()
    {
        await using var service = new ServiceProcess("--Tmem:RamBudgtBytes=1", "--Tmem:Durability=Strictt", "--Tmem:Service:Clients:0:MaxInFlite=3");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(2, code);
        AssertOneClearMessage(output, "Tmem:RamBudgtBytes is not a setting (did you mean Tmem:RamBudgetBytes?)",
            "Tmem:Durability is 'Strictt'; it must be one of Strict, Relaxed",
            "Tmem:Service:Clients:0:MaxInFlite is not a setting (did you mean Tmem:Service:Clients:0:MaxInFlight?)");
        Assert.False(Directory.Exists(service.DataDirectory));
        Assert.False(File.Exists(service.SocketPath));
    }

    [Fact]
    public async Task OutOfRangeValues_ExitBadConfiguration_WithoutStackTrace()
    {
        await using var service = new ServiceProcess("--Tmem:Service:HandshakeTimeoutSeconds=0", "--Tmem:Service:MaxQueuedResponseBytes=5");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(2, code);
        AssertOneClearMessage(output, "Tmem:Service:HandshakeTimeoutSeconds is 0; it must be from 1 to 3600", "Tmem:Service:MaxQueuedResponseBytes is 5");
        Assert.False(Directory.Exists(service.DataDirectory));
    }

    [Fact]
    public async Task TcpPortInUse_ExitsCannotListen_NamingPortAndAddress()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        taken.Listen();
        int port = ((System.Net.IPEndPoint)taken.LocalEndPoint!).Port;
        await using var service = new ServiceProcess($"--Tmem:Service:TcpPort={port}",
            "--Tmem:Service:Clients:3:Name=tcp", "--Tmem:Service:Clients:3:Id=9", "--Tmem:Service:Clients:3:Secret=s");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(5, code);
        AssertOneClearMessage(output, $"Tmem:Service:TcpPort {port}", "127.0.0.1", "another process listens there");
        Assert.False(File.Exists(service.SocketPath), "the Unix socket bound before the TCP failure was left behind");
        Assert.False(Directory.Exists(service.DataDirectory));
    }
}
