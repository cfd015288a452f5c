using System.CommandLine;

namespace Tmem.Cli;

/// <summary><c>tmem stats</c> and <c>tmem pools</c>.</summary>
internal static class StatsCommand
{
    public static IEnumerable<Command> Create()
    {
        var stats = new Command("stats", "The store's and the service's counters.");
        stats.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var counters = await connection.GetStatsAsync(token).ConfigureAwait(false);
            o.Document(counters.ToDictionary(kv => kv.Key, kv => kv.Value));
            o.Table(counters.Select(kv => new[] { kv.Key, kv.Value.ToString(System.Globalization.CultureInfo.InvariantCulture) }).ToList());
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
                    p.PoolId.ToString(System.Globalization.CultureInfo.InvariantCulture), p.Kind.ToString().ToLowerInvariant(), Output.Bytes(p.PageSize),
                    p.SharedUuid is { } u ? $"shared {u}" : "private",
                    p.ExclusiveGets || (p.Kind == PoolKind.Ephemeral && p.SharedUuid is null) ? "exclusive" : "keep the page",
                    p.Pages.ToString(System.Globalization.CultureInfo.InvariantCulture),
                }));
                o.Table(rows, "  ");
            }
            return ExitCodes.Ok;
        }, ct));
        yield return pools;
    }
}
