using System.Runtime.CompilerServices;

namespace Tmem;

/// <summary>
/// A 192-bit object id (three u64 words), like the kernel's <c>struct tmem_oid</c>.
/// For cleancache it is a file key, for frontswap a swap-offset "swizzle".
/// All ones is reserved as invalid.
/// </summary>
public readonly struct ObjectId : IEquatable<ObjectId>
{
    /// <summary>The reserved invalid id (all three words all ones).</summary>
    public static readonly ObjectId Invalid = new(ulong.MaxValue, ulong.MaxValue, ulong.MaxValue);

    /// <summary>Creates an object id from its three words.</summary>
    public ObjectId(ulong word0, ulong word1, ulong word2)
    {
        Word0 = word0;
        Word1 = word1;
        Word2 = word2;
    }

    /// <summary>Creates an object id whose first word is <paramref name="word0"/> and the rest zero.</summary>
    public ObjectId(ulong word0) : this(word0, 0, 0)
    {
    }

    /// <summary>First word.</summary>
    public ulong Word0 { get; }

    /// <summary>Second word.</summary>
    public ulong Word1 { get; }

    /// <summary>Third word.</summary>
    public ulong Word2 { get; }

    /// <summary>False for the reserved all-ones id.</summary>
    public bool IsValid => (Word0 & Word1 & Word2) != ulong.MaxValue;

    /// <inheritdoc/>
    public bool Equals(ObjectId other) => Word0 == other.Word0 && Word1 == other.Word1 && Word2 == other.Word2;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is ObjectId other && Equals(other);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override int GetHashCode()
    {
        // Multiplicative mixing of the three words; cheap and spreads sequential ids well.
        ulong h = (Word0 * 0x9E3779B97F4A7C15UL) ^ (Word1 * 0xC2B2AE3D27D4EB4FUL) ^ (Word2 * 0x165667B19E3779F9UL);
        h ^= h >> 29;
        return (int)h ^ (int)(h >> 32);
    }

    /// <summary>Equality.</summary>
    public static bool operator ==(ObjectId left, ObjectId right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(ObjectId left, ObjectId right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => $"{Word0:x16}:{Word1:x16}:{Word2:x16}";
}
