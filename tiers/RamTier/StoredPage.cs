namespace Tmem.RamTier;

/// <summary>How a page backed by the tier below is stored: what an index checkpoint records of it.</summary>
/// <param name="Form">Its representation in RAM.</param>
/// <param name="Length">Stored (compressed) bytes; 0 for a pattern.</param>
/// <param name="Pattern">The repeated word of a <see cref="PageForm.Pattern"/> page.</param>
/// <param name="BackingAddress">Where the tier below holds it (its Put record's log address).</param>
internal readonly record struct StoredPage(PageForm Form, int Length, ulong Pattern, long BackingAddress);
