namespace Tmem;

/// <summary>What one log compaction did (<see cref="TmemStore.CompactLog"/>).</summary>
/// <param name="BeginBefore">The log's begin address before.</param>
/// <param name="BeginAfter">The begin address after: the compaction base record.</param>
/// <param name="LogBytesBefore">Log bytes (begin to tail) before.</param>
/// <param name="LogBytesAfter">Log bytes after (including what was appended meanwhile).</param>
/// <param name="CopiedRecords">Live Put records copied forward.</param>
/// <param name="CopiedBytes">Log bytes those copies take.</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record LogCompactionResult(long BeginBefore, long BeginAfter, long LogBytesBefore, long LogBytesAfter, long CopiedRecords, long CopiedBytes, TimeSpan Elapsed)
{
    /// <summary>Log bytes released (segment files wholly below <see cref="BeginAfter"/> are deleted).</summary>
    public long TruncatedBytes => BeginAfter - BeginBefore;
}
