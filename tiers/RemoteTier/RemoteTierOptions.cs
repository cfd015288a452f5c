namespace Tmem;

/// <summary>
/// Settings of the remote tier (section <c>Tmem:RemoteTier</c>): a Redis-protocol cluster (Garnet,
/// or any Redis cluster) that keeps the compressed ephemeral pages the RAM tier evicts, instead of
/// dropping them. Off by default. Persistent pools never use it. docs/remote-tier.md.
/// </summary>
public sealed class RemoteTierOptions
{
    /// <summary>The configuration section name, under <see cref="TmemOptions.SectionName"/>.</summary>
    public const string SectionName = TmemOptions.SectionName + ":RemoteTier";

    /// <summary>Whether evicted ephemeral pages go to the cluster. Default false.</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// The cluster's nodes, comma-separated <c>host:port</c> (any of them suffices for a cluster;
    /// the client learns the others and the slot map from it). Required when enabled.
    /// </summary>
    public string? Endpoints { get; set; }

    /// <summary>
    /// This store's name in the cluster: the first part of every key it writes, so that several
    /// stores (one service per machine) share one cluster. Letters, digits, '-', '_' and '.'; at
    /// most 64. Empty (the default) means the machine name. Each open of the store also picks a
    /// random incarnation, so two stores given the same name still never see each other's pages.
    /// </summary>
    public string? StoreName { get; set; }

    /// <summary>
    /// How long one request (a get's fetch, a batch's write) may take before it counts as failed:
    /// a get of a remote page then misses. Default 100 ms.
    /// </summary>
    public int RequestTimeoutMs { get; set; } = 100;

    /// <summary>How long connecting to a node may take (the store opens without waiting for it). Default 2000 ms.</summary>
    public int ConnectTimeoutMs { get; set; } = 2000;

    /// <summary>
    /// Bytes of remote values waiting to be written or being written (the writeback queue). An
    /// evicted page that does not fit is dropped, as it would be without the remote tier.
    /// Default 16 MiB.
    /// </summary>
    public long QueueBytes { get; set; } = 16L << 20;

    /// <summary>
    /// The most bytes of remote values (header included) this store keeps in the cluster. Near it,
    /// eviction also drops the least recently used remote pages, and an evicted page that does not
    /// fit is dropped. The cluster's own memory limit is the backstop. Default 1 GiB.
    /// </summary>
    public long CapacityBytes { get; set; } = 1L << 30;

    /// <summary>
    /// Expiry of each object's key, renewed on every write to it: what reclaims values whose
    /// delete was lost (a node down at the time) and the keys of a store that crashed. 0 means no
    /// expiry. Default 86400 (a day).
    /// </summary>
    public int KeyTtlSeconds { get; set; } = 86400;

    /// <summary>A copy of these settings.</summary>
    public RemoteTierOptions Clone() => (RemoteTierOptions)MemberwiseClone();

    /// <summary>The store name in use: <see cref="StoreName"/>, or the machine name when empty.</summary>
    public string EffectiveStoreName => string.IsNullOrEmpty(StoreName) ? SanitizedMachineName() : StoreName;

    private static string SanitizedMachineName()
    {
        var name = new string(Environment.MachineName.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
        return name.Length == 0 ? "tmem" : name[..Math.Min(64, name.Length)];
    }

    /// <summary>Every bad setting, each naming its key and what is allowed (nothing is checked while off, except the ranges).</summary>
    public IEnumerable<string> GetErrors()
    {
        const string S = SectionName;
        if (Enabled && string.IsNullOrWhiteSpace(Endpoints))
            yield return $"{S}:{nameof(Endpoints)} is empty; with {S}:{nameof(Enabled)} true it must list the cluster's nodes as host:port, comma-separated.";
        if (Enabled && !string.IsNullOrWhiteSpace(Endpoints))
        {
            foreach (var endpoint in Endpoints.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                int colon = endpoint.LastIndexOf(':');
                if (colon <= 0 || !int.TryParse(endpoint[(colon + 1)..], out int port) || port is < 1 or > 65535)
                    yield return $"{S}:{nameof(Endpoints)} has '{endpoint}'; each endpoint must be host:port with a port from 1 to 65535.";
            }
        }
        if (!string.IsNullOrEmpty(StoreName) && (StoreName.Length > 64 || StoreName.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))))
            yield return $"{S}:{nameof(StoreName)} is '{StoreName}'; it must be at most 64 letters, digits, '-', '_' or '.' (or empty for the machine name).";
        if (RequestTimeoutMs is < 1 or > 60_000)
            yield return $"{S}:{nameof(RequestTimeoutMs)} is {RequestTimeoutMs}; it must be from 1 to 60000.";
        if (ConnectTimeoutMs is < 100 or > 60_000)
            yield return $"{S}:{nameof(ConnectTimeoutMs)} is {ConnectTimeoutMs}; it must be from 100 to 60000.";
        if (QueueBytes < 1L << 16 || QueueBytes > 1L << 34)
            yield return $"{S}:{nameof(QueueBytes)} is {QueueBytes}; it must be from 65536 to {1L << 34} (16 GiB).";
        if (CapacityBytes < 1L << 20 || CapacityBytes > 1L << 44)
            yield return $"{S}:{nameof(CapacityBytes)} is {CapacityBytes}; it must be from 1048576 (1 MiB) to {1L << 44} (16 TiB).";
        if (KeyTtlSeconds is < 0 or > 365 * 86400)
            yield return $"{S}:{nameof(KeyTtlSeconds)} is {KeyTtlSeconds}; it must be 0 (no expiry) or up to {365 * 86400} (a year).";
    }
}
