namespace Tmem.Recovery.Offline;

/// <summary>How far a long offline step has come: <see cref="Done"/> of <see cref="Total"/> units (bytes of log, pages).</summary>
/// <param name="Stage">What is being done, e.g. "reading the log".</param>
/// <param name="Done">Units done.</param>
/// <param name="Total">Units in all (at least <see cref="Done"/>).</param>
public readonly record struct OfflineProgress(string Stage, long Done, long Total);
