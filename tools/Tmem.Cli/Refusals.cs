namespace Tmem.Cli;

/// <summary>Why the store refused a put, and what the user can do, in words.</summary>
internal static class Refusals
{
    public static string Explain(PutStatus status) => status switch
    {
        PutStatus.RejectedPoorCompression =>
            "they do not compress to Tmem:MaxZsize (0.875 by default) of a page: the store keeps only pages that LZ4 compresses, and data that is already compressed, encrypted or random does not. Store data that compresses, or raise Tmem:MaxZsize (at most 1) in the service's configuration",
        PutStatus.RejectedMeanCompression =>
            "they compress to more than Tmem:MaxMeanZsize of a page while the persistent pages stored already average over it (the zcache rule that keeps persistent pages dense). Raise Tmem:MaxMeanZsize (up to Tmem:MaxZsize) in the service's configuration, or store data that compresses better",
        PutStatus.RejectedCapacity =>
            "the RAM budget (Tmem:RamBudgetBytes) or page limit (Tmem:MaxPages) is full of pages that cannot be evicted. Flush pages you no longer need, give the service a data directory (persistent pages then spill to its log) or raise the budget",
        PutStatus.RejectedPersistentLimit =>
            "the store holds as many persistent pages or bytes as Tmem:MaxPersistentPages / Tmem:MaxPersistentBytes allow. Flush pages you no longer need or raise those limits",
        PutStatus.RejectedStorageFull =>
            "the disk of the service's data directory is full (or failing). Free space on it: the service accepts persistent pages again by itself",
        _ => $"the store refused them ({status})",
    };

    /// <summary>One sentence per kind of refusal among <paramref name="results"/>.</summary>
    public static IEnumerable<string> Describe(IEnumerable<PutStatus> results) =>
        results.Where(r => r != PutStatus.Stored).GroupBy(r => r).OrderBy(g => g.Key)
            .Select(g => $"{g.Count()} page(s) refused ({g.Key}): {Explain(g.Key)}.");
}
