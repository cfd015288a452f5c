namespace Tmem.Service;

/// <summary>Settings of the service itself (section <c>Tmem:Service</c>); the store's are <see cref="TmemOptions"/>.</summary>
public sealed class ServiceOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Tmem:Service";

    /// <summary>Seconds between one-line stats log entries; 0 turns them off. Default 60.</summary>
    public int StatsLogIntervalSeconds { get; set; } = 60;

    /// <summary>
    /// Seconds between index checkpoints of a durable store (one is also written at shutdown);
    /// 0 turns the periodic ones off. Default 300.
    /// </summary>
    public int CheckpointIntervalSeconds { get; set; } = 300;

    /// <summary>
    /// Seconds between log compaction checks of a durable store: a compaction that is due (see
    /// <c>Tmem:LogCompactionLiveFraction</c>) and not already started by the store after a commit
    /// runs, and compactions and their failures are logged. 0 turns the checks off (the store
    /// still compacts on its own). Default 30.
    /// </summary>
    public int CompactionIntervalSeconds { get; set; } = 30;

    /// <summary>
    /// Path of the Unix domain socket the service listens on (relative: under the working
    /// directory); empty turns the Unix listener off. Default <c>tmem.sock</c>.
    /// </summary>
    public string SocketPath { get; set; } = "tmem.sock";

    /// <summary>File mode of the socket, in octal. Default <c>0600</c> (the service's user only).</summary>
    public string SocketFileMode { get; set; } = "0600";

    /// <summary>TCP port to listen on as well; 0 (the default) means no TCP listener.</summary>
    public int TcpPort { get; set; }

    /// <summary>
    /// Address the TCP listener binds. Default <c>127.0.0.1</c> (loopback only); anything else
    /// must be set here explicitly.
    /// </summary>
    public string TcpAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// Authenticated connections open at once; a handshake beyond them is answered
    /// TooManyConnections and closed. Connections still in their handshake are not counted here
    /// (see <see cref="MaxUnauthenticatedConnections"/>). Default 1024.
    /// </summary>
    public int MaxConnections { get; set; } = 1024;

    /// <summary>
    /// Connections open at once that have not completed their handshake. When one more is
    /// accepted, the oldest of them is closed, so they can never lock clients out. Default 64.
    /// </summary>
    public int MaxUnauthenticatedConnections { get; set; } = 64;

    /// <summary>Seconds from accept within which a connection must complete its Hello; then it is closed. Default 10.</summary>
    public int HandshakeTimeoutSeconds { get; set; } = 10;

    /// <summary>
    /// Seconds an authenticated connection may stay without a request and with nothing in flight
    /// before it is closed; 0 (the default) never closes an idle connection (clients such as
    /// TmemConnection do not reconnect on their own).
    /// </summary>
    public int IdleTimeoutSeconds { get; set; }

    /// <summary>
    /// Response bytes queued for clients, all connections together (clients that read slowly or
    /// not at all). Beyond it the connections holding the most stop being read until it drains;
    /// each connection also stops being read at 192 KiB of its own. Default 67108864 (64 MiB).
    /// </summary>
    public long MaxQueuedResponseBytes { get; set; } = 64L << 20;

    /// <summary>
    /// Seconds a response write may make no progress (a client that stops reading) before the
    /// service closes that connection. Default 30.
    /// </summary>
    public int SendTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// Milliseconds between checks of the log's commit loop (durable stores): the commit service
    /// waits for everything appended so far to be committed and warns when that takes much longer
    /// than <c>Tmem:CommitIntervalMs</c> promises. 0 turns it off. Default 1000.
    /// </summary>
    public int CommitCheckIntervalMs { get; set; } = 1000;

    /// <summary>Milliseconds between reclaim passes; 0 turns reclaim off. Default 1000.</summary>
    public int ReclaimIntervalMs { get; set; } = 1000;

    /// <summary>
    /// Reclaim evicts when the RAM tier's slot bytes pass this fraction of
    /// <c>Tmem:RamBudgetBytes</c> (set with <see cref="ReclaimLowWater"/>, or neither). Unset
    /// (default): 0.95 while the store does not reclaim ahead of demand by itself
    /// (<c>Tmem:BackgroundReclaim</c> off, or a budget under 8 MiB), and no eviction here while it
    /// does (it keeps its own headroom; a second, wider margin here would only leave RAM unused).
    /// </summary>
    public double? ReclaimHighWater { get; set; }

    /// <summary>... and evicts down to this fraction, so puts find room without evicting. Unset: 0.90, as above.</summary>
    public double? ReclaimLowWater { get; set; }

    /// <summary>The watermarks in effect: the configured pair, or the defaults when the store does not reclaim ahead itself; null: no eviction here.</summary>
    internal (double High, double Low)? ReclaimWatermarks(bool storeReclaimsAhead) =>
        ReclaimHighWater is double high && ReclaimLowWater is double low ? (high, low)
        : storeReclaimsAhead ? null : (0.95, 0.90);

    /// <summary>
    /// The thread pool's minimum worker and I/O threads. FASTER completes log writes on pool
    /// threads; when every pool thread is busy serving requests, commits stall until the pool
    /// grows (slowly). Default 32.
    /// </summary>
    public int MinThreadPoolThreads { get; set; } = 32;

    /// <summary>
    /// OTLP endpoint (for example <c>http://localhost:4318</c>) to export the <c>Tmem</c> meter
    /// to with OpenTelemetry; unset (the default) exports only when the standard
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>
    /// <c>grpc</c> or <c>http/protobuf</c>; unset (the default): <c>OTEL_EXPORTER_OTLP_PROTOCOL</c>,
    /// else grpc for port 4317 and http/protobuf for any other.
    /// </summary>
    public string? OtlpProtocol { get; set; }

    /// <summary>The clients that may connect; see <see cref="ClientOptions"/>.</summary>
    public List<ClientOptions> Clients { get; set; } = [];
}

/// <summary>One configured client (<c>Tmem:Service:Clients:N</c>).</summary>
public sealed class ClientOptions
{
    /// <summary>The name a connection gives in its handshake (1 to 255 UTF-8 bytes, unique).</summary>
    public string Name { get; set; } = "";

    /// <summary>The store's client id it acts as (unique, 0 or more): its pools are this id's.</summary>
    public int Id { get; set; } = -1;

    /// <summary>
    /// The secret the handshake must carry (at most 255 UTF-8 bytes). Empty is allowed only while
    /// no TCP listener is configured (the Unix socket's file mode is then the only guard).
    /// </summary>
    public string Secret { get; set; } = "";

    /// <summary>UUIDs of the shared pools this client may create or join; <c>*</c> allows any. Default none.</summary>
    public List<string> SharedPools { get; set; } = [];

    /// <summary>Pools this client may hold; 0 (the default) means <c>Tmem:MaxPoolsPerClient</c>.</summary>
    public int MaxPools { get; set; }

    /// <summary>
    /// The largest frame the client may send, in bytes (so its largest page is this less 44).
    /// Default 65580: a put of a 64 KiB page.
    /// </summary>
    public int MaxFrameBytes { get; set; } = 65580;

    /// <summary>
    /// Requests one connection of this client may have in flight; the service reads no more from
    /// that connection until one completes. Default 256.
    /// </summary>
    public int MaxInFlight { get; set; } = 256;

    /// <summary>
    /// Whether the client may administer the service: change settings at run time (ConfigSet:
    /// the RAM budget, the log level), list the connections and close one. Default false.
    /// </summary>
    public bool Admin { get; set; }

    /// <summary>
    /// A Unix user id (0 or more) whose local programs are this client without a secret: a Hello
    /// naming the client over the Unix socket from a process of that user (as the kernel tells,
    /// <c>SO_PEERCRED</c>) is accepted whatever secret it carries. Others still need the secret;
    /// with an empty secret, only that user can be this client (so it is allowed with TCP on).
    /// -1 (the default): not bound.
    /// </summary>
    public int UnixUid { get; set; } = -1;
}
