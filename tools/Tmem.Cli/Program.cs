using System.Globalization;
using Tmem;
using Tmem.Client;

// tmem: a small client of the Tmem service, to see it work.
const string Usage = """
    usage: tmem [--socket ADDRESS] [--client NAME] [--secret SECRET] COMMAND
      stats                        the store's counters
      pools                        this client's pools
      put FILE [--pool ID] [--object N]
                                   store FILE as 4 KiB pages 0, 1, ... of object N (default 1) in a
                                   persistent pool (default: the client's first persistent 4 KiB
                                   pool, created if there is none)
      get POOL OBJECT [--pages N] [--length BYTES] [--out FILE]
                                   read pages 0.. of the object (N pages, or until the first miss)
                                   to FILE or standard output, cut to BYTES
    ADDRESS: a Unix socket path, unix:PATH or tcp:HOST:PORT (default $TMEM_SOCKET, else tmem.sock
    in the working directory, which is where `dotnet run --project hosting/Tmem.Service` puts it).
    NAME and SECRET default to $TMEM_CLIENT and $TMEM_SECRET, else "local" and "" (the client in
    the repository's appsettings.json).
    """;

string address = Environment.GetEnvironmentVariable("TMEM_SOCKET") is { Length: > 0 } s ? s : "tmem.sock";
string client = Environment.GetEnvironmentVariable("TMEM_CLIENT") is { Length: > 0 } c ? c : "local";
string secret = Environment.GetEnvironmentVariable("TMEM_SECRET") ?? "";
var rest = new List<string>();
var named = new Dictionary<string, string>();
for (int i = 0; i < args.Length; i++)
{
    string a = args[i];
    if (a is "-h" or "--help")
    {
        Console.WriteLine(Usage);
        return 0;
    }
    if (a.StartsWith("--", StringComparison.Ordinal))
    {
        if (i + 1 >= args.Length) return Fail($"{a} needs a value");
        named[a] = args[++i];
    }
    else
    {
        rest.Add(a);
    }
}
if (named.Remove("--socket", out var socketArg)) address = socketArg;
if (named.Remove("--client", out var clientArg)) client = clientArg;
if (named.Remove("--secret", out var secretArg)) secret = secretArg;
if (rest.Count == 0) return Fail("no command given");

TmemConnection connection;
try
{
    connection = await TmemConnection.ConnectAsync(address, client, secret);
}
catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or FormatException)
{
    return Fail($"cannot connect to {address}: {e.Message} (is the service running? start it with `dotnet run --project hosting/Tmem.Service`)");
}
catch (TmemRemoteException e)
{
    return Fail($"the service refused the handshake as client '{client}': {e.Message}");
}

await using (connection)
{
    try
    {
        return rest[0] switch
        {
            "stats" when rest.Count == 1 && named.Count == 0 => await Stats(connection),
            "pools" when rest.Count == 1 && named.Count == 0 => await Pools(connection),
            "put" when rest.Count == 2 => await Put(connection, rest[1], named),
            "get" when rest.Count == 3 => await Get(connection, rest[1], rest[2], named),
            _ => Fail($"unknown command or arguments: {string.Join(' ', args)}"),
        };
    }
    catch (TmemRemoteException e) when (e.IsNotDurable)
    {
        return Fail($"the service could not make this durable, its storage is failing ({e.ServerMessage}); what was written may or may not survive a restart: retry later, then read it back");
    }
    catch (TmemRemoteException e)
    {
        return Fail(e.Message);
    }
    catch (IOException e)
    {
        return Fail($"the connection to the service broke: {e.Message}");
    }
    catch (FormatException e)
    {
        return Fail(e.Message);
    }
}

static async Task<int> Stats(TmemConnection connection)
{
    foreach (var (name, value) in await connection.GetStatsAsync())
        Console.WriteLine($"{name,-22} {value}");
    return 0;
}

static async Task<int> Pools(TmemConnection connection)
{
    var pools = await connection.GetPoolsAsync();
    Console.WriteLine($"client {connection.ClientId}: {pools.Count} pools (at most {connection.MaxPools})");
    foreach (var p in pools)
        Console.WriteLine($"pool {p.PoolId}: {p.Kind.ToString().ToLowerInvariant()}, {p.PageSize}-byte pages, {(p.SharedUuid is { } u ? $"shared {u}" : "private")}, gets {(p.ExclusiveGets || (p.Kind == PoolKind.Ephemeral && p.SharedUuid is null) ? "exclusive" : "keep the page")}, {p.Pages} pages");
    return 0;
}

static async Task<int> Put(TmemConnection connection, string file, Dictionary<string, string> named)
{
    ulong objectNumber = named.Remove("--object", out var o) ? ulong.Parse(o, CultureInfo.InvariantCulture) : 1;
    int pool;
    if (named.Remove("--pool", out var p))
    {
        pool = int.Parse(p, CultureInfo.InvariantCulture);
    }
    else
    {
        var existing = (await connection.GetPoolsAsync()).FirstOrDefault(x => x.Kind == PoolKind.Persistent && x.PageSize == PoolOptions.DefaultPageSize && x.SharedUuid is null && !x.ExclusiveGets);
        pool = existing?.PoolId ?? await connection.CreatePoolAsync(PoolOptions.Persistent);
    }
    if (named.Count > 0) return Fail($"unknown option {named.Keys.First()}");
    byte[] data = await File.ReadAllBytesAsync(file);
    int pages = (data.Length + PoolOptions.DefaultPageSize - 1) / PoolOptions.DefaultPageSize;
    var objectId = new ObjectId(objectNumber);
    var puts = new Task<PutStatus>[pages];
    for (int i = 0; i < pages; i++)
    {
        var page = new byte[PoolOptions.DefaultPageSize];
        data.AsSpan(i * page.Length, Math.Min(page.Length, data.Length - i * page.Length)).CopyTo(page);
        puts[i] = connection.PutAsync(pool, objectId, (uint)i, page).AsTask(); // pipelined
    }
    var results = await Task.WhenAll(puts);
    int stored = results.Count(r => r == PutStatus.Stored);
    Console.WriteLine($"pool {pool}, object {objectNumber}: {stored} of {pages} pages stored ({data.Length} bytes)");
    foreach (var group in results.Where(r => r != PutStatus.Stored).GroupBy(r => r))
        Console.WriteLine($"  {group.Count()} refused: {group.Key}");
    Console.WriteLine($"read it back: tmem get {pool} {objectNumber} --pages {pages} --length {data.Length} --out FILE");
    return stored == pages ? 0 : 1;
}

static async Task<int> Get(TmemConnection connection, string poolText, string objectText, Dictionary<string, string> named)
{
    int pool = int.Parse(poolText, CultureInfo.InvariantCulture);
    var objectId = new ObjectId(ulong.Parse(objectText, CultureInfo.InvariantCulture));
    int? pages = named.Remove("--pages", out var n) ? int.Parse(n, CultureInfo.InvariantCulture) : null;
    long? length = named.Remove("--length", out var l) ? long.Parse(l, CultureInfo.InvariantCulture) : null;
    string? outFile = named.Remove("--out", out var f) ? f : null;
    if (named.Count > 0) return Fail($"unknown option {named.Keys.First()}");
    int pageSize = (await connection.GetPoolsAsync()).FirstOrDefault(x => x.PoolId == pool)?.PageSize ?? PoolOptions.DefaultPageSize;
    await using var output = outFile is null ? Console.OpenStandardOutput() : File.Create(outFile);
    var page = new byte[pageSize];
    long written = 0;
    int got = 0, missing = 0;
    for (uint i = 0; pages is null || i < pages; i++)
    {
        if (await connection.GetAsync(pool, objectId, i, page) != GetStatus.Hit)
        {
            if (pages is null) break;
            missing++;
            page.AsSpan().Clear();
        }
        else
        {
            got++;
        }
        int count = length is { } max ? (int)Math.Min(page.Length, Math.Max(0, max - written)) : page.Length;
        await output.WriteAsync(page.AsMemory(0, count));
        written += count;
    }
    Console.Error.WriteLine($"{got} pages read, {missing} missing (written as zeros), {written} bytes");
    return missing == 0 ? 0 : 1;
}

static int Fail(string message)
{
    Console.Error.WriteLine($"tmem: {message}");
    return 2;
}
