using System.Text.Json;

namespace Tmem.Service.Tests;

[CollectionDefinition("Nbd", DisableParallelization = true)]
public sealed class NbdCollection : ICollectionFixture<NbdFixture>
{
}

/// <summary>One NBD-enabled service process for the tests of the "Nbd" collection.</summary>
public sealed class NbdFixture : IAsyncLifetime
{
    public NbdServer Server { get; } = new();

    public Task InitializeAsync() => Server.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// The NBD front end driven by NBD clients no one here wrote (Debian's libnbd-bin, qemu-utils,
/// fio, python3-libnbd), each test skipped with the reason where its client is not installed.
/// The tests write the ranges they check, so they need no order.
/// </summary>
[Collection("Nbd")]
[Trait("Kind", "Integration")]
public sealed class NbdClientTests(NbdFixture fixture)
{
    private const int P = 4096;
    private NbdServer Server => fixture.Server;

    [NbdToolFact("nbdinfo")]
    public async Task Nbdinfo_ListsTheClientsExports_WithSizesBlockSizesAndFlagsAsDocumented()
    {
        var json = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", ["--list", "--json", $"nbd+unix:///?socket={Server.Socket}"]));
        Assert.True(json.RootElement.GetProperty("structured").GetBoolean());
        var exports = json.RootElement.GetProperty("exports").EnumerateArray().ToDictionary(e => e.GetProperty("export-name").GetString()!);
        Assert.Equal(["cache", "disk"], exports.Keys.Order().ToArray());
        Assert.Equal("a persistent test disk", exports["disk"].GetProperty("description").GetString());
        Assert.Equal(NbdServer.DiskSize, exports["disk"].GetProperty("export-size").GetInt64());
        Assert.Equal(NbdServer.CacheSize, exports["cache"].GetProperty("export-size").GetInt64()); // the backing file's size
        foreach (var export in exports.Values)
        {
            Assert.Equal(1, export.GetProperty("block_size_minimum").GetInt32());
            Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
            Assert.Equal(32 << 20, export.GetProperty("block_size_maximum").GetInt32());
            foreach (var flag in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_multi_conn", "can_cache", "can_df" })
                Assert.True(export.GetProperty(flag).GetBoolean(), flag);
            Assert.False(export.GetProperty("is_read_only").GetBoolean());
            Assert.False(export.GetProperty("is_rotational").GetBoolean());
            Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        }

        // Alice's listener acts for alice, who owns no export: she sees none and opens none.
        var alice = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", ["--list", "--json", $"nbd+unix:///?socket={Server.AliceSocket}"]));
        Assert.Empty(alice.RootElement.GetProperty("exports").EnumerateArray());
        var (exit, _, err) = await Tool.RunAsync("nbdinfo", [$"nbd+unix:///disk?socket={Server.AliceSocket}"]);
        Assert.NotEqual(0, exit);
        Assert.Contains("error to opt_go request", err); // NBD_REP_ERR_UNKNOWN, as libnbd words it
        Assert.Contains("for export: disk", err);
    }

    [NbdToolFact("nbdcopy")]
    public async Task Nbdcopy_CorpusInAndBackOut_IsByteExact_PersistentAndCache()
    {
        string input = Path.Combine(Server.Root, "corpus.img");
        var corpus = Corpus.Bytes(NbdServer.DiskSize);
        // Holes too: every 16th MiB zero, so the copies use zeroing and sparse reads.
        for (long mib = 3; mib < 64; mib += 16) Array.Clear(corpus, (int)(mib << 20), 1 << 20);
        await File.WriteAllBytesAsync(input, corpus);
        foreach (var export in new[] { "disk", "cache" })
        {
            string output = Path.Combine(Server.Root, $"out-{export}.img");
            await Tool.CheckAsync("nbdcopy", [input, Server.Uri(export)]);
            await Tool.CheckAsync("nbdcopy", [Server.Uri(export), output]);
            var back = await File.ReadAllBytesAsync(output);
            Assert.True(Corpus.Same(corpus, back), $"{export}: {Corpus.Describe(corpus, back)} (pages from {Corpus.Source})");
            File.Delete(output);
        }
        // The cache export's file is authoritative: it holds what was written.
        var file = await File.ReadAllBytesAsync(Server.BackingFile);
        Assert.True(Corpus.Same(corpus, file), "the backing file does not hold what nbdcopy wrote");
        File.Delete(input);
    }

    [NbdToolFact("qemu-io")]
    public async Task QemuIo_PatternWritesAndReads_PageAlignedAnd512ByteAligned_LeaveNeighboursIntact()
    {
        foreach (var export in new[] { "disk", "cache" })
        {
            const long b = 20L << 20; // a range of its own
            string[] commands =
            [
                $"write -P 0x00 {b} 65536",
                $"write -P 0x11 {b} 4096",                // one page
                $"write -P 0x22 {b + 4096 + 512} 1024",   // two sectors inside a page: read-modify-write
                $"write -P 0x33 {b + 3 * 4096 - 512} 1024", // across a page boundary
                $"write -P 0x44 {b + 5 * 4096} 12288",     // three pages
                $"write -P 0x55 {b + 9 * 4096 + 1536} 9216", // unaligned start and end, spanning pages
                $"read -P 0x11 {b} 4096",
                $"read -P 0x00 {b + 4096} 512",
                $"read -P 0x22 {b + 4096 + 512} 1024",
                $"read -P 0x00 {b + 4096 + 1536} 2560",
                $"read -P 0x00 {b + 2 * 4096} 3584",
                $"read -P 0x33 {b + 3 * 4096 - 512} 1024",
                $"read -P 0x00 {b + 3 * 4096 + 512} 3584",
                $"read -P 0x44 {b + 5 * 4096} 12288",
                $"read -P 0x00 {b + 8 * 4096} 5632",
                $"read -P 0x55 {b + 9 * 4096 + 1536} 9216",
                $"read -P 0x00 {b + 9 * 4096 + 1536 + 9216} 512",
            ];
            var args = new List<string> { "-f", "raw" };
            foreach (var c in commands) args.AddRange(["-c", c]);
            args.Add(Server.Uri(export));
            string output = await Tool.CheckAsync("qemu-io", args);
            Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);
            Assert.Equal(6, output.Split('\n').Count(l => l.StartsWith("wrote ", StringComparison.Ordinal)));
            Assert.Equal(11, output.Split('\n').Count(l => l.StartsWith("read ", StringComparison.Ordinal)));
            // qemu-io counts a pattern mismatch as a failed read; a second connection sees the same bytes.
            string again = await Tool.CheckAsync("qemu-io", ["-f", "raw", "-c", $"read -P 0x22 {b + 4096 + 512} 1024", "-c", $"read -P 0x11 {b} 4096", Server.Uri(export)]);
            Assert.DoesNotContain("fail", again, StringComparison.OrdinalIgnoreCase);
        }
    }

    [NbdToolFact("fio")]
    public async Task Fio_RandomWritesVerifiedWithCrc32c_FourJobsOnFourConnections_BothModes()
    {
        foreach (var export in new[] { "disk", "cache" })
        {
            string job = Path.Combine(Server.Root, $"{export}.fio");
            await File.WriteAllTextAsync(job, $"""
                [global]
                ioengine=nbd
                uri={Server.Uri(export)}
                rw=randwrite
                bs=4k
                iodepth=16
                numjobs=4
                size=4m
                offset=32m
                offset_increment=4m
                buffer_compress_percentage=60
                refill_buffers=1
                verify=crc32c
                verify_fatal=1
                do_verify=1
                [job]
                """);
            var (exit, output, err) = await Tool.RunAsync("fio", [job], timeoutSeconds: 240);
            Assert.True(exit == 0, $"fio on {export} exited {exit}:\n{err}\n{output}");
            Assert.DoesNotContain("verify:", output + err);
            Assert.Equal(4, output.Split('\n').Count(l => l.Contains("err= 0", StringComparison.Ordinal)));
        }
    }

    [NbdToolFact("nbdsh", "qemu-img")]
    public async Task TrimAndWriteZeroes_FreeTheStoresPagesAndBytes_BlockStatusReportsTheHoles()
    {
        const long x = 48L << 20;
        await Tool.NbdshAsync(Server.Uri("disk"), $"""
            import os
            h.pwrite(os.urandom(4096 * 64), {x})
            h.flush()
            """);
        var before = await Server.StatsAsync();

        // TRIM of 32 pages: they leave the store and read as zeros.
        await Tool.NbdshAsync(Server.Uri("disk"), $"""
            h.trim(4096 * 32, {x})
            assert h.pread(4096 * 32, {x}) == bytes(4096 * 32)
            """);
        var trimmed = await Server.StatsAsync();
        Assert.Equal(before["pers_pages"] - 32, trimmed["pers_pages"]);
        Assert.Equal(before["pers_zbytes"] - 32 * 4096, trimmed["pers_zbytes"]); // random pages are stored uncompressed, 4096 bytes each

        // WRITE_ZEROES with NO_HOLE: 16 zero pages, still allocated, storing no bytes; without it: 16 holes.
        await Tool.NbdshAsync(Server.Uri("disk"), $"""
            h.zero(4096 * 16, {x + 32 * P}, nbd.CMD_FLAG_NO_HOLE)
            h.zero(4096 * 16, {x + 48 * P})
            assert h.pread(4096 * 32, {x + 32 * P}) == bytes(4096 * 32)
            """);
        var zeroed = await Server.StatsAsync();
        Assert.Equal(trimmed["pers_pages"] - 16, zeroed["pers_pages"]);
        Assert.Equal(trimmed["zero_filled_pages"] + 16, zeroed["zero_filled_pages"]);
        Assert.Equal(trimmed["pers_zbytes"] - 32 * 4096, zeroed["pers_zbytes"]);

        // BLOCK_STATUS (base:allocation): holes are pages not in the store; zero pages are allocated zeros.
        string extents = await Tool.NbdshAsync(Server.Uri("disk"), $$"""
            e = []
            def cb(meta, offset, entries, err):
                e.extend(entries)
                return 0
            h.block_status(4096 * 64, {{x}}, cb)
            print(e)
            """);
        Assert.Equal("[131072, 3, 65536, 2, 65536, 3]", extents.Trim());
        var map = await Tool.CheckAsync("qemu-img", ["map", "--output=json", "--image-opts", $"driver=nbd,server.type=unix,server.path={Server.Socket},export=disk"], 60);
        Assert.Contains("\"zero\": true", map);
    }

    [NbdToolFact("nbdfuse")]
    public async Task Nbdfuse_TheExportAsAFile_OrdinaryFileWritesAndFsync_ReachTheDevice()
    {
        // nbdfuse (libnbd-bin) serves the export as a file in a FUSE mount: the kernel's page
        // cache, a program's write() and fsync() (an NBD FLUSH) in front of the export.
        const long b = 60L << 20;
        string mount = Path.Combine(Server.Root, "fuse");
        string file = Path.Combine(mount, "disk");
        Directory.CreateDirectory(mount);
        var info = new System.Diagnostics.ProcessStartInfo("nbdfuse") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { file, Server.Uri("disk") }) info.ArgumentList.Add(a);
        using var fuse = System.Diagnostics.Process.Start(info)!;
        var fuseErrors = fuse.StandardError.ReadToEndAsync();
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!(File.Exists(file) && new FileInfo(file).Length == NbdServer.DiskSize))
            {
                Assert.False(fuse.HasExited, $"nbdfuse exited {(fuse.HasExited ? fuse.ExitCode : 0)}: {(fuse.HasExited ? await fuseErrors : "")}");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "nbdfuse did not show the export within 20 s");
                await Task.Delay(50);
            }
            var data = Corpus.Bytes(1 << 20);
            using (var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
            {
                stream.Position = b + 1000; // not page-aligned
                stream.Write(data);
                stream.Flush(flushToDisk: true);
            }
            using var c = new NbdWire(Server.Socket);
            c.Open("disk");
            Assert.Equal(data, c.Read((ulong)(b + 1000), 1 << 20));
            // ... and the other way: a write over NBD, read through the file (via the kernel's page cache: this range was never read through the mount, so nothing stale is cached).
            var other = Corpus.Bytes(2 << 20).AsSpan(1 << 20).ToArray();
            c.Write((ulong)(b + (2 << 20)), other, NbdWire.FlagFua);
            using (var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                stream.Position = b + (2 << 20);
                var back = new byte[other.Length];
                stream.ReadExactly(back);
                Assert.True(Corpus.Same(other, back), Corpus.Describe(other, back));
            }
        }
        finally
        {
            await Tool.RunAsync(Tool.Find("fusermount3") ?? "umount", Tool.Find("fusermount3") is null ? [mount] : ["-u", mount], 30);
            if (!fuse.WaitForExit(10_000)) fuse.Kill();
        }
    }

    [Fact]
    public async Task UnalignedWrites_FromEightConnectionsAtOnce_AreReadModifyWriteUnderThePagesLock()
    {
        // Each of 64 pages gets its eight 512-byte sectors from eight connections, pipelined, all at
        // once: a read-modify-write without the page's lock would lose sectors.
        const ulong b = 24UL << 20;
        foreach (var export in new[] { "disk", "cache" })
        {
            var clients = Enumerable.Range(0, 8).Select(_ => new NbdWire(Server.Socket)).ToList();
            try
            {
                foreach (var c in clients) c.Open(export);
                clients[0].Write(b, new byte[64 * P]);
                await Task.WhenAll(clients.Select((c, sector) => Task.Run(() =>
                {
                    var cookies = new List<ulong>();
                    for (int page = 0; page < 64; page++)
                        cookies.Add(c.SendRequest(NbdWire.CmdWrite, b + (ulong)(page * P + sector * 512), 512, payload: Sector(page, sector)));
                    foreach (var _ in cookies) Assert.Equal(0u, c.ReceiveReply().Error);
                })));
                var back = clients[0].Read(b, 64 * P);
                for (int page = 0; page < 64; page++)
                    for (int sector = 0; sector < 8; sector++)
                        Assert.True(back.AsSpan(page * P + sector * 512, 512).SequenceEqual(Sector(page, sector)), $"{export}: page {page} sector {sector} lost its write");
            }
            finally
            {
                foreach (var c in clients) c.Dispose();
            }
        }
    }

    private static byte[] Sector(int page, int sector)
    {
        var bytes = new byte[512];
        new Random(page * 8 + sector).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void StructuredReads_OfHoles_AreSparse_AndSimpleRepliesCarryTheSameBytes()
    {
        const ulong b = 28UL << 20;
        using var structured = new NbdWire(Server.Socket);
        structured.Open("disk");
        using var simple = new NbdWire(Server.Socket);
        simple.Open("disk", structured: false);
        var data = new byte[16 * P];
        new Random(5).NextBytes(data.AsSpan(0, 4 * P));
        new Random(6).NextBytes(data.AsSpan(12 * P));
        structured.Write(b, data);
        var reply = structured.Call(NbdWire.CmdRead, b, 16 * P);
        Assert.Equal(0u, reply.Error);
        Assert.Equal(data, reply.Data);
        Assert.Equal(1, reply.Holes); // the eight zero pages in the middle: one OFFSET_HOLE chunk
        Assert.Equal(data, simple.Read(b, 16 * P));
        // Unaligned reads across pages, both ways.
        Assert.Equal(data.AsSpan(4000, 5000).ToArray(), structured.Read(b + 4000, 5000));
        Assert.Equal(data.AsSpan(4000, 5000).ToArray(), simple.Read(b + 4000, 5000));
    }
}
