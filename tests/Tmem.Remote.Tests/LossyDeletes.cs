namespace Tmem.Remote.Tests;

/// <summary>
/// The real client with every delete lost (as when the node holding the key is down at the time):
/// old versions stay in the cluster, and the remote tier must still never return them.
/// </summary>
public sealed class LossyDeletes(IRemotePageStore inner) : IRemotePageStore
{
    public int LostDeletes;

    public RemoteTierStatus Status => inner.Status;

    public Task<RemoteWriteStatus[]> WriteAsync(IReadOnlyList<RemotePageWrite> writes) => inner.WriteAsync(writes);

    public ValueTask<RemoteRead> ReadAsync(RemotePageKey page, bool take) => inner.ReadAsync(page, take);

    public RemoteRead Read(RemotePageKey page, bool take) => inner.Read(page, take);

    public void Delete(RemotePageKey page) => Interlocked.Increment(ref LostDeletes);

    public void DeleteObject(RemoteObjectKey obj) => Interlocked.Increment(ref LostDeletes);

    public void Dispose() => inner.Dispose();
}

/// <summary>The real client, whose writes wait until <see cref="Release"/> (a slow writeback): gets must be served from the queue.</summary>
public sealed class HeldWrites(IRemotePageStore inner) : IRemotePageStore
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RemoteTierStatus Status => inner.Status;

    public void Release() => _release.TrySetResult();

    public async Task<RemoteWriteStatus[]> WriteAsync(IReadOnlyList<RemotePageWrite> writes)
    {
        await _release.Task.ConfigureAwait(false);
        return await inner.WriteAsync(writes).ConfigureAwait(false);
    }

    public ValueTask<RemoteRead> ReadAsync(RemotePageKey page, bool take) => inner.ReadAsync(page, take);

    public RemoteRead Read(RemotePageKey page, bool take) => inner.Read(page, take);

    public void Delete(RemotePageKey page) => inner.Delete(page);

    public void DeleteObject(RemoteObjectKey obj) => inner.DeleteObject(obj);

    public void Dispose()
    {
        Release();
        inner.Dispose();
    }
}
