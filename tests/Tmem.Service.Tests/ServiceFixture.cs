namespace Tmem.Service.Tests;

[CollectionDefinition("Service", DisableParallelization = true)]
public sealed class ServiceCollection : ICollectionFixture<ServiceFixture>
{
}

/// <summary>One service process shared by the tests of the "Service" collection (each uses pools of its own).</summary>
public sealed class ServiceFixture : IAsyncLifetime
{
    public ServiceProcess Service { get; } = new();

    public Task InitializeAsync() => Service.StartAsync();

    public async Task DisposeAsync() => await Service.DisposeAsync();
}
