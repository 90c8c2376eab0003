//! `gpu-pipeline`: throughput and latency of getting matched rows onto the GPU.
//!
//! Builds synthetic f16 tables (bigram f-grams, rows in DRAM: the file is in
//! the page cache, mapped, and every row is touched once before measuring)
//! at d = 1024 and d = 2048, then for batches of
//! 1024, 4096 and 16384 positions reports, in one run:
//!
//! - `host`: match + gather into pinned memory only (no copy): the CPU side;
//! - `ceiling`: raw pinned HtoD copies of the same bytes per batch (GB/s from
//!   back-to-back copies timed with CUDA events; latency of one synchronous
//!   copy);
//! - `serial`: match, gather, copy, wait, one batch after the other;
//! - `pipelined`: `LookupPipeline::submit` back to back (ring of 3, cached
//!   pinned memory), batch i+1 gathered while batch i is copied;
//! - `pipelined-wc`: the same with write-combined staging memory;
//! - `zc-serial` / `zc-pipelined`: `GatherMode::ZeroCopy` (the table opened a
//!   second time with resident rows, registered in place with
//!   `cuMemHostRegister`; only slots and mask are copied, a GPU kernel reads
//!   the rows over the bus), submit-and-wait and back to back;
//! - `pipelined-dd` / `zc-pipelined-dd`: the same two pipelined modes with
//!   `PipelineConfig::dedup` on (the library default; the modes above keep
//!   it off so that they stay comparable with earlier runs);
//! - a Zipf(1.1) block per table, after the uniform rows: slots (f-gram
//!   ranks; slot r = rank r, the table being hottest-first) drawn from
//!   Zipf(1.1) over all of the table's rows for every position, no misses,
//!   submitted with `LookupPipeline::submit_slots` (no matching: the
//!   transfer alone), pipelined back to back, for CPU gather (`zipf-cpu*`)
//!   and zero-copy (`zipf-zc*`), dedup off / on (`-dd`) and GPU hot cache
//!   0 / `--cache-pct` % of the rows (suffix `-c`). Each row reports
//!   delivered rows/s, then: delivered rows/s over the copy ceiling in rows/s
//!   (`x ceiling`: the pinned-copy rate of whole rows plus mask, as in the
//!   uniform rows), bus bytes actually sent per batch (rows + indices, from
//!   `BatchHandle::bus_bytes`), rows sent per batch, the batches' unique
//!   fraction (distinct slots / positions) and the share of positions served
//!   from the GPU cache.
//!
//! - with `--nvme` (or `--nvme-only`), an NVMe block per table, last: the
//!   table's rows read from its file in `--dir` with `O_DIRECT` (so the page
//!   cache does not serve them) through the pipeline's row source
//!   `PipelineConfig::read_mode = Some(ReadMode::Direct { Auto,
//!   --queue-depth })`, straight into the pinned staging buffer (no bounce
//!   copy for the 4 KiB rows of d = 2048; the 2 KiB rows of d = 1024 go
//!   through the reader's bounce buffer), then copied and scattered. Slots
//!   uniform over the rows (`nvme-uni*`) and Zipf(1.1) (`nvme-zipf*`),
//!   `submit_slots`, dedup on, GPU cache 0 and `--cache-pct` % (suffix
//!   `-c`), back to back. Before each pair, `nvme-raw-*`: the ceiling, the
//!   engine's `RowReader` alone (same mode, same batches, `read_rows` into a
//!   page-aligned buffer, no GPU). Notes give the rows read from storage
//!   per second and their GB/s, the bounce bytes per batch, and the
//!   delivered rows/s over the raw reader's (`x reader`: near 1 means the
//!   reader is the bound). At least `--nvme-min-batches` (default 5)
//!   batches per row.
//!
//! Usage: `gpu-pipeline [--rows N] [--seconds S] [--dir DIR] [--host-only]
//! [--resident-rows] [--zipf-only] [--cache-pct P] [--nvme | --nvme-only]
//! [--queue-depth QD] [--nvme-min-batches N] [--f32-rows]`.
//! `--rows N` (default 500000): rows of the d = 1024 table; the d = 2048 table
//! gets N / 2 (both 1.0 GB of f16 rows by default). `--seconds` (default 0.5):
//! time per mode and configuration. `--resident-rows`: open the tables with
//! `OpenOptions::resident_rows` (rows copied into anonymous memory with
//! transparent huge pages: fewer TLB misses in the gather). `--host-only`: no
//! GPU needed (only the `host` rows). `--zipf-only`: of the uniform modes only
//! the ceiling, then the Zipf block. `--cache-pct P` (default 10): GPU cache
//! size of the cached Zipf modes in % of the rows. `--nvme-only`: only the
//! NVMe block (with its raw-reader ceiling). `--queue-depth` (default 128):
//! io_uring queue depth (pread threads: at most 64) of the NVMe reads.
//! Without a GPU the binary says so and exits 0 (`--host-only --nvme` still
//! runs the raw-reader rows). `--f32-rows`: two more rows per uniform batch
//! size, `zc-pipelined-f32` and `zc-pipelined-dd-f32`: the zero-copy modes
//! with `PipelineConfig::out_dtype = Some(F32)` (f16 rows cross the bus, the
//! `convert_rows` kernel widens them on the device; GB/s counts the
//! delivered f32 bytes, twice what crossed the bus).

use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use engine::read::{AlignedBuf, BackendKind, ReadMode, ReadStats, RowReader};
use engine::{gather, BuildConfig, Dtype, GatherOptions, OpenOptions, SuffixMatcher, Table, TableBuilder, MISS_SLOT};
use gpu_bridge::{probe_bandwidth, BridgeError, GatherMode, Gpu, LookupPipeline, PipelineConfig};

/// Vocabulary: f-gram (a, b) is row a * VOCAB + b.
const VOCAB: u32 = 1024;
const BATCHES: [usize; 3] = [1024, 4096, 16384];
/// Zipf exponent of the skewed batches.
const ZIPF_S: f64 = 1.1;
/// Distinct token batches cycled per configuration.
const POOL: usize = 16;
const MIN_BATCHES: usize = 50;

struct Args {
    rows: usize,
    seconds: f64,
    dir: Option<String>,
    host_only: bool,
    resident_rows: bool,
    zipf_only: bool,
    cache_pct: usize,
    nvme: bool,
    nvme_only: bool,
    queue_depth: u32,
    nvme_min_batches: usize,
    f32_rows: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rows: 500_000,
        seconds: 0.5,
        dir: None,
        host_only: false,
        resident_rows: false,
        zipf_only: false,
        cache_pct: 10,
        nvme: false,
        nvme_only: false,
        queue_depth: 128,
        nvme_min_batches: 5,
        f32_rows: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => a.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--dir" => a.dir = Some(value()?),
            "--host-only" => a.host_only = true,
            "--resident-rows" => a.resident_rows = true,
            "--zipf-only" => a.zipf_only = true,
            "--cache-pct" => a.cache_pct = value()?.parse().map_err(|e| format!("--cache-pct: {e}"))?,
            "--nvme" => a.nvme = true,
            "--nvme-only" => (a.nvme, a.nvme_only) = (true, true),
            "--f32-rows" => a.f32_rows = true,
            "--queue-depth" => a.queue_depth = value()?.parse().map_err(|e| format!("--queue-depth: {e}"))?,
            "--nvme-min-batches" => {
                a.nvme_min_batches = value()?.parse().map_err(|e| format!("--nvme-min-batches: {e}"))?
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.queue_depth == 0 || a.nvme_min_batches == 0 {
        return Err("--queue-depth and --nvme-min-batches must be at least 1".into());
    }
    if a.cache_pct > 100 {
        return Err("--cache-pct must be at most 100".into());
    }
    if a.rows < 2 * VOCAB as usize || a.rows > (VOCAB as usize) * (VOCAB as usize) {
        return Err(format!("--rows must be in {}..={}", 2 * VOCAB, VOCAB * VOCAB));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: gpu-pipeline [--rows N] [--seconds S] [--dir DIR] [--host-only] [--resident-rows] \
                 [--zipf-only] [--cache-pct P] [--nvme | --nvme-only] [--queue-depth QD] [--nvme-min-batches N] [--f32-rows]"
            );
            return ExitCode::from(2);
        }
    };
    let gpu = if args.host_only {
        None
    } else {
        match Gpu::open(0) {
            Ok(g) => Some(g),
            Err(e @ (BridgeError::NoDriver(_) | BridgeError::NoDevice { .. })) => {
                println!(
                    "no GPU available: {e}\n(nothing to measure; this is not an error; --host-only runs the CPU side)"
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match run(&args, gpu.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rows of the synthetic table: f-gram (r / VOCAB, r % VOCAB) at slot r.
fn build(path: &Path, dim: usize, rows: usize, resident_rows: bool) -> Result<Table, String> {
    let mut cfg = BuildConfig::new(dim as u32, Dtype::F16, 2, VOCAB);
    cfg.overwrite = true;
    let mut b = TableBuilder::create(path, cfg).map_err(|e| e.to_string())?;
    let mut row = vec![0f32; dim];
    for r in 0..rows {
        for (c, v) in row.iter_mut().enumerate() {
            *v = ((r * 7 + c) % 97) as f32 / 97.0;
        }
        let g = [(r / VOCAB as usize) as u32, (r % VOCAB as usize) as u32];
        b.push(&g, &row, None).map_err(|e| e.to_string())?;
    }
    b.finish().map_err(|e| e.to_string())?;
    let opts = OpenOptions { resident_rows, ..OpenOptions::default() };
    let table = Table::open_with(path, opts).map_err(|e| e.to_string())?;
    // Fault every row page into the mapping once, so that the measurements
    // see rows in DRAM (page cache), not first-touch page faults.
    let chunk = 4096;
    let mut scratch = vec![0u8; chunk * dim * 2];
    let all: Vec<u32> = (0..rows as u32).collect();
    for slots in all.chunks(chunk) {
        let out = &mut scratch[..slots.len() * dim * 2];
        gather(&table, slots, GatherOptions { dtype: Dtype::F16, max_threads: 0 }, out).map_err(|e| e.to_string())?;
    }
    Ok(table)
}

/// Token batches: tokens uniform below rows / VOCAB (every bigram of two such
/// tokens is a row, spread over the whole table), 5% VOCAB - 1 (misses).
fn token_pool(rows: usize, positions: usize, seed: u64) -> Vec<Vec<u32>> {
    let a = (rows / VOCAB as usize) as u64;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..POOL)
        .map(|_| (0..positions).map(|_| if next() % 20 == 0 { VOCAB - 1 } else { (next() % a) as u32 }).collect())
        .collect()
}

/// Zipf(ZIPF_S) slot batches over `rows` ranks: every position's slot is
/// rank r with probability proportional to (r + 1)^-ZIPF_S (slot r = rank r:
/// the table is hottest-first). Returns the batches and their mean unique
/// fraction (distinct slots / positions).
fn zipf_slot_pool(rows: usize, positions: usize, seed: u64) -> (Vec<Vec<u32>>, f64) {
    let mut cdf = Vec::with_capacity(rows);
    let mut acc = 0.0;
    for r in 1..=rows {
        acc += (r as f64).powf(-ZIPF_S);
        cdf.push(acc);
    }
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let pool: Vec<Vec<u32>> = (0..POOL)
        .map(|_| {
            (0..positions)
                .map(|_| {
                    let u = uniform() * acc;
                    cdf.partition_point(|&c| c < u).min(rows - 1) as u32
                })
                .collect()
        })
        .collect();
    let unique = pool
        .iter()
        .map(|b| {
            let mut s = b.clone();
            s.sort_unstable();
            s.dedup();
            s.len() as f64 / b.len().max(1) as f64
        })
        .sum::<f64>()
        / POOL as f64;
    (pool, unique)
}

struct Stats {
    mode: &'static str,
    batches: usize,
    secs: f64,
    positions: usize,
    bytes: usize,
    lat_ms: Vec<f64>,
    hit_rate: Option<f64>,
    /// Share of positions served from the GPU hot cache.
    cache_share: f64,
    /// Bytes and rows sent over the bus (`BatchHandle::bus_bytes`,
    /// `bus_rows`), summed over the measured batches.
    bus_bytes: usize,
    bus_rows: usize,
    /// The pipeline's reader stats over the measured batches (zero without
    /// a reader).
    read: ReadStats,
    /// Printed on a line of its own after the row.
    note: String,
}

impl Stats {
    fn print(&mut self, dim: usize, batch: usize) {
        self.lat_ms.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if self.lat_ms.is_empty() {
                f64::NAN
            } else {
                self.lat_ms[((self.lat_ms.len() - 1) as f64 * p).round() as usize]
            }
        };
        let hits = self.hit_rate.map_or(String::new(), |h| format!("  hits {:.1}%", h * 100.0));
        println!(
            "{dim:>5} {batch:>6}  {:<15} {:>6}  {:>9.2}  {:>7.2}  {:>8.3}  {:>8.3}{hits}",
            self.mode,
            self.batches,
            self.positions as f64 / self.secs / 1e6,
            self.bytes as f64 / self.secs / 1e9,
            q(0.5),
            q(0.99),
        );
        if !self.note.is_empty() {
            println!("{:>5} {:>6}  {:<15} {}", "", "", "", self.note);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(args: &Args, gpu: Option<&Gpu>) -> Result<(), String> {
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("temporary directory: {e}"))?;
    if let Some(g) = gpu {
        println!("device: {} ({:.1} GiB)", g.device_name(), g.total_memory() as f64 / (1u64 << 30) as f64);
    }
    println!("host: {} cores (gather uses all); tables: f16, n_max 2, in {}", rayon_threads(), dir.path().display());
    let budget = Duration::from_secs_f64(args.seconds);
    for (dim, rows) in [(1024usize, args.rows), (2048, args.rows / 2)] {
        let t = Instant::now();
        let path = dir.path().join(format!("d{dim}.scone"));
        let table = build(&path, dim, rows, args.resident_rows)?;
        let row_bytes = dim * 2;
        println!(
            "\ntable d={dim}: {rows} rows, {:.2} GB of rows, built in {:.1} s",
            (rows * row_bytes) as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
        println!(
            "{:>5} {:>6}  {:<15} {:>6}  {:>9}  {:>7}  {:>8}  {:>8}",
            "dim", "batch", "mode", "n", "Mrows/s", "GB/s", "p50 ms", "p99 ms"
        );
        if !args.nvme_only {
            dram_blocks(args, &table, &path, gpu, budget)?;
        }
        if args.nvme {
            nvme_block(args, &table, gpu, budget)?;
        }
    }
    Ok(())
}

/// The uniform and Zipf blocks of one table (rows in DRAM).
fn dram_blocks(args: &Args, table: &Table, path: &Path, gpu: Option<&Gpu>, budget: Duration) -> Result<(), String> {
    let err = |e: BridgeError| e.to_string();
    let (dim, rows) = (table.dim(), table.rows() as usize);
    let row_bytes = dim * 2;
    // Zero-copy: resident rows registered in place, one pipeline per
    // configuration for all batch sizes (registration is per table).
    let zc_table = match (gpu, args.resident_rows) {
        (Some(_), false) => Some(
            Table::open_with(path, OpenOptions { resident_rows: true, ..OpenOptions::default() })
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let zt = zc_table.as_ref().unwrap_or(table);
    // Copy ceiling in rows/s (row + mask byte per position), per batch size.
    let mut ceiling_rows = Vec::new();
    {
        let mut zc_pipes = match (gpu, args.zipf_only) {
            (Some(g), false) => {
                let t = Instant::now();
                let mk = |dedup: bool, out_dtype: Option<Dtype>| {
                    let cfg = PipelineConfig {
                        mode: GatherMode::ZeroCopy,
                        dedup,
                        out_dtype,
                        ..PipelineConfig::new(BATCHES[2])
                    };
                    LookupPipeline::new(zt, g, cfg).map_err(err)
                };
                let (p, pd) = (mk(false, None)?, mk(true, None)?);
                let f32 = Some(Dtype::F32);
                let f32_pipes = if args.f32_rows { Some((mk(false, f32)?, mk(true, f32)?)) } else { None };
                println!(
                    "zero-copy setup: rows {:?} / {:?} (dedup) in {:.2} s",
                    p.zero_copy_source().expect("zero-copy"),
                    pd.zero_copy_source().expect("zero-copy"),
                    t.elapsed().as_secs_f64()
                );
                Some((p, pd, f32_pipes))
            }
            _ => None,
        };
        for &batch in &BATCHES {
            let pool = token_pool(rows, batch, (dim * batch) as u64);
            let bytes = batch * (row_bytes + 1);
            if !args.zipf_only {
                host_only(table, &pool, gpu, budget)?.print(dim, batch);
            }
            let Some(gpu) = gpu else { continue };
            // (a) ceiling
            let gbps = probe_bandwidth(gpu, bytes, 20).map_err(err)?;
            let src = gpu.alloc_pinned(bytes).map_err(err)?;
            let mut dst = gpu.alloc_device(bytes).map_err(err)?;
            let mut lat = Vec::new();
            let start = Instant::now();
            while lat.len() < MIN_BATCHES || start.elapsed() < budget / 2 {
                let t = Instant::now();
                gpu.copy_to_device(&src, &mut dst).map_err(err)?.synchronize().map_err(err)?;
                lat.push(ms(t.elapsed()));
            }
            let secs = bytes as f64 / (gbps * 1e9);
            Stats {
                mode: "ceiling",
                batches: 20,
                secs,
                positions: batch,
                bytes,
                lat_ms: lat,
                hit_rate: None,
                cache_share: 0.0,
                bus_bytes: 0,
                bus_rows: 0,
                read: ReadStats::default(),
                note: String::new(),
            }
            .print(dim, batch);
            ceiling_rows.push(gbps * 1e9 / (row_bytes + 1) as f64);
            let Some((zc, zcd, f32_pipes)) = zc_pipes.as_mut() else { continue };
            // (b) serial, (c) pipelined: dedup off, as in earlier runs;
            // then the library default (dedup on).
            serial(table, gpu, &pool, budget)?.print(dim, batch);
            pipelined(table, gpu, &pool, budget, false, false)?.print(dim, batch);
            pipelined(table, gpu, &pool, budget, true, false)?.print(dim, batch);
            pipelined(table, gpu, &pool, budget, false, true)?.print(dim, batch);
            drive(zc, &pool, budget, false, false, "zc-serial")?.print(dim, batch);
            drive(zc, &pool, budget, true, false, "zc-pipelined")?.print(dim, batch);
            drive(zcd, &pool, budget, true, false, "zc-pipelined-dd")?.print(dim, batch);
            if let Some((z32, z32d)) = f32_pipes.as_mut() {
                drive(z32, &pool, budget, true, false, "zc-pipelined-f32")?.print(dim, batch);
                drive(z32d, &pool, budget, true, false, "zc-pipelined-dd-f32")?.print(dim, batch);
            }
        }
    }
    let Some(gpu) = gpu else { return Ok(()) };
    // Zipf(1.1) over rows, slots submitted directly: every combination of
    // gather mode, dedup and GPU cache, one pipeline at a time.
    let pools: Vec<(Vec<Vec<u32>>, f64)> =
        BATCHES.iter().map(|&b| zipf_slot_pool(rows, b, (dim * b) as u64 + 1)).collect();
    let cache_bytes = rows * args.cache_pct / 100 * zt.header().row_stride as usize;
    println!(
        "Zipf({ZIPF_S}) slots, {rows} rows, no misses; unique fraction per batch size: {}; cache {}% = {:.2} GB",
        pools.iter().map(|(_, u)| format!("{:.1}%", u * 100.0)).collect::<Vec<_>>().join(" / "),
        args.cache_pct,
        cache_bytes as f64 / 1e9
    );
    let mut lines: Vec<(usize, usize, Stats)> = Vec::new();
    let configs = [
        ("zipf-cpu", GatherMode::CpuGather, false, false),
        ("zipf-cpu-dd", GatherMode::CpuGather, true, false),
        ("zipf-cpu-c", GatherMode::CpuGather, false, true),
        ("zipf-cpu-dd-c", GatherMode::CpuGather, true, true),
        ("zipf-zc", GatherMode::ZeroCopy, false, false),
        ("zipf-zc-dd", GatherMode::ZeroCopy, true, false),
        ("zipf-zc-c", GatherMode::ZeroCopy, false, true),
        ("zipf-zc-dd-c", GatherMode::ZeroCopy, true, true),
    ];
    for (c, &(mode, gather_mode, dedup, cached)) in configs.iter().enumerate() {
        let cfg = PipelineConfig {
            mode: gather_mode,
            dedup,
            gpu_cache_bytes: if cached { cache_bytes } else { 0 },
            ..PipelineConfig::new(BATCHES[2])
        };
        let tb = if gather_mode == GatherMode::ZeroCopy { zt } else { table };
        let mut p = LookupPipeline::new(tb, gpu, cfg).map_err(err)?;
        for (b, (pool, unique)) in pools.iter().enumerate() {
            let mut st = drive(&mut p, pool, budget, true, true, mode)?;
            let rate = st.positions as f64 / st.secs;
            st.note = format!(
                "x ceiling {:.2} ({:.2} / {:.2} Mrows/s)  bus {:.2} MB/batch, {:.0} rows/batch  unique {:.1}%  \
                     from GPU cache {:.1}%",
                rate / ceiling_rows[b],
                rate / 1e6,
                ceiling_rows[b] / 1e6,
                st.bus_bytes as f64 / st.batches as f64 / 1e6,
                st.bus_rows as f64 / st.batches as f64,
                unique * 100.0,
                st.cache_share * 100.0,
            );
            st.hit_rate = None;
            lines.push((b, c, st));
        }
    }
    lines.sort_by_key(|&(b, c, _)| (b, c));
    for (b, _, mut st) in lines {
        st.print(dim, BATCHES[b]);
    }
    Ok(())
}

/// Slot batches uniform over `rows` (no misses).
fn uniform_slot_pool(rows: usize, positions: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..POOL).map(|_| (0..positions).map(|_| (next() % rows as u64) as u32).collect()).collect()
}

/// The NVMe block of one table (see the module doc): the raw reader, then
/// the pipeline with a direct-read row source, per batch size and
/// distribution.
fn nvme_block(args: &Args, table: &Table, gpu: Option<&Gpu>, budget: Duration) -> Result<(), String> {
    let err = |e: BridgeError| e.to_string();
    let (dim, rows) = (table.dim(), table.rows() as usize);
    let mode = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: args.queue_depth };
    let reader = RowReader::open(table, mode).map_err(|e| e.to_string())?;
    let stride = table.header().row_stride as usize;
    let cache_bytes = rows * args.cache_pct / 100 * stride;
    println!(
        "NVMe d={dim}: rows read from {} with {}; dedup on, GPU cache 0 / {}% = {:.2} GB; rows {} B, stride {stride} B",
        table.path().display(),
        reader.describe(),
        args.cache_pct,
        cache_bytes as f64 / 1e9,
        dim * 2
    );
    if !reader.is_o_direct() {
        println!(
            "warning: the file system refused O_DIRECT (tmpfs?): reads are buffered and the page cache may serve \
             them; put --dir on a disk"
        );
    }
    // Per batch size: (uniform pool, Zipf pool).
    type Pool = Vec<Vec<u32>>;
    let pools: Vec<(Pool, Pool)> = BATCHES
        .iter()
        .map(|&b| (uniform_slot_pool(rows, b, (dim * b) as u64 + 3), zipf_slot_pool(rows, b, (dim * b) as u64 + 1).0))
        .collect();
    let mut pipes = Vec::new();
    if let Some(g) = gpu {
        for cache in [0, cache_bytes] {
            let cfg = PipelineConfig {
                dedup: true,
                gpu_cache_bytes: cache,
                read_mode: Some(mode),
                ..PipelineConfig::new(BATCHES[2])
            };
            pipes.push(LookupPipeline::new(table, g, cfg).map_err(err)?);
        }
    }
    let mut out = AlignedBuf::new(BATCHES[2] * dim * 2).map_err(|e| format!("aligned buffer: {e}"))?;
    for (b, &batch) in BATCHES.iter().enumerate() {
        let (uni, zipf) = &pools[b];
        for (dist, pool) in [(0, uni), (1, zipf)] {
            let names = [["nvme-raw-uni", "nvme-uni", "nvme-uni-c"], ["nvme-raw-zipf", "nvme-zipf", "nvme-zipf-c"]];
            let mut raw = raw_reader(&reader, pool, &mut out, budget, args.nvme_min_batches, names[dist][0])?;
            let raw_rate = raw.positions as f64 / raw.secs;
            raw.note = read_note(&raw, None, 1.0);
            raw.print(dim, batch);
            for (c, pipe) in pipes.iter_mut().enumerate() {
                let mut st = drive_n(pipe, pool, budget, true, true, names[dist][1 + c], args.nvme_min_batches)?;
                let x = st.positions as f64 / st.secs / raw_rate;
                st.note = read_note(&st, Some(st.cache_share), x);
                if !pipe.reads_into_pinned() {
                    st.note += "  (EFAULT into pinned memory: read into an aligned buffer + copy)";
                }
                st.hit_rate = None;
                st.print(dim, batch);
            }
        }
    }
    Ok(())
}

/// The note of an NVMe row: storage reads, bounce bytes, ratio to the raw
/// reader.
fn read_note(st: &Stats, cache_share: Option<f64>, x_reader: f64) -> String {
    let r = &st.read;
    let mut note = format!(
        "storage {:.1} krows/s {:.2} GB/s  {:.0} rows/batch read  bounce {:.2} MB/batch",
        r.rows_read as f64 / st.secs / 1e3,
        r.bytes_read as f64 / st.secs / 1e9,
        r.rows_read as f64 / st.batches.max(1) as f64,
        r.bounce_bytes as f64 / st.batches.max(1) as f64 / 1e6,
    );
    if let Some(c) = cache_share {
        note += &format!("  x reader {x_reader:.2}  from GPU cache {:.1}%", c * 100.0);
    }
    note
}

/// The reader alone: `read_rows` of each batch into a page-aligned buffer,
/// one after the other (no GPU).
fn raw_reader(
    reader: &RowReader<'_>,
    pool: &[Vec<u32>],
    out: &mut [u8],
    budget: Duration,
    min_batches: usize,
    mode: &'static str,
) -> Result<Stats, String> {
    let batch = pool[0].len();
    let row_bytes = reader.row_bytes();
    let out = &mut out[..batch * row_bytes];
    let e = |e: engine::ReadError| e.to_string();
    reader.read_rows(&pool[POOL - 1], out).map_err(e)?;
    let mut read = ReadStats::default();
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while i < min_batches || start.elapsed() < budget {
        let t = Instant::now();
        read.add(&reader.read_rows(&pool[i % POOL], out).map_err(e)?);
        lat.push(ms(t.elapsed()));
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Stats {
        mode,
        batches: i,
        secs,
        positions: i * batch,
        bytes: i * batch * (row_bytes + 1),
        lat_ms: lat,
        hit_rate: None,
        cache_share: 0.0,
        bus_bytes: 0,
        bus_rows: 0,
        read,
        note: String::new(),
    })
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Match + gather into pinned memory (or a Vec without a GPU), no copy.
fn host_only(table: &Table, pool: &[Vec<u32>], gpu: Option<&Gpu>, budget: Duration) -> Result<Stats, String> {
    let batch = pool[0].len();
    let row_bytes = table.dim() * 2;
    let mut pinned = match gpu {
        Some(g) => Some(g.alloc_pinned(batch * row_bytes).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut vec = vec![0u8; if pinned.is_some() { 0 } else { batch * row_bytes }];
    let out: &mut [u8] = match &mut pinned {
        Some(p) => p.as_mut_slice().map_err(|e| e.to_string())?,
        None => &mut vec,
    };
    let matcher = SuffixMatcher::new(table);
    let (mut hits, mut slots) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
    let mut mask = vec![0u8; batch];
    let mut lat = Vec::new();
    let (mut n_hits, mut n_pos) = (0usize, 0usize);
    let mut run_one = |tokens: &[u32], lat: Option<&mut Vec<f64>>| -> Result<(), String> {
        let t = Instant::now();
        hits.clear();
        matcher.match_into(tokens, 0, &mut hits);
        slots.clear();
        slots.extend(hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)));
        gather(table, &slots, GatherOptions { dtype: Dtype::F16, max_threads: 0 }, out).map_err(|e| e.to_string())?;
        for (m, h) in mask.iter_mut().zip(&hits) {
            *m = u8::from(h.is_hit());
        }
        if let Some(lat) = lat {
            lat.push(ms(t.elapsed()));
            n_hits += hits.iter().filter(|h| h.is_hit()).count();
            n_pos += hits.len();
        }
        Ok(())
    };
    for tokens in pool.iter().take(3) {
        run_one(tokens, None)?;
    }
    let start = Instant::now();
    let mut i = 0;
    while i < MIN_BATCHES || start.elapsed() < budget {
        run_one(&pool[i % POOL], Some(&mut lat))?;
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Stats {
        mode: "host",
        batches: i,
        secs,
        positions: i * batch,
        bytes: i * batch * (row_bytes + 1),
        lat_ms: lat,
        hit_rate: Some(n_hits as f64 / n_pos.max(1) as f64),
        cache_share: 0.0,
        bus_bytes: 0,
        bus_rows: 0,
        read: ReadStats::default(),
        note: String::new(),
    })
}

/// Drives an existing pipeline: submit-and-wait (`!back_to_back`) or
/// submit back to back (latencies observed at later submits: upper bounds).
/// `slots`: the pool holds slots for `submit_slots`, not tokens.
fn drive(
    pipe: &mut LookupPipeline<'_>,
    pool: &[Vec<u32>],
    budget: Duration,
    back_to_back: bool,
    slots: bool,
    mode: &'static str,
) -> Result<Stats, String> {
    drive_n(pipe, pool, budget, back_to_back, slots, mode, MIN_BATCHES)
}

/// [`drive`] with at least `min_batches` measured batches (after
/// `min(3, min_batches)` warm-up batches).
fn drive_n(
    pipe: &mut LookupPipeline<'_>,
    pool: &[Vec<u32>],
    budget: Duration,
    back_to_back: bool,
    slots: bool,
    mode: &'static str,
    min_batches: usize,
) -> Result<Stats, String> {
    let err = |e: BridgeError| e.to_string();
    let batch = pool[0].len();
    let submit = |pipe: &mut LookupPipeline<'_>, b: &[u32]| if slots { pipe.submit_slots(b) } else { pipe.submit(b) };
    for b in pool.iter().take(min_batches.min(3)) {
        let h = submit(pipe, b).map_err(err)?;
        h.wait().map_err(err)?;
        pipe.recycle(h);
    }
    pipe.take_read_stats();
    let mut lat = Vec::new();
    let mut in_flight = VecDeque::new();
    let (mut n_hits, mut n_cached, mut bus_bytes, mut bus_rows) = (0usize, 0usize, 0usize, 0usize);
    let start = Instant::now();
    let mut i = 0;
    while i < min_batches || start.elapsed() < budget {
        let t = Instant::now();
        let h = submit(pipe, &pool[i % POOL]).map_err(err)?;
        n_hits += h.hit_count();
        n_cached += h.cache_hits();
        bus_bytes += h.bus_bytes();
        bus_rows += h.bus_rows();
        if !back_to_back {
            h.wait().map_err(err)?;
        }
        in_flight.push_back((t, h));
        while let Some((t0, h)) = in_flight.front() {
            if !h.is_complete().map_err(err)? {
                break;
            }
            lat.push(ms(t0.elapsed()));
            let (_, h) = in_flight.pop_front().expect("front exists");
            pipe.recycle(h);
        }
        i += 1;
    }
    for (t0, h) in in_flight {
        h.wait().map_err(err)?;
        lat.push(ms(t0.elapsed()));
        pipe.recycle(h);
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = i * batch * (pipe.row_bytes() + 1);
    let positions = i * batch;
    Ok(Stats {
        mode,
        batches: i,
        secs,
        positions,
        bytes,
        lat_ms: lat,
        hit_rate: Some(n_hits as f64 / positions.max(1) as f64),
        cache_share: n_cached as f64 / positions.max(1) as f64,
        bus_bytes,
        bus_rows,
        read: pipe.take_read_stats(),
        note: String::new(),
    })
}

/// Submit and wait, one batch at a time, on the CPU-gather path (dedup off).
fn serial(table: &Table, gpu: &Gpu, pool: &[Vec<u32>], budget: Duration) -> Result<Stats, String> {
    let cfg = PipelineConfig { dedup: false, ..PipelineConfig::new(pool[0].len()) };
    let mut pipe = LookupPipeline::new(table, gpu, cfg).map_err(|e| e.to_string())?;
    drive(&mut pipe, pool, budget, false, false, "serial")
}

/// Submit back to back on the CPU-gather path (see [`drive`] for what the
/// latencies mean), write-combined staging or not, dedup or not.
fn pipelined(
    table: &Table,
    gpu: &Gpu,
    pool: &[Vec<u32>],
    budget: Duration,
    wc: bool,
    dedup: bool,
) -> Result<Stats, String> {
    let cfg = PipelineConfig { write_combined: wc, dedup, ..PipelineConfig::new(pool[0].len()) };
    let mut pipe = LookupPipeline::new(table, gpu, cfg).map_err(|e| e.to_string())?;
    let mode = match (wc, dedup) {
        (true, _) => "pipelined-wc",
        (false, false) => "pipelined",
        (false, true) => "pipelined-dd",
    };
    drive(&mut pipe, pool, budget, true, false, mode)
}
