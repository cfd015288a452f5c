using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using Tmem;
using Tmem.Service;
using Tmem.Service.Network;

var builder = Host.CreateApplicationBuilder(args);
// Configuration layers, later wins: the appsettings.json shipped beside the binary (the
// repository's), the host's default appsettings.json in the content root, one in the working
// directory, then environment variables (Tmem__RamBudgetBytes=...) and the command line
// (--Tmem:RamBudgetBytes=...). A relative Tmem:DataDirectory is under the working directory.
var sources = builder.Configuration.Sources;
sources.Insert(0, new JsonConfigurationSource
{
    Path = "appsettings.json",
    Optional = true,
    FileProvider = new PhysicalFileProvider(AppContext.BaseDirectory),
});
int beforeEnvironment = sources.ToList().FindIndex(s => s is EnvironmentVariablesConfigurationSource);
sources.Insert(beforeEnvironment < 0 ? sources.Count : beforeEnvironment, new JsonConfigurationSource
{
    Path = "appsettings.json",
    Optional = true,
    FileProvider = new PhysicalFileProvider(Directory.GetCurrentDirectory()),
});
builder.Services.AddSystemd();
// An empty Tmem:DataDirectory (--Tmem:DataDirectory=) runs the store in memory only.
builder.Services.AddOptions<TmemOptions>().BindConfiguration(TmemOptions.SectionName)
    .PostConfigure(o => o.DataDirectory = string.IsNullOrEmpty(o.DataDirectory) ? null : o.DataDirectory)
    .ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<TmemOptions>, TmemOptionsValidator>();
builder.Services.AddOptions<ServiceOptions>().BindConfiguration(ServiceOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<ServiceOptions>, ServiceOptionsValidator>();
builder.Services.AddSingleton<StoreHost>();
builder.Services.AddSingleton<ServiceMetrics>();
builder.Services.AddSingleton<ClientDirectory>();
builder.Services.AddSingleton<ListenerService>();
// Hosted services start in this order and stop in the reverse one: the listeners stop first
// (finishing the requests in flight), the store last (commit and checkpoint).
builder.Services.AddHostedService(sp => sp.GetRequiredService<StoreHost>());
builder.Services.AddHostedService<CommitService>();
builder.Services.AddHostedService<ReclaimService>();
builder.Services.AddHostedService<StatsLogService>();
builder.Services.AddHostedService<CheckpointService>();
builder.Services.AddHostedService<CompactionService>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<ListenerService>());
if (builder.Configuration[$"{ServiceOptions.SectionName}:{nameof(ServiceOptions.OtlpEndpoint)}"] is { Length: > 0 } otlp
    && Uri.TryCreate(otlp, UriKind.Absolute, out var otlpUri))
{
    // Optional: export the Tmem meter (the store's counters and the service's) over OTLP.
    builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
        .AddMeter("Tmem")
        .AddOtlpExporter(exporter => exporter.Endpoint = otlpUri));
}

try
{
    using var host = builder.Build();
    await host.RunAsync();
    return 0;
}
catch (OptionsValidationException e)
{
    // A bad setting stops the start with a non-zero exit and a message naming the key.
    Console.Error.WriteLine($"tmem: invalid configuration: {string.Join("; ", e.Failures)}");
    return 2;
}
catch (InvalidOperationException e) when (e.InnerException is FormatException or ArgumentException or InvalidCastException)
{
    // The binder could not convert a value (a number that isn't one, an unknown enum name).
    Console.Error.WriteLine($"tmem: invalid configuration: {e.Message} {e.InnerException.Message}");
    return 2;
}
