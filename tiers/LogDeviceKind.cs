namespace Tmem;

/// <summary>The storage device under the persistent log (<see cref="TmemOptions.LogDevice"/>).</summary>
public enum LogDeviceKind
{
    /// <summary>FASTER's managed file device: asynchronous write-through (O_DSYNC) file I/O.</summary>
    File = 0,

    /// <summary>
    /// Preallocated memory-mapped segment files: a write is copied into the mapping and synced
    /// (msync) before it completes; gets of spilled pages read and decompress the record straight
    /// from the mapping.
    /// </summary>
    Mapped = 1,
}
