//! `index-choice`: measures the candidate designs for the static key -> slot index
//! side by side, in one run, on the same keys and the same queries.
//!
//! (a) the engine's linear-probing index (`engine::index`), built from sorted keys;
//! (b) ptr_hash (`DefaultPtrHash`, a minimal perfect hash) + a u32 slot array indexed by the MPH value;
//! (c) boomphf (`Mphf::new(1.7, ..)`) + a u32 slot array;
//! (d) sorted u64 keys + a radix directory on the top k bits + a u32 slot array in key order.
//!
//! Every structure answers "key -> candidate slot". The slot array of (b)-(d) is needed because
//! rows are laid out hottest-first, not in MPH or key order. Verifying a candidate against the
//! stored n-gram is a separate cache miss needed by every design and is not timed here; what
//! differs is whether the index itself rejects an absent key ((a), (d), partly (c)) or hands
//! back an arbitrary slot that only that verification can reject ((b), most of (c)).
//!
//! Usage: `cargo run --release -p scone-bench --bin index-choice -- [--n 10000000]`

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Parser;
use engine::index::{IndexView, IndexWriter};
use ptr_hash::{DefaultPtrHash, PtrHashParams};
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(
    about = "Compare static index designs: linear probing vs ptr_hash vs boomphf vs sorted keys + radix directory"
)]
struct Args {
    /// Number of distinct random u64 keys.
    #[arg(long, default_value_t = 10_000_000)]
    n: usize,
    /// Lookups per timed repetition (present and absent each).
    #[arg(long, default_value_t = 4_000_000)]
    lookups: usize,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// RNG seed for keys, slots and queries.
    #[arg(long, default_value_t = 0x5c0e)]
    seed: u64,
}

/// Prefetch distance (queries ahead) per pipeline stage.
const AHEAD: usize = 16;

use engine::prefetch::prefetch_read as prefetch;

/// A `Write` sink that collects the index writer's little-endian u64 entries.
struct U64Sink {
    entries: Vec<u64>,
    pending: [u8; 8],
    pending_len: usize,
}

impl U64Sink {
    fn with_capacity(n: usize) -> Self {
        U64Sink { entries: Vec::with_capacity(n), pending: [0; 8], pending_len: 0 }
    }
}

impl Write for U64Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            if self.pending_len == 8 {
                self.entries.push(u64::from_le_bytes(self.pending));
                self.pending_len = 0;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sorted keys + radix directory on the top `bits` bits + slots in key order.
struct SortedRadix {
    keys: Vec<u64>,
    slots: Vec<u32>,
    /// `dir[b]..dir[b + 1]` is the range of keys whose top bits are `b`.
    dir: Vec<u32>,
    shift: u32,
}

impl SortedRadix {
    fn build(sorted: &[(u64, u32)]) -> Self {
        let n = sorted.len().max(1);
        let bits = (n.ilog2().saturating_sub(2)).clamp(1, 32);
        let shift = 64 - bits;
        let mut dir = vec![0u32; (1usize << bits) + 1];
        for &(k, _) in sorted {
            dir[(k >> shift) as usize + 1] += 1;
        }
        for b in 1..dir.len() {
            dir[b] += dir[b - 1];
        }
        SortedRadix {
            keys: sorted.iter().map(|p| p.0).collect(),
            slots: sorted.iter().map(|p| p.1).collect(),
            dir,
            shift,
        }
    }

    fn bytes(&self) -> usize {
        self.keys.len() * 8 + self.slots.len() * 4 + self.dir.len() * 4
    }

    #[inline]
    fn bucket(&self, key: u64) -> usize {
        (key >> self.shift) as usize
    }

    /// Position of `key` in `keys[lo..hi]` (linear scan, buckets hold ~4-8 keys).
    #[inline]
    fn search(&self, key: u64, lo: u32, hi: u32) -> Option<usize> {
        for i in lo as usize..hi as usize {
            let k = self.keys[i];
            if k >= key {
                return (k == key).then_some(i);
            }
        }
        None
    }

    #[inline]
    fn lookup(&self, key: u64) -> Option<u32> {
        let b = self.bucket(key);
        self.search(key, self.dir[b], self.dir[b + 1]).map(|i| self.slots[i])
    }
}

/// Median wall time of `reps` runs of `f`, in seconds.
fn median_secs(reps: usize, mut f: impl FnMut() -> u64) -> f64 {
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Folds an optional slot into a checksum so the lookups cannot be optimised away.
#[inline(always)]
fn fold(acc: u64, slot: Option<u32>) -> u64 {
    acc.wrapping_add(slot.map_or(0x9e37_79b9, u64::from))
}

struct Row {
    name: &'static str,
    build_s: f64,
    bytes_per_key: f64,
    present_ns: f64,
    absent_ns: f64,
    batched: Option<(f64, f64)>,
    batched_how: &'static str,
    absent_rejected: String,
}

fn ns(secs: f64, lookups: usize) -> f64 {
    secs * 1e9 / lookups as f64
}

fn fmt_ns(x: f64) -> String {
    format!("{x:.1} ns ({:.1} M/s)", 1e3 / x)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let l3 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size")
        .map_or("?".to_string(), |s| s.trim().to_string());
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map_or("?".to_string(), |s| s.trim().to_string());
    format!("{model}, nproc {nproc}, L3 {l3}, transparent hugepages: {thp}")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.n;
    ensure!(n >= 16 && n < u32::MAX as usize, "--n must be in 16..2^32-1");
    let m = args.lookups.max(1);
    let reps = args.reps.max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);

    // ---- data: n distinct random keys; slots are a random permutation (rows hottest-first).
    eprintln!("generating {n} keys...");
    let mut sorted_keys: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    loop {
        sorted_keys.sort_unstable();
        sorted_keys.dedup();
        if sorted_keys.len() == n {
            break;
        }
        let missing = n - sorted_keys.len();
        sorted_keys.extend((0..missing).map(|_| rng.gen::<u64>()));
    }
    // A shuffled copy in "arrival" order (the MPH builders do not need sorted input).
    let mut keys = sorted_keys.clone();
    for i in (1..n).rev() {
        keys.swap(i, rng.gen_range(0..=i));
    }
    let mut slot_of: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        slot_of.swap(i, rng.gen_range(0..=i));
    }
    // slot_of[i] is the slot of keys[i].
    let picks: Vec<usize> = (0..m).map(|_| rng.gen_range(0..n)).collect();
    let present: Vec<u64> = picks.iter().map(|&i| keys[i]).collect();
    let present_slot: Vec<u32> = picks.iter().map(|&i| slot_of[i]).collect();
    drop(picks);
    let mut absent: Vec<u64> = Vec::with_capacity(m);
    while absent.len() < m {
        let k: u64 = rng.gen();
        if sorted_keys.binary_search(&k).is_err() {
            absent.push(k);
        }
    }
    drop(sorted_keys);

    let t = Instant::now();
    let mut pairs: Vec<(u64, u32)> = keys.iter().copied().zip(slot_of.iter().copied()).collect();
    pairs.sort_unstable();
    let sort_s = t.elapsed().as_secs_f64();

    let mut rows: Vec<Row> = Vec::new();

    // ---- (a) engine linear probing
    {
        eprintln!("(a) engine linear probing...");
        let t = Instant::now();
        let mut w = IndexWriter::new(n as u64, n as u64, 64);
        let mut sink = U64Sink::with_capacity(n + n / 5);
        for &(k, s) in &pairs {
            w.push(k, s, &mut sink)?;
        }
        let params = w.finish(&mut sink)?;
        let entries = sink.entries;
        let build_s = t.elapsed().as_secs_f64();
        ensure!(entries.len() as u64 == params.len);
        let ix = IndexView::new(&entries, &params);

        // Keys sharing their top 64 - slot_bits bits share a fingerprint: the first candidate may
        // be the other key's slot, which verification rejects before the probe moves on.
        let mut shared_fp = 0usize;
        for (&k, &s) in present.iter().zip(&present_slot) {
            ensure!(ix.probe(k, |c| c == s) == Some(s), "(a) wrong slot");
            shared_fp += usize::from(ix.first_candidate(k) != Some(s));
        }
        let false_cands = absent.iter().filter(|&&k| ix.first_candidate(k).is_some()).count();

        let single = |qs: &[u64]| median_secs(reps, || qs.iter().fold(0, |acc, &k| fold(acc, ix.first_candidate(k))));
        let batched = |qs: &[u64]| {
            median_secs(reps, || {
                let mut acc = 0u64;
                for i in 0..qs.len() {
                    if let Some(&ahead) = qs.get(i + AHEAD) {
                        ix.prefetch(ahead);
                    }
                    acc = fold(acc, ix.first_candidate(qs[i]));
                }
                acc
            })
        };
        rows.push(Row {
            name: "(a) engine linear probing (load 0.85)",
            build_s,
            bytes_per_key: (entries.len() * 8) as f64 / n as f64,
            present_ns: ns(single(&present), m),
            absent_ns: ns(single(&absent), m),
            batched: Some((ns(batched(&present), m), ns(batched(&absent), m))),
            batched_how: "IndexView::prefetch 16 keys ahead",
            absent_rejected: format!(
                "{:.4}% ({}-bit fingerprint; {false_cands} absent / {shared_fp} present lookups met a foreign candidate first)",
                100.0 - 100.0 * false_cands as f64 / m as f64,
                64 - params.slot_bits
            ),
        });
    }

    // ---- (b) ptr_hash + u32 slot array
    {
        eprintln!("(b) ptr_hash...");
        let t = Instant::now();
        let mph = <DefaultPtrHash>::new(&keys, PtrHashParams::default());
        let mut slots = vec![0u32; n];
        for (k, &s) in keys.iter().zip(&slot_of) {
            slots[mph.index(k)] = s;
        }
        let build_s = t.elapsed().as_secs_f64();
        let (pilot_bits, remap_bits) = mph.bits_per_element();
        let mph_bits = pilot_bits + remap_bits;

        for (k, &s) in present.iter().zip(&present_slot) {
            ensure!(slots[mph.index(k)] == s, "(b) wrong slot");
        }

        let single =
            |qs: &[u64]| median_secs(reps, || qs.iter().fold(0, |acc, k| fold(acc, Some(slots[mph.index(k)]))));
        let batched = |qs: &[u64]| {
            median_secs(reps, || {
                // index_stream prefetches the pilot 32 keys ahead; we add a second stage that
                // prefetches the slot-array entry and reads it AHEAD keys later.
                let mut ring = [0usize; AHEAD];
                let mut i = 0usize;
                let mut acc = 0u64;
                mph.index_stream::<32, _>(qs.iter()).for_each(|idx| {
                    prefetch(&slots[idx]);
                    let r = i % AHEAD;
                    if i >= AHEAD {
                        acc = fold(acc, Some(slots[ring[r]]));
                    }
                    ring[r] = idx;
                    i += 1;
                });
                for j in i.saturating_sub(AHEAD)..i {
                    acc = fold(acc, Some(slots[ring[j % AHEAD]]));
                }
                acc
            })
        };
        rows.push(Row {
            name: "(b) ptr_hash DefaultPtrHash + u32 slots",
            build_s,
            bytes_per_key: mph_bits / 8.0 + 4.0,
            present_ns: ns(single(&present), m),
            absent_ns: ns(single(&absent), m),
            batched: Some((ns(batched(&present), m), ns(batched(&absent), m))),
            batched_how: "index_stream::<32> (pilot prefetch) + slot prefetch 16 ahead",
            absent_rejected: format!(
                "0% (MPH: {mph_bits:.2} bits/key; every absent key gets a slot, verify must reject)"
            ),
        });
    }

    // ---- (c) boomphf + u32 slot array
    {
        eprintln!("(c) boomphf...");
        let t = Instant::now();
        let mph = boomphf::Mphf::new(1.7, &keys);
        let mut slots = vec![0u32; n];
        for (k, &s) in keys.iter().zip(&slot_of) {
            slots[mph.hash(k) as usize] = s;
        }
        let build_s = t.elapsed().as_secs_f64();
        let mph_bytes = bincode::serialized_size(&mph)? as f64;

        for (k, &s) in present.iter().zip(&present_slot) {
            ensure!(mph.try_hash(k).map(|h| slots[h as usize]) == Some(s), "(c) wrong slot");
        }
        let rejected = absent.iter().filter(|k| mph.try_hash(*k).is_none()).count();

        let single = |qs: &[u64]| {
            median_secs(reps, || qs.iter().fold(0, |acc, k| fold(acc, mph.try_hash(k).map(|h| slots[h as usize]))))
        };
        rows.push(Row {
            name: "(c) boomphf gamma 1.7 + u32 slots",
            build_s,
            bytes_per_key: mph_bytes / n as f64 + 4.0,
            present_ns: ns(single(&present), m),
            absent_ns: ns(single(&absent), m),
            batched: None,
            batched_how: "N/A (level hashing is private; no prefetch API)",
            absent_rejected: format!(
                "{:.1}% (MPH: {:.2} bits/key; the rest get a slot, verify must reject)",
                100.0 * rejected as f64 / m as f64,
                mph_bytes * 8.0 / n as f64
            ),
        });
    }

    // ---- (d) sorted keys + radix directory + u32 slot array
    {
        eprintln!("(d) sorted keys + radix directory...");
        let t = Instant::now();
        let sr = SortedRadix::build(&pairs);
        let build_s = t.elapsed().as_secs_f64();

        for (&k, &s) in present.iter().zip(&present_slot) {
            ensure!(sr.lookup(k) == Some(s), "(d) wrong slot");
        }
        for &k in &absent {
            ensure!(sr.lookup(k).is_none(), "(d) absent key found");
        }

        let single = |qs: &[u64]| median_secs(reps, || qs.iter().fold(0, |acc, &k| fold(acc, sr.lookup(k))));
        // Four-stage software pipeline, AHEAD queries per stage:
        // prefetch dir[b] -> read dir, prefetch keys[lo] -> search, prefetch slots[pos] -> read slot.
        let batched = |qs: &[u64]| {
            median_secs(reps, || {
                const RING: usize = 4 * AHEAD;
                let mut lo = [0u32; RING];
                let mut hi = [0u32; RING];
                let mut pos = [usize::MAX; RING];
                let mut acc = 0u64;
                let len = qs.len();
                for t in 0..len + 3 * AHEAD {
                    if let Some(&k) = qs.get(t) {
                        prefetch(&sr.dir[sr.bucket(k)]);
                    }
                    if let Some(j) = t.checked_sub(AHEAD).filter(|&j| j < len) {
                        let b = sr.bucket(qs[j]);
                        let (l, h) = (sr.dir[b], sr.dir[b + 1]);
                        lo[j % RING] = l;
                        hi[j % RING] = h;
                        if let Some(k) = sr.keys.get(l as usize) {
                            prefetch(k);
                        }
                    }
                    if let Some(j) = t.checked_sub(2 * AHEAD).filter(|&j| j < len) {
                        let r = j % RING;
                        let p = sr.search(qs[j], lo[r], hi[r]);
                        if let Some(p) = p {
                            prefetch(&sr.slots[p]);
                        }
                        pos[r] = p.unwrap_or(usize::MAX);
                    }
                    if let Some(j) = t.checked_sub(3 * AHEAD).filter(|&j| j < len) {
                        let p = pos[j % RING];
                        acc = fold(acc, sr.slots.get(p).copied());
                    }
                }
                acc
            })
        };
        rows.push(Row {
            name: "(d) sorted u64 keys + radix dir + u32 slots",
            build_s,
            bytes_per_key: sr.bytes() as f64 / n as f64,
            present_ns: ns(single(&present), m),
            absent_ns: ns(single(&absent), m),
            batched: Some((ns(batched(&present), m), ns(batched(&absent), m))),
            batched_how: "4-stage pipeline, 16 ahead per stage (dir, keys, slots)",
            absent_rejected: format!("100% (exact keys; directory 2^{} buckets)", 64 - sr.shift),
        });
    }

    // ---- report
    println!("## index-choice: static key -> slot index, n = {n}");
    println!();
    println!("- machine: {}", machine());
    println!("- date: {} (UTC)", scone_bench::report::utc_date());
    println!(
        "- keys: {n} distinct uniform random u64 (seed {:#x}); slots a random permutation of 0..n (rows hottest-first)",
        args.seed
    );
    println!(
        "- lookups: {m} present (uniform over keys, random order) and {m} absent random keys, single thread, median of {reps} repetitions; ns per lookup (M lookups/s)"
    );
    println!("- build times exclude sorting the (key, slot) pairs, which (a) and (d) need: {sort_s:.2} s here");
    println!();
    println!("| structure | build (s) | bytes/key | present | absent | batched present | batched absent | batching | absent keys rejected by the index |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|");
    for r in &rows {
        let (bp, ba) = r.batched.map_or(("N/A".to_string(), "N/A".to_string()), |(p, a)| (fmt_ns(p), fmt_ns(a)));
        println!(
            "| {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.build_s,
            r.bytes_per_key,
            fmt_ns(r.present_ns),
            fmt_ns(r.absent_ns),
            bp,
            ba,
            r.batched_how,
            r.absent_rejected
        );
    }
    println!();
    println!("Notes:");
    println!("- A lookup here ends with a candidate slot (or none). Verifying the candidate against the stored n-gram is one more cache miss that every design pays for hits; it is not timed.");
    println!("- An MPH maps an absent key to some slot, so its absent-key cost equals its present-key cost, and only the verification step (that extra miss) can reject it. (a) rejects absent keys in the index by fingerprint, (d) by exact key; boomphf rejects only keys that fall on no level's set bit.");
    println!("- bytes/key: (a) entries * 8 / n; (b) ptr_hash pilots + remap (bits_per_element) / 8 + 4; (c) bincode-serialized Mphf / n + 4; (d) (8 n + 4 n + 4 * directory entries) / n.");
    Ok(())
}
