using Tmem.Durability;
using Tmem.Compression;

namespace Tmem.Recovery.Offline;

/// <summary>A pool moved by export or import.</summary>
/// <param name="PoolId">The client's pool id.</param>
/// <param name="Pages">Its pages.</param>
public sealed record PoolPages(int PoolId, long Pages);

/// <summary>What <see cref="PoolExporter.Export"/> wrote.</summary>
/// <param name="File">The export file (full path).</param>
/// <param name="Bytes">Its size.</param>
/// <param name="ClientId">The client exported.</param>
/// <param name="Pools">Pools exported (pool id, page count).</param>
public sealed record ExportReport(string File, long Bytes, int ClientId, IReadOnlyList<PoolPages> Pools);

/// <summary>What <see cref="PoolExporter.Import"/> did.</summary>
/// <param name="DataDirectory">The target directory (full path).</param>
/// <param name="ClientId">The client the pools were imported for.</param>
/// <param name="Pools">Pools created (pool id, page count).</param>
public sealed record ImportReport(string DataDirectory, int ClientId, IReadOnlyList<PoolPages> Pools);

/// <summary>
/// Moves a client's persistent pools between data directories offline (Xen tmem's save/restore):
/// <see cref="Export"/> reads them from the log (pages as the log holds them, LZ4 blocks unchanged)
/// into a <see cref="PoolExportFile"/>; <see cref="Import"/> creates them in another directory
/// under the same pool ids through the store's normal API (Strict durability), refusing clashes.
/// </summary>
public static class PoolExporter
{
    private const int PutsInFlight = 64;

    /// <summary>Exports <paramref name="clientId"/>'s persistent pools <paramref name="poolIds"/> (all of them when empty) to <paramref name="outputFile"/>.</summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">Not a data directory, damaged, or no such pool. Nothing was written.</exception>
    public static ExportReport Export(string dataDirectory, int clientId, IReadOnlyCollection<int> poolIds, string outputFile, IProgress<OfflineProgress>? progress = null)
    {
        using var dir = OfflineDirectory.Open(dataDirectory);
        var analysis = LogAnalysis.Run(dir, keepPayloads: true, progress);
        if (analysis.Problems.FirstOrDefault(p => p.Severity == ProblemSeverity.Damage && p.Kind is not (ProblemKind.CheckpointDamaged or ProblemKind.CheckpointMismatch)) is { } damage)
            throw new OfflineRefusedException($"{dir.Path} is damaged ({damage.Message}); run verify and recover before exporting. Nothing was written.");
        var model = analysis.Model;
        var mine = model.ClientPools.Where(kv => kv.Key.ClientId == clientId).OrderBy(kv => kv.Key.PoolId).ToList();
        var selected = poolIds.Count == 0 ? mine : mine.Where(kv => poolIds.Contains(kv.Key.PoolId)).ToList();
        foreach (int id in poolIds)
            if (!mine.Any(kv => kv.Key.PoolId == id))
                throw new OfflineRefusedException($"Client {clientId} has no persistent pool with id {id} in {dir.Path} (its persistent pools: {(mine.Count == 0 ? "none" : string.Join(", ", mine.Select(kv => kv.Key.PoolId)))}). Nothing was written.");
        if (selected.Count == 0)
            throw new OfflineRefusedException($"Client {clientId} has no persistent pools in {dir.Path}. Nothing was written.");
        var pools = new List<PoolExportFile.Pool>();
        foreach (var ((_, poolId), serial) in selected)
        {
            var pool = model.Pools[serial];
            var pages = pool.Pages.OrderBy(p => p.Key.ObjectId.Word0).ThenBy(p => p.Key.ObjectId.Word1).ThenBy(p => p.Key.ObjectId.Word2).ThenBy(p => p.Key.Index)
                .Select(p => new PoolExportFile.Page(p.Key.ObjectId, p.Key.Index, p.Value.SameFilled, p.Value.SameFilled ? BitConverter.GetBytes(p.Value.Pattern) : p.Value.Payload!, p.Value.Uncompressed))
                .ToList();
            pools.Add(new PoolExportFile.Pool(poolId, pool.PageSize, pool.ExclusiveGets, pool.SharedUuid, pool.Members.Select(m => new PoolMember(m.ClientId, m.PoolId)).ToList(), pages)
            {
                StoreIncompressible = pool.StoreIncompressible,
            });
        }
        var bytes = PoolExportFile.Write(clientId, pools);
        string output = Path.GetFullPath(outputFile);
        string temp = output + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(bytes);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, output, overwrite: true);
        return new ExportReport(output, bytes.Length, clientId, pools.Select(p => new PoolPages(p.PoolId, p.Pages.Count)).ToList());
    }

    /// <summary>
    /// Imports an export file into <paramref name="dataDirectory"/> (created when it does not
    /// exist), for the exported client or <paramref name="asClientId"/>. Refuses, changing nothing,
    /// when the client already has a pool with one of the ids, a shared pool's UUID exists there,
    /// or the file is damaged. Pages are put with Strict durability and read back; if anything
    /// fails, the pools it created are destroyed again.
    /// </summary>
    /// <exception cref="DataDirectoryInUseException">A running service or tool holds the directory.</exception>
    /// <exception cref="OfflineRefusedException">A clash, a damaged file or a damaged directory. Nothing was changed.</exception>
    public static ImportReport Import(string dataDirectory, string exportFile, int? asClientId = null, IProgress<OfflineProgress>? progress = null)
    {
        int fileClient;
        List<PoolExportFile.Pool> pools;
        try
        {
            (fileClient, pools) = PoolExportFile.Read(File.ReadAllBytes(exportFile));
        }
        catch (InvalidDataException e)
        {
            throw new OfflineRefusedException($"{Path.GetFullPath(exportFile)} is not a valid Tmem pool export: {e.Message}. Nothing was changed.", e);
        }
        int clientId = asClientId ?? fileClient;
        string path = Path.GetFullPath(dataDirectory);
        bool fresh = !Directory.Exists(path) || !Directory.EnumerateFileSystemEntries(path).Any(e => Path.GetFileName(e) != DataDirectoryLock.FileName);
        long existingPages = 0;
        if (fresh)
        {
            using (OfflineDirectory.Lock(path))
            {
            }
        }
        else
        {
            using var dir = OfflineDirectory.Open(path);
            var analysis = LogAnalysis.Run(dir, keepPayloads: false, progress);
            if (analysis.Problems.FirstOrDefault(p => p.Severity == ProblemSeverity.Damage && p.Kind is not (ProblemKind.CheckpointDamaged or ProblemKind.CheckpointMismatch)) is { } damage)
                throw new OfflineRefusedException($"{path} is damaged ({damage.Message}); run verify and recover before importing. Nothing was changed.");
            foreach (var pool in pools)
            {
                if (analysis.Model.ClientPools.TryGetValue((clientId, pool.PoolId), out uint serial))
                    throw new OfflineRefusedException($"Client {clientId} already has persistent pool id {pool.PoolId} (pool serial {serial}) in {path}: the import would clash. Destroy that pool or import as another client (--as-client). Nothing was changed.");
                if (pool.SharedUuid is { } uuid && analysis.Model.Pools.Values.FirstOrDefault(p => p.SharedUuid == uuid) is { } shared)
                    throw new OfflineRefusedException($"Shared pool {uuid} already exists in {path} (pool serial {shared.Serial}, members {string.Join(", ", shared.Members)}): the import would clash. Nothing was changed.");
            }
            existingPages = analysis.Model.PageCount;
        }

        long total = pools.Sum(p => (long)p.Pages.Count);
        TmemStore store;
        try
        {
            store = TmemStore.Open(DataDirectoryRepairer.StoreOptions(path, existingPages + total));
        }
        catch (IOException e) when (e.Message.Contains("in use", StringComparison.Ordinal))
        {
            throw new DataDirectoryInUseException(path, e);
        }
        using (store)
        {
            var client = store.GetClient(clientId);
            var created = new List<PoolPages>();
            try
            {
                long done = 0;
                foreach (var pool in pools)
                {
                    int id = CreateWithId(client, pool);
                    created.Add(new PoolPages(id, pool.Pages.Count));
                    PutAll(client, id, pool, ref done, total, progress);
                }
                foreach (var pool in pools.Where(p => !p.ExclusiveGets))
                    ReadBack(client, pool);
            }
            catch (Exception e) when (e is TmemException or InvalidDataException or IOException)
            {
                foreach (var pool in created) client.DestroyPool(pool.PoolId);
                throw new OfflineRefusedException($"Importing into {path} failed ({e.Message}); the pools it had created were destroyed again.", e);
            }
            return new ImportReport(path, clientId, created);
        }
    }

    /// <summary>Creates the pool under its exported id: lower free ids are taken by throwaway ephemeral pools meanwhile.</summary>
    private static int CreateWithId(TmemClient client, PoolExportFile.Pool pool)
    {
        if (client.GetPools().Any(p => p.PoolId == pool.PoolId))
            throw new TmemException(TmemError.PoolLimitReached, $"client {client.Id} already has a pool with id {pool.PoolId}");
        var placeholders = new List<int>();
        try
        {
            var options = PoolOptions.Persistent with { PageSize = pool.PageSize, ExclusiveGets = pool.ExclusiveGets, SharedUuid = pool.SharedUuid, StoreIncompressible = pool.StoreIncompressible };
            while (true)
            {
                int lowest = Enumerable.Range(0, int.MaxValue).First(i => !client.GetPools().Any(p => p.PoolId == i));
                if (lowest == pool.PoolId) break;
                if (lowest > pool.PoolId) throw new TmemException(TmemError.PoolLimitReached, $"pool id {pool.PoolId} cannot be given to client {client.Id}");
                placeholders.Add(client.CreatePool(PoolOptions.Ephemeral));
            }
            int id = client.CreatePool(options);
            if (id != pool.PoolId)
            {
                client.DestroyPool(id);
                throw new TmemException(TmemError.PoolLimitReached, $"the store gave pool id {id}, not {pool.PoolId}");
            }
            return id;
        }
        finally
        {
            foreach (int placeholder in placeholders) client.DestroyPool(placeholder); // ephemeral: never logged
        }
    }

    private static void PutAll(TmemClient client, int poolId, PoolExportFile.Pool pool, ref long done, long total, IProgress<OfflineProgress>? progress)
    {
        var inFlight = new List<(PoolExportFile.Page Page, ValueTask<PutStatus> Put)>(PutsInFlight);
        foreach (var page in pool.Pages)
        {
            var bytes = new byte[pool.PageSize];
            Decode(page, bytes);
            inFlight.Add((page, client.PutAsync(poolId, page.ObjectId, page.Index, bytes)));
            if (inFlight.Count == PutsInFlight) Drain(inFlight, poolId);
            progress?.Report(new OfflineProgress("importing pages", ++done, total));
        }
        Drain(inFlight, poolId);
    }

    private static void Drain(List<(PoolExportFile.Page Page, ValueTask<PutStatus> Put)> inFlight, int poolId)
    {
        foreach (var (page, put) in inFlight)
        {
            var status = put.IsCompletedSuccessfully ? put.Result : put.AsTask().GetAwaiter().GetResult();
            if (status != PutStatus.Stored)
                throw new InvalidDataException($"the store refused page {page.ObjectId}/{page.Index} of pool id {poolId}: {status}");
        }
        inFlight.Clear();
    }

    private static void Decode(PoolExportFile.Page page, byte[] destination)
    {
        if (page.SameFilled)
        {
            PageCodec.Fill(destination, BitConverter.ToUInt64(page.Payload));
            return;
        }
        if (page.Uncompressed)
        {
            page.Payload.CopyTo(destination, 0);
            return;
        }
        int length = PageCodec.Decompress(page.Payload, destination);
        if (length != destination.Length)
            throw new InvalidDataException($"page {page.ObjectId}/{page.Index} does not decompress to {destination.Length} bytes (got {length})");
    }

    private static void ReadBack(TmemClient client, PoolExportFile.Pool pool)
    {
        var expected = new byte[pool.PageSize];
        var actual = new byte[pool.PageSize];
        foreach (var page in pool.Pages)
        {
            Decode(page, expected);
            if (client.Get(pool.PoolId, page.ObjectId, page.Index, actual) != GetStatus.Hit || !actual.AsSpan().SequenceEqual(expected))
                throw new InvalidDataException($"page {page.ObjectId}/{page.Index} of pool id {pool.PoolId} did not read back as imported");
        }
    }
}
