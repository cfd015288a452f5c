using Tmem.Diagnostics;
using Tmem.LogTier;
using Tmem.RamTier;
using Tmem.RemoteTier;
using Tmem.Translation.Admission;

namespace Tmem.Translation;

/// <summary>What every pool of a store shares: the settings, the RAM tier, the counters, the log (durable stores) and the store-wide admission rules.</summary>
internal sealed class StoreContext(TmemOptions options, CompressedRamTier ram, StoreCounters counters, PersistentLog? log, RemoteBacking? remote = null)
{
    /// <summary>The tier below RAM for ephemeral pages, when it is on.</summary>
    public RemoteBacking? Remote { get; } = remote;

    public TmemOptions Options { get; } = options;

    public CompressedRamTier Ram { get; } = ram;

    public StoreCounters Counters { get; } = counters;

    public PersistentLog? Log { get; } = log;

    public MeanCompressionRule MeanCompression { get; } = new(options.MaxMeanZsize, counters);

    public PersistentLimitRule PersistentLimits { get; } = new(options.MaxPersistentPages, options.MaxPersistentBytes, counters);
}
