using System.Collections.Concurrent;
using System.Diagnostics;
using K4os.Compression.LZ4;
using Tmem.RamTier;

namespace Tmem.Bench;

/// <summary>
/// The <c>engine</c> suite: the in-process store against the bare codec and a
/// ConcurrentDictionary-of-byte[] baseline, on the same pages, in the same run.
/// Each rate is the median of several timed runs; baseline and store runs alternate so
/// that machine noise hits both alike.
/// </summary>
internal sealed class EngineSuite
{
    private const int PageSize = Corpus.PageSize;
    private const int Repeats = 7;
    private const int PagesPerObject = 64;

    private readonly Corpus _corpus;
    private readonly Report _report;
    private readonly byte[][] _accepted;     // not same-filled, compress to <= 7/8 page: what both sides store
    private readonly byte[][] _compressed;   // the same pages, LZ4-compressed
    private readonly int _passes;

    public EngineSuite(Corpus corpus, Report report)
    {
        _corpus = corpus;
        _report = report;
        var buffer = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
        var accepted = new List<byte[]>();
        var compressed = new List<byte[]>();
        int sameFilled = 0, poor = 0;
        foreach (var page in corpus.Pages)
        {
            if (Corpus.IsSameFilled(page)) { sameFilled++; continue; }
            int length = LZ4Codec.Encode(page, buffer, LZ4Level.L00_FAST);
            if (length > PageSize * 7 / 8) { poor++; continue; }
            accepted.Add(page);
            compressed.Add(buffer.AsSpan(0, length).ToArray());
        }
        _accepted = accepted.ToArray();
        _compressed = compressed.ToArray();
        // ~64K page operations per timed run (a few hundred ms): long enough that scheduler ticks and
        // thread start-up are noise, short enough for seven repeats of every measurement.
        _passes = Math.Max(1, 65536 / Math.Max(1, _accepted.Length));
        Console.WriteLine($"corpus: {corpus.Description}: {corpus.Pages.Length} pages, {sameFilled} same-filled, {poor} over 7/8 page compressed, {_accepted.Length} used for codec comparisons (ratio {(double)_accepted.Length * PageSize / _compressed.Sum(c => c.Length):0.00})");
    }

    public void Run()
    {
        if (_accepted.Length == 0) throw new InvalidOperationException("The corpus has no compressible pages to benchmark.");
        PutVersusEncode();
        GetVersusDecode();
        ZeroPuts();
        Fragmentation();
        Metadata();
        HitRatio();
        var r = _report;
        r.Target("eph_put_vs_lz4_encode >= 0.85", r["eph_put_vs_lz4_encode"] >= 0.85);
        r.Target("eph_get_vs_lz4_decode >= 0.85", r["eph_get_vs_lz4_decode"] >= 0.85);
        r.Target("eph_get_pages_per_s_2threads >= 1.6 x eph_get_pages_per_s", r["eph_get_pages_per_s_2threads"] >= 1.6 * r["eph_get_pages_per_s"]);
        r.Target("zero_put_pages_per_s >= 2,000,000", r["zero_put_pages_per_s"] >= 2_000_000);
        r.Target("ram_bytes_per_compressed_byte <= 1.10", r["ram_bytes_per_compressed_byte"] <= 1.10);
        r.Target("metadata_bytes_per_page <= 64", r["metadata_bytes_per_page"] <= 64);
        r.Target("metadata_bytes_per_page_1page_objects <= 64", r["metadata_bytes_per_page_1page_objects"] <= 64);
        r.Target("eph_put_at_budget_vs_lz4_encode >= 0.90", r["eph_put_at_budget_vs_lz4_encode"] >= 0.90);
        r.Target("lru_hit_ratio_vs_exact >= 0.95", r["lru_hit_ratio_vs_exact"] >= 0.95);
    }

    private static ObjectId Oid(int i) => new((ulong)(i / PagesPerObject));

    private static uint Index(int i) => (uint)(i % PagesPerObject);

    private static TmemStore OpenStore(long budget, long maxPages = 0) =>
        TmemStore.Open(new TmemOptions { RamBudgetBytes = budget, MaxPages = maxPages });

    /// <summary>
    /// Puts against the bare encoder, three ways: the main figure is the steady state under budget
    /// (a pool whose handles are overwritten: slots are freed and reused, memory already touched);
    /// "first fill" puts fresh handles into an empty pool, so new slabs are allocated and their
    /// memory is touched for the first time (page faults included); "at budget" puts fresh handles
    /// into a full store, so every put also evicts one page.
    /// </summary>
    private void PutVersusEncode()
    {
        var target = new byte[LZ4Codec.MaximumOutputSize(PageSize)];
        int count = _accepted.Length * _passes;
        using var store = OpenStore(4L << 30);
        var client = store.GetClient(1);
        int steady = client.CreatePool(PoolOptions.Ephemeral);
        using var full = OpenStore(32L << 20);
        var fullClient = full.GetClient(1);
        int evicting = fullClient.CreatePool(PoolOptions.Ephemeral);
        int nextFresh = 0;
        var dict = new ConcurrentDictionary<(ulong, uint), byte[]>();

        var encode = new List<double>();
        var put = new List<double>();
        var putFirstFill = new List<double>();
        var putEvicting = new List<double>();
        var dictPut = new List<double>();
        var encodeCopyCold = new List<double>();
        // The least a store that keeps the bytes can cost: the encode, then a copy of its output
        // to a place in 32 MiB (the at-budget store's size) that was written long ago, so out of
        // the core's own caches (as a put's slot is; the shared L3 may hold part of either): what
        // a put at budget does besides its translation and allocation.
        var cold = new byte[32 << 20];
        int coldSlots = cold.Length / PageSize, nextCold = 0;
        void PutAll(TmemClient c, int pool, int firstHandle)
        {
            for (int i = 0; i < count; i++)
                if (c.Put(pool, Oid(firstHandle + i), Index(firstHandle + i), _accepted[i % _accepted.Length]) != PutStatus.Stored)
                    throw new InvalidOperationException("A benchmark put was refused.");
        }
        for (int rep = 0; rep < Repeats + 1; rep++)
        {
            double e = Rate(count, () =>
            {
                for (int i = 0; i < count; i++) LZ4Codec.Encode(_accepted[i % _accepted.Length], target, LZ4Level.L00_FAST);
            });
            double p = Rate(count, () => PutAll(client, steady, 0));
            int fresh = client.CreatePool(PoolOptions.Ephemeral);
            double f = Rate(count, () => PutAll(client, fresh, 0));
            client.DestroyPool(fresh);
            double ev = Rate(count, () => PutAll(fullClient, evicting, nextFresh));
            nextFresh += count;
            double ec = Rate(count, () =>
            {
                for (int i = 0; i < count; i++)
                {
                    int length = LZ4Codec.Encode(_accepted[i % _accepted.Length], target, LZ4Level.L00_FAST);
                    int at = (int)((uint)nextCold++ * 2654435761u % (uint)coldSlots) * PageSize; // scattered, each place once per 8,192
                    target.AsSpan(0, length).CopyTo(cold.AsSpan(at));
                }
            });
            dict.Clear();
            double d = Rate(count, () =>
            {
                for (int i = 0; i < count; i++)
                {
                    int length = LZ4Codec.Encode(_accepted[i % _accepted.Length], target, LZ4Level.L00_FAST);
                    dict[(Oid(i).Word0, Index(i))] = target.AsSpan(0, length).ToArray();
                }
            });
            if (rep == 0) continue; // warm-up (and the first pass over the steady pool's handles)
            encode.Add(e);
            put.Add(p);
            putFirstFill.Add(f);
            putEvicting.Add(ev);
            encodeCopyCold.Add(ec);
            dictPut.Add(d);
        }
        _report.Add("lz4_encode_pages_per_s", Report.Median(encode), "bare K4os LZ4 encode, one thread");
        _report.Add("eph_put_pages_per_s", Report.Median(put), "store put, private ephemeral pool, one thread, steady state under budget");
        _report.Add("eph_put_vs_lz4_encode", Report.Median(put) / Report.Median(encode));
        _report.Add("eph_put_first_fill_pages_per_s", Report.Median(putFirstFill), "fresh handles into an empty pool: new slabs, first touch of their memory");
        _report.Add("eph_put_first_fill_vs_lz4_encode", Report.Median(putFirstFill) / Report.Median(encode));
        _report.Add("eph_put_at_budget_pages_per_s", Report.Median(putEvicting), "fresh handles into a full 32 MiB store: every put evicts");
        _report.Add("eph_put_at_budget_vs_lz4_encode", Report.Median(putEvicting) / Report.Median(encode));
        _report.Add("lz4_encode_copy_cold_pages_per_s", Report.Median(encodeCopyCold), "bare encode, then its bytes copied to a scattered place in 32 MiB (out of L1/L2): the least a stored page costs");
        _report.Add("eph_put_at_budget_vs_encode_copy_cold", Report.Median(putEvicting) / Report.Median(encodeCopyCold), "the at-budget put's own cost besides that (translation, allocation, eviction)");
        _report.Add("dict_put_pages_per_s", Report.Median(dictPut), "baseline: encode + byte[] + ConcurrentDictionary");
    }

    private void GetVersusDecode()
    {
        var page = new byte[PageSize];
        int count = _accepted.Length * _passes;
        using var store = OpenStore(4L << 30);
        var client = store.GetClient(1);
        // Gets that hit and keep the page: a shared ephemeral pool (private pools' gets are exclusive).
        int shared = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        var dict = new ConcurrentDictionary<(ulong, uint), byte[]>();
        for (int i = 0; i < _accepted.Length; i++)
        {
            client.Put(shared, Oid(i), Index(i), _accepted[i]);
            dict[(Oid(i).Word0, Index(i))] = _compressed[i];
        }

        var decode = new List<double>();
        var decode2 = new List<double>();
        var get = new List<double>();
        var get2 = new List<double>();
        var dictGet = new List<double>();
        var exclusive = new List<double>();
        for (int rep = 0; rep < Repeats + 1; rep++)
        {
            double dc = Rate(count, () =>
            {
                for (int i = 0; i < count; i++) LZ4Codec.Decode(_compressed[i % _compressed.Length], page);
            });
            double dc2 = Rate(2L * count, () =>
            {
                // Same access pattern as the store's two threads: one forward, one backward.
                var threads = new[] { false, true }.Select(reverse => new Thread(() =>
                {
                    var buffer = new byte[PageSize];
                    int n = _compressed.Length;
                    for (int i = 0; i < count; i++) LZ4Codec.Decode(_compressed[reverse ? n - 1 - i % n : i % n], buffer);
                })).ToArray();
                foreach (var t in threads) t.Start();
                foreach (var t in threads) t.Join();
            });
            double g = Rate(count, () => GetLoop(client, shared, count, reverse: false));
            double g2 = Rate(2L * count, () =>
            {
                var threads = new[] { false, true }.Select(reverse => new Thread(() => GetLoop(client, shared, count, reverse))).ToArray();
                foreach (var t in threads) t.Start();
                foreach (var t in threads) t.Join();
            });
            double dg = Rate(count, () =>
            {
                for (int i = 0; i < count; i++)
                {
                    int k = i % _accepted.Length;
                    LZ4Codec.Decode(dict[(Oid(k).Word0, Index(k))], page);
                }
            });
            // Exclusive gets (private pool: each hit removes the page): fill untimed, then drain.
            int priv = client.CreatePool(PoolOptions.Ephemeral);
            for (int i = 0; i < _accepted.Length; i++) client.Put(priv, Oid(i), Index(i), _accepted[i]);
            double ex = Rate(_accepted.Length, () =>
            {
                for (int i = 0; i < _accepted.Length; i++)
                    if (client.Get(priv, Oid(i), Index(i), page) != GetStatus.Hit) throw new InvalidOperationException("Exclusive get missed.");
            });
            client.DestroyPool(priv);
            if (rep == 0) continue;
            decode.Add(dc);
            decode2.Add(dc2);
            get.Add(g);
            get2.Add(g2);
            dictGet.Add(dg);
            exclusive.Add(ex);
        }
        _report.Add("lz4_decode_pages_per_s", Report.Median(decode), "bare K4os LZ4 decode, one thread");
        _report.Add("eph_get_pages_per_s", Report.Median(get), "store get hits, shared ephemeral pool, one thread");
        _report.Add("eph_get_vs_lz4_decode", Report.Median(get) / Report.Median(decode));
        _report.Add("eph_get_pages_per_s_2threads", Report.Median(get2), "two threads");
        _report.Add("eph_get_2threads_vs_1thread", Report.Median(get2) / Report.Median(get));
        _report.Add("lz4_decode_pages_per_s_2threads", Report.Median(decode2), "bare decode, two threads: what this machine's two cores allow");
        _report.Add("lz4_decode_2threads_vs_1thread", Report.Median(decode2) / Report.Median(decode));
        _report.Add("eph_get_scaling_vs_lz4_scaling", Report.Median(get2) / Report.Median(get) / (Report.Median(decode2) / Report.Median(decode)),
            "the store's 2-thread gain over the bare codec's on the same machine (1.0 = scales as the codec does)");
        _report.Add("eph_get_exclusive_pages_per_s", Report.Median(exclusive), "private pool: each hit removes the page");
        _report.Add("dict_get_pages_per_s", Report.Median(dictGet), "baseline: ConcurrentDictionary lookup + decode");
    }

    private void GetLoop(TmemClient client, int pool, int count, bool reverse)
    {
        var page = new byte[PageSize];
        int n = _accepted.Length;
        for (int i = 0; i < count; i++)
        {
            int k = reverse ? n - 1 - i % n : i % n;
            if (client.Get(pool, Oid(k), Index(k), page) != GetStatus.Hit)
                throw new InvalidOperationException("A benchmark get missed.");
        }
    }

    private void ZeroPuts()
    {
        const int count = 500_000;
        var zero = new byte[PageSize];
        using var store = OpenStore(1L << 30, maxPages: 2 * count);
        var client = store.GetClient(1);
        var rates = new List<double>();
        for (int rep = 0; rep < Repeats + 1; rep++)
        {
            int pool = client.CreatePool(PoolOptions.Ephemeral);
            double r = Rate(count, () =>
            {
                for (int i = 0; i < count; i++)
                    if (client.Put(pool, Oid(i), Index(i), zero) != PutStatus.Stored)
                        throw new InvalidOperationException("A zero-page put was refused.");
            });
            client.DestroyPool(pool);
            if (rep > 0) rates.Add(r);
        }
        _report.Add("zero_put_pages_per_s", Report.Median(rates), "all-zero pages, fresh handles, one thread");
    }

    /// <summary>
    /// Churn over 4x the budget: puts (to a key space 4x what fits) and flushes, first with the
    /// better-compressing half of the corpus, then with the worse half, so that the mix of size
    /// classes shifts under the allocator.
    /// </summary>
    private void Fragmentation()
    {
        const long budget = 64L << 20;
        var pages = _corpus.Pages;
        var sizes = pages.Select(p => LZ4Codec.Encode(p, new byte[LZ4Codec.MaximumOutputSize(PageSize)], LZ4Level.L00_FAST)).ToArray();
        var order = Enumerable.Range(0, pages.Length).OrderBy(i => sizes[i]).ToArray();
        var halves = new[] { order[..(order.Length / 2)], order[(order.Length / 2)..] };
        double meanSlot = sizes.Average(s => (double)SlabAllocator.SlotSizeFor(Math.Min(s, PageSize)));
        int keys = (int)(4 * budget / meanSlot);

        using var store = OpenStore(budget);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        var random = new Random(42);
        long putBytes = 0;
        foreach (var half in halves)
        {
            long phaseEnd = putBytes + 2 * budget;
            while (putBytes < phaseEnd)
            {
                int key = random.Next(keys);
                if (random.Next(5) == 0)
                {
                    client.FlushPage(pool, Oid(key), Index(key));
                    continue;
                }
                int p = half[random.Next(half.Length)];
                if (client.Put(pool, Oid(key), Index(key), pages[p]) == PutStatus.Stored)
                    putBytes += SlabAllocator.SlotSizeFor(sizes[p]);
            }
        }
        var stats = store.GetStats();
        long zbytes = stats.EphZbytes + stats.PersZbytes;
        _report.Add("ram_bytes_per_compressed_byte", (double)stats.RamSlabBytes / zbytes,
            $"slab bytes {stats.RamSlabBytes:N0} / compressed {zbytes:N0} after {putBytes / (double)budget:0.0}x budget of churn");
        _report.Add("ram_slot_bytes_per_compressed_byte", (double)stats.RamSlotBytes / zbytes, "size-class rounding alone");
        _report.Add("churn_evicted_pages", stats.EvictedEphPages);
        _report.Add("churn_slab_compacted_pages", stats.SlabCompactedPages);
    }

    private void Metadata()
    {
        _report.Add("metadata_bytes_per_page", MetadataPerPage(i => (Oid(i), Index(i))), $"1,000,000 stored pages, {PagesPerObject} pages per object");
        _report.Add("metadata_bytes_per_page_1page_objects", MetadataPerPage(i => (new ObjectId((ulong)i), 0u)), "1,000,000 stored pages, one page per object");
    }

    /// <summary>(Managed heap growth + slab bytes - compressed payload) / stored pages.</summary>
    private double MetadataPerPage(Func<int, (ObjectId, uint)> handle)
    {
        const int target = 1_000_000;
        var pages = _corpus.Pages;
        long before = GC.GetTotalMemory(forceFullCollection: true);
        using var store = OpenStore(8L << 30, maxPages: 2 * target);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral);
        int stored = 0;
        for (int i = 0; stored < target; i++)
        {
            var (oid, index) = handle(i);
            if (client.Put(pool, oid, index, pages[i % pages.Length]) == PutStatus.Stored) stored++;
        }
        long after = GC.GetTotalMemory(forceFullCollection: true);
        var stats = store.GetStats();
        GC.KeepAlive(store);
        return (after - before + stats.RamSlabBytes - stats.EphZbytes) / (double)stats.EphPages;
    }

    /// <summary>
    /// A Zipf(0.99) trace over a working set of distinct handles, replayed as get-then-put-on-miss
    /// against a shared ephemeral pool with a budget of 25% of the working set's slot bytes, and
    /// against an exact LRU of the same byte capacity.
    /// </summary>
    private void HitRatio()
    {
        const double skew = 0.99;
        int workingSet = Math.Max(16384, _accepted.Length);
        var slot = Enumerable.Range(0, workingSet).Select(k => SlabAllocator.SlotSizeFor(_compressed[k % _compressed.Length].Length)).ToArray();
        long budget = Math.Max(1L << 16, slot.Sum(s => (long)s) / 4);
        var zipf = new Zipf(workingSet, skew, seed: 7);
        var shuffle = Enumerable.Range(0, workingSet).OrderBy(_ => Random.Shared.Next()).ToArray(); // ranks -> keys, so hot keys are scattered
        int accesses = 20 * workingSet;
        var trace = new int[accesses];
        for (int i = 0; i < accesses; i++) trace[i] = shuffle[zipf.Next()];

        using var store = OpenStore(budget, maxPages: workingSet * 2L);
        var client = store.GetClient(1);
        int pool = client.CreatePool(PoolOptions.Ephemeral with { SharedUuid = Guid.NewGuid() });
        var lru = new ExactLru(budget);
        var page = new byte[PageSize];
        long hits = 0, lruHits = 0, counted = 0;
        for (int i = 0; i < accesses; i++)
        {
            int key = trace[i];
            bool hit = client.Get(pool, Oid(key), Index(key), page) == GetStatus.Hit;
            if (!hit) client.Put(pool, Oid(key), Index(key), _accepted[key % _accepted.Length]);
            bool lruHit = lru.Access(key, slot[key]);
            if (i < workingSet) continue; // warm-up
            counted++;
            if (hit) hits++;
            if (lruHit) lruHits++;
        }
        double ratio = (double)hits / counted, exact = (double)lruHits / counted;
        _report.Add("lru_hit_ratio", ratio, $"Zipf {skew}, {workingSet:N0} handles, budget 25% of their slot bytes");
        _report.Add("exact_lru_hit_ratio", exact);
        _report.Add("lru_hit_ratio_vs_exact", ratio / exact);
    }

    private static double Rate(long operations, Action run)
    {
        var sw = Stopwatch.StartNew();
        run();
        return operations / sw.Elapsed.TotalSeconds;
    }
}
