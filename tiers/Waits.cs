namespace Tmem;

/// <summary>
/// A wait that a <see cref="CancellationToken"/> may end early. Cancelling ends the caller's
/// wait, not the work waited for (a commit goes on). Nothing is allocated when the wait is
/// already over or the token cannot be cancelled (the service's request path).
/// </summary>
internal static class Waits
{
    public static ValueTask WithCancellation(this ValueTask wait, CancellationToken cancellationToken) =>
        wait.IsCompleted || !cancellationToken.CanBeCanceled ? wait : new ValueTask(wait.AsTask().WaitAsync(cancellationToken));
}
