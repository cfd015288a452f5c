using System.Diagnostics.CodeAnalysis;

namespace Tmem;

/// <summary>Throws from out-of-line methods so the hot paths stay small.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowArgument(string paramName, string message) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ThrowPageLength(string paramName, int actual, int pageSize) =>
        throw new ArgumentException($"Page buffer is {actual} bytes; this pool's page size is {pageSize} bytes.", paramName);

    [DoesNotReturn]
    public static void ThrowInvalidObjectId(string paramName) =>
        throw new ArgumentException("Object id is all ones, which is reserved as invalid.", paramName);

    [DoesNotReturn]
    public static void ThrowPoolNotFound(int clientId, int poolId) =>
        throw new TmemException(TmemError.PoolNotFound, $"Client {clientId} has no pool {poolId} (never created, destroyed, or not this client's).");

    [DoesNotReturn]
    public static void ThrowPoolDestroyed() =>
        throw new TmemException(TmemError.PoolNotFound, "The pool was destroyed while the operation was in flight.");

    [DoesNotReturn]
    public static void ThrowDisposed() => throw new ObjectDisposedException(nameof(TmemStore));

    [DoesNotReturn]
    public static void ThrowCorrupt(string message) => throw new InvalidDataException(message);
}
