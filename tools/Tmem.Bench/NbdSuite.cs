using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tmem.Client;

namespace Tmem.Bench;

/// <summary>
/// The <c>nbd</c> suite: the service's NBD front end beside nbdkit's <c>memory</c> plugin
/// (<c>allocator=sparse</c>, plain RAM, and <c>allocator=zstd</c>, compressed RAM), each a
/// separate process on a Unix socket, in the same run. Each server gets the same device: the
/// corpus written <see cref="Copies"/> times by nbdcopy; then the same fio jobs
/// (<c>--ioengine=nbd --bs=4k --iodepth=16</c>): random reads of what was written, random writes
/// of fio pages that compress as the corpus did in the store. Resident memory is measured before
/// and after the fill. Our export is a persistent export of a memory-only store (a RAM disk, as
/// nbdkit's); a second service with a data directory (Strict) measures FLUSH latency
/// (<c>fio --fsync=1</c>: a 4 KiB write, then a FLUSH, one at a time).
/// Needs nbdkit, nbdcopy and fio on PATH (Debian nbdkit, libnbd-bin, fio; .ci/run installs them).
/// </summary>
internal sealed class NbdSuite
{
    private const int PageSize = Corpus.PageSize;
    private const int Copies = 8;
    private const int Repeats = 3;
    private const int Seconds = 6;       // each fio job's measured time, after a second of ramp

    private readonly Report _report;
    private readonly Corpus _corpus;
    private readonly string _root;
    private readonly string _image;
    private readonly long _size;

    public NbdSuite(Corpus corpus, Report report)
    {
        _report = report;
        var pages = corpus.Pages;
        _corpus = corpus;
        _root = Path.Combine("/tmp", "tmem-bench-nbd-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        _image = Path.Combine(_root, "corpus.img");
        _size = (long)pages.Length * PageSize * Copies;
        Console.WriteLine($"corpus: {corpus.Description}, written {Copies} times: {pages.Length * Copies} pages ({_size >> 20} MiB); fio bs=4k iodepth=16, {Seconds} s per job; median of {Repeats}");
    }

    private long Pages => _size / PageSize;

    public void Run()
    {
        foreach (var tool in new[] { "nbdkit", "nbdcopy", "fio" })
            if (Find(tool) is null) throw new InvalidOperationException($"{tool} is not on PATH (Debian packages nbdkit, libnbd-bin, fio; .ci/run installs them).");
        Directory.CreateDirectory(_root);
        try
        {
            using (var image = File.Create(_image))
                for (int copy = 0; copy < Copies; copy++)
                    foreach (var page in _corpus.Pages) image.Write(page);
            var runs = new List<Dictionary<string, double>>();
            for (int rep = 0; rep < Repeats; rep++)
            {
                var run = new Dictionary<string, double>();
                RunTmem(run).GetAwaiter().GetResult();
                int compress = (int)run["nbd_fio_buffer_compress_percentage"];
                RunNbdkit(run, "sparse", compress).GetAwaiter().GetResult();
                RunNbdkit(run, "zstd", compress).GetAwaiter().GetResult();
                RunFlush(run, "Strict", "nbd").GetAwaiter().GetResult();
                RunFlush(run, "Relaxed", "nbd_relaxed").GetAwaiter().GetResult();
                Console.WriteLine($"  run {rep + 1}: " + string.Join(", ", run.Select(kv => $"{kv.Key}={kv.Value:0.##}")));
                runs.Add(run);
            }
            double M(string key) => Report.Median(runs.Select(r => r[key]).ToArray());
            foreach (var key in runs[0].Keys) _report.Add(key, M(key), "median of runs");
            double read = M("nbd_randread_iops") / M("nbdkit_sparse_randread_iops");
            double write = M("nbd_randwrite_iops") / M("nbdkit_sparse_randwrite_iops");
            double writeZstd = M("nbd_randwrite_iops") / M("nbdkit_zstd_randwrite_iops");
            double rss = M("nbd_rss_bytes_per_page") / M("nbdkit_zstd_rss_bytes_per_page");
            _report.Add("nbd_randread_vs_nbdkit_sparse", read, "random-read IOPS, ours / nbdkit sparse");
            _report.Add("nbd_randwrite_vs_nbdkit_sparse", write, "random-write IOPS, ours / nbdkit sparse");
            _report.Add("nbd_randwrite_vs_nbdkit_zstd", writeZstd, "random-write IOPS, ours / nbdkit zstd");
            _report.Add("nbd_rss_per_page_vs_nbdkit_zstd", rss, "resident bytes per stored page, ours / nbdkit zstd");
            _report.Target("nbd_randread_vs_nbdkit_sparse >= 1.0", read >= 1.0);
            _report.Target("nbd_randwrite_vs_nbdkit_sparse >= 0.7", write >= 0.7);
            _report.Target("nbd_randwrite_vs_nbdkit_zstd >= 3", writeZstd >= 3);
            _report.Target("nbd_rss_per_page_vs_nbdkit_zstd <= 0.75", rss <= 0.75);
        }
        finally
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private string[] ServiceArguments(string dataDirectory) =>
    [
        $"--Tmem:DataDirectory={dataDirectory}", "--Tmem:RamBudgetBytes=2147483648", $"--Tmem:Service:SocketPath={Path.Combine(_root, "tmem.sock")}",
        "--Tmem:Service:Clients:0:Name=bench", "--Tmem:Service:Clients:0:Secret=bench",
        "--Tmem:Nbd:Listeners:0:Client=bench", $"--Tmem:Nbd:Listeners:0:SocketPath={Path.Combine(_root, "nbd.sock")}",
        "--Tmem:Nbd:Exports:0:Name=bench", "--Tmem:Nbd:Exports:0:Client=bench", $"--Tmem:Nbd:Exports:0:SizeBytes={_size}",
        "--Tmem:Service:StatsLogIntervalSeconds=0", "--Logging:LogLevel:Default=Warning",
    ];

    private string Uri => $"nbd+unix:///bench?socket={Path.Combine(_root, "nbd.sock")}";

    private async Task RunTmem(Dictionary<string, double> run)
    {
        using var process = StartService(ServiceArguments(""));
        try
        {
            await ServiceSuite.WaitForSocket(Path.Combine(_root, "nbd.sock"), process);
            await Fill(process.Id, Uri, "nbd", run);
            await using (var tmem = await TmemConnection.ConnectAsync(Path.Combine(_root, "tmem.sock"), "bench", "bench"))
            {
                var stats = (await tmem.GetStatsAsync()).ToDictionary(kv => kv.Key, kv => kv.Value);
                // fio's pages should compress as the corpus did: the store's bytes per page written.
                double stored = stats["pers_zbytes"] / (double)_size;
                run["nbd_stored_bytes_fraction"] = stored;
                run["nbd_fio_buffer_compress_percentage"] = Math.Clamp(Math.Round(100 * (1 - stored)), 0, 95);
            }
            await Jobs(process.Id, Uri, "nbd", (int)run["nbd_fio_buffer_compress_percentage"], run);
        }
        finally
        {
            Stop(process);
        }
    }

    private async Task RunNbdkit(Dictionary<string, double> run, string allocator, int compress)
    {
        string socket = Path.Combine(_root, $"nbdkit-{allocator}.sock");
        File.Delete(socket); // a killed nbdkit leaves its socket behind, and a new one will not replace it
        var info = new ProcessStartInfo("nbdkit") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _root };
        foreach (var a in new[] { "-f", "-U", socket, "memory", $"size={_size}", $"allocator={allocator}" }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"  nbdkit: {e.Data}"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await ServiceSuite.WaitForSocket(socket, process);
            string uri = $"nbd+unix:///?socket={socket}";
            await Fill(process.Id, uri, $"nbdkit_{allocator}", run);
            await Jobs(process.Id, uri, $"nbdkit_{allocator}", compress, run);
        }
        finally
        {
            Stop(process);
        }
    }

    /// <summary>
    /// FLUSH latency of a persistent export with a data directory: a 4 KiB write, then a FLUSH, one
    /// at a time. Strict: the write waits for its commit, the FLUSH finds nothing left to do;
    /// Relaxed: the write returns once appended, the FLUSH waits for the commit.
    /// </summary>
    private async Task RunFlush(Dictionary<string, double> run, string durability, string prefix)
    {
        string data = Path.Combine(_root, "data");
        using var process = StartService([.. ServiceArguments(data), $"--Tmem:Durability={durability}"]);
        try
        {
            await ServiceSuite.WaitForSocket(Path.Combine(_root, "nbd.sock"), process);
            var fio = await Fio(Uri, "randwrite", 1, ["--fsync=1", "--buffer_compress_percentage=50", "--refill_buffers"]);
            var sync = fio.GetProperty("sync");
            run[$"{prefix}_flush_latency_p50_us"] = Percentile(sync.GetProperty("lat_ns"), "50.000000") / 1000;
            run[$"{prefix}_flush_latency_p99_us"] = Percentile(sync.GetProperty("lat_ns"), "99.000000") / 1000;
            run[$"{prefix}_flushed_write_p50_us"] = Percentile(fio.GetProperty("write").GetProperty("clat_ns"), "50.000000") / 1000;
            run[$"{prefix}_flushed_writes_per_s"] = fio.GetProperty("write").GetProperty("iops").GetDouble();
        }
        finally
        {
            Stop(process);
            Directory.Delete(data, recursive: true);
        }
    }

    /// <summary>Writes the corpus image with nbdcopy; the resident memory it added per page written.</summary>
    private async Task Fill(int pid, string uri, string prefix, Dictionary<string, double> run)
    {
        await Task.Delay(300);
        long before = ServiceSuite.ResidentBytes(pid);
        var clock = Stopwatch.StartNew();
        await Check("nbdcopy", [_image, uri]);
        run[$"{prefix}_fill_mib_per_s"] = (_size >> 20) / clock.Elapsed.TotalSeconds;
        await Task.Delay(300);
        run[$"{prefix}_rss_bytes_per_page"] = (double)(ServiceSuite.ResidentBytes(pid) - before) / Pages;
    }

    /// <summary>
    /// The random-read and random-write jobs; besides fio's figures, the server's CPU time per
    /// request (user + system, over the job's ramp and run, per request fio counted in the run:
    /// a little high, the same way for every server). Unlike a rate, it hardly moves when other
    /// work shares the cores.
    /// </summary>
    private async Task Jobs(int pid, string uri, string prefix, int compress, Dictionary<string, double> run)
    {
        double cpu = ServiceSuite.CpuSeconds(pid);
        var read = await Fio(uri, "randread", 16, []);
        run[$"{prefix}_randread_server_cpu_us"] = (ServiceSuite.CpuSeconds(pid) - cpu) * 1e6 / read.GetProperty("read").GetProperty("total_ios").GetDouble();
        run[$"{prefix}_randread_iops"] = read.GetProperty("read").GetProperty("iops").GetDouble();
        run[$"{prefix}_randread_p50_us"] = Percentile(read.GetProperty("read").GetProperty("clat_ns"), "50.000000") / 1000;
        run[$"{prefix}_randread_p99_us"] = Percentile(read.GetProperty("read").GetProperty("clat_ns"), "99.000000") / 1000;
        cpu = ServiceSuite.CpuSeconds(pid);
        var write = await Fio(uri, "randwrite", 16, [$"--buffer_compress_percentage={compress}", "--refill_buffers"]);
        run[$"{prefix}_randwrite_server_cpu_us"] = (ServiceSuite.CpuSeconds(pid) - cpu) * 1e6 / write.GetProperty("write").GetProperty("total_ios").GetDouble();
        run[$"{prefix}_randwrite_iops"] = write.GetProperty("write").GetProperty("iops").GetDouble();
        run[$"{prefix}_randwrite_p50_us"] = Percentile(write.GetProperty("write").GetProperty("clat_ns"), "50.000000") / 1000;
        run[$"{prefix}_randwrite_p99_us"] = Percentile(write.GetProperty("write").GetProperty("clat_ns"), "99.000000") / 1000;
    }

    /// <summary>One fio job over the whole device; its job object from fio's JSON output.</summary>
    private async Task<JsonElement> Fio(string uri, string rw, int depth, string[] extra)
    {
        string output = await Check("fio",
        [
            "--name=bench", "--ioengine=nbd", $"--uri={uri}", $"--rw={rw}", "--bs=4k", $"--iodepth={depth}", $"--size={_size}",
            "--time_based", "--ramp_time=1", $"--runtime={Seconds}", "--output-format=json", .. extra,
        ]);
        // fio may print notes before its JSON document.
        using var json = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        if (job.GetProperty("error").GetInt32() != 0) throw new InvalidOperationException($"fio {rw} on {uri}: error {job.GetProperty("error").GetInt32()}");
        return job.Clone();
    }

    private static double Percentile(JsonElement latency, string which) =>
        latency.GetProperty("percentile").GetProperty(which).GetDouble();

    private Process StartService(string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _root };
        info.ArgumentList.Add(ServiceSuite.ServiceDll());
        foreach (var a in arguments) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"  service: {e.Data}"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static void Stop(Process process)
    {
        if (!process.HasExited) process.Kill();
        process.WaitForExit();
    }

    private static async Task<string> Check(string tool, string[] args)
    {
        var info = new ProcessStartInfo(tool) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0) throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {process.ExitCode}: {await error}");
        return await output;
    }

    private static string? Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);
}
