using System.Text.Json;

namespace Tmem.Service.Tests;

/// <summary>
/// <c>tmem</c> as a user runs it: README's walkthrough word for word against a fresh service on
/// the shipped configuration, refusals told in words, and failures as one line with an exit code.
/// </summary>
[Trait("Kind", "Integration")]
public sealed class CliTests
{
    private static Task<(int ExitCode, string Stdout, string Stderr)> Tmem(string workingDirectory, params string[] args) =>
        ToolProcess.RunAsync(ToolProcess.CliDll(), args, workingDirectory);

    /// <summary>The sh block README.md marks as the walkthrough.</summary>
    private static string ReadmeWalkthrough()
    {
        string readme = File.ReadAllText(Path.Combine(ToolProcess.RepositoryRoot(), "README.md"));
        int marker = readme.IndexOf("<!-- walkthrough", StringComparison.Ordinal);
        Assert.True(marker >= 0, "README.md has no walkthrough marker");
        int start = readme.IndexOf("```sh\n", marker, StringComparison.Ordinal) + "```sh\n".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        return readme[start..end];
    }

    [Fact]
    public async Task ReadmeWalkthrough_OnAFreshServiceWithTheShippedConfiguration_GivesTheSameBytesBack()
    {
        await using var service = ServiceProcess.Shipped();
        await service.StartAsync();
        File.Copy(Path.Combine(ToolProcess.RepositoryRoot(), "README.md"), Path.Combine(service.Root, "README.md"));
        string block = ReadmeWalkthrough();
        Assert.Contains("alias tmem=", block);
        // The alias runs the CLI project from the repository; here `tmem` is the same program, built.
        string script = "set -euo pipefail\n" + $"tmem() {{ dotnet {ToolProcess.CliDll()} \"$@\"; }}\n" +
            string.Join('\n', block.Split('\n').Where(l => !l.StartsWith("alias ", StringComparison.Ordinal)));
        var (code, stdout, stderr) = await ToolProcess.BashAsync(script, service.Root);
        Assert.True(code == 0, $"the walkthrough failed with {code}:\n{stdout}\n{stderr}");
        Assert.Contains("the same bytes came back", stdout);
        Assert.DoesNotContain("page(s) refused", stdout);
        Assert.Contains("read it back: ", stdout);
    }

    [Fact]
    public async Task Put_RefusedPages_AreExplainedInWords_WithWhatToChange_AndExit1()
    {
        // The engine's own default for the mean rule (the shipped configuration turns it off).
        await using var service = ServiceProcess.Shipped("--Tmem:MaxMeanZsize=0.625");
        await service.StartAsync();
        string file = Path.Combine(service.Root, "numbers.txt");
        await File.WriteAllTextAsync(file, string.Concat(Enumerable.Range(1, 20000).Select(i => i + "\n")));

        var (code, stdout, stderr) = await Tmem(service.Root, "put", file);
        Assert.True(code == 1, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains("RejectedMeanCompression", stdout);
        Assert.Contains("Raise Tmem:MaxMeanZsize", stdout);
        Assert.Contains("RejectedPoorCompression", stdout); // one page of digits does not even compress to 7/8
        Assert.Contains("Tmem:MaxZsize", stdout);

        var (jsonCode, json, _) = await Tmem(service.Root, "put", file, "--object", "2", "--json");
        Assert.Equal(1, jsonCode);
        using var document = JsonDocument.Parse(json);
        var refused = document.RootElement.GetProperty("refused").EnumerateArray().ToList();
        Assert.Contains(refused, r => r.GetProperty("status").GetString() == "RejectedMeanCompression" && r.GetProperty("reason").GetString()!.Contains("Tmem:MaxMeanZsize", StringComparison.Ordinal));
        Assert.Equal(27, document.RootElement.GetProperty("pages").GetInt32());
        Assert.True(document.RootElement.GetProperty("stored").GetInt32() < 27);
    }

    [Fact]
    public async Task Failures_AreOneLine_WithTheirExitCode_AndJsonErrorsAreDocuments()
    {
        string dir = Directory.CreateTempSubdirectory("tmem-cli-").FullName;
        try
        {
            var (code, stdout, stderr) = await Tmem(dir, "put", "/nonexistent");
            Assert.Equal(2, code);
            Assert.Equal("tmem: cannot store /nonexistent: no such file.", stderr.Trim());
            Assert.Empty(stdout);

            (code, _, stderr) = await Tmem(dir, "--socket", "/nonexistent.sock", "stats");
            Assert.Equal(3, code);
            Assert.StartsWith("tmem: no service at /nonexistent.sock: the socket file does not exist;", stderr.Trim());
            Assert.Single(stderr.Trim().Split('\n'));

            (code, stdout, _) = await Tmem(dir, "stats", "--json");
            Assert.Equal(3, code);
            using (var error = JsonDocument.Parse(stdout))
            {
                Assert.Equal(3, error.RootElement.GetProperty("exitCode").GetInt32());
                Assert.Contains("the socket file does not exist", error.RootElement.GetProperty("error").GetString());
            }

            (code, _, stderr) = await Tmem(dir, "frobnicate");
            Assert.Equal(2, code);
            Assert.Contains("frobnicate", stderr);
            Assert.DoesNotContain("Unhandled", stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task StatsAndPools_WithJson_AreOneDocumentEach()
    {
        await using var service = ServiceProcess.Shipped("--Tmem:DataDirectory=");
        await service.StartAsync();
        var (code, stdout, stderr) = await Tmem(service.Root, "stats", "--json");
        Assert.True(code == 0, stderr);
        using (var stats = JsonDocument.Parse(stdout)) Assert.True(stats.RootElement.EnumerateObject().Any());
        (code, stdout, stderr) = await Tmem(service.Root, "pools", "--json");
        Assert.True(code == 0, stderr);
        using var pools = JsonDocument.Parse(stdout);
        Assert.Equal(1, pools.RootElement.GetProperty("clientId").GetInt32());
    }
}
