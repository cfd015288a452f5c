namespace Tmem.LogTier;

/// <summary>Kinds of log record (byte 5 of the header; see docs/storage-format.md).</summary>
public enum LogRecordType : byte
{
    /// <summary>
    /// A persistent page: payload = LZ4 block, the 8-byte fill pattern when flag
    /// <see cref="LogRecordFlags.SameFilled"/>, or the page itself when flag <see cref="LogRecordFlags.Uncompressed"/>.
    /// </summary>
    Put = 1,

    /// <summary>Tombstone of one page (flush page, or a failed put over an existing page).</summary>
    FlushPage = 2,

    /// <summary>Tombstone of every page of one object.</summary>
    FlushObject = 3,

    /// <summary>A persistent pool is created; its first member is (client, pool id). Payload: <see cref="PoolRecord"/>.</summary>
    PoolCreate = 4,

    /// <summary>Another client joins a shared persistent pool. Payload: <see cref="PoolRecord"/>.</summary>
    PoolJoin = 5,

    /// <summary>A member leaves (destroys its pool id); the pool and its pages go with its last member. Payload: <see cref="PoolRecord"/>.</summary>
    PoolLeave = 6,

    /// <summary>
    /// Compaction's base: restates every live persistent pool and member (one record, so no other
    /// record can come between them), after which the records hold the whole state; the log is
    /// truncated up to it. Payload: <see cref="CompactionBaseRecord"/>.
    /// </summary>
    CompactionBase = 7,
}

/// <summary>Flag bits of a record (bytes 6-7 of the header).</summary>
[Flags]
public enum LogRecordFlags : ushort
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>Put only: the payload is the 8-byte word the page repeats.</summary>
    SameFilled = 1,

    /// <summary>Put only: the payload is the page itself, uncompressed (a pool with <see cref="PoolOptions.StoreIncompressible"/>).</summary>
    Uncompressed = 2,
}
