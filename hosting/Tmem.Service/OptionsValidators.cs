using Microsoft.Extensions.Options;

namespace Tmem.Service;

/// <summary>Validates <see cref="TmemOptions"/> at start with the store's own rules (each error names its key).</summary>
internal sealed class TmemOptionsValidator : IValidateOptions<TmemOptions>
{
    public ValidateOptionsResult Validate(string? name, TmemOptions options)
    {
        var errors = options.GetErrors().ToList();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>Validates <see cref="ServiceOptions"/> at start.</summary>
internal sealed class ServiceOptionsValidator : IValidateOptions<ServiceOptions>
{
    public ValidateOptionsResult Validate(string? name, ServiceOptions options)
    {
        var errors = new List<string>();
        if (options.StatsLogIntervalSeconds is < 0 or > 86400)
            errors.Add($"{ServiceOptions.SectionName}:{nameof(ServiceOptions.StatsLogIntervalSeconds)} is {options.StatsLogIntervalSeconds}; it must be from 0 (off) to 86400.");
        if (options.CheckpointIntervalSeconds is < 0 or > 86400)
            errors.Add($"{ServiceOptions.SectionName}:{nameof(ServiceOptions.CheckpointIntervalSeconds)} is {options.CheckpointIntervalSeconds}; it must be from 0 (off) to 86400.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
