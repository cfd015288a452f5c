using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tmem.Cli;

/// <summary>
/// Where a command's results go: with --json one JSON document on stdout (camelCase names,
/// numbers as numbers, durations in milliseconds) and nothing else; otherwise readable lines.
/// Errors: one line on stderr, or with --json an error document on stdout.
/// </summary>
internal sealed class Output(bool json)
{
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DictionaryKeyPolicy = null,
        Converters = { new JsonStringEnumConverter() }, // enum values by their names, as tmem-admin writes them
    };

    public bool Json { get; } = json;

    /// <summary>A line of the readable form (nothing with --json).</summary>
    public void Line(string text = "")
    {
        if (!Json) Console.Out.WriteLine(text);
    }

    /// <summary>The JSON document (nothing without --json).</summary>
    public void Document(object value)
    {
        if (Json) Console.Out.WriteLine(JsonSerializer.Serialize(value, value.GetType(), JsonOptions));
    }

    /// <summary>A note for the person at the terminal, on stderr (so it never mixes with data on stdout).</summary>
    public static void Note(string text) => Console.Error.WriteLine(text);

    public int Error(int exitCode, string message)
    {
        if (Json) Document(new { error = message, exitCode });
        else Console.Error.WriteLine($"tmem: {message}");
        return exitCode;
    }

    /// <summary>Rows as aligned columns, the first row the heading.</summary>
    public void Table(IReadOnlyList<string[]> rows, string indent = "")
    {
        if (Json || rows.Count == 0) return;
        int columns = rows.Max(r => r.Length);
        var widths = new int[columns];
        foreach (var row in rows)
            for (int i = 0; i < row.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        foreach (var row in rows)
        {
            var cells = row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]));
            Console.Out.WriteLine(indent + string.Join("  ", cells).TrimEnd());
        }
    }

    public static string Bytes(long bytes) => ByteSize.Format(bytes);
}
