using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;
using Tmem.Service.Sessions;
using Tmem.Service.Startup;

namespace Tmem.Service.Nbd;

/// <summary>Whether the store's disk can take new pages: a write checks first, so that a full disk does not remove the pages it would have replaced.</summary>
internal sealed class StorageProbe(SessionManager sessions)
{
    public void ThrowIfFull()
    {
        var status = sessions.Store.Storage;
        if (status.State != StorageState.Healthy)
            throw new NbdException(NbdProtocol.ENOSPC, $"no space: the store's storage is {status.State.ToString().ToLowerInvariant()} ({status.LastError ?? "see the service log"}); nothing was written");
    }
}

/// <summary>
/// The configured exports, opened in two steps so that each failure stops the start with one
/// message (Program.cs): <see cref="Prepare"/> before the store opens (backing files), and
/// <see cref="Attach"/> after it (each export's pool: a persistent export finds the pool its
/// header page names, or creates it; a cache export gets a new ephemeral pool).
/// </summary>
internal sealed partial class NbdExports(IOptions<NbdOptions> options, IOptions<TmemOptions> storeOptions, SessionManager sessions, ILogger<NbdExports> logger)
{
    private readonly Dictionary<string, SafeFileHandle> _files = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NbdExport> _byName = new(StringComparer.Ordinal);
    private readonly List<NbdExport> _all = [];

    public bool Enabled => options.Value.Exports.Count > 0 || options.Value.Listeners.Count > 0;

    public IReadOnlyList<NbdExport> All => _all;

    /// <summary>The export <paramref name="name"/> if <paramref name="client"/> may open it.</summary>
    public NbdExport? Find(string client, string name) =>
        _byName.TryGetValue(name, out var export) && export.Options.Client == client ? export : null;

    /// <summary>The exports a connection acting for <paramref name="client"/> sees, in configuration order.</summary>
    public IEnumerable<NbdExport> VisibleTo(string client) => _all.Where(e => e.Options.Client == client);

    /// <summary>Opens the cache exports' backing files (before the store opens: nothing is created when one is missing).</summary>
    /// <exception cref="StartupFailure">A backing file is missing, unreadable or too small.</exception>
    public void Prepare()
    {
        var exports = options.Value.Exports;
        for (int i = 0; i < exports.Count; i++)
        {
            var e = exports[i];
            if (e.Mode != NbdExportMode.Cache) continue;
            string key = $"{NbdOptions.SectionName}:Exports:{i}:BackingFile";
            string path = Path.GetFullPath(e.BackingFile);
            SafeFileHandle handle;
            try
            {
                handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new StartupFailure(ExitCodes.BadConfiguration, $"{key} is {path}, which cannot be opened for reading and writing: {ex.Message} (the service never creates a backing file; create it, e.g. `truncate -s 1G {path}`, or fix its permissions).", ex);
            }
            long length = RandomAccess.GetLength(handle);
            long size = e.SizeBytes == 0 ? length : e.SizeBytes;
            if (size == 0)
            {
                handle.Dispose();
                throw new StartupFailure(ExitCodes.BadConfiguration, $"{key} is {path}, whose size the service cannot tell (0 bytes; a block device?): set {NbdOptions.SectionName}:Exports:{i}:SizeBytes.");
            }
            if (length > 0 && size > length)
            {
                handle.Dispose();
                throw new StartupFailure(ExitCodes.BadConfiguration, $"{NbdOptions.SectionName}:Exports:{i}:SizeBytes is {e.SizeBytes}, larger than its backing file {path} ({length} bytes); set it to at most {length}, or 0 for the file's size.");
            }
            _files[e.Name] = handle;
        }
    }

    /// <summary>Finds or creates every export's pool (after the store opened).</summary>
    /// <exception cref="StartupFailure">An export cannot be attached (its size shrank, its pool is ambiguous, the client's pool limit).</exception>
    public void Attach()
    {
        var exports = options.Value.Exports;
        bool relaxed = storeOptions.Value.Durability == DurabilityMode.Relaxed && storeOptions.Value.DataDirectory is not null;
        var probe = new StorageProbe(sessions);
        for (int i = 0; i < exports.Count; i++)
        {
            var e = exports[i];
            var session = sessions.ActAs(e.Client);
            try
            {
                NbdExport export = e.Mode == NbdExportMode.Persistent
                    ? AttachPersistent(i, e, session, relaxed, probe)
                    : AttachCache(e, session);
                _byName[e.Name] = export;
                _all.Add(export);
            }
            catch (Exception ex) when (ex is TmemException or SessionRefusedException or TmemNotDurableException)
            {
                throw new StartupFailure(ExitCodes.BadConfiguration, $"{NbdOptions.SectionName}:Exports:{i} ('{e.Name}') cannot get a pool of client {e.Client}: {ex.Message}", ex);
            }
        }
        ReportStrayPools();
    }

    private NbdExport AttachPersistent(int i, NbdExportOptions e, Session session, bool relaxed, StorageProbe probe)
    {
        var header = new byte[e.PageSize];
        int? found = null;
        foreach (var pool in session.GetPools())
        {
            if (pool.Kind != PoolKind.Persistent || !pool.StoreIncompressible || pool.PageSize != e.PageSize || pool.ExclusiveGets) continue;
            if (session.GetAsync(pool.PoolId, BlockMap.HeaderObject, 0, header).AsTask().GetAwaiter().GetResult() != GetStatus.Hit) continue;
            if (PersistentExport.ReadHeader(header) is not { } h || h.Name != e.Name) continue;
            if (found is not null)
                throw new StartupFailure(ExitCodes.DataDirectoryDamaged, $"client {e.Client} has two persistent pools ({found} and {pool.PoolId}) that hold NBD export '{e.Name}'; destroy one (tmem-admin export can save it first).");
            found = pool.PoolId;
            if (h.Size > e.SizeBytes)
                throw new StartupFailure(ExitCodes.BadConfiguration, $"{NbdOptions.SectionName}:Exports:{i}:SizeBytes is {e.SizeBytes}, but export '{e.Name}' (client {e.Client}, pool {pool.PoolId}) holds {h.Size} bytes; an export can grow, never shrink (its pages past the end would be lost). Set it back to {h.Size} or more.");
            if (h.Size < e.SizeBytes)
            {
                Put(session, pool.PoolId, PersistentExport.Header(e.Name, e.PageSize, e.SizeBytes));
                LogGrown(e.Name, h.Size, e.SizeBytes);
            }
        }
        int poolId;
        if (found is { } existing)
        {
            poolId = existing;
            LogAttached(e.Name, "persistent", e.Client, poolId, e.SizeBytes);
        }
        else
        {
            poolId = session.CreateServicePoolAsync(PoolOptions.Persistent with { PageSize = e.PageSize, StoreIncompressible = true }).GetAwaiter().GetResult();
            Put(session, poolId, PersistentExport.Header(e.Name, e.PageSize, e.SizeBytes));
            LogCreated(e.Name, "persistent", e.Client, poolId, e.SizeBytes);
        }
        if (storeOptions.Value.DataDirectory is null) LogPersistentInMemory(e.Name);
        return new PersistentExport(e, session, poolId, e.SizeBytes, relaxed, probe);
    }

    private static void Put(Session session, int poolId, byte[] header)
    {
        var status = session.PutAsync(poolId, BlockMap.HeaderObject, 0, header).AsTask().GetAwaiter().GetResult();
        if (status != PutStatus.Stored) throw new TmemException(TmemError.PoolNotFound, $"the store refused the export's header page ({status})");
    }

    private NbdExport AttachCache(NbdExportOptions e, Session session)
    {
        var file = _files[e.Name];
        long size = e.SizeBytes == 0 ? RandomAccess.GetLength(file) : e.SizeBytes;
        // A shared pool (gets keep the page) under a UUID of the service's own, told to no one.
        int poolId = session.CreateServicePoolAsync(PoolOptions.Ephemeral with { PageSize = e.PageSize, StoreIncompressible = true, SharedUuid = Guid.NewGuid() }).GetAwaiter().GetResult();
        LogCreated(e.Name, $"cache of {Path.GetFullPath(e.BackingFile)}", e.Client, poolId, size);
        return new CacheExport(e, session, poolId, size, file);
    }

    /// <summary>Persistent pools holding an export that is no longer configured: logged, never touched.</summary>
    private void ReportStrayPools()
    {
        var clients = options.Value.Exports.Select(e => e.Client).Distinct().ToList();
        foreach (var client in clients)
        {
            var session = sessions.ActAs(client);
            foreach (var pool in session.GetPools())
            {
                if (pool.Kind != PoolKind.Persistent || !pool.StoreIncompressible || _all.Any(x => x.Options.Client == client && x.PoolId == pool.PoolId)) continue;
                var header = new byte[pool.PageSize];
                if (session.GetAsync(pool.PoolId, BlockMap.HeaderObject, 0, header).AsTask().GetAwaiter().GetResult() == GetStatus.Hit && PersistentExport.ReadHeader(header) is { } h)
                    LogStray(h.Name, client, pool.PoolId, h.Size);
            }
        }
    }

    /// <summary>The service stops (after the listeners): backing files are closed.</summary>
    public void Close()
    {
        foreach (var export in _all) export.Close();
        foreach (var file in _files.Values) file.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD export '{Name}' ({Mode}) of client {Client}: pool {PoolId}, {Size} bytes")]
    private partial void LogAttached(string name, string mode, string client, int poolId, long size);

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD export '{Name}' ({Mode}) of client {Client}: new pool {PoolId}, {Size} bytes")]
    private partial void LogCreated(string name, string mode, string client, int poolId, long size);

    [LoggerMessage(Level = LogLevel.Information, Message = "NBD export '{Name}' grew from {Old} to {New} bytes")]
    private partial void LogGrown(string name, long old, long @new);

    [LoggerMessage(Level = LogLevel.Warning, Message = "NBD export '{Name}' is persistent but the store is in memory only (no Tmem:DataDirectory): its blocks last as long as the process")]
    private partial void LogPersistentInMemory(string name);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Persistent pool {PoolId} of client {Client} holds NBD export '{Name}' ({Size} bytes), which is not configured (Tmem:Nbd:Exports); its pages are kept. Configure it again to serve it, or destroy the pool")]
    private partial void LogStray(string name, string client, int poolId, long size);
}
