using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace Tmem.Service.Sessions;

/// <summary>The configured clients, by name, with what the handshake and pool creation check.</summary>
internal sealed class ClientDirectory
{
    private readonly Dictionary<string, ConfiguredClient> _byName = new(StringComparer.Ordinal);

    public ClientDirectory(IOptions<ServiceOptions> options, IOptions<TmemOptions> storeOptions)
    {
        foreach (var c in options.Value.Clients)
            _byName[c.Name] = new ConfiguredClient(c, storeOptions.Value.MaxPoolsPerClient);
    }

    public int Count => _byName.Count;

    /// <summary>The client with this name, or null.</summary>
    public ConfiguredClient? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>
    /// The client with this name and secret; null for an unknown name or a wrong secret alike. A
    /// client bound to a Unix user (<see cref="ClientOptions.UnixUid"/>) is also the one of a Unix
    /// socket peer running as that user, whatever secret it gives (the kernel vouches for it, as
    /// PostgreSQL's peer authentication trusts it); such a client with an empty secret is only that.
    /// </summary>
    public ConfiguredClient? Authenticate(string name, ReadOnlySpan<byte> secret, PeerCredentials? peer = null)
    {
        Span<byte> given = stackalloc byte[32];
        SHA256.HashData(secret, given);
        if (!_byName.TryGetValue(name, out var client))
        {
            // Same work for an unknown name as for a known one.
            CryptographicOperations.FixedTimeEquals(given, given);
            return null;
        }
        bool secretMatches = CryptographicOperations.FixedTimeEquals(given, client.SecretHash);
        if (client.Options.UnixUid >= 0)
        {
            if (peer is { } p && p.Uid == (uint)client.Options.UnixUid) return client;
            return client.Options.Secret.Length > 0 && secretMatches ? client : null;
        }
        return secretMatches ? client : null;
    }
}

/// <summary>One configured client as the service uses it.</summary>
internal sealed class ConfiguredClient
{
    private readonly HashSet<Guid> _sharedPools = [];
    private readonly bool _anySharedPool;

    public ConfiguredClient(ClientOptions options, int storeMaxPools)
    {
        Options = options;
        SecretHash = SHA256.HashData(Encoding.UTF8.GetBytes(options.Secret));
        foreach (var entry in options.SharedPools)
        {
            if (entry == "*") _anySharedPool = true;
            else _sharedPools.Add(Guid.Parse(entry));
        }
        MaxPools = options.MaxPools == 0 ? storeMaxPools : Math.Min(options.MaxPools, storeMaxPools);
    }

    public ClientOptions Options { get; }

    public byte[] SecretHash { get; }

    public int MaxPools { get; }

    /// <summary>Held while counting this client's pools and creating one, so two connections cannot both pass the limit.</summary>
    public Lock CreateLock { get; } = new();

    public bool MayUseSharedPool(Guid uuid) => _anySharedPool || _sharedPools.Contains(uuid);
}
