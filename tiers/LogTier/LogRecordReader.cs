using FASTER.core;
using Tmem.Diagnostics;

namespace Tmem.LogTier;

/// <summary>Decodes a record read back from the log into <paramref name="destination"/>; returns an error message or null.</summary>
internal delegate string? RecordDecoder<TState>(ReadOnlySpan<byte> record, Span<byte> destination, TState state);

/// <summary>
/// Reads single committed records back (gets of spilled pages): with the <c>Mapped</c> device
/// straight from the mapping (no copy, no system call), else (the <c>File</c> device, or a
/// segment no write has mapped yet) through <see cref="FasterLog.ReadAsync(long, int, CancellationToken)"/>
/// (a device read and an allocation per record). A record below the log's begin address was
/// truncated away by compaction after it moved the record: the caller looks the page up again.
/// </summary>
internal sealed class LogRecordReader(FasterLog log, MappedLogDevice? mapped, StoreDiagnostics? diagnostics, StorageHealth health)
{
    /// <summary>
    /// Reads the committed record at <paramref name="address"/> (of <paramref name="length"/> bytes)
    /// and hands it to <paramref name="decode"/>, whose result comes back in <paramref name="error"/>.
    /// Returns false when the address is below the log's begin address. Blocks.
    /// </summary>
    public bool TryRead<TState>(long address, int length, Span<byte> destination, TState state, RecordDecoder<TState> decode, out string? error)
    {
        error = null;
        if (mapped is not null && (diagnostics is null || diagnostics.DirectReads))
        {
            // Straight from the mapping: committed bytes are there (FASTER flushed them before the
            // commit), past FasterLog's 4-byte entry header. False: the segment was truncated away.
            var read = new DirectRead<TState>(destination, state, decode);
            if (mapped.TryRead(address + LogFraming.EntryHeaderSize, length, read, DirectRead<TState>.Decode, out error))
            {
                if (diagnostics is not null) diagnostics.DirectReadCount++; // tests: the mapped path was taken (racy, approximate)
                return address >= log.BeginAddress || error is null;
            }
            if (address < log.BeginAddress) return false;
            // Not mapped, though in the log: a segment written by the File device that no write
            // has mapped yet. FasterLog's read below serves it.
            error = null;
        }
        byte[]? bytes;
        int readLength;
        long readErrors = Volatile.Read(ref health.ReadErrors);
        try
        {
            var read = log.ReadAsync(address, length);
            (bytes, readLength) = read.IsCompletedSuccessfully ? read.Result : read.AsTask().GetAwaiter().GetResult();
        }
        catch (Exception) when (address < log.BeginAddress)
        {
            return false; // the segment went while the read was in flight
        }
        if (address < log.BeginAddress) return false;
        if ((bytes is null || readLength != length) && Volatile.Read(ref health.ReadErrors) != readErrors)
        {
            // FasterLog hands back no data for a failed read as for a bad length: the device says which.
            throw new IOException($"Reading the {length}-byte record at log address {address} failed: {health.LastReadError}. The record is not known to be damaged; the read may succeed later.");
        }
        if (bytes is null || readLength != length)
            throw new TmemCorruptionException(address, $"Reading the {length}-byte record at log address {address} returned {readLength} bytes.");
        error = decode(bytes.AsSpan(0, length), destination, state);
        return true;
    }

    /// <summary>The decoder and its arguments, carried through the mapped device's reader.</summary>
    private readonly ref struct DirectRead<TState>(Span<byte> destination, TState state, RecordDecoder<TState> decode)
    {
        private readonly Span<byte> _destination = destination;
        private readonly TState _state = state;
        private readonly RecordDecoder<TState> _decode = decode;

        public static string? Decode(ReadOnlySpan<byte> record, DirectRead<TState> read) => read._decode(record, read._destination, read._state);
    }
}
