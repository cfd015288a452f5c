namespace Tmem.Translation.Admission;

/// <summary>
/// zcache's <c>zv_max_zsize</c>, for every pool kind: a page whose LZ4 bytes would exceed
/// <see cref="TmemOptions.MaxZsize"/> of its page size is refused
/// (<see cref="PutStatus.RejectedPoorCompression"/>). Never more than 65535 bytes: a
/// descriptor holds the length as a u16, so a 64 KiB page must compress to less.
/// </summary>
internal readonly struct PoorCompressionRule(double maxZsize, int pageSize)
{
    /// <summary>The most compressed bytes a page of this pool may take; the encoder's scratch bound.</summary>
    public int MaxBytes { get; } = Math.Min((int)(pageSize * maxZsize), ushort.MaxValue);
}
