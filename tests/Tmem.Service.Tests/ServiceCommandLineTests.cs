namespace Tmem.Service.Tests;

/// <summary>The service's own command line: --help and --version print and exit without starting anything; sizes take units.</summary>
[Trait("Kind", "Integration")]
public sealed class ServiceCommandLineTests
{
    [Theory]
    [InlineData("--help", "usage: tmem-server")]
    [InlineData("--version", "tmem-server 0.")]
    public async Task HelpAndVersion_PrintAndExit0_CreateNoDataDirectoryNorSocket(string flag, string expected)
    {
        string dir = Directory.CreateTempSubdirectory("tmem-cl-").FullName;
        try
        {
            var (code, stdout, stderr) = await ToolProcess.RunAsync(ServiceProcess.ServiceDll(), [flag], dir);
            Assert.True(code == 0, stderr);
            Assert.Contains(expected, stdout);
            Assert.Empty(Directory.GetFileSystemEntries(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Start_LogsTheVersion_AndSizesWithUnitsAreBytes()
    {
        await using var service = new ServiceProcess("--Tmem:RamBudgetBytes=64MiB", "--Tmem:Service:MaxQueuedResponseBytes=2GiB", "--Tmem:DataDirectory=");
        await service.StartAsync();
        Assert.Matches(@"Tmem service \d+\.\d+\.\d+\S* starting \(pid \d+", service.Output);
        var stats = await service.StatsAsync();
        Assert.Equal(64L << 20, stats["ram_budget_bytes"]);
    }

    [Fact]
    public async Task ASizeWithAnUnknownUnit_IsBadConfiguration_NamingTheKeyAndTheForms()
    {
        await using var service = new ServiceProcess("--Tmem:RamBudgetBytes=64XB");
        var (code, output) = await service.RunUntilExitAsync();
        Assert.Equal(2, code);
        Assert.Contains("Tmem:RamBudgetBytes is '64XB'; it must be a byte count or a size such as 256MiB", output);
    }
}
