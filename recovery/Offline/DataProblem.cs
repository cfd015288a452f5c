namespace Tmem.Recovery.Offline;

/// <summary>What kind of problem the offline tool found in a data directory.</summary>
public enum ProblemKind
{
    /// <summary>The <c>format</c> file is missing or invalid: the log cannot be addressed.</summary>
    FormatFile,

    /// <summary>FASTER's commit metadata (<c>commits/</c>) is missing, damaged, or does not fit the segment files.</summary>
    CommitMetadata,

    /// <summary>A segment file that holds committed log addresses does not exist.</summary>
    MissingSegment,

    /// <summary>A segment file ends before the commit point (cut mid-record or mid-page).</summary>
    TruncatedSegment,

    /// <summary>FasterLog's entry framing is broken (a length that does not fit its page or passes the commit point).</summary>
    BadFraming,

    /// <summary>A record fails its CRC-32C or has a bad version, type or length.</summary>
    BadRecord,

    /// <summary>A record that passes its checks contradicts the records before it (an unknown pool, a pool created twice).</summary>
    InconsistentRecord,

    /// <summary>The index checkpoint is damaged (checksum, length, version).</summary>
    CheckpointDamaged,

    /// <summary>The index checkpoint is intact but does not fit or does not agree with the log.</summary>
    CheckpointMismatch,

    /// <summary>Whole records past the commit point: written but never committed (a torn tail), never acknowledged.</summary>
    UncommittedTail,
}

/// <summary>How bad a problem is.</summary>
public enum ProblemSeverity
{
    /// <summary>Data below the commit point or needed to open the store is damaged: the store will not open, or will not open as it was.</summary>
    Damage,

    /// <summary>Worth knowing, loses nothing acknowledged (a torn tail; a consequence of an earlier damage).</summary>
    Notice,
}

/// <summary>One problem found in a data directory.</summary>
/// <param name="Kind">What it is.</param>
/// <param name="Severity">Damage or notice.</param>
/// <param name="Address">The log address it is at, when it is in the log.</param>
/// <param name="File">The file it is in, when known.</param>
/// <param name="Message">A sentence naming what is wrong, where.</param>
public sealed record DataProblem(ProblemKind Kind, ProblemSeverity Severity, long? Address, string? File, string Message);
