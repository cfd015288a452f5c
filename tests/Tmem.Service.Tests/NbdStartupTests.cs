namespace Tmem.Service.Tests;

/// <summary>
/// The NBD front end's configuration is checked at start like the rest (docs/service.md,
/// "Start-up and exit codes"): one clear message naming the key, the exit code of its kind, and
/// nothing created when it fails; an export that shrank or lost its backing file never starts.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class NbdStartupTests
{
    private static void AssertClear(string output, params string[] expected)
    {
        foreach (var e in expected) Assert.Contains(e, output);
        Assert.DoesNotContain("Unhandled exception", output);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public async Task BadNbdSettings_ExitBadConfiguration_NamingEachKey()
    {
        await using var server = new NbdServer(
            "--Tmem:Nbd:Exprts:0:Name=x",                  // misspelt
            "--Tmem:Nbd:Exports:0:SizeBytes=1000",              // not a multiple of the page size
            "--Tmem:Nbd:Exports:1:Client=nobody",          // not a configured client
            "--Tmem:Nbd:Exports:1:PageSize=65536",         // over 32 KiB
            "--Tmem:Nbd:Exports:2:Name=disk", "--Tmem:Nbd:Exports:2:Client=nbd", "--Tmem:Nbd:Exports:2:SizeBytes=4096", // a second 'disk'
            "--Tmem:Nbd:Exports:3:Name=orphan", "--Tmem:Nbd:Exports:3:Client=carol", "--Tmem:Nbd:Exports:3:SizeBytes=4096", // carol has no listener
            "--Tmem:Nbd:Exports:4:Name=m", "--Tmem:Nbd:Exports:4:Client=nbd", "--Tmem:Nbd:Exports:4:Mode=Mirror",
            "--Tmem:Nbd:Listeners:2:Client=nbd");           // neither socket nor port
        var (code, output) = await server.Service.RunUntilExitAsync();
        Assert.Equal(2, code);
        AssertClear(output, "Tmem:Nbd:Exprts is not a setting (did you mean Tmem:Nbd:Exports?)", "Tmem:Nbd:Exports:4:Mode is 'Mirror'; it must be one of Persistent, Cache");
        Assert.False(Directory.Exists(server.Service.DataDirectory));

        await using var second = new NbdServer(
            "--Tmem:Nbd:Exports:0:SizeBytes=1000", "--Tmem:Nbd:Exports:1:Client=nobody", "--Tmem:Nbd:Exports:1:PageSize=65536",
            "--Tmem:Nbd:Exports:2:Name=disk", "--Tmem:Nbd:Exports:2:Client=nbd", "--Tmem:Nbd:Exports:2:SizeBytes=4096",
            "--Tmem:Nbd:Exports:3:Name=orphan", "--Tmem:Nbd:Exports:3:Client=carol", "--Tmem:Nbd:Exports:3:SizeBytes=4096",
            "--Tmem:Nbd:Listeners:2:Client=nbd", "--Tmem:Nbd:MaxPayloadBytes=100");
        (code, output) = await second.Service.RunUntilExitAsync();
        Assert.Equal(2, code);
        AssertClear(output,
            "Tmem:Nbd:Exports:0:SizeBytes is 1000",
            "Tmem:Nbd:Exports:1:Client is 'nobody'",
            "Tmem:Nbd:Exports:1:PageSize is 65536",
            "Tmem:Nbd:Exports:2:Name 'disk' is given to two exports",
            "Tmem:Nbd:Exports:3 ('orphan') belongs to client carol, which has no NBD listener",
            "Tmem:Nbd:Listeners:2 has neither a SocketPath nor a TcpPort",
            "Tmem:Nbd:MaxPayloadBytes is 100");
        Assert.False(Directory.Exists(second.Service.DataDirectory));
    }

    [Fact]
    public async Task MissingBackingFile_OrListenerThatCannotBind_StopsTheStart_BeforeTheDataDirectoryIsMade()
    {
        await using (var server = new NbdServer("--Tmem:Nbd:Exports:1:BackingFile=missing.img"))
        {
            var (code, output) = await server.Service.RunUntilExitAsync();
            Assert.Equal(2, code);
            AssertClear(output, "Tmem:Nbd:Exports:1:BackingFile", "missing.img", "never creates a backing file");
            Assert.False(Directory.Exists(server.Service.DataDirectory));
        }
        await using (var server = new NbdServer("--Tmem:Nbd:Listeners:0:SocketPath=/nonexistent/dir/nbd.sock"))
        {
            var (code, output) = await server.Service.RunUntilExitAsync();
            Assert.Equal(5, code);
            AssertClear(output, "Tmem:Nbd:Listeners:0:SocketPath", "/nonexistent/dir does not exist");
            Assert.False(Directory.Exists(server.Service.DataDirectory));
            Assert.False(File.Exists(server.Service.SocketPath), "the tmem socket bound before the failure was left behind");
        }
    }

    [NbdToolFact("nbdinfo")]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Listeners_TheUnixSocketIsTheOwnersOnly_AndTcpServesOnLoopback()
    {
        int port;
        using (var free = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            free.Start();
            port = ((System.Net.IPEndPoint)free.LocalEndpoint).Port;
        }
        await using var server = new NbdServer("--Tmem:Nbd:Listeners:2:Client=nbd", $"--Tmem:Nbd:Listeners:2:TcpPort={port}");
        await server.StartAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(server.Socket)); // 0600, as the tmem socket
        await server.AssertLoggedAsync($"NBD listening on TCP 127.0.0.1:{port} for client nbd");
        Assert.DoesNotContain("not loopback only", server.Service.Output);
        var (exit, json, err) = await Tool.RunAsync("nbdinfo", ["--json", $"nbd://127.0.0.1:{port}/disk"], 30);
        Assert.True(exit == 0, $"nbdinfo over TCP exited {exit}: {err}");
        var export = System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("exports")[0];
        Assert.Equal("disk", export.GetProperty("export-name").GetString());
        Assert.Equal(NbdServer.DiskSize, export.GetProperty("export-size").GetInt64());
    }

    [Fact]
    public async Task PersistentExport_ComesBackAfterARestart_MayGrow_NeverShrinks()
    {
        await using var server = new NbdServer();
        await server.StartAsync();
        using (var c = new NbdWire(server.Socket))
        {
            c.Open("disk");
            c.Write(NbdServer.DiskSize - 4096, Enumerable.Repeat((byte)0x7e, 4096).ToArray(), NbdWire.FlagFua);
        }
        Assert.Equal(0, await server.Service.StopAsync());

        // Grown: the same pool, the old blocks, the new size.
        var grown = new NbdServer($"--Tmem:Nbd:Exports:0:SizeBytes={2 * NbdServer.DiskSize >> 20}MiB"); // a size with a unit, as every ...Bytes key
        await using (grown)
        {
            Directory.Move(server.Service.DataDirectory, grown.Service.DataDirectory);
            await grown.StartAsync();
            Assert.Contains("grew from", grown.Service.Output);
            using (var c = new NbdWire(grown.Socket))
            {
                c.Open("disk");
                Assert.Equal((ulong)(2 * NbdServer.DiskSize), c.Size);
                Assert.Equal(Enumerable.Repeat((byte)0x7e, 4096).ToArray(), c.Read(NbdServer.DiskSize - 4096, 4096));
            }
            Assert.Equal(0, await grown.Service.StopAsync());

            // Shrunk: refused, naming the key and the size it holds.
            await using var shrunk = new NbdServer($"--Tmem:Nbd:Exports:0:SizeBytes={NbdServer.DiskSize}");
            Directory.Move(grown.Service.DataDirectory, shrunk.Service.DataDirectory);
            var (code, output) = await shrunk.Service.RunUntilExitAsync();
            Assert.Equal(2, code);
            AssertClear(output, "Tmem:Nbd:Exports:0:SizeBytes", $"holds {2 * NbdServer.DiskSize} bytes", "never shrink");
        }
    }
}
