using System.Diagnostics;
using Tmem.CrashHost;

namespace Tmem.Tests.Faults;

/// <summary>A handle's state as a workload sees it: M miss, Z zero page, D or S data or same-filled page of a version, P/A a pool present or absent, X a bad page.</summary>
internal readonly record struct PageState(char Kind, long Version, string? Error = null)
{
    public static PageState Miss => new('M', 0);
    public static PageState Present => new('P', 0);
    public static PageState Absent => new('A', 0);

    public bool Equals(PageState other) => Kind == other.Kind && Version == other.Version;

    public override int GetHashCode() => HashCode.Combine(Kind, Version);

    public override string ToString() => Kind switch
    {
        'M' => "miss",
        'Z' => "zero page",
        'P' => "pool present",
        'A' => "pool absent",
        'X' => $"bad page ({Error})",
        _ => $"{(Kind == 'D' ? "data" : "same-filled")} page of {CrashLayout.Describe(Version)}",
    };
}

/// <summary>
/// What a workload did, in real-time order (after the crash tests' journal): an issue position
/// before each operation starts and an ack position once it returned, from one counter, so "X
/// precedes G" (X acked before G was issued) means X was linearized before G. A power cut freezes
/// it (<see cref="Freeze"/>): what was acknowledged before the freeze was acknowledged before the
/// power went (see <see cref="SimulatedDisk.OnCut"/>).
/// </summary>
internal sealed class History
{
    public enum Kind
    {
        Put,
        FlushPage,
        FlushObject,
        Get,
        CreatePool,
        DestroyPool,
    }

    /// <summary>One operation on handle (label, object, index); index -1 for a whole object (or the pool handle).</summary>
    public sealed class Op
    {
        public long Seq { get; init; }
        public Kind Kind { get; init; }
        public int Label { get; init; }
        public int Obj { get; init; }
        public int Index { get; init; }
        public int IssuePos { get; set; }
        public int AckPos { get; set; } = int.MaxValue;
        public long AckTicks { get; set; }
        public PageState Effect { get; set; }
        public string? Outcome { get; set; }

        public bool Acked => AckPos != int.MaxValue;

        public override string ToString() =>
            $"#{Seq} {Kind}{(Index < 0 ? "" : $"[{Index}]")}={Effect} issued@{IssuePos} {(Acked ? $"acked@{AckPos}" : $"unacked{(Outcome is null ? "" : $" ({Outcome})")}")}";
    }

    private readonly Lock _lock = new();
    private readonly List<Op> _ops = new();
    private int _position;
    private int _frozenAt = int.MaxValue;
    private long _frozenTicks = long.MaxValue;
    private long _seq;

    public IReadOnlyList<Op> Ops
    {
        get
        {
            lock (_lock) return _ops.ToArray();
        }
    }

    /// <summary>The position of the freeze (int.MaxValue while not frozen).</summary>
    public int FrozenAt => Volatile.Read(ref _frozenAt);

    public long FrozenTicks => Volatile.Read(ref _frozenTicks);

    public bool IsFrozen => FrozenAt != int.MaxValue;

    public Op Issue(Kind kind, int label, int obj, int index, PageState effect = default)
    {
        lock (_lock)
        {
            var op = new Op { Seq = ++_seq, Kind = kind, Label = label, Obj = obj, Index = index, IssuePos = _position++, Effect = effect };
            _ops.Add(op);
            return op;
        }
    }

    /// <summary>The version a put issued as <paramref name="seq"/> stores (pages name their operation).</summary>
    public long NextSeq
    {
        get
        {
            lock (_lock) return _seq + 1;
        }
    }

    public void Ack(Op op, PageState? observed = null)
    {
        lock (_lock)
        {
            if (op.Acked) throw new InvalidOperationException($"{op} acknowledged twice");
            op.AckPos = _position++;
            op.AckTicks = Stopwatch.GetTimestamp();
            if (observed is { } state) op.Effect = state;
        }
    }

    public void Freeze()
    {
        lock (_lock)
        {
            if (_frozenAt != int.MaxValue) return;
            _frozenAt = _position;
            _frozenTicks = Stopwatch.GetTimestamp();
        }
    }

    public bool AckedBeforeCut(Op op) => op.AckPos < FrozenAt;

    public bool IssuedBeforeCut(Op op) => op.IssuePos < FrozenAt;
}

/// <summary>
/// The check after a cut (the crash tests' rule, per handle): the recovered state must be the
/// effect of a <i>candidate</i>, an operation of the cycle on the handle issued before the cut
/// that precedes no operation of the handle's <i>must set</i>, or the cycle's starting state (the
/// baseline) when that set is empty.
/// <list type="bullet">
/// <item>Strict: the must set is every operation acknowledged before the cut, gets included (a get
/// answers only what is durable, so what it saw must survive).</item>
/// <item>Relaxed: the recovered state is a prefix of the log, and the log orders an operation
/// acknowledged before another was issued first: a handle that only operations of the cycle can
/// explain shows one of them is in the prefix, and so is everything acknowledged before the earliest
/// of them was issued (repeated until nothing changes). How much a cut may lose is not checked:
/// commits come every <c>CommitIntervalMs</c>, but on a loaded two-core machine the thread pool
/// delays them by seconds (the crash host's comment; reported as a library issue); the output
/// says how old the newest lost acknowledgement was.</item>
/// </list>
/// A page must be exactly some put's page; an operation issued after the cut can explain nothing.
/// </summary>
internal static class HistoryCheck
{

    /// <summary>The key of a pool's existence (the churn pool's): (label, -1, -1).</summary>
    public static (int, int, int) PoolKey(int label) => (label, -1, -1);

    /// <summary>What <paramref name="op"/> leaves at <paramref name="key"/>; null when it does not touch it.</summary>
    public static PageState? EffectOn(History.Op op, (int Label, int Obj, int Index) key)
    {
        if (op.Label != key.Label) return null;
        bool poolKey = key.Obj < 0;
        return op.Kind switch
        {
            History.Kind.CreatePool => poolKey ? PageState.Present : null,
            History.Kind.DestroyPool => poolKey ? PageState.Absent : PageState.Miss,
            _ when poolKey => null,
            History.Kind.FlushObject => op.Obj == key.Obj ? PageState.Miss : null,
            _ => op.Obj == key.Obj && op.Index == key.Index ? op.Effect : null,
        };
    }

    public static List<string> Check(bool strict, History history, IReadOnlyDictionary<(int, int, int), PageState> baseline,
        IReadOnlyDictionary<(int, int, int), PageState> recovered, out string detail, out int checkedOps)
    {
        var all = history.Ops;
        var perHandle = new Dictionary<(int, int, int), List<(History.Op Op, PageState Effect)>>();
        foreach (var key in recovered.Keys) perHandle[key] = new List<(History.Op, PageState)>();
        foreach (var op in all)
        {
            if (op.Kind == History.Kind.Get && !strict) continue;
            foreach (var key in recovered.Keys)
                if (EffectOn(op, key) is { } effect) perHandle[key].Add((op, effect));
        }
        int forced = -1;
        bool Must(History.Op op) => history.AckedBeforeCut(op) && (strict || op.AckPos < forced);

        (History.Op? LastMust, List<History.Op>? Explaining) Explain((int, int, int) key)
        {
            var ops = perHandle[key];
            var got = recovered[key];
            int mustIssue = -1;
            History.Op? lastMust = null;
            foreach (var (op, _) in ops)
            {
                if (op.IssuePos > mustIssue && Must(op))
                {
                    mustIssue = op.IssuePos;
                    lastMust = op;
                }
            }
            if (lastMust is null && got == baseline[key]) return (null, null);
            return (lastMust, got.Kind == 'X' ? [] : ops.Where(o => o.Op.AckPos > mustIssue && history.IssuedBeforeCut(o.Op) && o.Effect == got).Select(o => o.Op).ToList());
        }

        var forcedBy = new List<string>();
        for (bool changed = !strict; changed;)
        {
            changed = false;
            foreach (var key in recovered.Keys)
            {
                if (Explain(key).Explaining is { Count: > 0 } explaining && explaining.Min(op => op.IssuePos) is int lower && lower > forced)
                {
                    forced = lower;
                    changed = true;
                    forcedBy.Add($"{key} {recovered[key]} by [{string.Join(", ", explaining.Take(3))}]");
                }
            }
        }
        checkedOps = all.Count(op => Must(op));
        detail = strict
            ? $"strict: {checkedOps} operations acknowledged before the cut had to survive"
            : $"relaxed: {all.Count(op => history.AckedBeforeCut(op) && op.AckPos < forced)} of {all.Count(history.AckedBeforeCut)} acknowledged operations shown in the prefix" +
                (all.Where(op => history.AckedBeforeCut(op) && op.AckPos > forced).Select(op => op.AckTicks).DefaultIfEmpty(0).Min() is long oldest and > 0
                    ? $", the oldest one not shown acknowledged {(history.FrozenTicks - oldest) * 1000 / Stopwatch.Frequency} ms before the cut"
                    : "");

        var errors = new List<string>();
        foreach (var key in recovered.Keys)
        {
            var (lastMust, explaining) = Explain(key);
            if (explaining is null || explaining.Count > 0) continue;
            var ops = perHandle[key];
            var got = recovered[key];
            string why = got.Kind == 'X' ? "corrupt"
                : ops.Any(o => o.Effect == got && !history.IssuedBeforeCut(o.Op)) ? "the effect of an operation issued after the power cut"
                : ops.Any(o => o.Effect == got) ? "older than an operation that had to survive"
                : got == baseline[key] ? "the cycle's starting state: operations that had to survive are lost"
                : "no operation explains it";
            var history8 = (ops.Count <= 8 ? ops : ops.Take(2).Concat(ops.TakeLast(6))).Select(o => o.Op);
            errors.Add($"handle {key}: recovered {got}: {why}. Baseline {baseline[key]}; " +
                $"{(lastMust is null ? "no operation had to survive" : $"the latest-issued operation that had to survive is {lastMust}")}; " +
                $"{ops.Count} operation(s): {string.Join(", ", history8)}");
        }
        if (errors.Count > 0 && !strict)
            errors.Add($"the cut froze the history at {history.FrozenAt}; the prefix was raised to {forced} by: {string.Join("; ", forcedBy.TakeLast(6))}");
        return errors;
    }
}
