using System.CommandLine;
using System.Globalization;
using Tmem.Recovery.Offline;

namespace Tmem.Admin;

/// <summary>
/// <c>tmem-admin</c>: the offline recovery tool, for a data directory whose service is stopped.
/// Commands: inspect, verify, recover, compact, export, import (README.md has an example of
/// each); every one takes the directory's lock and refuses a directory in use, and has --json.
/// Exit codes: <see cref="ExitCodes"/>. The work is in Tmem.Recovery.Offline; this is wiring.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = BuildCommands();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) Console.Error.WriteLine($"tmem-admin: {error.Message}");
            Console.Error.WriteLine("Run 'tmem-admin --help' for the commands.");
            return ExitCodes.Usage;
        }
        return parse.Invoke();
    }

    private static RootCommand BuildCommands()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON document on stdout and nothing else." };
        Argument<string> Directory() => new("DIR") { Description = "The data directory (Tmem:DataDirectory) of a stopped service." };

        var inspectDir = Directory();
        var inspect = new Command("inspect", "Show what a data directory holds: format, log addresses, segments, checkpoint, clients and pools, live fraction.") { inspectDir, json };
        inspect.SetAction(r => Run(r.GetValue(json), o => Inspect(o, r.GetValue(inspectDir)!)));

        var verifyDir = Directory();
        var verify = new Command("verify", "Check every record below the commit point and the checkpoint; exit 0 when clean, 1 on damage.") { verifyDir, json };
        verify.SetAction(r => Run(r.GetValue(json), o => Verify(o, r.GetValue(verifyDir)!)));

        var recoverDir = Directory();
        var truncate = new Option<bool>("--truncate-at-first-corruption") { Description = "Cut the log before its first corrupt record (losing what follows, listed in the report)." };
        var rebuildCommit = new Option<bool>("--rebuild-commit-metadata") { Description = "When FASTER's commit metadata is missing or damaged, write a new commit for the whole, valid records (keeps every one)." };
        var rollback = new Option<bool>("--rollback-to-older-commit") { Description = "When the commit metadata is damaged but an older commit can be read, go back to it (undoing the changes listed)." };
        var recover = new Command("recover", "Make a damaged directory openable again, losing as little as possible (backs up what it changes).") { recoverDir, truncate, rebuildCommit, rollback, json };
        recover.Validators.Add(r =>
        {
            if (r.GetValue(rebuildCommit) && r.GetValue(rollback)) r.AddError("--rebuild-commit-metadata and --rollback-to-older-commit exclude each other: give one.");
        });
        recover.SetAction(r => Run(r.GetValue(json), o => Recover(o, r.GetValue(recoverDir)!, new RepairOptions
        {
            TruncateAtFirstCorruption = r.GetValue(truncate), RebuildCommitMetadata = r.GetValue(rebuildCommit), RollbackToOlderCommit = r.GetValue(rollback),
        })));

        var compactDir = Directory();
        var compact = new Command("compact", "Compact the log offline and report segment bytes before and after.") { compactDir, json };
        compact.SetAction(r => Run(r.GetValue(json), o => Compact(o, r.GetValue(compactDir)!)));

        var exportDir = Directory();
        var exportOut = new Argument<string>("OUT") { Description = "The export file to write." };
        var client = new Option<int>("--client") { Description = "The client whose persistent pools to export.", Required = true };
        var pools = new Option<int[]>("--pool") { Description = "A pool id to export (repeat for more; all of the client's persistent pools when absent)." };
        var export = new Command("export", "Write a client's persistent pools to a file (versioned, checksummed).") { exportDir, exportOut, client, pools, json };
        export.SetAction(r => Run(r.GetValue(json), o => Export(o, r.GetValue(exportDir)!, r.GetValue(client), r.GetValue(pools) ?? [], r.GetValue(exportOut)!)));

        var importDir = Directory();
        var importFile = new Argument<string>("FILE") { Description = "An export file." };
        var asClient = new Option<int?>("--as-client") { Description = "Import for this client instead of the exported one." };
        var import = new Command("import", "Create the pools of an export file in a data directory (new or existing) under the same pool ids.") { importDir, importFile, asClient, json };
        import.SetAction(r => Run(r.GetValue(json), o => Import(o, r.GetValue(importDir)!, r.GetValue(importFile)!, r.GetValue(asClient))));

        return new RootCommand("tmem-admin: the offline recovery tool for a Tmem data directory (stop the service first).")
        {
            inspect, verify, recover, compact, export, import,
        };
    }

    /// <summary>Runs a command, turning the library's refusals into exit codes and messages.</summary>
    private static int Run(bool json, Func<Output, int> command)
    {
        var output = new Output(json);
        try
        {
            return command(output);
        }
        catch (DataDirectoryInUseException e)
        {
            return Fail(output, ExitCodes.InUse, "in-use", e.Message);
        }
        catch (OfflineRefusedException e)
        {
            return Fail(output, ExitCodes.Refused, "refused", e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TmemCorruptionException or InvalidOperationException)
        {
            return Fail(output, ExitCodes.Failed, "failed", $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static int Fail(Output output, int code, string kind, string message)
    {
        if (output.Json) output.Document(new { error = kind, exitCode = code, message });
        else Console.Error.WriteLine($"tmem-admin: {message}");
        return code;
    }

    private static int Inspect(Output o, string dir)
    {
        var report = o.WithProgress("inspect", p => DataDirectoryInspector.Inspect(dir, p));
        o.Document(report);
        o.Line($"data directory {report.DataDirectory}");
        o.Line($"format {report.FormatVersion}, segment size {Output.Bytes(report.SegmentSize)}");
        o.Line(report.BeginAddress is { } begin
            ? $"log: begin {begin}, tail {report.TailAddress}, committed until {report.CommittedUntilAddress} ({Output.Bytes(report.CommittedUntilAddress!.Value - begin)}); commit metadata {report.CommitMetadataFile}"
            : "log: commit metadata unreadable (see problems)");
        o.Line($"segments: {report.Segments.Count} file(s), {Output.Bytes(report.SegmentBytes)}");
        foreach (var s in report.Segments) o.Line($"  {s.Path}  {Output.Bytes(s.Bytes)}  from address {s.FirstAddress}");
        foreach (var s in report.ReserveSegments) o.Line($"  {s.Path}  {Output.Bytes(s.Bytes)}  space reserve (allocated ahead of the log, all zeros)");
        if (report.Checkpoint is { } c)
            o.Line(c.CoveredUntil is { } covered
                ? $"checkpoint {c.Path} ({Output.Bytes(c.Bytes)}, written {c.LastWriteUtc:u}): covers {c.LogBeginAddress} until {covered}, {c.Pools} pool(s), {c.Pages} page(s); {(c.Usable ? "usable" : "NOT usable (see problems)")}"
                : $"checkpoint {c.Path} ({Output.Bytes(c.Bytes)}): damaged");
        else o.Line("checkpoint: none");
        o.Line($"clients: {(report.Clients.Count == 0 ? "none" : string.Join(", ", report.Clients))}");
        foreach (var p in report.Pools)
            o.Line($"  client {p.ClientId} pool {p.PoolId}: serial {p.PoolSerial}, {p.PageSize}-byte pages{(p.ExclusiveGets ? ", exclusive gets" : "")}{(p.StoreIncompressible ? $", stores incompressible pages ({p.UncompressedPages} uncompressed)" : "")}{(p.SharedUuid is { } u ? $", shared {u} ({Output.Members(p.Members)})" : "")}; {p.Pages} page(s) ({p.SameFilledPages} same-filled), {Output.Bytes(p.CompressedBytes)} compressed, {Output.Bytes(p.LogBytes)} of log");
        o.Line(string.Create(CultureInfo.InvariantCulture, $"live: {report.LivePages} page(s), {Output.Bytes(report.LiveLogBytes)} of log, live fraction {report.LiveFraction:P1}; {report.Records} record(s) read"));
        if (report.Problems.Count > 0)
        {
            o.Line($"problems ({report.Problems.Count}; run verify for the full check):");
            o.Problems(report.Problems);
        }
        return ExitCodes.Ok;
    }

    private static int Verify(Output o, string dir)
    {
        var report = o.WithProgress("verify", p => DataDirectoryVerifier.Verify(dir, p));
        o.Document(report);
        o.Line($"verified {report.DataDirectory}: {report.RecordsChecked} record(s), {Output.Bytes(report.BytesChecked)} below commit point {report.CommittedUntilAddress?.ToString(CultureInfo.InvariantCulture) ?? "(unknown)"}; checkpoint {(report.CheckpointChecked ? "checked" : "absent")}");
        o.Problems(report.Problems);
        if (report.IsClean)
        {
            o.Line(report.Problems.Count == 0 ? "clean" : "clean (notices only)");
            return ExitCodes.Ok;
        }
        o.Line($"DAMAGED: {report.Problems.Count(p => p.Severity == ProblemSeverity.Damage)} problem(s). Next: tmem-admin recover {dir}{(report.FirstCorruptionAddress is { } cut ? $" (add --truncate-at-first-corruption to cut the log at {cut}; recover without it lists what that would lose)" : "")}");
        return ExitCodes.Damaged;
    }

    private static int Recover(Output o, string dir, RepairOptions options)
    {
        var report = o.WithProgress("recover", p => DataDirectoryRepairer.Repair(dir, options, p));
        o.Document(report);
        o.Line($"recover {report.DataDirectory}: {report.ProblemsFound.Count} problem(s) found");
        o.Problems(report.ProblemsFound);
        foreach (var action in report.Actions) o.Line($"  did: {action}");
        if (report.Actions.Count == 0) o.Line("  changed nothing");
        if (report.CutAddress is not null)
        {
            o.Line(report.Truncated
                ? $"{(report.RolledBackToCommit is { } commit ? $"undone by rolling back to commit {commit}, cutting" : "lost by cutting")} the log at {report.CutAddress} ({report.LostPages.Count} page(s), {report.LostPools.Count} pool change(s), {Output.Bytes(report.DroppedLogBytes)} of log){(report.LossListComplete ? ", the complete list" : "")}:"
                : report.OlderCommit is { } older
                    ? $"WOULD be undone by --rollback-to-older-commit, going back to commit {older} by cutting the log at {report.CutAddress} (not done; nothing was changed){(report.LossListComplete ? ", the complete list" : "")}:"
                    : $"WOULD be lost by cutting the log at {report.CutAddress} (not done; nothing was dropped){(report.LossListComplete ? ", the complete list" : "")}:");
            o.Losses(report.LostPages, report.LostPools);
            if (!report.LossListComplete)
            {
                o.Line("INCOMPLETE: the records at these log addresses are unreadable or gone; the pages and pools they changed are not listed (beyond what later records or the checkpoint show):");
                foreach (var range in report.UnknownRanges) o.Line($"  {range.From} to {range.Until}: {range.Reason}");
            }
        }
        if (report.PagesAfter is { } pages) o.Line($"the store opens: {report.PoolsAfter} pool(s), {pages} page(s)");
        if (report.Advice is { } advice) o.Line(advice);
        return report.Unrepaired.Count == 0 && report.Openable ? ExitCodes.Ok : ExitCodes.Damaged;
    }

    private static int Compact(Output o, string dir)
    {
        var report = o.WithProgress("compact", p => OfflineCompactor.Compact(dir, p));
        o.Document(report);
        if (report.Result is not { } r)
        {
            o.Line($"skipped: {report.Reason}");
            return ExitCodes.Ok;
        }
        o.Line($"compacted {report.DataDirectory} in {r.Elapsed.TotalSeconds:0.00} s");
        o.Line($"  segment files: {report.SegmentFilesBefore} -> {report.SegmentFilesAfter}, {Output.Bytes(report.SegmentBytesBefore)} -> {Output.Bytes(report.SegmentBytesAfter)}");
        o.Line($"  log: begin {r.BeginBefore} -> {r.BeginAfter}, {Output.Bytes(r.LogBytesBefore)} -> {Output.Bytes(r.LogBytesAfter)}; {r.CopiedRecords} live record(s) copied ({Output.Bytes(r.CopiedBytes)})");
        return ExitCodes.Ok;
    }

    private static int Export(Output o, string dir, int client, int[] pools, string file)
    {
        var report = o.WithProgress("export", p => PoolExporter.Export(dir, client, pools, file, p));
        o.Document(report);
        o.Line($"exported client {report.ClientId}'s pool(s) {string.Join(", ", report.Pools.Select(p => $"{p.PoolId} ({p.Pages} pages)"))} to {report.File} ({Output.Bytes(report.Bytes)})");
        return ExitCodes.Ok;
    }

    private static int Import(Output o, string dir, string file, int? asClient)
    {
        var report = o.WithProgress("import", p => PoolExporter.Import(dir, file, asClient, p));
        o.Document(report);
        o.Line($"imported pool(s) {string.Join(", ", report.Pools.Select(p => $"{p.PoolId} ({p.Pages} pages)"))} for client {report.ClientId} into {report.DataDirectory}");
        return ExitCodes.Ok;
    }
}
