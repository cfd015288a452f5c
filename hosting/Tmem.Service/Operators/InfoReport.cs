using System.Globalization;
using System.Reflection;
using System.Text;
using Microsoft.Extensions.Options;
using Tmem.Protocol;
using Tmem.Service.Sessions;

namespace Tmem.Service.Operators;

/// <summary>
/// The Info report (docs/PROTOCOL.md, "Info"): what Redis's INFO tells, in sections of
/// <c>key=value</c> lines, each section headed <c># Name</c>, a blank line between them:
/// Server (version, uptime, pid, RSS, data directory, listeners), Clients (connections),
/// Requests (by opcode), Store (the engine's counters), Log (durability, storage state and the
/// log's counters), Config (the settings in force, with run-time changes).
/// </summary>
internal sealed class InfoReport(StoreHost host, ServiceMetrics metrics, ConnectionGovernor governor, ClientDirectory clients, RuntimeSettings runtime,
    IOptions<TmemOptions> storeOptions, IOptions<ServiceOptions> serviceOptions)
{
    private static readonly DateTimeOffset Started = new(System.Diagnostics.Process.GetCurrentProcess().StartTime.ToUniversalTime());

    public string Build()
    {
        var text = new StringBuilder(4096);
        var store = host.Store;
        var o = serviceOptions.Value;
        var counters = store.GetStats().ToList();
        bool IsLog(string name) => name.StartsWith("log_", StringComparison.Ordinal) || name.StartsWith("storage_", StringComparison.Ordinal) || name == "not_durable";

        Section(text, "Server");
        Line(text, "version", ServiceVersion.Text);
        Line(text, "pid", Environment.ProcessId);
        Line(text, "started", Started.ToString("O", CultureInfo.InvariantCulture));
        Line(text, "uptime_seconds", (long)(DateTimeOffset.UtcNow - Started).TotalSeconds);
        Line(text, "rss_bytes", ResidentBytes());
        Line(text, "managed_heap_bytes", GC.GetTotalMemory(forceFullCollection: false));
        Line(text, "dotnet", Environment.Version.ToString());
        Line(text, "os", System.Runtime.InteropServices.RuntimeInformation.OSDescription);
        Line(text, "data_directory", storeOptions.Value.DataDirectory is { } dir ? Path.GetFullPath(dir) : "(memory only)");
        Line(text, "unix_socket", o.SocketPath.Length > 0 ? Path.GetFullPath(o.SocketPath) : "(off)");
        Line(text, "tcp", o.TcpPort != 0 ? $"{o.TcpAddress}:{o.TcpPort}" : "(off)");

        Section(text, "Clients");
        Line(text, "connections", governor.Authenticated);
        Line(text, "connections_unauthenticated", governor.Unauthenticated);
        Line(text, "max_connections", o.MaxConnections);
        Line(text, "configured_clients", clients.Count);
        var service = new List<KeyValuePair<string, long>>();
        metrics.AppendCounters(service);
        foreach (var (name, value) in service)
            if (name is "connections_refused" or "connections_evicted" or "handshake_timeouts" or "idle_timeouts" or "queued_response_bytes" or "reads_paused")
                Line(text, name, value);

        Section(text, "Requests");
        foreach (var (name, value) in service)
            if (name is "requests" or "requests_refused") Line(text, name, value);
        foreach (var opcode in Enum.GetValues<Opcode>())
            Line(text, "requests_" + Snake(opcode.ToString()), metrics.RequestsOf((byte)opcode));

        Section(text, "Store");
        foreach (var (name, value) in counters)
            if (!IsLog(name)) Line(text, name, value);

        Section(text, "Log");
        Line(text, "durable", store.IsDurable ? "yes" : "no (memory only)");
        if (store.IsDurable)
        {
            Line(text, "durability", storeOptions.Value.Durability);
            var storage = store.Storage;
            Line(text, "storage", storage.State.ToString().ToLowerInvariant());
            Line(text, "storage_since", storage.Since.ToString("O", CultureInfo.InvariantCulture));
            if (storage.LastError is { } error) Line(text, "storage_error", error);
            if (store.LastLogCompactionError is { } compaction) Line(text, "last_compaction_error", compaction.Message);
        }
        foreach (var (name, value) in counters)
            if (IsLog(name)) Line(text, name, value);
        foreach (var (name, value) in service)
            if (name is "log_uncommitted_bytes" or "commit_check_ms") Line(text, name, value);

        Section(text, "Config");
        foreach (var (key, value) in Settings(storeOptions.Value, TmemOptions.SectionName)) Line(text, key, value);
        foreach (var (key, value) in Settings(o, ServiceOptions.SectionName)) Line(text, key, value);
        foreach (var (key, value) in runtime.GetAll()) Line(text, key, value); // run-time values last: they are in force
        return text.ToString();
    }

    /// <summary>A settings object's scalar properties as configuration keys and values (lists and secrets left out).</summary>
    private static IEnumerable<KeyValuePair<string, string>> Settings(object options, string section)
    {
        foreach (var p in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            if (!p.CanWrite || p.GetIndexParameters().Length > 0) continue;
            var type = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (!(type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal))) continue;
            if (section == TmemOptions.SectionName && p.Name == nameof(TmemOptions.RamBudgetBytes)) continue; // the value in force comes with the run-time settings
            yield return new($"{section}:{p.Name}", Convert.ToString(p.GetValue(options), CultureInfo.InvariantCulture) ?? "");
        }
    }

    private static void Section(StringBuilder text, string name)
    {
        if (text.Length > 0) text.Append('\n');
        text.Append("# ").Append(name).Append('\n');
    }

    private static void Line(StringBuilder text, string key, object value) =>
        text.Append(key).Append('=').Append(LogText.Escape(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "")).Append('\n');

    private static string Snake(string name)
    {
        var s = new StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) s.Append('_');
            s.Append(char.ToLowerInvariant(name[i]));
        }
        return s.ToString();
    }

    /// <summary>The process's resident set size (VmRSS), else its working set.</summary>
    private static long ResidentBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
        }
        return Environment.WorkingSet;
    }
}
