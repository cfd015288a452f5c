using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Tmem.GarnetHost;

/// <summary>
/// A Garnet cluster on loopback for tests and the benchmark: <c>primaries</c> nodes, each this
/// project's host process (<see cref="GarnetNode"/>) with its own port and directory, the 16,384
/// hash slots split between them in even ranges, joined with CLUSTER MEET. Nodes can be killed
/// (SIGKILL), paused (SIGSTOP: a node that hangs with its connections open) and resumed, and
/// restarted on the same port and directory: with its cluster configuration (same node id and
/// slots) and either empty or with the data of its last SAVE (<c>recover</c>). Disposing kills
/// every node and deletes the directories.
/// </summary>
public sealed class GarnetCluster : IDisposable
{
    private readonly string _root;

    private GarnetCluster(string root, List<GarnetNode> nodes)
    {
        _root = root;
        Nodes = nodes;
    }

    /// <summary>The nodes, in slot order: node i serves slots [i * 16384 / n, (i + 1) * 16384 / n).</summary>
    public IReadOnlyList<GarnetNode> Nodes { get; }

    /// <summary>The endpoints as the remote tier's configuration takes them: "127.0.0.1:p1,127.0.0.1:p2,...".</summary>
    public string Endpoints => string.Join(",", Nodes.Select(n => $"127.0.0.1:{n.Port}"));

    /// <summary>The node serving <paramref name="slot"/>.</summary>
    public GarnetNode NodeOfSlot(int slot) => Nodes[Math.Min(Nodes.Count - 1, slot * Nodes.Count / 16384)];

    /// <summary>Starts the nodes, assigns the slots, joins them and waits until every node reports the cluster up.</summary>
    public static async Task<GarnetCluster> StartAsync(int primaries = 3, string? extraArguments = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        string root = Path.Combine(Path.GetTempPath(), "tmem-garnet-" + Guid.NewGuid().ToString("N")[..10]);
        var nodes = new List<GarnetNode>();
        var cluster = new GarnetCluster(root, nodes);
        try
        {
            for (int i = 0; i < primaries; i++)
            {
                var node = new GarnetNode(i, FreePort(), Path.Combine(root, $"node{i}"), extraArguments);
                nodes.Add(node);
                node.Start(recover: false);
            }
            foreach (var node in nodes) await node.WaitUpAsync(deadline).ConfigureAwait(false);
            for (int i = 0; i < primaries; i++)
            {
                int first = i * 16384 / primaries, last = (i + 1) * 16384 / primaries - 1;
                Expect("OK", await nodes[i].CommandAsync("CLUSTER", "ADDSLOTSRANGE", first.ToString(), last.ToString()).ConfigureAwait(false));
                Expect("OK", await nodes[i].CommandAsync("CLUSTER", "SET-CONFIG-EPOCH", (i + 1).ToString()).ConfigureAwait(false));
            }
            for (int i = 1; i < primaries; i++)
                Expect("OK", await nodes[0].CommandAsync("CLUSTER", "MEET", "127.0.0.1", nodes[i].Port.ToString()).ConfigureAwait(false));
            await cluster.WaitHealthyAsync(deadline).ConfigureAwait(false);
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    /// <summary>Waits until every live node knows every node and reports cluster_state:ok.</summary>
    public async Task WaitHealthyAsync(DateTime deadline)
    {
        string last = "";
        while (true)
        {
            bool ok = true;
            foreach (var node in Nodes)
            {
                try
                {
                    last = await node.CommandAsync("CLUSTER", "INFO").ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException)
                {
                    last = e.Message;
                }
                if (!last.Contains("cluster_state:ok") || !last.Contains($"cluster_known_nodes:{Nodes.Count}")) ok = false;
            }
            if (ok) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"The Garnet cluster did not come up: {last}");
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>A loopback port nobody listens on now.</summary>
    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static void Expect(string expected, string reply)
    {
        if (reply != expected) throw new InvalidOperationException($"Garnet answered '{reply}', expected '{expected}'.");
    }

    public void Dispose()
    {
        foreach (var node in Nodes) node.Dispose();
        try
        {
            if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One node of a <see cref="GarnetCluster"/>: a host process on a fixed port and directory.</summary>
public sealed class GarnetNode : IDisposable
{
    private readonly string? _extraArguments;
    private Process? _process;

    internal GarnetNode(int number, int port, string directory, string? extraArguments)
    {
        Number = number;
        Port = port;
        Directory = directory;
        _extraArguments = extraArguments;
        System.IO.Directory.CreateDirectory(directory);
    }

    public int Number { get; }

    public int Port { get; }

    public string Directory { get; }

    /// <summary>The process id while it runs (for SIGSTOP and SIGCONT by a test), else 0.</summary>
    public int ProcessId => _process is { HasExited: false } p ? p.Id : 0;

    internal void Start(bool recover)
    {
        string host = Path.Combine(AppContext.BaseDirectory, "Tmem.GarnetHost.dll");
        // The native device needs glibc 2.38 or newer; RandomAccess works everywhere.
        string arguments = $"\"{host}\" --port {Port} --bind 127.0.0.1 --cluster --device-type RandomAccess --checkpointdir \"{Directory}\""
            + " -q --logger-level Error --gossip-delay 1 --memory 256m --index 16m"
            + (recover ? " --recover" : "") + (_extraArguments is null ? "" : " " + _extraArguments);
        var info = new ProcessStartInfo("dotnet", arguments)
        {
            RedirectStandardInput = true, // the host stops when this closes: no node outlives its test run
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _process = Process.Start(info) ?? throw new InvalidOperationException("could not start the Garnet host");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    internal async Task WaitUpAsync(DateTime deadline)
    {
        while (true)
        {
            try
            {
                if (await CommandAsync("PING").ConfigureAwait(false) == "PONG") return;
            }
            catch (Exception e) when (e is IOException or SocketException or TimeoutException)
            {
            }
            if (_process is { HasExited: true } p) throw new InvalidOperationException($"Garnet node {Number} exited with code {p.ExitCode}.");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Garnet node {Number} (port {Port}) did not start.");
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>SIGKILL: the node is gone at once, its connections reset.</summary>
    public void Kill()
    {
        if (_process is { } p)
        {
            Signal(p, 9);
            p.WaitForExit(10_000);
            p.Dispose();
            _process = null;
        }
    }

    /// <summary>SIGSTOP: the node hangs with its connections open (a slow or stuck node).</summary>
    public void Pause() => Signal(_process ?? throw new InvalidOperationException("not running"), 19);

    /// <summary>SIGCONT after <see cref="Pause"/>: the node carries on with its data.</summary>
    public void Resume() => Signal(_process ?? throw new InvalidOperationException("not running"), 18);

    /// <summary>
    /// Starts the node again (after <see cref="Kill"/>) on its port and directory, so it keeps its
    /// node id and slots; <paramref name="recover"/> brings back the data of its last
    /// <c>SAVE</c>, otherwise it comes back empty. Waits until the cluster is up again.
    /// </summary>
    public async Task RestartAsync(GarnetCluster cluster, bool recover, TimeSpan? timeout = null)
    {
        if (_process is not null) Kill();
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        Start(recover);
        await WaitUpAsync(deadline).ConfigureAwait(false);
        await cluster.WaitHealthyAsync(deadline).ConfigureAwait(false);
    }

    /// <summary>A checkpoint of the node's data now (what <see cref="RestartAsync"/> with recover brings back).</summary>
    public async Task SaveAsync()
    {
        string reply = await CommandAsync("SAVE").ConfigureAwait(false);
        if (reply != "OK") throw new InvalidOperationException($"SAVE answered '{reply}'");
    }

    private static void Signal(Process process, int signal)
    {
        if (kill(process.Id, signal) != 0) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed");
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    /// <summary>One command on a fresh connection; the reply as text (simple string, error "-...", integer, bulk; arrays flattened).</summary>
    public async Task<string> CommandAsync(params string[] parts)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Loopback, Port, cts.Token).ConfigureAwait(false);
            var stream = client.GetStream();
            var request = new StringBuilder($"*{parts.Length}\r\n");
            foreach (var part in parts) request.Append($"${Encoding.UTF8.GetByteCount(part)}\r\n{part}\r\n");
            await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cts.Token).ConfigureAwait(false);
            var reader = new RespReader(stream, cts.Token);
            return await reader.ReadAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"Garnet node {Number} did not answer {parts[0]} within 5 s.");
        }
    }

    public void Dispose() => Kill();

    private sealed class RespReader(Stream stream, CancellationToken token)
    {
        private readonly byte[] _buffer = new byte[1 << 16];
        private int _start, _end;

        public async Task<string> ReadAsync()
        {
            string line = await LineAsync().ConfigureAwait(false);
            switch (line[0])
            {
                case '+':
                case ':':
                    return line[1..];
                case '-':
                    return line;
                case '$':
                {
                    int length = int.Parse(line[1..]);
                    if (length < 0) return "(nil)";
                    var bytes = new byte[length];
                    for (int got = 0; got < length;)
                    {
                        if (_start == _end) await FillAsync().ConfigureAwait(false);
                        int n = Math.Min(length - got, _end - _start);
                        Array.Copy(_buffer, _start, bytes, got, n);
                        _start += n;
                        got += n;
                    }
                    await LineAsync().ConfigureAwait(false);
                    return Encoding.UTF8.GetString(bytes);
                }
                case '*':
                {
                    int count = int.Parse(line[1..]);
                    var items = new List<string>();
                    for (int i = 0; i < count; i++) items.Add(await ReadAsync().ConfigureAwait(false));
                    return string.Join("\n", items);
                }
                default:
                    return line;
            }
        }

        private async Task<string> LineAsync()
        {
            while (true)
            {
                int newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (newline >= 0)
                {
                    string line = Encoding.UTF8.GetString(_buffer, _start, newline - _start).TrimEnd('\r');
                    _start = newline + 1;
                    return line;
                }
                await FillAsync().ConfigureAwait(false);
            }
        }

        private async Task FillAsync()
        {
            if (_start > 0)
            {
                Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            int n = await stream.ReadAsync(_buffer.AsMemory(_end), token).ConfigureAwait(false);
            if (n == 0) throw new IOException("Garnet closed the connection.");
            _end += n;
        }
    }
}
