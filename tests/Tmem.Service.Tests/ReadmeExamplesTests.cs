using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Tmem.Service.Tests;

/// <summary>
/// Every <c>```csharp</c> block of README.md and docs/client.md compiles as written, as the program of a console
/// project that references the library (the SDK's implicit usings on, as `dotnet new console`
/// has them), so the examples cannot drift from the API.
/// </summary>
[Trait("Kind", "Unit")]
public sealed class ReadmeExamplesTests
{
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    public static TheoryData<string, int, string> Blocks()
    {
        var data = new TheoryData<string, int, string>();
        foreach (var file in new[] { "README.md", Path.Combine("docs", "client.md") })
        {
            string text = File.ReadAllText(Path.Combine(ToolProcess.RepositoryRoot(), file));
            int at = 0, n = 0;
            while ((at = text.IndexOf("```csharp\n", at, StringComparison.Ordinal)) >= 0)
            {
                int start = at + "```csharp\n".Length;
                int end = text.IndexOf("```", start, StringComparison.Ordinal);
                data.Add(file, n++, text[start..end]);
                at = end;
            }
        }
        return data;
    }

    [Fact]
    public void TheDocs_HaveTheirExamples() => Assert.True(Blocks().Count() >= 5);

    [Theory]
    [MemberData(nameof(Blocks))]
    public void CSharpBlock_CompilesAsWritten(string file, int block, string code)
    {
        // Everything this test process runs on (the framework, Tmem.Tiers, Tmem.Contracts, Tmem.Client
        // and the packages they use), less FASTER's System.Linq.Async, which Directory.Build.targets
        // keeps out of compilation as a project referencing Tmem would.
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => !Path.GetFileName(p).Equals("System.Linq.Async.dll", StringComparison.OrdinalIgnoreCase))
            .Select(p => MetadataReference.CreateFromFile(p));
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var compilation = CSharpCompilation.Create($"ReadmeBlock{block}",
            [CSharpSyntaxTree.ParseText(ImplicitUsings, parse), CSharpSyntaxTree.ParseText(code, parse)],
            references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var output = new MemoryStream();
        var result = compilation.Emit(output);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error || (d.Severity == DiagnosticSeverity.Warning && d.WarningLevel <= 4)).ToList();
        Assert.True(errors.Count == 0, $"{file} C# block {block} does not compile as written:\n{string.Join('\n', errors)}\n---\n{code}");
    }
}
