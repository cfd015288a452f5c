using Microsoft.Extensions.Options;
using Tmem;
using Tmem.Service;

var builder = Host.CreateApplicationBuilder(args);
// Configuration layers, later wins: the appsettings.json shipped beside the binary, then the one in
// the working directory (the host's default), environment variables (Tmem__RamBudgetBytes=...) and
// the command line (--Tmem:RamBudgetBytes=...).
builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Json.JsonConfigurationSource
{
    Path = Path.Combine(AppContext.BaseDirectory, "appsettings.json"),
    Optional = true,
    FileProvider = null,
});
builder.Services.AddSystemd();
builder.Services.AddOptions<TmemOptions>().BindConfiguration(TmemOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<TmemOptions>, TmemOptionsValidator>();
builder.Services.AddOptions<ServiceOptions>().BindConfiguration(ServiceOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<ServiceOptions>, ServiceOptionsValidator>();
builder.Services.AddSingleton<StoreHost>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<StoreHost>());
builder.Services.AddHostedService<StatsLogService>();

using var host = builder.Build();
try
{
    await host.RunAsync();
    return 0;
}
catch (OptionsValidationException e)
{
    // A bad setting stops the start with a non-zero exit and a message naming the key.
    Console.Error.WriteLine($"tmem: invalid configuration: {string.Join("; ", e.Failures)}");
    return 2;
}
