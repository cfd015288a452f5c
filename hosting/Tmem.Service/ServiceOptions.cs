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
}
