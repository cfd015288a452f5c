using System.Globalization;
using System.Net;
using System.Text;
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

/// <summary>Validates <see cref="ServiceOptions"/> at start; each error names its key and what is allowed.</summary>
internal sealed class ServiceOptionsValidator : IValidateOptions<ServiceOptions>
{
    private const string S = ServiceOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, ServiceOptions o)
    {
        var errors = new List<string>();
        void Range(string key, long value, long min, long max, string what)
        {
            if (value < min || value > max) errors.Add($"{S}:{key} is {value}; it must be {what}.");
        }
        Range(nameof(o.StatsLogIntervalSeconds), o.StatsLogIntervalSeconds, 0, 86400, "from 0 (off) to 86400");
        Range(nameof(o.CheckpointIntervalSeconds), o.CheckpointIntervalSeconds, 0, 86400, "from 0 (off) to 86400");
        Range(nameof(o.CompactionIntervalSeconds), o.CompactionIntervalSeconds, 0, 86400, "from 0 (off) to 86400");
        Range(nameof(o.CommitCheckIntervalMs), o.CommitCheckIntervalMs, 0, 3_600_000, "from 0 (off) to 3600000");
        Range(nameof(o.ReclaimIntervalMs), o.ReclaimIntervalMs, 0, 3_600_000, "from 0 (off) to 3600000");
        Range(nameof(o.MaxConnections), o.MaxConnections, 1, 1_000_000, "from 1 to 1000000");
        Range(nameof(o.SendTimeoutSeconds), o.SendTimeoutSeconds, 1, 3600, "from 1 to 3600");
        Range(nameof(o.MaxUnauthenticatedConnections), o.MaxUnauthenticatedConnections, 1, 100_000, "from 1 to 100000");
        Range(nameof(o.HandshakeTimeoutSeconds), o.HandshakeTimeoutSeconds, 1, 3600, "from 1 to 3600");
        Range(nameof(o.IdleTimeoutSeconds), o.IdleTimeoutSeconds, 0, 86400, "from 0 (never) to 86400");
        Range(nameof(o.MaxQueuedResponseBytes), o.MaxQueuedResponseBytes, 1L << 20, 1L << 40, $"from {1L << 20} (1 MiB) to {1L << 40} (1 TiB)");
        Range(nameof(o.MinThreadPoolThreads), o.MinThreadPoolThreads, 0, 4096, "from 0 (the runtime's default) to 4096");
        Range(nameof(o.TcpPort), o.TcpPort, 0, 65535, "0 (no TCP listener) or a port from 1 to 65535");
        if (o.ReclaimLowWater.HasValue != o.ReclaimHighWater.HasValue)
            errors.Add($"{S}:{(o.ReclaimLowWater.HasValue ? nameof(o.ReclaimLowWater) : nameof(o.ReclaimHighWater))} is set and {S}:{(o.ReclaimLowWater.HasValue ? nameof(o.ReclaimHighWater) : nameof(o.ReclaimLowWater))} is not; set both or neither.");
        else if (o.ReclaimLowWater is double low && o.ReclaimHighWater is double high && !(low > 0 && low < high && high <= 1))
            errors.Add($"{S}:{nameof(o.ReclaimLowWater)} and {nameof(o.ReclaimHighWater)} are {low} and {high}; they must satisfy 0 < low < high <= 1 (fractions of Tmem:RamBudgetBytes).");
        if (o.SocketPath.Length == 0 && o.TcpPort == 0)
            errors.Add($"{S}:{nameof(o.SocketPath)} is empty and {S}:{nameof(o.TcpPort)} is 0; at least one listener must be configured.");
        if (o.SocketPath.Length > 0 && Encoding.UTF8.GetByteCount(Path.GetFullPath(o.SocketPath)) > 107)
            errors.Add($"{S}:{nameof(o.SocketPath)} '{o.SocketPath}' is longer than a Unix socket path may be (107 bytes as an absolute path); choose a shorter one.");
        if (!IsOctalMode(o.SocketFileMode))
            errors.Add($"{S}:{nameof(o.SocketFileMode)} is '{o.SocketFileMode}'; it must be an octal file mode from 0000 to 0777, such as 0600.");
        if (o.TcpPort != 0 && !IPAddress.TryParse(o.TcpAddress, out _))
            errors.Add($"{S}:{nameof(o.TcpAddress)} is '{o.TcpAddress}'; it must be an IP address (default 127.0.0.1, loopback only).");
        if (o.OtlpEndpoint is { Length: > 0 } otlp && !Uri.TryCreate(otlp, UriKind.Absolute, out _))
            errors.Add($"{S}:{nameof(o.OtlpEndpoint)} is '{otlp}'; it must be an absolute URI such as http://localhost:4317, or unset.");
        if (o.OtlpProtocol is { Length: > 0 } protocol && protocol is not ("grpc" or "http/protobuf"))
            errors.Add($"{S}:{nameof(o.OtlpProtocol)} is '{protocol}'; it must be grpc or http/protobuf.");
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ids = new HashSet<int>();
        for (int i = 0; i < o.Clients.Count; i++)
        {
            var c = o.Clients[i];
            string key = $"{S}:Clients:{i}";
            int nameBytes = Encoding.UTF8.GetByteCount(c.Name);
            if (nameBytes is 0 or > 255) errors.Add($"{key}:Name is '{c.Name}'; it must be 1 to 255 UTF-8 bytes.");
            else if (!names.Add(c.Name)) errors.Add($"{key}:Name '{c.Name}' is given to two clients; names must be unique.");
            if (c.Id < 0) errors.Add($"{key}:Id is {c.Id}; it must be set, 0 or more.");
            else if (!ids.Add(c.Id)) errors.Add($"{key}:Id {c.Id} is given to two clients; ids must be unique.");
            if (Encoding.UTF8.GetByteCount(c.Secret) > 255) errors.Add($"{key}:Secret is over 255 UTF-8 bytes.");
            if (c.Secret.Length == 0 && o.TcpPort != 0 && c.UnixUid < 0)
                errors.Add($"{key}:Secret is empty while a TCP listener is configured ({S}:TcpPort); give every client a secret, bind it to a Unix user ({key}:UnixUid), or turn TCP off.");
            if (c.UnixUid < -1) errors.Add($"{key}:UnixUid is {c.UnixUid}; it must be a Unix user id (0 or more), or -1 for none.");
            foreach (var uuid in c.SharedPools)
                if (uuid != "*" && !Guid.TryParse(uuid, out _)) errors.Add($"{key}:SharedPools has '{uuid}'; each entry must be a UUID or *.");
            if (c.MaxPools is < 0 or > 65536) errors.Add($"{key}:MaxPools is {c.MaxPools}; it must be 0 (Tmem:MaxPoolsPerClient) or from 1 to 65536.");
            int smallest = 12 + 32 + PoolOptions.MinPageSize;
            if (c.MaxFrameBytes < smallest || c.MaxFrameBytes > 16 << 20)
                errors.Add($"{key}:MaxFrameBytes is {c.MaxFrameBytes}; it must be from {smallest} (a put of a {PoolOptions.MinPageSize}-byte page) to {16 << 20}.");
            if (c.MaxInFlight is < 1 or > 65536) errors.Add($"{key}:MaxInFlight is {c.MaxInFlight}; it must be from 1 to 65536.");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static bool IsOctalMode(string mode)
    {
        if (mode.Length is 0 or > 4) return false;
        foreach (char c in mode)
            if (c is < '0' or > '7') return false;
        return int.Parse(mode, NumberStyles.None, CultureInfo.InvariantCulture) <= 777;
    }
}
