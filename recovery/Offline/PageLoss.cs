namespace Tmem.Recovery.Offline;

/// <summary>A client's id for a pool: (client, pool id).</summary>
/// <param name="ClientId">The client.</param>
/// <param name="PoolId">The client's pool id.</param>
public readonly record struct PoolMember(int ClientId, int PoolId);

/// <summary>How a page is affected by cutting the log.</summary>
public enum LossKind
{
    /// <summary>The page's only version is at or after the cut: it is gone.</summary>
    Lost,

    /// <summary>The page's newest version is at or after the cut: it comes back as an older version (at <see cref="PageLoss.KeptAddress"/>).</summary>
    Reverted,

    /// <summary>The page was flushed at or after the cut: it comes back (as the version at <see cref="PageLoss.KeptAddress"/>).</summary>
    Resurrected,

    /// <summary>The page's record is the damaged one; its handle comes from a header that cannot be verified.</summary>
    Damaged,
}

/// <summary>One page (handle) that a repair loses or changes.</summary>
/// <param name="Kind">What happens to it.</param>
/// <param name="PoolSerial">The pool's store-wide serial.</param>
/// <param name="Members">The pool's (client, pool id) members, the handle's first part.</param>
/// <param name="ObjectId">The object id (<c>word0:word1:word2</c>, hex).</param>
/// <param name="Index">The page index.</param>
/// <param name="LostAddress">The log address of the version (or flush) that is lost, when known.</param>
/// <param name="KeptAddress">The log address of the version that remains, or null when none does.</param>
/// <param name="Reason">A sentence saying why.</param>
public sealed record PageLoss(LossKind Kind, uint PoolSerial, IReadOnlyList<PoolMember> Members, string ObjectId, uint Index, long? LostAddress, long? KeptAddress, string Reason);

/// <summary>A pool or membership change that a repair loses (the pool state goes back to what it was at the cut).</summary>
/// <param name="PoolSerial">The pool's serial.</param>
/// <param name="Members">Its members as they were before the repair (after the cut's records).</param>
/// <param name="Description">What is lost, e.g. "created after the cut: the pool and its pages are gone".</param>
public sealed record PoolLoss(uint PoolSerial, IReadOnlyList<PoolMember> Members, string Description);
