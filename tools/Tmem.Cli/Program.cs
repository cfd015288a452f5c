using System.CommandLine;
using Tmem.Client;

namespace Tmem.Cli;

/// <summary>
/// <c>tmem</c>: the command-line client of the Tmem service (as <c>redis-cli</c> is Redis's).
/// Every command takes --socket, --client, --secret and --json; exit codes are
/// <see cref="ExitCodes"/>. The work is in <c>Tmem.Client</c>; this is wiring and wording.
/// </summary>
public static class Program
{
    internal static readonly Option<string> Socket = new("--socket", "-s")
    {
        Description = $"The service: a Unix socket path, unix:PATH or tcp:HOST:PORT. Default $TMEM_SOCKET, else {ServiceAddress.DefaultSocket} in the working directory (where `dotnet run --project hosting/Tmem.Service` puts it).",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TMEM_SOCKET") is { Length: > 0 } s ? s : ServiceAddress.DefaultSocket,
    };

    internal static readonly Option<string> Client = new("--client")
    {
        Description = $"The configured client to act as (Tmem:Service:Clients:N:Name). Default $TMEM_CLIENT, else \"{ServiceAddress.DefaultClient}\" (the one in the shipped appsettings.json).",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TMEM_CLIENT") is { Length: > 0 } c ? c : ServiceAddress.DefaultClient,
    };

    internal static readonly Option<string> Secret = new("--secret")
    {
        Description = "That client's secret. Default $TMEM_SECRET, else empty.",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("TMEM_SECRET") ?? "",
    };

    internal static readonly Option<bool> Json = new("--json")
    {
        Description = "Print one JSON document on stdout and nothing else (errors too, as {\"error\": ..., \"exitCode\": ...}).",
        Recursive = true,
    };

    internal const string PoolsHint = "`tmem pools` lists them";

    public static async Task<int> Main(string[] args)
    {
        var root = new RootCommand("""
            tmem: the command-line client of the Tmem service.
            Exit codes: 0 done; 1 done in part (pages refused or missing; the output says why);
            2 bad command line or unreadable input file; 3 the service cannot be reached or refused the
            handshake; 4 the service answered with an error, or the connection broke.
            """)
        {
            Socket, Client, Secret, Json,
        };
        foreach (var command in StatsCommand.Create()) root.Subcommands.Add(command);
        foreach (var command in DataCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in OperatorCommands.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(BenchCommand.Create());

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            var output = new Output(parse.GetValue(Json));
            string message = string.Join("; ", parse.Errors.Select(e => e.Message.TrimEnd('.')));
            if (!output.Json) Console.Error.WriteLine("Run 'tmem --help' for the commands, 'tmem COMMAND --help' for one.");
            return output.Error(ExitCodes.Usage, message);
        }
        return await parse.InvokeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a command against the service: connects, runs <paramref name="body"/>, and turns
    /// every failure into one line (or error document) and its exit code.
    /// </summary>
    internal static async Task<int> RunAsync(ParseResult r, Func<Output, TmemConnection, CancellationToken, Task<int>> body, CancellationToken cancellationToken,
        Action? checkFirst = null)
    {
        var output = new Output(r.GetValue(Json));
        try
        {
            checkFirst?.Invoke();
            var address = new ServiceAddress(r.GetValue(Socket)!, r.GetValue(Client)!, r.GetValue(Secret)!);
            await using var connection = await address.ConnectAsync(cancellationToken).ConfigureAwait(false);
            return await body(output, connection, cancellationToken).ConfigureAwait(false);
        }
        catch (CliException e)
        {
            return output.Error(e.ExitCode, e.Message);
        }
        catch (TmemRemoteException e) when (e.IsNotDurable)
        {
            return output.Error(ExitCodes.Refused, $"the service could not make this durable, its storage is failing ({e.ServerMessage}); what was written may or may not survive a restart: retry later, then read it back.");
        }
        catch (TmemRemoteException e)
        {
            return output.Error(ExitCodes.Refused, $"the service refused the request: {e.Message}");
        }
        catch (IOException e)
        {
            return output.Error(ExitCodes.Refused, $"the connection to the service broke: {e.Message}");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return output.Error(ExitCodes.Refused, "interrupted");
        }
    }
}
