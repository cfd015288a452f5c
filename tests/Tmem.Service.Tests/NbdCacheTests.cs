namespace Tmem.Service.Tests;

/// <summary>
/// Cache exports with a RAM budget far smaller than the device (2 MiB for 64 MiB): pages are
/// evicted all the time, which may cost reads of the backing file and never a wrong byte; a
/// completed write is never shadowed by an older cached page.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class NbdCacheTests : IAsyncLifetime
{
    private const int P = 4096;
    private readonly NbdServer _server = new("--Tmem:RamBudgetBytes=2097152", "--Tmem:Service:ReclaimIntervalMs=100");

    public async Task InitializeAsync()
    {
        // The backing file holds real pages before the service starts.
        await File.WriteAllBytesAsync(_server.BackingFile, Corpus.Bytes(NbdServer.CacheSize));
        await _server.StartAsync();
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [NbdToolFact("nbdcopy")]
    public async Task WorkingSetLargerThanTheRamBudget_ReadsBackExactly_EvictionsCostOnlySpeed()
    {
        var expected = await File.ReadAllBytesAsync(_server.BackingFile);
        for (int pass = 0; pass < 2; pass++)
        {
            string output = Path.Combine(_server.Root, $"pass{pass}.img");
            await Tool.CheckAsync("nbdcopy", ["--connections=2", _server.Uri("cache"), output]);
            var back = await File.ReadAllBytesAsync(output);
            Assert.True(Corpus.Same(expected, back), $"pass {pass}: {Corpus.Describe(expected, back)} (pages from {Corpus.Source})");
            File.Delete(output);
        }
        var stats = await _server.StatsAsync();
        Assert.True(stats["evicted_eph_pages"] > 10_000, $"only {stats["evicted_eph_pages"]} evictions: the working set fit after all");
        Assert.True(stats["ram_slot_bytes"] <= 2 << 20, $"{stats["ram_slot_bytes"]} slot bytes over the 2 MiB budget");
    }

    [Fact]
    public async Task Writes_AreNeverShadowedByAStaleCachedPage_WhileReadersRefillTheCache()
    {
        // One writer bumps the version of 4 pages again and again; six readers read them all the
        // time (each miss reads the file and puts a clean copy, racing with the writes); two more
        // scan the rest of the device, filling the 2 MiB cache. A read sent after a write
        // completed must see that write or a later one.
        const ulong b = 40UL << 20;
        const int pages = 4;
        const int versions = 1500;
        var completed = new int[pages];
        using var writer = new NbdWire(_server.Socket);
        writer.Open("cache");
        var readers = Enumerable.Range(0, 6).Select(_ => new NbdWire(_server.Socket)).ToList();
        try
        {
            foreach (var r in readers) r.Open("cache");
            for (int p = 0; p < pages; p++) writer.Write(b + (ulong)(p * P), Versioned(p, 0));
            using var stop = new CancellationTokenSource();
            int checkedReads = 0;
            var scanners = Enumerable.Range(0, 2).Select(_ => new NbdWire(_server.Socket)).ToList();
            foreach (var s in scanners) s.Open("cache");
            var scanning = scanners.Select((scanner, n) => Task.Run(() =>
            {
                for (ulong at = (ulong)n << 24; !stop.IsCancellationRequested; at = (at + (256 << 10)) % (32UL << 20))
                    scanner.Read(at, 256 << 10);
                scanner.Dispose();
            })).ToList();
            var reading = readers.Select((reader, n) => Task.Run(() =>
            {
                var random = new Random(n);
                while (!stop.IsCancellationRequested)
                {
                    int p = random.Next(pages);
                    int floor = Volatile.Read(ref completed[p]);
                    var page = reader.Read(b + (ulong)(p * P), P);
                    int version = BitConverter.ToInt32(page, 4);
                    Assert.True(BitConverter.ToInt32(page, 0) == p && page.AsSpan().SequenceEqual(Versioned(p, version)), $"page {p} is not a whole version");
                    Assert.True(version >= floor, $"page {p}: read version {version} after version {floor} was written (a stale cached page)");
                    Interlocked.Increment(ref checkedReads);
                }
            })).ToList();
            for (int version = 1; version <= versions; version++)
            {
                for (int p = 0; p < pages; p++)
                {
                    var page = Versioned(p, version);
                    writer.Write(b + (ulong)(p * P), page);
                    Volatile.Write(ref completed[p], version);
                    // The same last 64 bytes again: the content stays, but a partial write drops the
                    // cached page, so the readers' next reads fill it from the file, racing with the
                    // next version's write.
                    writer.Write(b + (ulong)(p * P + P - 64), page.AsSpan(P - 64));
                }
            }
            stop.Cancel();
            await Task.WhenAll(reading);
            await Task.WhenAll(scanning);
            Assert.True(checkedReads > 1000, $"only {checkedReads} reads were checked");
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
        }
        // The file is authoritative: it holds the last version of every page.
        using var file = File.OpenRead(_server.BackingFile);
        var last = new byte[P];
        for (int p = 0; p < pages; p++)
        {
            file.Position = (long)b + p * P;
            file.ReadExactly(last);
            Assert.Equal(Versioned(p, versions), last);
        }
        Assert.True((await _server.StatsAsync())["evicted_eph_pages"] > 1000, "the hot pages were not evicted: the race was not tried");
    }

    /// <summary>A page that says which page and version it is, with the rest derived from both (compresses poorly).</summary>
    private static byte[] Versioned(int page, int version)
    {
        var bytes = new byte[P];
        new Random(page * 100_003 + version).NextBytes(bytes);
        BitConverter.TryWriteBytes(bytes.AsSpan(0), page);
        BitConverter.TryWriteBytes(bytes.AsSpan(4), version);
        return bytes;
    }

    [NbdToolFact("fio")]
    public async Task Fio_RandomReadWriteVerified_OnACacheSmallerThanItsWorkingSet()
    {
        string job = Path.Combine(_server.Root, "cache.fio");
        await File.WriteAllTextAsync(job, $"""
            [global]
            ioengine=nbd
            uri={_server.Uri("cache")}
            rw=randwrite
            bs=4k
            iodepth=16
            numjobs=2
            size=16m
            offset_increment=16m
            buffer_compress_percentage=60
            refill_buffers=1
            verify=crc32c
            verify_fatal=1
            [job]
            """);
        var (exit, output, err) = await Tool.RunAsync("fio", [job], timeoutSeconds: 240);
        Assert.True(exit == 0, $"fio exited {exit}:\n{err}\n{output}");
        Assert.DoesNotContain("verify:", output + err);
    }
}
