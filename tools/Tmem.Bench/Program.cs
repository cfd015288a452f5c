using System.CommandLine;
using Tmem.Bench;

// tools/Tmem.Bench: dotnet run -c Release --project tools/Tmem.Bench -- SUITE [--corpus FILE]... [--json FILE]
var suite = new Argument<string>("SUITE") { Description = "engine (in-process store), persistent (durable puts, commits, replay), service (the service beside redis-server), nbd (the NBD front end beside nbdkit's memory plugin, driven by fio) or remote (the remote tier on a Garnet cluster it starts)." };
suite.AcceptOnlyFromAmong("engine", "persistent", "service", "nbd", "remote");
var corpusFiles = new Option<FileInfo[]>("--corpus")
{
    Description = "A file of 4 KiB pages to benchmark with (repeat for more). Default: ../shared/corpus/anon.pages and file.pages beside the repository when present, else pages cut from the installed .NET runtime's assemblies.",
    AllowMultipleArgumentsPerToken = false,
};
var json = new Option<FileInfo?>("--json") { Description = "Also write every metric to this JSON file." };
var root = new RootCommand("Tmem.Bench: the benchmark; prints each metric, its ratio to baselines measured in the same run, and whether each target is met.") { suite, corpusFiles, json };
root.SetAction(r =>
{
    var files = r.GetValue(corpusFiles) ?? [];
    foreach (var file in files)
    {
        if (!file.Exists)
        {
            Console.Error.WriteLine($"Tmem.Bench: corpus file not found: {file.FullName}");
            return 2;
        }
    }
    var corpus = Corpus.Load(files.Select(f => f.FullName).ToList());
    string name = r.GetValue(suite)!;
    var report = new Report(name, corpus.Description);
    switch (name)
    {
        case "engine":
            new EngineSuite(corpus, report).Run();
            break;
        case "persistent":
            new PersistentSuite(corpus, report).Run();
            break;
        case "nbd":
            new NbdSuite(corpus, report).Run();
            break;
        case "remote":
            new RemoteSuite(corpus, report).Run();
            break;
        default:
            new ServiceSuite(corpus, report).Run();
            break;
    }
    report.PrintTargets();
    if (r.GetValue(json) is { } output)
    {
        report.WriteJson(output.FullName);
        Console.WriteLine($"wrote {output.FullName}");
    }
    return 0;
});
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors) Console.Error.WriteLine($"Tmem.Bench: {error.Message}");
    Console.Error.WriteLine("Run with --help for the arguments.");
    return 2;
}
return parse.Invoke();
