using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Tmem.Client;
using Tmem.Client.Caching;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registration of the Tmem client and its distributed cache in a service collection.</summary>
public static class TmemServiceCollectionExtensions
{
    /// <summary>
    /// Registers a <see cref="TmemConnectionFactory"/> (one shared, reconnecting connection to the
    /// service) configured by <paramref name="configure"/>, and <see cref="TmemClientOptions"/>
    /// (bind them from configuration with <c>services.Configure&lt;TmemClientOptions&gt;(section)</c>).
    /// </summary>
    public static IServiceCollection AddTmemClient(this IServiceCollection services, Action<TmemClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<TmemClientOptions>();
        if (configure is not null) services.Configure(configure);
        services.TryAddSingleton(sp => new TmemConnectionFactory(sp.GetRequiredService<IOptions<TmemClientOptions>>().Value, sp.GetService<TimeProvider>()));
        return services;
    }

    /// <summary>
    /// Registers <see cref="TmemDistributedCache"/> as <see cref="IDistributedCache"/> and
    /// <see cref="IBufferDistributedCache"/> (so <c>AddHybridCache()</c> uses it as its L2), with
    /// the client (<see cref="AddTmemClient"/>) if it is not registered yet.
    /// </summary>
    public static IServiceCollection AddTmemDistributedCache(this IServiceCollection services, Action<TmemDistributedCacheOptions>? configure = null,
        Action<TmemClientOptions>? configureClient = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddTmemClient(configureClient);
        services.AddOptions<TmemDistributedCacheOptions>();
        if (configure is not null) services.Configure(configure);
        services.TryAddSingleton<TmemDistributedCache>();
        services.Replace(ServiceDescriptor.Singleton<IDistributedCache>(sp => sp.GetRequiredService<TmemDistributedCache>()));
        services.Replace(ServiceDescriptor.Singleton<IBufferDistributedCache>(sp => sp.GetRequiredService<TmemDistributedCache>()));
        return services;
    }
}
