namespace Tmem.Service.Nbd;

/// <summary>
/// The NBD front end (section <c>Tmem:Nbd</c>, docs/nbd.md): block devices (exports) served with
/// the Network Block Device protocol on listeners of their own. No export and no listener (the
/// default) turns it off.
/// </summary>
public sealed class NbdOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Tmem:Nbd";

    /// <summary>
    /// Where NBD clients connect. Each listener acts for one configured client: a connection on
    /// it sees and opens only that client's exports. NBD has no authentication of its own, so the
    /// listener is the credential (the Unix socket's file mode, a loopback TCP port).
    /// </summary>
    public List<NbdListenerOptions> Listeners { get; set; } = [];

    /// <summary>The block devices served.</summary>
    public List<NbdExportOptions> Exports { get; set; } = [];

    /// <summary>
    /// The largest READ or WRITE payload a client may send or ask for (advertised as the maximum
    /// block size), in bytes. Default 33554432 (32 MiB, what the NBD specification asks servers to
    /// accept).
    /// </summary>
    public int MaxPayloadBytes { get; set; } = 32 << 20;

    /// <summary>Requests one NBD connection may have started and not yet answered; the rest wait in the socket. Default 128.</summary>
    public int MaxInFlight { get; set; } = 128;

    /// <summary>
    /// Payload bytes (writes received, reads being answered) one connection may hold in flight; it
    /// stops reading requests beyond them (one request is always allowed). Default 67108864 (64 MiB).
    /// </summary>
    public long MaxInFlightBytes { get; set; } = 64L << 20;
}

/// <summary>One NBD listener (<c>Tmem:Nbd:Listeners:N</c>).</summary>
public sealed class NbdListenerOptions
{
    /// <summary>The configured client (<c>Tmem:Service:Clients:*:Name</c>) a connection here acts for.</summary>
    public string Client { get; set; } = "";

    /// <summary>A Unix socket path (relative: under the working directory), or empty for none.</summary>
    public string SocketPath { get; set; } = "";

    /// <summary>The Unix socket's file mode, in octal. Default <c>0600</c>.</summary>
    public string SocketFileMode { get; set; } = "0600";

    /// <summary>A TCP port to listen on as well; 0 (the default) for none.</summary>
    public int TcpPort { get; set; }

    /// <summary>The address TCP binds. Default <c>127.0.0.1</c>: loopback only (NBD carries no credentials).</summary>
    public string TcpAddress { get; set; } = "127.0.0.1";
}

/// <summary>How an export keeps its blocks.</summary>
public enum NbdExportMode
{
    /// <summary>A persistent pool of the owner: the store is the device (frontswap, a durable compressed disk).</summary>
    Persistent,

    /// <summary>
    /// A backing file (or block device) stays authoritative; an ephemeral pool of the owner caches
    /// its pages (cleancache for a block device). Eviction costs only speed.
    /// </summary>
    Cache,
}

/// <summary>One export (<c>Tmem:Nbd:Exports:N</c>).</summary>
public sealed class NbdExportOptions
{
    /// <summary>The name NBD clients ask for (1 to 255 UTF-8 bytes, unique; the empty default export is not offered).</summary>
    public string Name { get; set; } = "";

    /// <summary>The configured client that owns the export: its pool is one of that client's, and only that client's listeners serve it.</summary>
    public string Client { get; set; } = "";

    /// <summary>Persistent (the default) or Cache.</summary>
    public NbdExportMode Mode { get; set; } = NbdExportMode.Persistent;

    /// <summary>
    /// The device's size in bytes (or with a unit, <c>64GiB</c>, like every <c>...Bytes</c> key).
    /// Persistent: required, a multiple of <see cref="PageSize"/> (it may grow between runs, never
    /// shrink). Cache: 0 (the default) takes the backing file's size; otherwise at most that.
    /// </summary>
    public long SizeBytes { get; set; }

    /// <summary>Cache mode: the backing file or block device (it must exist; the service never creates it).</summary>
    public string BackingFile { get; set; } = "";

    /// <summary>The tmem page size behind each block, bytes: a power of two, 512 to 32768. Default 4096.</summary>
    public int PageSize { get; set; } = 4096;

    /// <summary>A description shown to clients (NBD_INFO_DESCRIPTION, nbdinfo). Default none.</summary>
    public string Description { get; set; } = "";
}
