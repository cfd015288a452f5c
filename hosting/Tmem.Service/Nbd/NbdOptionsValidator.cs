using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Extensions.Options;

namespace Tmem.Service.Nbd;

/// <summary>Validates <see cref="NbdOptions"/> at start; each error names its key and what is allowed.</summary>
internal sealed class NbdOptionsValidator(IOptions<ServiceOptions> serviceOptions) : IValidateOptions<NbdOptions>
{
    private const string N = NbdOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, NbdOptions o)
    {
        var errors = new List<string>();
        var service = serviceOptions.Value;
        var clients = service.Clients.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        string known = clients.Count == 0 ? "none are configured" : $"the configured ones are {string.Join(", ", clients.Order(StringComparer.Ordinal))}";
        if (o.MaxPayloadBytes is < 65536 or > 32 << 20)
            errors.Add($"{N}:{nameof(o.MaxPayloadBytes)} is {o.MaxPayloadBytes}; it must be from 65536 to {32 << 20} (32 MiB).");
        if (o.MaxInFlight is < 1 or > 65536)
            errors.Add($"{N}:{nameof(o.MaxInFlight)} is {o.MaxInFlight}; it must be from 1 to 65536.");
        if (o.MaxInFlightBytes < 1 << 20 || o.MaxInFlightBytes > 1L << 40)
            errors.Add($"{N}:{nameof(o.MaxInFlightBytes)} is {o.MaxInFlightBytes}; it must be from {1 << 20} (1 MiB) to {1L << 40}.");

        var paths = new HashSet<string>(StringComparer.Ordinal);
        if (service.SocketPath.Length > 0) paths.Add(Path.GetFullPath(service.SocketPath));
        var ports = new HashSet<int>();
        if (service.TcpPort != 0) ports.Add(service.TcpPort);
        for (int i = 0; i < o.Listeners.Count; i++)
        {
            var l = o.Listeners[i];
            string key = $"{N}:Listeners:{i}";
            if (!clients.Contains(l.Client))
                errors.Add($"{key}:Client is '{l.Client}'; it must name a configured client (Tmem:Service:Clients:*:Name; {known}).");
            if (l.SocketPath.Length == 0 && l.TcpPort == 0)
                errors.Add($"{key} has neither a SocketPath nor a TcpPort; give it one.");
            if (l.SocketPath.Length > 0)
            {
                string full = Path.GetFullPath(l.SocketPath);
                if (Encoding.UTF8.GetByteCount(full) > 107)
                    errors.Add($"{key}:SocketPath '{l.SocketPath}' is longer than a Unix socket path may be (107 bytes as an absolute path); choose a shorter one.");
                if (!paths.Add(full))
                    errors.Add($"{key}:SocketPath {full} is used by another listener (or Tmem:Service:SocketPath); each needs its own.");
            }
            if (!IsOctalMode(l.SocketFileMode))
                errors.Add($"{key}:SocketFileMode is '{l.SocketFileMode}'; it must be an octal file mode from 0000 to 0777, such as 0600.");
            if (l.TcpPort is < 0 or > 65535)
                errors.Add($"{key}:TcpPort is {l.TcpPort}; it must be 0 (none) or a port from 1 to 65535.");
            else if (l.TcpPort != 0 && !ports.Add(l.TcpPort))
                errors.Add($"{key}:TcpPort {l.TcpPort} is used by another listener (or Tmem:Service:TcpPort); each needs its own.");
            if (l.TcpPort != 0 && !IPAddress.TryParse(l.TcpAddress, out _))
                errors.Add($"{key}:TcpAddress is '{l.TcpAddress}'; it must be an IP address (default 127.0.0.1, loopback only).");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < o.Exports.Count; i++)
        {
            var e = o.Exports[i];
            string key = $"{N}:Exports:{i}";
            int nameBytes = Encoding.UTF8.GetByteCount(e.Name);
            if (nameBytes is 0 or > 255 || e.Name.Any(char.IsControl))
                errors.Add($"{key}:Name is '{e.Name}'; it must be 1 to 255 UTF-8 bytes without control characters.");
            else if (!names.Add(e.Name))
                errors.Add($"{key}:Name '{e.Name}' is given to two exports; names must be unique.");
            if (!clients.Contains(e.Client))
                errors.Add($"{key}:Client is '{e.Client}'; it must name a configured client (Tmem:Service:Clients:*:Name; {known}).");
            else if (!o.Listeners.Any(l => l.Client == e.Client))
                errors.Add($"{key} ('{e.Name}') belongs to client {e.Client}, which has no NBD listener ({N}:Listeners:*:Client): nobody could open it.");
            if (e.PageSize < PoolOptions.MinPageSize || e.PageSize > PoolOptions.MaxIncompressiblePageSize || (e.PageSize & (e.PageSize - 1)) != 0)
                errors.Add($"{key}:PageSize is {e.PageSize}; it must be a power of two from {PoolOptions.MinPageSize} to {PoolOptions.MaxIncompressiblePageSize}.");
            if (Encoding.UTF8.GetByteCount(e.Description) > 4096)
                errors.Add($"{key}:Description is over 4096 UTF-8 bytes.");
            const long maxSize = 1L << 60;
            switch (e.Mode)
            {
                case NbdExportMode.Persistent:
                    if (e.SizeBytes <= 0 || e.SizeBytes > maxSize || (e.PageSize > 0 && e.SizeBytes % e.PageSize != 0))
                        errors.Add($"{key}:SizeBytes is {e.SizeBytes}; a persistent export needs a size in bytes, a multiple of its PageSize ({e.PageSize}) up to 2^60.");
                    if (e.BackingFile.Length > 0)
                        errors.Add($"{key}:BackingFile is set, but the export is Persistent (its pages are the store's); remove it, or set {key}:Mode to Cache.");
                    break;
                case NbdExportMode.Cache:
                    if (e.BackingFile.Length == 0)
                        errors.Add($"{key}:BackingFile is empty; a Cache export fronts a backing file or block device (it must exist).");
                    if (e.SizeBytes < 0 || e.SizeBytes > maxSize)
                        errors.Add($"{key}:SizeBytes is {e.SizeBytes}; it must be 0 (the backing file's size) or a size in bytes up to 2^60.");
                    break;
            }
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
