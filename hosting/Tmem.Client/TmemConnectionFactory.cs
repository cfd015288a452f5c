using System.Net.Sockets;

namespace Tmem.Client;

/// <summary>
/// One shared <see cref="TmemConnection"/> that is replaced when it fails: the means to
/// reconnect, with the decision left to the caller. <see cref="GetConnectionAsync"/> returns the
/// live connection, or opens a new one when it has failed; while the service is unreachable it
/// fails fast: after a failed attempt, calls within the back-off delay
/// (<see cref="TmemClientOptions.ReconnectMinDelay"/>, doubling per failure in a row up to
/// <see cref="TmemClientOptions.ReconnectMaxDelay"/>) get the last error at once, without
/// trying, so a dead service is not hammered and callers are not held. Requests already sent on
/// a connection that failed are not retried (their outcome is unknown, as the protocol says):
/// retrying is the caller's choice. <see cref="WaitForConnectionAsync"/> instead keeps trying
/// until connected (for a start-up). Thread-safe; one attempt at a time.
/// </summary>
public sealed class TmemConnectionFactory : IAsyncDisposable
{
    private readonly TmemClientOptions _options;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile TmemConnection? _current;
    private Exception? _lastError;
    private long _retryAt;
    private int _failures;
    private long _connects;
    private volatile bool _disposed;

    /// <summary>Creates the factory; nothing connects until the first call.</summary>
    public TmemConnectionFactory(TmemClientOptions options, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The options it connects with.</summary>
    public TmemClientOptions Options => _options;

    /// <summary>Connections opened so far (1 after the first, more after reconnections).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>
    /// The live connection, or a new one if there is none or it failed.
    /// </summary>
    /// <exception cref="IOException">Cannot connect now (the inner exception says why), or the last attempt failed less than the back-off delay ago.</exception>
    /// <exception cref="TmemRemoteException">The service refused the handshake (a wrong secret: not retried sooner than any other failure).</exception>
    public async ValueTask<TmemConnection> GetConnectionAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_current is { IsConnected: true } live) return live;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_current is { IsConnected: true } other) return other;
            if (_current is { } dead)
            {
                _current = null;
                await dead.DisposeAsync().ConfigureAwait(false);
            }
            if (_lastError is { } error && _time.GetTimestamp() < Volatile.Read(ref _retryAt))
                throw new IOException($"The Tmem service at {_options.Address} is unreachable (next attempt in {RetryIn().TotalMilliseconds:0} ms): {error.Message}", error);
            return await ConnectLockedAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Like <see cref="GetConnectionAsync"/>, but waits out the back-off and tries again until connected or cancelled.</summary>
    public async Task<TmemConnection> WaitForConnectionAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                return await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(RetryIn() > TimeSpan.Zero ? RetryIn() : _options.ReconnectMinDelay, _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private TimeSpan RetryIn()
    {
        long ticks = Volatile.Read(ref _retryAt) - _time.GetTimestamp();
        return ticks <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(ticks / (double)_time.TimestampFrequency);
    }

    private async ValueTask<TmemConnection> ConnectLockedAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        try
        {
            var connection = await TmemConnection.ConnectAsync(_options.Address, _options.ClientName, _options.Secret, timeout.Token).ConfigureAwait(false);
            _lastError = null;
            _failures = 0;
            Interlocked.Increment(ref _connects);
            _current = connection;
            return connection;
        }
        catch (Exception e) when (e is SocketException or IOException or TmemRemoteException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            var reason = e is OperationCanceledException ? new TimeoutException($"Connecting took longer than {_options.ConnectTimeout.TotalSeconds:0.###} s.") : e;
            _lastError = reason;
            _failures++;
            double delay = Math.Min(_options.ReconnectMaxDelay.TotalSeconds, _options.ReconnectMinDelay.TotalSeconds * Math.Pow(2, Math.Min(30, _failures - 1)));
            Volatile.Write(ref _retryAt, _time.GetTimestamp() + (long)(delay * _time.TimestampFrequency));
            if (reason is TmemRemoteException) throw;
            throw new IOException($"Cannot connect to the Tmem service at {_options.Address}: {reason.Message}", reason);
        }
    }

    /// <summary>Closes the current connection.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_current is { } c) await c.DisposeAsync().ConfigureAwait(false);
            _current = null;
        }
        finally
        {
            _gate.Release();
        }
    }
}
