using System.CommandLine;
using System.Globalization;
using Tmem.Client;

namespace Tmem.Cli;

/// <summary><c>tmem put</c> and <c>tmem get</c>: a file as the pages of one object.</summary>
internal static class DataCommands
{
    private const int Window = 64;

    public static IEnumerable<Command> Create()
    {
        var file = new Argument<FileInfo>("FILE") { Description = "The file to store." };
        var pool = new Option<int?>("--pool") { Description = "The pool to store into (default: the client's first private persistent pool of 4 KiB pages, created if there is none)." };
        var objectNumber = new Option<ulong>("--object") { Description = "The object's number (its id is (N, 0, 0)).", DefaultValueFactory = _ => 1 };
        var put = new Command("put", "Store FILE as pages 0, 1, ... of an object in a persistent pool; prints the command that reads it back.") { file, pool, objectNumber };
        put.SetAction((r, ct) =>
        {
            var info = r.GetValue(file)!;
            return Program.RunAsync(r, (o, c, token) => PutAsync(o, c, info, r.GetValue(pool), r.GetValue(objectNumber), token), ct,
                checkFirst: () => CheckReadable(info));
        });
        yield return put;

        var getPool = new Argument<int>("POOL") { Description = "The pool id." };
        var getObject = new Argument<ulong>("OBJECT") { Description = "The object's number." };
        var pages = new Option<int?>("--pages") { Description = "Read N pages (missing ones are written as zeros); default: as many as --length needs, else until the first miss." };
        var length = new Option<string?>("--length") { Description = "Cut the output to this many bytes (a byte count or a size such as 64KiB): the file's length as put printed it." };
        var outFile = new Option<FileInfo?>("--out", "-o") { Description = "Write to this file instead of standard output." };
        var get = new Command("get", "Read pages 0.. of an object to a file or standard output.") { getPool, getObject, pages, length, outFile };
        get.SetAction((r, ct) =>
        {
            long? max = null;
            var output = r.GetValue(outFile);
            return Program.RunAsync(r, (o, c, token) => GetAsync(o, c, r.GetValue(getPool), r.GetValue(getObject), r.GetValue(pages), max, output, token), ct, checkFirst: () =>
            {
                if (r.GetValue(length) is { } text)
                    max = ByteSize.TryParse(text, out long bytes) && bytes >= 0 ? bytes : throw new CliException(ExitCodes.Usage, $"--length {text}: give a byte count or a size such as 64KiB.");
                if (r.GetValue(pages) is < 0) throw new CliException(ExitCodes.Usage, "--pages must be 0 or more.");
                if (output is null && r.GetValue(Program.Json)) throw new CliException(ExitCodes.Usage, "--json needs --out FILE: the pages would mix with the JSON document on standard output.");
            });
        });
        yield return get;
    }

    private static void CheckReadable(FileInfo file)
    {
        if (Directory.Exists(file.FullName)) throw new CliException(ExitCodes.Usage, $"cannot store {file.FullName}: it is a directory; give a file.");
        if (!file.Exists) throw new CliException(ExitCodes.Usage, $"cannot store {file.FullName}: no such file.");
        try
        {
            using var probe = file.OpenRead();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Usage, $"cannot read {file.FullName}: {e.Message}");
        }
    }

    private static async Task<int> PutAsync(Output o, TmemConnection connection, FileInfo file, int? poolArg, ulong objectNumber, CancellationToken cancellationToken)
    {
        int pool;
        int pageSize = PoolOptions.DefaultPageSize;
        var existing = await connection.GetPoolsAsync(cancellationToken).ConfigureAwait(false);
        if (poolArg is { } given)
        {
            var p = existing.FirstOrDefault(x => x.PoolId == given)
                ?? throw new CliException(ExitCodes.Usage, $"--pool {given}: client {connection.ClientId} has no such pool ({Program.PoolsHint}).");
            pool = given;
            pageSize = p.PageSize;
        }
        else
        {
            var found = existing.FirstOrDefault(x => x.Kind == PoolKind.Persistent && x.PageSize == PoolOptions.DefaultPageSize && x.SharedUuid is null && !x.ExclusiveGets);
            pool = found?.PoolId ?? await connection.CreatePoolAsync(PoolOptions.Persistent, cancellationToken).ConfigureAwait(false);
        }
        byte[] data;
        try
        {
            data = await File.ReadAllBytesAsync(file.FullName, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Usage, $"cannot read {file.FullName}: {e.Message}");
        }
        int count = (data.Length + pageSize - 1) / pageSize;
        var objectId = new ObjectId(objectNumber);
        var results = new PutStatus[count];
        var inFlight = new List<(int Index, Task<PutStatus> Put)>();
        for (int i = 0; i < count; i++)
        {
            var page = new byte[pageSize];
            data.AsSpan(i * pageSize, Math.Min(pageSize, data.Length - i * pageSize)).CopyTo(page);
            inFlight.Add((i, connection.PutAsync(pool, objectId, (uint)i, page, cancellationToken).AsTask())); // pipelined
            if (inFlight.Count == Window || i == count - 1)
            {
                foreach (var (index, task) in inFlight) results[index] = await task.ConfigureAwait(false);
                inFlight.Clear();
            }
        }
        int stored = results.Count(r => r == PutStatus.Stored);
        string readBack = $"{Invocation.Command} get {pool} {objectNumber} --length {data.Length} --out FILE";
        o.Document(new
        {
            file = file.FullName,
            bytes = data.Length,
            poolId = pool,
            @object = objectNumber,
            pages = count,
            stored,
            refused = results.Where(r => r != PutStatus.Stored).GroupBy(r => r).Select(g => new { status = g.Key, pages = g.Count(), reason = Refusals.Explain(g.Key) }),
            readBack,
        });
        o.Line(stored == count
            ? $"stored {file.Name} ({data.Length} bytes) as {count} page(s) of object {objectNumber} in pool {pool}"
            : $"stored {stored} of {count} page(s) of {file.Name} ({data.Length} bytes) as object {objectNumber} in pool {pool}; the others are not in the store:");
        foreach (var line in Refusals.Describe(results)) o.Line("  " + line);
        o.Line(stored == count ? $"read it back: {readBack}" : $"what was stored reads back with: {readBack} (refused pages come back as zeros)");
        return stored == count ? ExitCodes.Ok : ExitCodes.Partial;
    }

    private static async Task<int> GetAsync(Output o, TmemConnection connection, int pool, ulong objectNumber, int? pagesArg, long? length, FileInfo? outFile, CancellationToken cancellationToken)
    {
        var info = (await connection.GetPoolsAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(x => x.PoolId == pool)
            ?? throw new CliException(ExitCodes.Usage, $"client {connection.ClientId} has no pool {pool} ({Program.PoolsHint}).");
        int pageSize = info.PageSize;
        int? pages = pagesArg ?? (length is { } l ? (int)((l + pageSize - 1) / pageSize) : null);
        var objectId = new ObjectId(objectNumber);
        var missing = new List<uint>();
        long written = 0;
        int got = 0;
        Stream output;
        try
        {
            output = outFile is null ? Console.OpenStandardOutput() : outFile.Create();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Usage, $"cannot write {outFile!.FullName}: {e.Message}");
        }
        await using (output.ConfigureAwait(false))
        {
            uint next = 0;
            bool done = false;
            while (!done && (pages is null || next < pages))
            {
                int batch = pages is { } n ? Math.Min(Window, n - (int)next) : Window;
                var buffers = new byte[batch][];
                var gets = new Task<GetStatus>[batch];
                for (int i = 0; i < batch; i++)
                {
                    buffers[i] = new byte[pageSize];
                    gets[i] = connection.GetAsync(pool, objectId, next + (uint)i, buffers[i], cancellationToken).AsTask();
                }
                for (int i = 0; i < batch; i++)
                {
                    bool hit = await gets[i].ConfigureAwait(false) == GetStatus.Hit;
                    if (!hit && pages is null)
                    {
                        done = true; // until the first miss
                        break;
                    }
                    if (hit) got++;
                    else missing.Add(next + (uint)i);
                    int count = length is { } max ? (int)Math.Min(pageSize, Math.Max(0, max - written)) : pageSize;
                    await output.WriteAsync(buffers[i].AsMemory(0, count), cancellationToken).ConfigureAwait(false);
                    written += count;
                }
                next += (uint)batch;
            }
        }
        o.Document(new { poolId = pool, @object = objectNumber, pagesRead = got, missingPages = missing, bytes = written, @out = outFile?.FullName });
        string summary = $"{got} page(s) read, {written} bytes written{(outFile is null ? "" : $" to {outFile.FullName}")}";
        if (missing.Count > 0)
            summary += $"; {missing.Count} page(s) missing, written as zeros (index {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")})";
        if (!o.Json) Output.Note(summary);
        return missing.Count == 0 ? ExitCodes.Ok : ExitCodes.Partial;
    }
}
