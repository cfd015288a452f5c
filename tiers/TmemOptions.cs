namespace Tmem;

/// <summary>
/// Settings of a store. Every property has a documented default; <see cref="Validate"/> names
/// the property and the allowed range of any bad value. The service binds these from the
/// <c>Tmem</c> section of appsettings.json under the same names.
/// </summary>
public sealed class TmemOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Tmem";

    /// <summary>
    /// Bytes of compressed-page slots the RAM tier may hold (slot bytes: compressed size rounded
    /// up to its 16-byte size class). Over it, ephemeral pages are evicted. Default 256 MiB.
    /// Slab bytes (what the process really holds) exceed this only by fragmentation, which
    /// compaction keeps near <see cref="SlabCompactionThreshold"/>.
    /// </summary>
    public long RamBudgetBytes { get; set; } = 256L << 20;

    /// <summary>
    /// The most pages (of any kind, including same-filled pages that take no slot bytes) the store
    /// keeps in RAM, bounding its metadata. 0 (the default) means <see cref="RamBudgetBytes"/> / 256.
    /// </summary>
    public long MaxPages { get; set; }

    /// <summary>Pools one client may hold at once (pool ids 0 to this minus 1). Default 16.</summary>
    public int MaxPoolsPerClient { get; set; } = 16;

    /// <summary>Hash buckets per pool, each with its own lock; a power of two from 1 to 65536. Default 256.</summary>
    public int BucketsPerPool { get; set; } = 256;

    /// <summary>
    /// Largest compressed size accepted, as a fraction of the page size (zcache's
    /// <c>zv_max_zsize</c>), and never over 65535 bytes. Default 7/8.
    /// </summary>
    public double MaxZsize { get; set; } = 7.0 / 8.0;

    /// <summary>
    /// Persistent pages only: a page compressing to more than this fraction of the page size is
    /// refused while the mean compressed fraction of stored persistent pages is above it too
    /// (zcache's <c>zv_max_mean_zsize</c>). Default 5/8.
    /// </summary>
    public double MaxMeanZsize { get; set; } = 5.0 / 8.0;

    /// <summary>
    /// Fragmentation the RAM tier tolerates before compaction moves pages out of sparse slabs:
    /// compaction starts when slab bytes exceed slot bytes in use by this fraction (and by at
    /// least a few slabs). Default 0.05.
    /// </summary>
    public double SlabCompactionThreshold { get; set; } = 0.05;

    /// <summary>
    /// Reclaim ahead of demand: when less than half of a small headroom under
    /// <see cref="RamBudgetBytes"/> (1/128 of it, at most 16 MiB; and 1/128 of
    /// <see cref="MaxPages"/>) is left, one background pass evicts until the whole headroom is
    /// free and runs slab compaction, so puts into a full store rarely evict on their own path.
    /// Budgets under 8 MiB never use it. Off: every put that needs room evicts for itself, and
    /// compaction runs after puts. Default on.
    /// </summary>
    public bool BackgroundReclaim { get; set; } = true;

    /// <summary>
    /// Size of each log segment file, a power of two from 16 MiB to 1 GiB; compaction frees space
    /// in whole segments, so smaller segments track live data more closely. Used when a data
    /// directory is created; an existing directory keeps the size it was created with (its
    /// <c>format</c> file). Default 32 MiB.
    /// </summary>
    public long LogSegmentSizeBytes { get; set; } = 32L << 20;

    /// <summary>
    /// Log compaction starts when the live persistent records are less than this fraction of the
    /// segment files the log spans (and at least a segment of it is dead): live records are
    /// copied to the tail and the log is truncated after them. 0 turns compaction off. Default
    /// 0.6, which keeps the log's files within about 1/0.6 = 1.7 times its live data plus a
    /// segment (more while a compaction's copies are being written).
    /// </summary>
    public double LogCompactionLiveFraction { get; set; } = 0.6;

    /// <summary>
    /// The device under the log: <see cref="LogDeviceKind.Mapped"/> (the default: preallocated
    /// memory-mapped segment files, read directly on gets of spilled pages; in the persistent
    /// benchmark as fast for Strict puts and about 3x as fast for gets of spilled pages) or
    /// <see cref="LogDeviceKind.File"/> (FASTER's managed file device, write-through). Both keep
    /// the same promises and use the same files, so this may change between runs.
    /// </summary>
    public LogDeviceKind LogDevice { get; set; } = LogDeviceKind.Mapped;

    /// <summary>
    /// The remote tier for evicted ephemeral pages (section <c>Tmem:RemoteTier</c>; off by
    /// default; docs/remote-tier.md).
    /// </summary>
    public RemoteTierOptions RemoteTier { get; set; } = new();

    /// <summary>
    /// Gives the store the client of its remote tier's cluster: <paramref name="factory"/> is called
    /// once when a store opens with <see cref="RemoteTierOptions.Enabled"/>, and the store disposes
    /// what it returns when it closes. The service passes Tmem.Remote's Redis-protocol client;
    /// with the remote tier enabled and no client given, the settings are refused.
    /// </summary>
    public TmemOptions UseRemotePageStore(Func<RemoteTierOptions, IRemotePageStore> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        RemotePageStoreFactory = factory;
        return this;
    }

    /// <summary>What <see cref="UseRemotePageStore"/> gave; not a setting (no configuration key binds it).</summary>
    internal Func<RemoteTierOptions, IRemotePageStore>? RemotePageStoreFactory { get; private set; }

    /// <summary>A copy of these settings.</summary>
    public TmemOptions Clone()
    {
        var copy = (TmemOptions)MemberwiseClone();
        copy.RemoteTier = (RemoteTier ?? new RemoteTierOptions()).Clone();
        return copy;
    }

    /// <summary>
    /// Directory holding the persistent log and the lock file. Null (the default) keeps
    /// persistent pools in memory only: they survive nothing. A store with a data directory is
    /// opened, and recovered, by <c>TmemStore.Open</c>.
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// The most persistent pages the store holds (zcache's <c>zv_page_count_policy_percent</c>, as a
    /// count); a put of a new page over it fails with <see cref="PutStatus.RejectedPersistentLimit"/>.
    /// 0 (the default) means no limit but RAM and <see cref="MaxPages"/>.
    /// </summary>
    public long MaxPersistentPages { get; set; }

    /// <summary>
    /// The most compressed bytes of persistent pages the store holds (what their records take in
    /// the log, less headers); a put of a new page over it fails with
    /// <see cref="PutStatus.RejectedPersistentLimit"/>. 0 (the default) means no limit.
    /// </summary>
    public long MaxPersistentBytes { get; set; }

    /// <summary>When persistent puts and flushes are acknowledged. Default <see cref="DurabilityMode.Strict"/>.</summary>
    public DurabilityMode Durability { get; set; } = DurabilityMode.Strict;

    /// <summary>
    /// <see cref="DurabilityMode.Relaxed"/> only: the interval of the log's commits. Appends wait
    /// while the oldest uncommitted one is more than 10 intervals (at least 100 ms) old, so a crash
    /// loses at most the operations of that window before the last append. Default 10 ms.
    /// </summary>
    public int CommitIntervalMs { get; set; } = 10;

    /// <summary>
    /// Durable stores: how long an operation waits for its log commit while the log's storage is
    /// failing (writes or syncs fail and are being retried) before it gives up with <see cref="TmemNotDurableException"/>; once the storage has
    /// failed for this long, operations that need durability answer that at once, until it
    /// recovers. Also bounds the last commit when the store closes on a failing disk. A healthy
    /// disk never makes anything wait this long. Default 2000 ms.
    /// </summary>
    public int DurabilityTimeoutMs { get; set; } = 2000;

    /// <summary>
    /// Tests and the benchmark only: their hooks into the store (a faulty log device, direct reads
    /// off, counters; see <see cref="Tmem.Diagnostics.StoreDiagnostics"/>). Production code never sets it.
    /// </summary>
    internal Tmem.Diagnostics.StoreDiagnostics? Diagnostics { get; set; }

    internal long EffectiveMaxPages => MaxPages > 0 ? MaxPages : DerivedMaxPages(RamBudgetBytes, RemoteCapacityBytes);

    /// <summary>The remote tier's capacity when it is on, else 0: its pages take descriptors too.</summary>
    internal long RemoteCapacityBytes => RemoteTier is { Enabled: true } remote ? remote.CapacityBytes : 0;

    /// <summary>
    /// The page limit when <see cref="MaxPages"/> is 0: (budget + the remote tier's capacity) / 256,
    /// at least 1024 (without the remote tier, budget / 256 as before).
    /// </summary>
    internal static long DerivedMaxPages(long ramBudgetBytes, long remoteCapacityBytes = 0) => Math.Max(1024, (ramBudgetBytes + remoteCapacityBytes) / 256);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting and its allowed range.</summary>
    public void Validate()
    {
        foreach (var error in GetErrors())
            throw new ArgumentException(error);
    }

    /// <summary>Every bad setting, each as a message naming the key and what is allowed.</summary>
    public IEnumerable<string> GetErrors()
    {
        if (RamBudgetBytes < 1L << 16)
            yield return $"{SectionName}:{nameof(RamBudgetBytes)} is {RamBudgetBytes}; it must be at least 65536 bytes.";
        if (MaxPages < 0 || MaxPages > uint.MaxValue / 2)
            yield return $"{SectionName}:{nameof(MaxPages)} is {MaxPages}; it must be 0 (derived) or from 1 to {uint.MaxValue / 2}.";
        if (MaxPoolsPerClient < 1 || MaxPoolsPerClient > 65536)
            yield return $"{SectionName}:{nameof(MaxPoolsPerClient)} is {MaxPoolsPerClient}; it must be from 1 to 65536.";
        if (BucketsPerPool < 1 || BucketsPerPool > 65536 || (BucketsPerPool & (BucketsPerPool - 1)) != 0)
            yield return $"{SectionName}:{nameof(BucketsPerPool)} is {BucketsPerPool}; it must be a power of two from 1 to 65536.";
        if (!(MaxZsize > 0 && MaxZsize <= 1))
            yield return $"{SectionName}:{nameof(MaxZsize)} is {MaxZsize}; it must be a fraction of the page size in (0, 1].";
        if (!(MaxMeanZsize > 0 && MaxMeanZsize <= MaxZsize))
            yield return $"{SectionName}:{nameof(MaxMeanZsize)} is {MaxMeanZsize}; it must be in (0, {nameof(MaxZsize)}].";
        if (MaxPersistentPages < 0)
            yield return $"{SectionName}:{nameof(MaxPersistentPages)} is {MaxPersistentPages}; it must be 0 (no limit) or more.";
        if (MaxPersistentBytes < 0)
            yield return $"{SectionName}:{nameof(MaxPersistentBytes)} is {MaxPersistentBytes}; it must be 0 (no limit) or more.";
        if (Durability is not (DurabilityMode.Strict or DurabilityMode.Relaxed))
            yield return $"{SectionName}:{nameof(Durability)} is {(int)Durability}; it must be Strict or Relaxed.";
        if (CommitIntervalMs < 1 || CommitIntervalMs > 60_000)
            yield return $"{SectionName}:{nameof(CommitIntervalMs)} is {CommitIntervalMs}; it must be from 1 to 60000.";
        if (DurabilityTimeoutMs < 100 || DurabilityTimeoutMs > 600_000)
            yield return $"{SectionName}:{nameof(DurabilityTimeoutMs)} is {DurabilityTimeoutMs}; it must be from 100 to 600000.";
        if (DataDirectory is { } dir && (dir.Length == 0 || dir.IndexOfAny(Path.GetInvalidPathChars()) >= 0))
            yield return $"{SectionName}:{nameof(DataDirectory)} is '{dir}'; it must be a valid directory path (or unset for a memory-only store).";
        if (LogSegmentSizeBytes < 16L << 20 || LogSegmentSizeBytes > 1L << 30 || (LogSegmentSizeBytes & (LogSegmentSizeBytes - 1)) != 0)
            yield return $"{SectionName}:{nameof(LogSegmentSizeBytes)} is {LogSegmentSizeBytes}; it must be a power of two from 16777216 (16 MiB) to 1073741824 (1 GiB).";
        if (!(LogCompactionLiveFraction == 0 || (LogCompactionLiveFraction >= 0.05 && LogCompactionLiveFraction <= 0.95)))
            yield return $"{SectionName}:{nameof(LogCompactionLiveFraction)} is {LogCompactionLiveFraction}; it must be 0 (compaction off) or from 0.05 to 0.95.";
        if (LogDevice is not (LogDeviceKind.File or LogDeviceKind.Mapped))
            yield return $"{SectionName}:{nameof(LogDevice)} is {(int)LogDevice}; it must be File or Mapped.";
        if (!(SlabCompactionThreshold >= 0.01 && SlabCompactionThreshold <= 10))
            yield return $"{SectionName}:{nameof(SlabCompactionThreshold)} is {SlabCompactionThreshold}; it must be from 0.01 to 10.";
        foreach (var error in (RemoteTier ?? new RemoteTierOptions()).GetErrors())
            yield return error;
        if (RemoteTier is { Enabled: true } && RemotePageStoreFactory is null)
            yield return $"{RemoteTierOptions.SectionName}:{nameof(RemoteTierOptions.Enabled)} is true, but the store was given no client for the cluster (TmemOptions.UseRemotePageStore; the service gives Tmem.Remote's).";
    }
}
