using Tmem.Bench;

// tools/Tmem.Bench: dotnet run -c Release --project tools/Tmem.Bench -- SUITE [--corpus FILE]... [--json FILE]
const string Usage = "usage: Tmem.Bench SUITE [--corpus FILE]... [--json FILE]\n  suites: engine, persistent, service";

string? suite = null, json = null;
var corpusFiles = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--corpus" when i + 1 < args.Length:
            corpusFiles.Add(args[++i]);
            break;
        case "--json" when i + 1 < args.Length:
            json = args[++i];
            break;
        case "-h" or "--help":
            Console.WriteLine(Usage);
            return 0;
        default:
            if (args[i].StartsWith('-') || suite is not null)
            {
                Console.Error.WriteLine($"unexpected argument '{args[i]}'\n{Usage}");
                return 2;
            }
            suite = args[i];
            break;
    }
}
if (suite is null)
{
    Console.Error.WriteLine(Usage);
    return 2;
}
foreach (var file in corpusFiles)
{
    if (!File.Exists(file))
    {
        Console.Error.WriteLine($"corpus file not found: {file}");
        return 2;
    }
}

var corpus = Corpus.Load(corpusFiles);
var report = new Report(suite, corpus.Description);
switch (suite)
{
    case "engine":
        new EngineSuite(corpus, report).Run();
        break;
    case "persistent":
        new PersistentSuite(corpus, report).Run();
        break;
    case "service":
        new ServiceSuite(corpus, report).Run();
        break;
    default:
        Console.Error.WriteLine($"unknown suite '{suite}'\n{Usage}");
        return 2;
}
report.PrintTargets();
if (json is not null)
{
    report.WriteJson(json);
    Console.WriteLine($"wrote {json}");
}
return 0;
