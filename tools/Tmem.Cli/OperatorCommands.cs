using System.CommandLine;
using System.Globalization;

namespace Tmem.Cli;

/// <summary><c>tmem ping</c>, <c>tmem config get|set</c>, <c>tmem clients [kill ID]</c>.</summary>
internal static class OperatorCommands
{
    public static IEnumerable<Command> Create()
    {
        var count = new Option<int>("--count", "-n") { Description = "Pings to send (one after another).", DefaultValueFactory = _ => 1 };
        var interval = new Option<int>("--interval") { Description = "Milliseconds between pings.", DefaultValueFactory = _ => 1000 };
        var ping = new Command("ping", "Round trips to the service (a health check: exit 0 when it answered, 3 when it cannot be reached).") { count, interval };
        ping.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var times = new List<double>();
            int n = Math.Max(1, r.GetValue(count));
            for (int i = 0; i < n; i++)
            {
                if (i > 0) await Task.Delay(Math.Max(0, r.GetValue(interval)), token).ConfigureAwait(false);
                double ms = (await connection.PingAsync(token).ConfigureAwait(false)).TotalMilliseconds;
                times.Add(ms);
                o.Line(string.Create(CultureInfo.InvariantCulture, $"PONG from client {connection.ClientId}: {ms:0.000} ms"));
            }
            o.Document(new { pings = n, minMs = times.Min(), averageMs = times.Average(), maxMs = times.Max(), timesMs = times });
            if (n > 1) o.Line(string.Create(CultureInfo.InvariantCulture, $"{n} pings: min {times.Min():0.000} ms, average {times.Average():0.000} ms, max {times.Max():0.000} ms"));
            return ExitCodes.Ok;
        }, ct));
        yield return ping;

        var pattern = new Argument<string>("KEY") { Description = "A key, a prefix ending in * (Logging:*), or nothing for every setting that can change at run time.", Arity = ArgumentArity.ZeroOrOne };
        var get = new Command("get", "The settings that can change at run time and their values in force (administrator clients).") { pattern };
        get.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var settings = await connection.GetConfigAsync(r.GetValue(pattern) ?? "", token).ConfigureAwait(false);
            if (settings.Count == 0) return o.Error(ExitCodes.Usage, $"no setting that can change at run time matches '{r.GetValue(pattern)}' (`tmem config get` lists them).");
            o.Document(settings.ToDictionary(kv => kv.Key, kv => StatsCommand.Typed(kv.Value)));
            o.Table(settings.Select(kv => new[] { kv.Key, kv.Value }).ToList());
            return ExitCodes.Ok;
        }, ct));
        var key = new Argument<string>("KEY") { Description = "Tmem:RamBudgetBytes, or Logging:LogLevel:CATEGORY (Default, Tmem, Microsoft, ...)." };
        var value = new Argument<string>("VALUE") { Description = "The new value: a size such as 512MiB for the budget, a level (Trace, Debug, Information, Warning, Error, Critical, None) for a log level." };
        var set = new Command("set", "Changes a setting while the service runs, until it stops (administrator clients). Shrinking the RAM budget evicts down to it at once.") { key, value };
        set.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            string now = await connection.SetConfigAsync(r.GetValue(key)!, r.GetValue(value)!, token).ConfigureAwait(false);
            o.Document(new { key = r.GetValue(key), value = StatsCommand.Typed(now) });
            o.Line($"{r.GetValue(key)} = {now}");
            return ExitCodes.Ok;
        }, ct));
        yield return new Command("config", "Read or change settings at run time (administrator clients: Tmem:Service:Clients:N:Admin).") { get, set };

        var clients = new Command("clients", "The connections open now: id, client, peer (with its Unix uid and pid), since, requests, bytes queued (administrator clients).");
        clients.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            var list = await connection.ListClientsAsync(token).ConfigureAwait(false);
            o.Document(list.Select(c => c.ToDictionary(kv => kv.Key, kv => StatsCommand.Typed(kv.Value))));
            var columns = new[] { "id", "client", "client_id", "admin", "peer", "since", "age_seconds", "requests", "in_flight", "queued_bytes" };
            var rows = new List<string[]> { columns };
            rows.AddRange(list.Select(c => columns.Select(k => c.TryGetValue(k, out var v) ? v : "-").ToArray()));
            o.Table(rows);
            return ExitCodes.Ok;
        }, ct));
        var id = new Argument<long>("ID") { Description = "The connection's id (from `tmem clients`)." };
        var kill = new Command("kill", "Closes one connection: it reads no more, answers what it started, and closes.") { id };
        kill.SetAction((r, ct) => Program.RunAsync(r, async (o, connection, token) =>
        {
            bool closed = await connection.KillClientAsync(r.GetValue(id), token).ConfigureAwait(false);
            if (!closed) return o.Error(ExitCodes.Usage, $"no connection {r.GetValue(id)} is open (`tmem clients` lists them).");
            o.Document(new { id = r.GetValue(id), closed });
            o.Line($"connection {r.GetValue(id)} closes");
            return ExitCodes.Ok;
        }, ct));
        clients.Subcommands.Add(kill);
        yield return clients;
    }
}
