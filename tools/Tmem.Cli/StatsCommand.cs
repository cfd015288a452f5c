using System.CommandLine;
using System.Globalization;
using Tmem.Client;

namespace Tmem.Cli;

/// <summary><c>tmem stats</c> (the Info report) and <c>tmem pools</c>.</summary>
internal static class StatsCommand
{
    public static IEnumerable<Command> Create()
    {
        var section = new Option<string[]>("--section") { Description = "Only these sections (server, clients, requests, store, log, config); repeat for more." };
        var stats = new Command("stats", "The service's report, as Redis's INFO: server (version, uptime, pid, RSS, data directory), clients, requests by opcode, store counters, log and durability, configuration in force.") { section };
        stats.Aliases.Add("info");
        stats.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var info = await connection.GetInfoAsync(token).ConfigureAwait(false);
            var wanted = r.GetValue(section) ?? [];
            var sections = info.Sections.Where(s => wanted.Length == 0 || wanted.Contains(s.Name, StringComparer.OrdinalIgnoreCase)).ToList();
            o.Document(sections.ToDictionary(s => s.Name.ToLowerInvariant(), s => s.Entries.ToDictionary(e => e.Key, e => Typed(e.Value))));
            foreach (var s in sections)
            {
                o.Line($"{s.Name}");
                o.Table(s.Entries.Select(e => new[] { e.Key, Readable(e.Key, e.Value) }).ToList(), "  ");
                o.Line();
            }
            return ExitCodes.Ok;
        }, ct));
        yield return stats;

        var pools = new Command("pools", "This client's pools.");
        pools.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var list = await connection.GetPoolsAsync(token).ConfigureAwait(false);
            o.Document(new
            {
                clientId = connection.ClientId,
                maxPools = connection.MaxPools,
                pools = list.Select(p => new
                {
                    poolId = p.PoolId,
                    kind = p.Kind,
                    pageSize = p.PageSize,
                    sharedUuid = p.SharedUuid,
                    exclusiveGets = p.ExclusiveGets || (p.Kind == PoolKind.Ephemeral && p.SharedUuid is null),
                    pages = p.Pages,
                }),
            });
            o.Line($"client {connection.ClientId}: {list.Count} pool(s) (at most {connection.MaxPools})");
            if (list.Count > 0)
            {
                var rows = new List<string[]> { new[] { "pool", "kind", "page size", "sharing", "gets", "pages" } };
                rows.AddRange(list.Select(p => new[]
                {
                    p.PoolId.ToString(CultureInfo.InvariantCulture), p.Kind.ToString().ToLowerInvariant(), Output.Bytes(p.PageSize),
                    p.SharedUuid is { } u ? $"shared {u}" : "private",
                    p.ExclusiveGets || (p.Kind == PoolKind.Ephemeral && p.SharedUuid is null) ? "exclusive" : "keep the page",
                    p.Pages.ToString(CultureInfo.InvariantCulture),
                }));
                o.Table(rows, "  ");
            }
            return ExitCodes.Ok;
        }, ct));
        yield return pools;
    }

    /// <summary>A report value for JSON: a number when it is one (so it can be compared), else the text.</summary>
    internal static object Typed(string value) =>
        long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long whole) ? whole
        : double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double real) && value.Contains('.', StringComparison.Ordinal) ? real
        : value;

    /// <summary>For the terminal: byte counts also in units, seconds also as a duration.</summary>
    private static string Readable(string key, string value)
    {
        if (!long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n)) return value;
        if ((key.EndsWith("bytes", StringComparison.OrdinalIgnoreCase) || key.EndsWith("Bytes", StringComparison.Ordinal)) && Math.Abs(n) >= 1024)
            return $"{value} ({ByteSize.Format(n)})";
        if (key.EndsWith("_seconds", StringComparison.Ordinal) && n >= 60) return $"{value} ({TimeSpan.FromSeconds(n):g})";
        return value;
    }
}
