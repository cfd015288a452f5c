namespace Tmem.Client;

/// <summary>
/// The service's Info report (<see cref="TmemConnection.GetInfoAsync"/>): sections (Server,
/// Clients, Requests, Store, Log, Config) of key and value, in the service's order, as text.
/// </summary>
public sealed class TmemInfo
{
    private TmemInfo(IReadOnlyList<Section> sections) => Sections = sections;

    /// <summary>The sections, in order.</summary>
    public IReadOnlyList<Section> Sections { get; }

    /// <summary>A value by key, from whichever section holds it; null if none does.</summary>
    public string? this[string key] => Sections.SelectMany(s => s.Entries).FirstOrDefault(e => e.Key == key).Value;

    /// <summary>Reads the report's text: <c># Name</c> lines start sections, <c>key=value</c> lines fill them.</summary>
    public static TmemInfo Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sections = new List<Section>();
        List<KeyValuePair<string, string>>? entries = null;
        foreach (var raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.StartsWith("# ", StringComparison.Ordinal))
            {
                entries = [];
                sections.Add(new Section(line[2..].Trim(), entries));
            }
            else if (line.IndexOf('=', StringComparison.Ordinal) is > 0 and var equals)
            {
                if (entries is null)
                {
                    entries = [];
                    sections.Add(new Section("", entries));
                }
                entries.Add(new(line[..equals], line[(equals + 1)..]));
            }
        }
        return new TmemInfo(sections);
    }

    /// <summary><c>key=value</c> lines as pairs.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> ParsePairs(string text) =>
        Parse(text).Sections.SelectMany(s => s.Entries).ToList();

    /// <summary>One section of the report.</summary>
    /// <param name="Name">Server, Clients, Requests, Store, Log or Config.</param>
    /// <param name="Entries">Its keys and values, in order.</param>
    public sealed record Section(string Name, IReadOnlyList<KeyValuePair<string, string>> Entries);
}
