using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Options;
using Tmem;
using Tmem.Service;
using Tmem.Service.Handlers;
using Tmem.Service.Nbd;
using Tmem.Service.Network;
using Tmem.Service.Observability;
using Tmem.Service.Operators;
using Tmem.Service.Sessions;
using Tmem.Service.Startup;

if (ServiceCommandLine.Handle(args) is { } early) return early; // --help, --version: before anything starts
var builder = Host.CreateApplicationBuilder(args);
var runtimeConfiguration = new RuntimeConfigurationSource();
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
// The notifier also outside a systemd-started process (AddSystemd adds it only there), so the
// watchdog and status notifications follow NOTIFY_SOCKET wherever it is set.
builder.Services.TryAddSingleton<ISystemdNotifier, SystemdNotifier>();
// An empty Tmem:DataDirectory (--Tmem:DataDirectory=) runs the store in memory only.
builder.Services.AddOptions<TmemOptions>().BindConfiguration(TmemOptions.SectionName)
    .PostConfigure(o =>
    {
        o.DataDirectory = string.IsNullOrEmpty(o.DataDirectory) ? null : o.DataDirectory;
        // The remote tier's cluster client (Tmem.Remote); used only with Tmem:RemoteTier:Enabled.
        o.UseRemotePageStore(remote => new Tmem.Remote.RedisRemotePageStore(remote));
    })
    .ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<TmemOptions>, TmemOptionsValidator>();
builder.Services.AddOptions<ServiceOptions>().BindConfiguration(ServiceOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<ServiceOptions>, ServiceOptionsValidator>();
builder.Services.AddOptions<NbdOptions>().BindConfiguration(NbdOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<NbdOptions>, NbdOptionsValidator>();
builder.Services.AddSingleton<StoreHost>();
builder.Services.AddSingleton<ServiceMetrics>();
builder.Services.AddSingleton<ClientDirectory>();
builder.Services.AddSingleton<ConnectionGovernor>();
builder.Services.AddSingleton<ResponseBudget>();
builder.Services.AddSingleton<SessionManager>();
builder.Services.AddSingleton<ConnectionRegistry>();
builder.Services.AddSingleton(runtimeConfiguration);
builder.Services.AddSingleton<RuntimeSettings>();
builder.Services.AddSingleton<InfoReport>();
// The tmem protocol: one handler per opcode, behind the dispatcher the transport calls.
builder.Services.AddSingleton<RequestHandler, HelloHandler>();
builder.Services.AddSingleton<RequestHandler, CreatePoolHandler>();
builder.Services.AddSingleton<RequestHandler, DestroyPoolHandler>();
builder.Services.AddSingleton<RequestHandler, PutHandler>();
builder.Services.AddSingleton<RequestHandler, GetHandler>();
builder.Services.AddSingleton<RequestHandler, FlushPageHandler>();
builder.Services.AddSingleton<RequestHandler, FlushObjectHandler>();
builder.Services.AddSingleton<RequestHandler, StatsHandler>();
builder.Services.AddSingleton<RequestHandler, ListPoolsHandler>();
builder.Services.AddSingleton<RequestHandler, PingHandler>();
builder.Services.AddSingleton<RequestHandler, InfoHandler>();
builder.Services.AddSingleton<RequestHandler, ConfigGetHandler>();
builder.Services.AddSingleton<RequestHandler, ConfigSetHandler>();
builder.Services.AddSingleton<RequestHandler, ClientListHandler>();
builder.Services.AddSingleton<RequestHandler, ClientKillHandler>();
builder.Services.AddSingleton<RequestDispatcher>();
builder.Services.AddSingleton<ListenerService>();
// The NBD front end (docs/nbd.md): exports and listeners of its own, over the same sessions.
builder.Services.AddSingleton<NbdMetrics>();
builder.Services.AddSingleton<NbdExports>();
builder.Services.AddSingleton<NbdService>();
// Hosted services start in this order and stop in the reverse one: the listeners stop first
// (finishing the requests in flight), the store last (commit and checkpoint).
builder.Services.AddHostedService(sp => sp.GetRequiredService<StoreHost>());
builder.Services.AddHostedService<CommitService>();
builder.Services.AddHostedService<ReclaimService>();
builder.Services.AddHostedService<StatsLogService>();
builder.Services.AddHostedService<RemoteTierLogService>();
builder.Services.AddHostedService<CheckpointService>();
builder.Services.AddHostedService<CompactionService>();
builder.Services.AddHostedService<WatchdogService>();
// NBD listens before the tmem listener, so that once the service logs "Listening on Unix socket"
// every front end accepts.
builder.Services.AddHostedService(sp => sp.GetRequiredService<NbdService>());
builder.Services.AddHostedService(sp => sp.GetRequiredService<ListenerService>());
// Optional: export the Tmem meter over OTLP (Tmem:Service:OtlpEndpoint or OTEL_EXPORTER_OTLP_ENDPOINT).
OtlpExport.Add(builder.Services, builder.Configuration);

// Start-up, step by step, so that each failure is one message with its exit code (docs/service.md,
// "Exit codes") and leaves nothing behind: the configuration (unknown keys, values, ranges), then
// the listeners are bound (before the data directory is touched), then the store is opened
// (recovery); only then does the host start its services and accept connections.
SizeUnits.Normalize(builder.Configuration, builder.Configuration);
builder.Configuration.Sources.Add(runtimeConfiguration); // ConfigSet's layer, over every other
var configurationErrors = ConfigurationChecker.Check(builder.Configuration);
if (configurationErrors.Count > 0) return Fail(ExitCodes.BadConfiguration, "invalid configuration:", configurationErrors);
using var host = builder.Build();
ListenerService? listeners = null;
NbdService? nbd = null;
try
{
    _ = host.Services.GetRequiredService<IOptions<TmemOptions>>().Value;
    _ = host.Services.GetRequiredService<IOptions<ServiceOptions>>().Value;
    _ = host.Services.GetRequiredService<IOptions<NbdOptions>>().Value;
    listeners = host.Services.GetRequiredService<ListenerService>();
    listeners.Bind();
    nbd = host.Services.GetRequiredService<NbdService>();
    nbd.Prepare(); // NBD listeners and the exports' backing files, before the data directory is touched
    host.Services.GetRequiredService<StoreHost>().Open();
    nbd.Attach(); // each export's pool
}
catch (OptionsValidationException e)
{
    listeners?.Unbind();
    nbd?.Unbind();
    return Fail(ExitCodes.BadConfiguration, "invalid configuration:", e.Failures);
}
catch (InvalidOperationException e) when (e.InnerException is FormatException or ArgumentException or InvalidCastException)
{
    // The binder could not convert a value (ConfigurationChecker should have said so first).
    listeners?.Unbind();
    nbd?.Unbind();
    return Fail(ExitCodes.BadConfiguration, "invalid configuration:", [$"{e.Message} {e.InnerException.Message}"]);
}
catch (StartupFailure e)
{
    listeners?.Unbind();
    nbd?.Unbind();
    return Fail(e.ExitCode, e.Message, []);
}
await host.RunAsync();
return ExitCodes.Ok;

static int Fail(int exitCode, string message, IEnumerable<string> details)
{
    // Plain lines on stderr, no stack trace: what is wrong and what to do.
    var lines = details.ToList();
    Console.Error.WriteLine(lines.Count switch
    {
        0 => $"tmem: {message}",
        1 => $"tmem: {message} {lines[0]}",
        _ => $"tmem: {message}" + string.Concat(lines.Select(l => Environment.NewLine + "  " + l)),
    });
    Console.Error.WriteLine($"tmem: not started (exit code {exitCode}; docs/service.md lists the exit codes).");
    return exitCode;
}
