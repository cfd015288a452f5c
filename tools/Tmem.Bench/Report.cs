using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tmem.Bench;

/// <summary>Metrics of one run: printed as a table, optionally written as JSON.</summary>
internal sealed class Report
{
    private readonly List<(string Key, double Value, string Note)> _metrics = new();
    private readonly List<(string Text, bool Met)> _targets = new();

    public Report(string suite, string corpus)
    {
        Suite = suite;
        Corpus = corpus;
    }

    public string Suite { get; }

    public string Corpus { get; }

    public double this[string key] => _metrics.First(m => m.Key == key).Value;

    public void Add(string key, double value, string note = "")
    {
        _metrics.Add((key, value, note));
        Console.WriteLine($"  {key,-44} {Format(value),16}  {note}");
    }

    /// <summary>A target is checked here, in the benchmark, never in a timed test.</summary>
    public void Target(string text, bool met) => _targets.Add((text, met));

    public void PrintTargets()
    {
        if (_targets.Count == 0) return;
        Console.WriteLine();
        Console.WriteLine("targets:");
        foreach (var (text, met) in _targets)
            Console.WriteLine($"  [{(met ? "met" : "MISSED")}] {text}");
    }

    public void WriteJson(string path)
    {
        var metrics = new JsonObject();
        foreach (var (key, value, _) in _metrics) metrics[key] = Math.Round(value, 4);
        var targets = new JsonArray();
        foreach (var (text, met) in _targets) targets.Add(new JsonObject { ["target"] = text, ["met"] = met });
        var root = new JsonObject
        {
            ["suite"] = Suite,
            ["corpus"] = Corpus,
            ["date_utc"] = DateTime.UtcNow.ToString("O"),
            ["machine"] = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}",
            ["metrics"] = metrics,
            ["targets"] = targets,
        };
        File.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>The median (the mean of the middle two for an even count).</summary>
    public static double Median(IReadOnlyCollection<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Format(double v) => Math.Abs(v) >= 1000 ? v.ToString("N0") : v.ToString("0.####");
}
