namespace Tmem;

/// <summary>
/// The remote tier's state (<see cref="TmemStore.RemoteTier"/>), judged once a second from the
/// requests of that second and a ping of every node. The tier leaves every degraded state by
/// itself when the nodes answer again; the service logs each change once.
/// </summary>
public enum RemoteTierState
{
    /// <summary>No remote tier (<see cref="RemoteTierOptions.Enabled"/> is false).</summary>
    Off = 0,

    /// <summary>Every node answers and no request failed in the last second.</summary>
    Healthy = 1,

    /// <summary>
    /// Some requests failed or timed out, or some node does not answer (down, paused, refusing
    /// writes): gets of pages on it miss within <see cref="RemoteTierOptions.RequestTimeoutMs"/>,
    /// writes to it are lost (the page then misses). Other nodes serve as usual.
    /// </summary>
    Degraded = 2,

    /// <summary>
    /// No node answers (or none was reached yet): evicted pages are dropped at once instead of
    /// queued, gets of remote pages miss.
    /// </summary>
    Down = 3,
}

/// <summary>A snapshot of <see cref="TmemStore.RemoteTier"/>.</summary>
/// <param name="State">Off, healthy, degraded or down.</param>
/// <param name="Since">When the tier entered <paramref name="State"/> (UTC).</param>
/// <param name="LastError">The last failure seen (which request, which node if known, what), or null when healthy.</param>
public sealed record RemoteTierStatus(RemoteTierState State, DateTime Since, string? LastError);
