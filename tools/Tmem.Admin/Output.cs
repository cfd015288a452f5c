using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;
using Tmem.Recovery.Offline;

namespace Tmem.Admin;

/// <summary>
/// Where results go: with --json one JSON document on stdout and nothing else; otherwise plain
/// lines on stdout. Progress: a Spectre.Console bar when stdout is an interactive terminal,
/// otherwise (without --json) a plain line on stderr every 10%.
/// </summary>
internal sealed class Output(bool json)
{
    /// <summary>
    /// One naming policy for every document, success and error alike: camelCase names, enum
    /// values by their names, durations as numbers of seconds.
    /// </summary>
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(), new SecondsConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        IncludeFields = true,
    };

    public bool Json { get; } = json;

    /// <summary>A <see cref="TimeSpan"/> as its seconds (a number), not "00:00:01.5".</summary>
    private sealed class SecondsConverter : JsonConverter<TimeSpan>
    {
        public override TimeSpan Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => TimeSpan.FromSeconds(reader.GetDouble());

        public override void Write(Utf8JsonWriter writer, TimeSpan value, JsonSerializerOptions options) => writer.WriteNumberValue(Math.Round(value.TotalSeconds, 6));
    }

    private static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public void Line(string text)
    {
        if (!Json) Console.Out.WriteLine(text);
    }

    public void Document(object value)
    {
        if (Json) Console.Out.WriteLine(JsonSerializer.Serialize(value, value.GetType(), JsonOptions));
    }

    /// <summary>Runs <paramref name="work"/>, showing its progress.</summary>
    public T WithProgress<T>(string title, Func<IProgress<OfflineProgress>, T> work)
    {
        var latest = new LatestProgress();
        if (Json || !Interactive)
        {
            if (Json) return work(latest);
            var plain = new PlainProgress(title);
            return work(plain);
        }
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1);
                var running = Task.Run(() => work(latest));
                while (!running.Wait(100))
                {
                    if (latest.Value is { } p)
                    {
                        task.Description = Markup.Escape($"{title}: {p.Stage}");
                        task.MaxValue = Math.Max(1, p.Total);
                        task.Value = Math.Min(p.Done, p.Total);
                    }
                }
                task.Value = task.MaxValue;
                result = running.GetAwaiter().GetResult();
            });
        return result;
    }

    private sealed class LatestProgress : IProgress<OfflineProgress>
    {
        private volatile Box? _value;

        public OfflineProgress? Value => _value?.Progress;

        public void Report(OfflineProgress value) => _value = new Box(value);

        private sealed record Box(OfflineProgress Progress);
    }

    private sealed class PlainProgress(string title) : IProgress<OfflineProgress>
    {
        private string? _stage;
        private long _lastTenth = -1;

        public void Report(OfflineProgress value)
        {
            long tenth = value.Total <= 0 ? 10 : Math.Min(10, value.Done * 10 / value.Total);
            if (value.Stage == _stage && tenth == _lastTenth) return;
            _stage = value.Stage;
            _lastTenth = tenth;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{title}: {value.Stage} {tenth * 10}%"));
        }
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.##} GiB ({bytes} bytes)"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.##} MiB ({bytes} bytes)"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.##} KiB ({bytes} bytes)"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes"),
    };

    public static string Members(IEnumerable<PoolMember> members) => string.Join(", ", members.Select(m => $"client {m.ClientId} pool {m.PoolId}"));

    public void Problems(IReadOnlyList<DataProblem> problems)
    {
        foreach (var p in problems)
            Line($"  {(p.Severity == ProblemSeverity.Damage ? "DAMAGE" : "notice")} {p.Kind}{(p.Address is { } a ? $" at {a}" : "")}: {p.Message}");
    }

    public void Losses(IReadOnlyList<PageLoss> pages, IReadOnlyList<PoolLoss> pools)
    {
        foreach (var pool in pools) Line($"  pool serial {pool.PoolSerial} ({Members(pool.Members)}): {pool.Description}");
        foreach (var page in pages)
            Line($"  {page.Kind} pool serial {page.PoolSerial} ({Members(page.Members)}) object {page.ObjectId} index {page.Index}: {page.Reason}");
    }
}
