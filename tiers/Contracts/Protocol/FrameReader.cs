using System.Buffers;

namespace Tmem.Protocol;

/// <summary>What <see cref="FrameReader.TryRead"/> found at the start of the buffered input.</summary>
public enum FrameResult
{
    /// <summary>A whole frame: it is handed out and consumed.</summary>
    Complete,

    /// <summary>Not a whole frame yet: receive more (into <see cref="FrameReader.GetReceiveMemory"/>).</summary>
    Incomplete,

    /// <summary>The length field is under the 12-byte header: the stream cannot be trusted any more.</summary>
    TooShort,

    /// <summary>The length field is over the limit given: the stream cannot be trusted any more.</summary>
    TooLarge,
}

/// <summary>
/// Splits a byte stream into frames (docs/PROTOCOL.md, "Frames"); the service and the .NET
/// client both read with it. The input buffer comes from <see cref="ArrayPool{T}.Shared"/> only
/// while bytes are buffered: <see cref="ReleaseIfEmpty"/> gives it back, so a connection that
/// waits for input with nothing buffered holds no buffer. It grows to the length of the frame
/// being received (at most the limit the caller checks) and shrinks back when given back.
/// Not thread-safe: one reader at a time.
/// </summary>
public sealed class FrameReader : IDisposable
{
    private int _receiveBytes;
    private byte[]? _buffer;
    private int _start;
    private int _end;

    /// <summary>Creates a reader whose receive buffer holds at least <paramref name="receiveBytes"/> bytes.</summary>
    public FrameReader(int receiveBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(receiveBytes, Wire.HeaderSize);
        _receiveBytes = receiveBytes;
    }

    /// <summary>
    /// The least room <see cref="GetReceiveMemory"/> offers (the buffer rented); a server makes it
    /// small before a handshake and larger after.
    /// </summary>
    public int ReceiveBytes
    {
        get => _receiveBytes;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, Wire.HeaderSize);
            _receiveBytes = value;
        }
    }

    /// <summary>Bytes received and not yet handed out as frames.</summary>
    public int Buffered => _end - _start;

    /// <summary>The bytes received and not yet handed out (a partial frame, or a frame not yet read).</summary>
    public ReadOnlySpan<byte> Pending => _buffer is null ? default : _buffer.AsSpan(_start, _end - _start);

    /// <summary>Whether a buffer is rented now.</summary>
    public bool HoldsBuffer => _buffer is not null;

    /// <summary>
    /// Room to receive into, after the bytes buffered: rents the buffer if none is held, moves a
    /// partial frame to the front, and grows the buffer when the frame being received is longer
    /// than it (its length field is read already). Spans from <see cref="TryRead"/> are invalid after this.
    /// </summary>
    public Memory<byte> GetReceiveMemory()
    {
        int buffered = _end - _start;
        if (buffered == 0) _start = _end = 0;
        int needed = _receiveBytes;
        if (buffered >= 4)
        {
            int length = Wire.ReadLength(_buffer.AsSpan(_start));
            if (length > needed) needed = length;
        }
        if (_buffer is null)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(needed);
        }
        else if (_buffer.Length < needed)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(needed);
            _buffer.AsSpan(_start, buffered).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            (_buffer, _start, _end) = (bigger, 0, buffered);
        }
        else if (_start > 0 && (_buffer.Length - _end < _receiveBytes / 2 || _buffer.Length - _end < needed - buffered))
        {
            _buffer.AsSpan(_start, buffered).CopyTo(_buffer);
            (_start, _end) = (0, buffered);
        }
        return _buffer.AsMemory(_end);
    }

    /// <summary>Counts <paramref name="count"/> bytes received into <see cref="GetReceiveMemory"/>.</summary>
    public void Advance(int count)
    {
        if (_buffer is null || count < 0 || _end + count > _buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
        _end += count;
    }

    /// <summary>
    /// The next frame, if a whole one is buffered and its length is from 12 to
    /// <paramref name="maxFrameBytes"/>. <paramref name="frame"/> (header included) is valid until
    /// the next <see cref="GetReceiveMemory"/> or <see cref="ReleaseIfEmpty"/>. On
    /// <see cref="FrameResult.TooShort"/> or <see cref="FrameResult.TooLarge"/> nothing is
    /// consumed and <paramref name="length"/> is the length field read.
    /// </summary>
    public FrameResult TryRead(int maxFrameBytes, out ReadOnlySpan<byte> frame, out int length)
    {
        frame = default;
        int buffered = _end - _start;
        if (buffered < 4)
        {
            length = -1;
            return FrameResult.Incomplete;
        }
        var span = _buffer.AsSpan(_start, buffered);
        length = Wire.ReadLength(span);
        if (length < Wire.HeaderSize) return FrameResult.TooShort;
        if (length > maxFrameBytes) return FrameResult.TooLarge;
        if (buffered < length) return FrameResult.Incomplete;
        frame = span[..length];
        _start += length;
        return FrameResult.Complete;
    }

    /// <summary>Gives the buffer back to the pool when nothing is buffered; returns whether none is held now.</summary>
    public bool ReleaseIfEmpty()
    {
        if (_end != _start) return false;
        Dispose();
        return true;
    }

    /// <summary>Drops what is buffered and gives the buffer back.</summary>
    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = null;
        _start = _end = 0;
        if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
    }
}
