using System.Diagnostics;
using System.Globalization;
using Tmem.Recovery;
using Tmem.Recovery.Offline;
using Xunit.Abstractions;

namespace Tmem.Tests.Faults;

/// <summary>
/// Power cuts, simulated: a durable store runs a concurrent load (<see cref="StoreWorkload"/>: puts,
/// flush page, flush object, gets, pool create/destroy, checkpoints and forced log compactions) on
/// a <see cref="SimulatedDisk"/>; at a random moment (inside some I/O operation, before or after it
/// took effect) the power goes, the store is closed without anything after the cut counting, every
/// file is replaced by a state the disk could be in (<see cref="CutMode"/>), and the store is
/// reopened with the normal code, which must recover it and hold what was promised
/// (<see cref="HistoryCheck"/>): in Strict mode every operation acknowledged before the cut, gets
/// included, and nothing older; in Relaxed mode a prefix. A cut beyond a sector-atomic disk
/// (<see cref="CutMode.Torn"/>) may instead be refused, with a <see cref="TmemCorruptionException"/>.
/// Before each reopen the offline tool's verify (which reads every record) checks the directory
/// too: clean after every cut a sector-atomic disk can make, and never clean where the open refuses.
/// One directory lives through all the cycles of a test, so recovery meets checkpoints, truncated
/// logs and half-done compactions. TMEM_SOAK=1 runs ten times the cycles; TMEM_POWER_SEED replays a seed.
/// </summary>
[Trait("Kind", "Crash")]
public sealed class PowerCutTests(ITestOutputHelper output)
{
    internal static bool Soak => Environment.GetEnvironmentVariable("TMEM_SOAK") == "1";

    [Theory]
    [InlineData(DurabilityMode.Strict, LogDeviceKind.Mapped, 45)]
    [InlineData(DurabilityMode.Strict, LogDeviceKind.File, 45)]
    [InlineData(DurabilityMode.Relaxed, LogDeviceKind.Mapped, 30)]
    [InlineData(DurabilityMode.Relaxed, LogDeviceKind.File, 30)]
    public async Task PowerCut_AtRandomPoints_RecoveryKeepsWhatWasPromised(DurabilityMode mode, LogDeviceKind device, int cycles)
    {
        if (Soak) cycles *= 10;
        int seed = int.TryParse(Environment.GetEnvironmentVariable("TMEM_POWER_SEED"), CultureInfo.InvariantCulture, out int s) ? s : Random.Shared.Next();
        var rng = new Random(seed);
        bool strict = mode == DurabilityMode.Strict;
        string root = Path.Combine(Path.GetTempPath(), $"tmem-power-{mode.ToString().ToLowerInvariant()}-{device.ToString().ToLowerInvariant()}-{Guid.NewGuid():N}");
        string dir = Path.Combine(root, "data");
        output.WriteLine($"{mode} {device}: {cycles} cycles, seed {seed} (TMEM_POWER_SEED), directory {root}");

        var clock = Stopwatch.StartNew();
        History? history = null;
        Dictionary<(int, int, int), PageState>? baseline = null;
        CutReport? lastCut = null;
        int run = 0, refused = 0;
        long checkedOps = 0, issuedOps = 0;
        var phases = new Dictionary<string, int>();
        var modes = new Dictionary<CutMode, int>();
        SimulatedDisk? current = null;
        try
        {
            for (int cycle = 1; cycle <= cycles + 1; cycle++)
            {
                bool last = cycle == cycles + 1;
                var disk = current = new SimulatedDisk(root);
                var options = new TmemOptions
                {
                    DataDirectory = dir,
                    Durability = mode,
                    LogDevice = device,
                    LogSegmentSizeBytes = 16L << 20,
                    RamBudgetBytes = 256L << 10, // most persistent pages spilled: gets read the log
                    Diagnostics = new()
                    {
                        StorageIo = disk,
                        WrapLogDevice = device == LogDeviceKind.File ? d => new SimulatedDiskDevice(d, disk) : null,
                    },
                };
                string where = $"{mode} {device} cycle {cycle} (seed {seed}, directory {root})";
                TmemStore store;
                RecoveryReport report;
                // The offline tool's verify reads every record: it must agree with the open.
                var verified = lastCut is null ? null : DataDirectoryVerifier.Verify(dir);
                if (verified is { IsClean: false } && lastCut!.WithinPowerLossModel)
                    Assert.Fail($"{where}: the offline verify found damage after {lastCut}: {string.Join("; ", verified.Problems.Select(p => p.Message))}");
                try
                {
                    store = TmemStore.Open(options, out report);
                }
                catch (TmemCorruptionException e) when (lastCut is { WithinPowerLossModel: false })
                {
                    if (verified!.IsClean)
                        Assert.Fail($"{where}: the open refused the directory ({e.Message}) that the offline verify found clean, after {lastCut}");
                    // A disk that tears inside sectors or zeroes synced data may leave a directory
                    // the store refuses; it says so, and changes nothing. Start a new one.
                    refused++;
                    output.WriteLine($"cycle {cycle}: refused after {lastCut}: {e.Message}");
                    disk.Dispose();
                    Directory.Delete(root, recursive: true);
                    history = null;
                    baseline = null;
                    lastCut = null;
                    if (last) break;
                    continue;
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"{where}: reopening after the cut failed ({lastCut}): {e.Message}", e);
                }
                try
                {
                    if (baseline is null) await StoreWorkload.EnsurePoolsAsync(store);
                    var states = StoreWorkload.ReadAll(store);
                    if (history is not null && baseline is not null)
                    {
                        var errors = HistoryCheck.Check(strict, history, baseline, states, out string detail, out int must);
                        checkedOps += must;
                        output.WriteLine($"cycle {cycle}: reopened ({report.RecordsReplayed} records replayed, {report.PagesRecovered} pages{(report.CheckpointProblem is null ? "" : $"; {report.CheckpointProblem}")}); {detail}");
                        if (errors.Count > 0)
                        {
                            // Leave the directory as the cut left it, for the offline tool: nothing this open wrote counts.
                            disk.Cut("the check failed");
                            Close(store, where);
                            disk.Restore(CutMode.Old, rng);
                            Assert.Fail($"{where}: {errors.Count} handle(s) wrong after {lastCut}; recovery: begin {report.BeginAddress}, committed until {report.CommittedUntilAddress}, " +
                                $"checkpoint until {report.CheckpointCoveredUntil?.ToString(CultureInfo.InvariantCulture) ?? "none"} ({report.CheckpointProblem ?? "used"}), {report.RecordsReplayed} records replayed:\n{string.Join("\n", errors.Take(12))}\n{errors[^1]}");
                        }
                    }
                    Assert.Equal(StorageState.Healthy, store.Storage.State);
                    if (last) break;
                    baseline = states;

                    history = new History();
                    var workload = new StoreWorkload(store, history, ++run, strict, () => history.IsFrozen);
                    string phase = "";
                    var frozen = history;
                    disk.OnCut = () =>
                    {
                        phase = workload.Phase;
                        frozen.Freeze();
                    };
                    var running = workload.RunAsync(rng.Next());
                    await Task.Delay(rng.Next(20, 300));
                    disk.CutAfterOperation = rng.Next(2) == 0;
                    disk.CutAt = disk.Operations + 1 + rng.Next(3);
                    if (!SpinWait.SpinUntil(() => disk.IsCut, 5000)) disk.Cut("by hand: no I/O for 5 s");
                    await running.WaitAsync(TimeSpan.FromSeconds(60));
                    if (workload.Errors.Count > 0)
                        Assert.Fail($"{where}: the workload failed before the cut:\n{string.Join("\n", workload.Errors.Take(5))}");
                    issuedOps += history.Ops.Count;
                    phases[phase] = phases.GetValueOrDefault(phase) + 1;
                }
                finally
                {
                    Close(store, where);
                }
                var cutMode = rng.Next(8) == 0 ? CutMode.Torn : (CutMode)rng.Next((int)CutMode.Torn);
                modes[cutMode] = modes.GetValueOrDefault(cutMode) + 1;
                lastCut = disk.Restore(cutMode, rng);
                disk.Dispose();
                output.WriteLine($"cycle {cycle}: {history!.Ops.Count} operations, {history.Ops.Count(o => history.AckedBeforeCut(o))} acknowledged before the cut; {lastCut}");
                foreach (var line in lastCut.Details.Take(20)) output.WriteLine($"    {line}");
            }
        }
        catch
        {
            output.WriteLine($"failed; directory {root} kept");
            throw;
        }
        finally
        {
            current?.Dispose();
        }
        output.WriteLine($"{mode} {device}: {cycles} power cuts in {clock.Elapsed.TotalSeconds:F1} s; {issuedOps} operations issued, {checkedOps} acknowledged ones checked; " +
            $"{refused} refused (torn disk); cuts during [{string.Join(", ", phases.Select(p => $"{p.Key} {p.Value}"))}]; modes [{string.Join(", ", modes.Select(p => $"{p.Key} {p.Value}"))}]");
        PowerCutCounts.Add(cycles, issuedOps, checkedOps);
        Directory.Delete(root, recursive: true);
    }

    /// <summary>Closes the store, failing (not hanging the run) when that takes over a minute.</summary>
    internal static void Close(TmemStore store, string where)
    {
        if (!Task.Run(store.Dispose).Wait(TimeSpan.FromSeconds(60)))
            Assert.Fail($"{where}: the store did not close within 60 s: it hangs (take a dump of this process)");
    }
}

/// <summary>Totals over the tests of a run, for the closing note.</summary>
internal static class PowerCutCounts
{
    public static long Cuts;
    public static long Issued;
    public static long Checked;

    public static void Add(long cuts, long issued, long checkedOps)
    {
        Interlocked.Add(ref Cuts, cuts);
        Interlocked.Add(ref Issued, issued);
        Interlocked.Add(ref Checked, checkedOps);
    }
}
