//! `scone-bench core`: build a synthetic table, then measure probes, matching and
//! gathers against the naive baseline and a memory ceiling in the same run.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use engine::{gather, Dtype, GatherOptions, Hit, OpenOptions, SuffixMatcher, Table};
use half::f16;
use scone_bench::measure::{median_secs, MemcpyCeiling, RandomReadCeiling};
use scone_bench::report::{machine, markdown, rss_anon, utc_date, Metric};
use scone_bench::synth::{self, fgram, Spec, N_MAX};
use scone_bench::{Baseline, Sizes, Workload};

#[derive(Parser)]
#[command(about = "Benchmarks of the scone engine against a naive baseline and a memory ceiling")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build, probe, match and gather on a synthetic Zipf(1.1) table.
    Core(CoreArgs),
    /// Direct (O_DIRECT, io_uring) reads of 4 KiB rows against fio's random-read ceiling.
    Nvme(NvmeArgs),
    /// Rows into GPU memory, in one run: the pinned-copy ceiling and both
    /// scone pipelines (gpu-bridge's `gpu-pipeline`), then the Python
    /// baseline (bench/python/gpu_baseline.py: numpy memmap + .cuda()).
    Gpu(GpuArgs),
}

#[derive(clap::Args)]
struct GpuArgs {
    /// Directory for the tables (on a disk, not tmpfs, for --nvme and --cold).
    #[arg(long, default_value = "/tmp/scone-gpu")]
    dir: PathBuf,
    /// Seconds per mode and configuration.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Also the tables-on-NVMe block (O_DIRECT reads into pinned staging).
    #[arg(long)]
    nvme: bool,
    /// Python baseline from a cold page cache too (`--cold`).
    #[arg(long)]
    cold: bool,
    /// The gpu-pipeline binary (default: beside this one; build it with
    /// `cargo build --release -p scone-gpu-bridge --bins`).
    #[arg(long)]
    gpu_pipeline: Option<PathBuf>,
    /// More arguments for gpu-pipeline (e.g. `-- --f32-rows`).
    #[arg(last = true)]
    extra: Vec<String>,
}

#[derive(clap::Args)]
struct NvmeArgs {
    /// Directory for the table (kept: a later run reuses it).
    #[arg(long, default_value = "/tmp/scone-nvme")]
    dir: PathBuf,
    /// Table size in GiB (rows of 4 KiB, d = 2048 f16).
    #[arg(long, default_value_t = 8.0)]
    gib: f64,
    #[arg(long, value_delimiter = ',', default_value = "1,32,128")]
    queue_depths: Vec<u32>,
    /// Seconds per measurement (ceiling and each workload).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Per queue depth, the ceiling and the uniform workload alternate this many
    /// times (ceiling, uniform, ..., uniform, ceiling); medians are compared.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Hot prefix for the Zipf workload, as a fraction of the rows.
    #[arg(long, default_value_t = 0.1)]
    hot_fraction: f64,
    /// io_uring SQPOLL for every scone reader: a kernel thread polls the
    /// submission queue, sleeping after this many idle milliseconds
    /// (`ReaderOptions::sqpoll`; the run says if the kernel refused it).
    #[arg(long)]
    sqpoll_ms: Option<u32>,
    /// How long each reader's io_uring thread polls for completions before
    /// sleeping, in microseconds (`ReaderOptions::uring_spin_us`; 0: sleep at once).
    #[arg(long, default_value_t = engine::read::DEFAULT_SPIN_US)]
    spin_us: u32,
    /// Only the interleaved ceiling/uniform comparison (skips the Zipf,
    /// tickets and hot-prefix workloads).
    #[arg(long)]
    only_uniform: bool,
    /// uring-ceiling binary, used when fio is missing.
    #[arg(long, default_value = "/tmp/uring-ceiling/release/uring-ceiling")]
    uring_ceiling: PathBuf,
}

#[derive(clap::Args)]
struct CoreArgs {
    #[arg(long, default_value_t = 10_000_000)]
    fgrams: u64,
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Directory for the table (deleted afterwards unless --keep).
    #[arg(long, default_value = "/tmp/scone-bench")]
    dir: PathBuf,
    /// Tokens in the matching stream.
    #[arg(long, default_value_t = 4_000_000)]
    queries: usize,
    /// Present and absent lookups each.
    #[arg(long, default_value_t = 1_000_000)]
    probes: usize,
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    batches: usize,
    /// Timed repetitions per measurement (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Builder sort memory, MiB.
    #[arg(long, default_value_t = 1024)]
    memory_budget_mib: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the table file.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Core(a) => core(a),
        Cmd::Nvme(a) => nvme(a),
        Cmd::Gpu(a) => gpu(a),
    }
}

/// Runs gpu-pipeline, then the Python baseline on tables of the same
/// shapes, one after the other in this process's run (their output goes
/// to stdout as they print it).
fn gpu(a: GpuArgs) -> Result<()> {
    use std::process::Command;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let bin = match a.gpu_pipeline {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("gpu-pipeline"),
    };
    ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release -p scone-gpu-bridge --bins` or pass --gpu-pipeline",
        bin.display()
    );
    println!("== scone: {} (ceiling, CPU-gather and zero-copy pipelines)", bin.display());
    let mut cmd = Command::new(&bin);
    cmd.arg("--seconds").arg(a.seconds.to_string()).arg("--dir").arg(&a.dir);
    if a.nvme {
        cmd.arg("--nvme");
    }
    let st = cmd.args(&a.extra).status().with_context(|| format!("running {}", bin.display()))?;
    ensure!(st.success(), "{} failed: {st}", bin.display());
    // The script where this binary was built, else relative to the working
    // directory (a binary carried to another machine, run from a checkout).
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/gpu_baseline.py");
    let script = if built.exists() { built } else { PathBuf::from("bench/python/gpu_baseline.py") };
    ensure!(script.exists(), "{} not found (run from the repository root)", script.display());
    let probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)";
    let probed = Command::new("python3").args(["-c", probe]).stderr(std::process::Stdio::null()).status();
    if !probed.is_ok_and(|s| s.success()) {
        println!("== python: skipped: python3 with torch and a CUDA device is not available here");
        return Ok(());
    }
    println!("== python: {} (numpy memmap fancy indexing, then torch .cuda())", script.display());
    let mut py = Command::new("python3");
    py.arg(&script).arg("--dir").arg(a.dir.join("python")).arg("--seconds").arg(a.seconds.max(0.5).to_string());
    if a.cold {
        py.arg("--cold");
    }
    let st = py.status().context("running python3 (the baseline needs numpy and torch with CUDA)")?;
    ensure!(st.success(), "{} failed: {st}", script.display());
    Ok(())
}

fn nvme(a: NvmeArgs) -> Result<()> {
    use scone_bench::nvme::{self as n, CeilingTool};
    let t0 = Instant::now();
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let rows = (a.gib * (1u64 << 30) as f64 / 4096.0) as u64;
    ensure!(rows >= 1000 && rows < u32::MAX as u64, "--gib gives {rows} rows");
    let path = a.dir.join(format!("nvme-{rows}x{}.scone", n::DIM));
    let tool = CeilingTool::detect(&a.uring_ceiling)?;
    let (table, reused) = n::table(&path, rows, &|m| log(t0, m))?;
    let file_bytes = table.file_len();
    let stride = table.header().row_stride;
    ensure!(stride == 4096, "row stride is {stride}, expected 4096");
    let hot_bytes = ((rows as f64 * a.hot_fraction) as u64) * stride;
    log(t0, "drawing batches");
    let uniform = n::uniform_batches(rows, a.batch, 256, 1);
    let zipf = n::zipf_batches(rows, synth::ZIPF_S, a.batch, 256, 2);
    ensure!(a.reps >= 1, "--reps must be at least 1");
    let tool_short = if matches!(tool, CeilingTool::Fio) { "fio" } else { "uring-ceiling" };
    let dropped = std::cell::Cell::new(true);
    let drop_caches = || dropped.set(dropped.get() & n::drop_caches());
    let secs = a.seconds as f64;
    let mut interleaved = Vec::new();
    let mut figs = Vec::new();
    let mut zipf_lines: Vec<String> = Vec::new();
    log(t0, &format!("reader: {}", n::reader(&table, 32, 0, a.sqpoll_ms, a.spin_us)?.describe()));
    for &qd in &a.queue_depths {
        let reader = |hot: u64| n::reader(&table, qd, hot, a.sqpoll_ms, a.spin_us);
        let il = n::interleave(
            qd,
            a.reps,
            |i| {
                drop_caches();
                log(t0, &format!("QD {qd}: ceiling ({tool_short}) {}/{}", i + 1, a.reps + 1));
                tool.iops(&path, qd, a.seconds)
            },
            |i| {
                drop_caches();
                log(t0, &format!("QD {qd}: uniform (aligned output) {}/{}", i + 1, a.reps));
                let f = n::measure("uniform", qd, &reader(0)?, &uniform, secs, n::OutBuf::Aligned)?;
                if f.bounce_bytes != 0 {
                    log(t0, &format!("warning: {} bytes went through the bounce buffer", f.bounce_bytes));
                }
                Ok(f)
            },
        )?;
        log(t0, &format!("QD {qd}: {}; median ratio {:.3}", il.sequence(), il.ratio()));
        interleaved.push(il);
        if a.only_uniform {
            continue;
        }
        drop_caches();
        log(t0, &format!("QD {qd}: uniform, 4 tickets in flight"));
        figs.push(n::measure_tickets("uniform, 4 tickets", qd, &reader(0)?, &uniform, secs, 4)?);
        // The hot-prefix goal: uncached and cached Zipf runs alternate `reps`
        // times, so a drift of the device's speed hits both alike; the figures
        // kept are each side's median run by rows/s. Synchronous batches, and
        // 4 prefetch tickets in flight (the ring stays full across batches).
        // (workload, hot prefix bytes, tickets in flight; None: synchronous).
        let kinds = [
            ("zipf, no cache", 0, None),
            ("zipf, 10 % hot prefix", hot_bytes, None),
            ("zipf, no cache, 4 tickets", 0, Some(4)),
            ("zipf, 10 % hot prefix, 4 tickets", hot_bytes, Some(4)),
        ];
        let mut runs: Vec<Vec<n::Figure>> = kinds.iter().map(|_| Vec::new()).collect();
        for i in 0..a.reps {
            for (&(name, hot, tickets), runs) in kinds.iter().zip(&mut runs) {
                drop_caches();
                let r = reader(hot)?;
                let prefix = if hot > 0 {
                    format!(" (hot prefix of {} rows, {} MiB)", r.hot_rows(), r.hot_bytes() >> 20)
                } else {
                    String::new()
                };
                log(t0, &format!("QD {qd}: {name}{prefix} {}/{}", i + 1, a.reps));
                runs.push(match tickets {
                    Some(depth) => n::measure_tickets(name, qd, &r, &zipf, secs, depth)?,
                    None => n::measure(name, qd, &r, &zipf, secs, n::OutBuf::Vec)?,
                });
            }
        }
        let seq = |v: &[n::Figure]| v.iter().map(|f| format!("{:.0}", f.rows_per_s)).collect::<Vec<_>>().join(", ");
        let lists: Vec<String> =
            kinds.iter().zip(&runs).map(|(k, v)| format!("{} {}", k.0.trim_start_matches("zipf, "), seq(v))).collect();
        zipf_lines.push(format!("- QD {qd}, Zipf rows/s alternated: {}", lists.join("; ")));
        figs.extend(runs.into_iter().map(n::median_figure));
        let r = reader(hot_bytes)?;
        figs.push(n::measure("uniform, 10 % hot prefix", qd, &r, &uniform, secs, n::OutBuf::Vec)?);
    }
    let ceilings: Vec<f64> = interleaved.iter().map(|il| n::median(&il.ceilings)).collect();
    let dropped = dropped.get();
    let (cpu, cores) = machine();
    println!(
        "scone-bench nvme, {}: {cpu} ({cores} logical cores); table {} ({:.2} GiB, {rows} rows of 4 KiB, {}); \
         batches of {} slots, {} s per figure; ceiling: {}; page cache {}; rows/s counts batch positions, \
         storage reads/s the unique rows read from the device (its ratio to the ceiling is the IOPS goal).\n",
        utc_date(),
        path.display(),
        file_bytes as f64 / (1u64 << 30) as f64,
        if reused { "reused" } else { "built by this run" },
        a.batch,
        a.seconds,
        tool.name(),
        if dropped { "dropped before each measurement" } else { "not dropped (not permitted): O_DIRECT bypasses it" },
    );
    println!(
        "Uniform against the ceiling, interleaved: per queue depth {} ceiling runs and {} uniform runs alternated \
         (ceiling first and last); medians (the mean of the middle two for an even count), their ratio (the IOPS \
         goal at QD >= 32) and min/max of both. Uniform reads land in a 4096-aligned buffer (engine::read::AlignedBuf); \
         bounce bytes is ReadStats::bounce_bytes summed over its runs (0: no bounce copy). p50/p99: medians over runs.\n",
        a.reps + 1,
        a.reps
    );
    print!("{}", n::interleaved_markdown(&interleaved, 0.9));
    println!();
    for il in &interleaved {
        println!("- QD {}, in order: {}", il.qd, il.sequence());
    }
    println!();
    println!(
        "Other workloads (output in a Vec<u8>, so through the bounce buffer; tickets own theirs); ceiling IOPS is \
         the QD's median above. The four Zipf rows are each the median (by rows/s) of {} runs alternating uncached \
         and cached, synchronous and with 4 tickets (listed below the table); the others are measured once.\n",
        a.reps
    );
    print!("{}", n::markdown(&figs, &a.queue_depths, &ceilings, 0.9, 3.0));
    println!();
    for l in &zipf_lines {
        println!("{l}");
    }
    println!();
    println!("wall time {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Progress on stderr, so stdout holds only the report.
fn log(t0: Instant, msg: &str) {
    eprintln!("[{:7.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// Ceiling for the build: write the same number of bytes sequentially and fsync.
fn write_ceiling(dir: &Path, bytes: u64) -> Result<Duration> {
    let path = dir.join("write-ceiling.tmp");
    let t = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![0x5Au8; 4 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let d = t.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(d)
}

fn core(a: CoreArgs) -> Result<()> {
    let t0 = Instant::now();
    let spec = Spec::new(a.fgrams, a.dim);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let path = a.dir.join(format!("core-{}x{}.scone", a.fgrams, a.dim));

    log(t0, "timing synthetic data generation alone");
    let gen = synth::generation_time(&spec);

    log(t0, &format!("building {} ({} f-grams, d={} f16)", path.display(), a.fgrams, a.dim));
    let cfg = synth::build_config(&spec, a.memory_budget_mib << 20, Some(&a.dir));
    let (summary, build_time) = synth::build_table(&spec, &path, cfg)?;
    log(t0, &format!("built in {:.1}s, {} spilled runs", build_time.as_secs_f64(), summary.spilled_runs));
    let write_ceil = write_ceiling(&a.dir, summary.file_bytes)?;

    let t = Instant::now();
    let table = Table::open(&path)?;
    let open_time = t.elapsed();
    // Checksums the rows too; this also maps every page, as the baseline's Vec is
    // fully resident, so gathers do not measure first-touch page faults.
    let t = Instant::now();
    table.verify()?;
    let verify_time = t.elapsed();
    ensure!(table.rows() == a.fgrams, "table has {} rows, expected {}", table.rows(), a.fgrams);
    // Counts are non-increasing in rank and ties keep push order: slot == rank.
    for i in (0..a.fgrams).step_by((a.fgrams / 1000).max(1) as usize) {
        ensure!(table.ngram(i as u32) == Some(fgram(&spec, i).as_slice()), "slot {i} is not rank {i}");
    }

    log(t0, "building the baseline HashMap + Vec<f16>");
    let rss0 = rss_anon();
    let t = Instant::now();
    let base = Baseline::build(&spec);
    let base_time = t.elapsed();
    let rows_bytes = (base.rows.capacity() * 2) as u64;
    let base_map_bytes = rss_anon().zip(rss0).map(|(b, a0)| b.saturating_sub(a0).saturating_sub(rows_bytes));

    log(t0, "drawing the workload");
    let sizes = Sizes { probes: a.probes, stream_tokens: a.queries, batch: a.batch, batches: a.batches };
    let w = Workload::new(&spec, sizes, |g| base.lookup(g).is_some());
    let ceil_reads = RandomReadCeiling::new(table.index_bytes() as usize, a.probes, spec.seed);
    let reps = a.reps;

    // (a) probes, one thread.
    log(t0, "probes");
    let probe_rate = |grams: &[scone_bench::Gram], f: &dyn Fn(&[u32]) -> Option<u32>| {
        let s = median_secs(1, reps, || {
            let mut acc = 0u64;
            for g in grams {
                acc = acc.wrapping_add(f(black_box(g.as_slice())).map_or(1, u64::from));
            }
            black_box(acc);
        });
        grams.len() as f64 / s
    };
    let scone_present = probe_rate(&w.present, &|g| table.lookup(g));
    let base_present = probe_rate(&w.present, &|g| base.lookup(g));
    let scone_absent = probe_rate(&w.absent, &|g| table.lookup(g));
    let base_absent = probe_rate(&w.absent, &|g| base.lookup(g));
    // Batched lookups (Table::lookup_batch prefetches a group's lines together).
    let batch_rate = |grams: &[scone_bench::Gram]| {
        let refs: Vec<&[u32]> = grams.iter().map(|g| g.as_slice()).collect();
        let mut out = Vec::with_capacity(4096);
        let s = median_secs(1, reps, || {
            for chunk in refs.chunks(4096) {
                out.clear();
                table.lookup_batch(black_box(chunk), &mut out);
                black_box(&out);
            }
        });
        grams.len() as f64 / s
    };
    let scone_present_batch = batch_rate(&w.present);
    let scone_absent_batch = batch_rate(&w.absent);
    let mut check = Vec::new();
    let refs: Vec<&[u32]> = w.present.iter().take(10_000).map(|g| g.as_slice()).collect();
    table.lookup_batch(&refs, &mut check);
    ensure!(check.iter().all(Option::is_some), "batched present probe missed");
    let ceil_probe = ceil_reads.reads() as f64
        / median_secs(1, reps, || {
            black_box(ceil_reads.run());
        });
    ensure!(w.present.iter().take(10_000).all(|g| table.lookup(g.as_slice()).is_some()), "present probe missed");
    ensure!(w.absent.iter().take(10_000).all(|g| table.lookup(g.as_slice()).is_none()), "absent probe hit");

    // (b) longest-suffix matching, one thread.
    log(t0, "matching");
    let matcher = SuffixMatcher::new(&table);
    let mut scone_hits: Vec<Hit> = Vec::with_capacity(w.stream.len());
    let mut base_hits: Vec<Hit> = Vec::with_capacity(w.stream.len());
    let match_reps = reps.min(3);
    let s = median_secs(1, match_reps, || {
        scone_hits.clear();
        matcher.match_into(black_box(&w.stream), 0, &mut scone_hits);
    });
    let scone_match = w.stream.len() as f64 / s;
    let s = median_secs(1, match_reps, || {
        base_hits.clear();
        base.match_into(black_box(&w.stream), &mut base_hits);
    });
    let base_match = w.stream.len() as f64 / s;
    // Each position needs n_max - 1 suffix probes.
    let ceil_match = ceil_probe / (N_MAX - 1) as f64;
    ensure!(scone_hits.len() == w.stream.len() && base_hits.len() == w.stream.len(), "matcher output length");
    let mut hits = 0usize;
    let mut hit_tokens = 0usize;
    for (p, (s, b)) in scone_hits.iter().zip(&base_hits).enumerate() {
        let same = s.len == b.len
            && (!s.is_hit()
                || (table.ngram(s.slot) == Some(fgram(&spec, b.slot as u64).as_slice())
                    && table.ngram(s.slot) == Some(&w.stream[p + 1 - s.len as usize..=p])));
        if !same {
            bail!("match mismatch at position {p}: scone {s:?}, baseline {b:?}");
        }
        hits += usize::from(s.is_hit());
        hit_tokens += s.len as usize;
    }

    // (c) gathers of Zipf-drawn batches, f16 out.
    log(t0, "gathers");
    let row_bytes = spec.row_bytes();
    let batch_bytes = a.batch * row_bytes;
    let total_bytes = (batch_bytes * w.batches.len()) as f64;
    let mut out = vec![0u8; batch_bytes];
    // The same table with its rows copied into huge-page memory at open.
    let t = Instant::now();
    let table_ram = Table::open_with(&path, OpenOptions { resident_rows: true, ..OpenOptions::default() })?;
    let resident_open = t.elapsed();
    let scone_gather = |table: &Table, max_threads: usize, out: &mut [u8]| -> Result<f64> {
        let opts = GatherOptions { dtype: Dtype::F16, max_threads };
        let mut err = None;
        let s = median_secs(1, reps, || {
            for b in &w.batches {
                if let Err(e) = gather(table, b, opts, out) {
                    err = Some(e);
                }
                black_box(&*out);
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        Ok(total_bytes / s / 1e9)
    };
    let scone_g1 = scone_gather(&table, 1, &mut out)?;
    let scone_gn = scone_gather(&table, 0, &mut out)?;
    let scone_g1_ram = scone_gather(&table_ram, 1, &mut out)?;
    let scone_gn_ram = scone_gather(&table_ram, 0, &mut out)?;
    let mut base_out: Vec<f16> = Vec::with_capacity(a.batch * a.dim);
    let s = median_secs(1, reps, || {
        for b in &w.batches {
            base.gather(b, &mut base_out);
            black_box(&base_out);
        }
    });
    let base_g = total_bytes / s / 1e9;
    let mut ceil = MemcpyCeiling::new(1 << 30);
    let s = median_secs(1, reps, || {
        for _ in &w.batches {
            ceil.copy(&mut out);
            black_box(&out);
        }
    });
    let ceil_g = total_bytes / s / 1e9;
    // Same bytes out of both gathers.
    let last = w.batches.last().context("no batches")?;
    gather(&table, last, GatherOptions { dtype: Dtype::F16, max_threads: 1 }, &mut out)?;
    base.gather(last, &mut base_out);
    let same = out.chunks_exact(2).zip(&base_out).all(|(o, v)| o == v.to_le_bytes());
    ensure!(same, "gathered rows differ between scone and the baseline");

    // Report.
    let rows = a.fgrams as f64;
    let index_per_key = table.index_bytes() as f64 / rows;
    let verify_per_key = (table.n_max() * 4) as f64;
    let m = |v: f64| v / 1e6;
    let metrics = vec![
        Metric::new(
            "build time (s)",
            Some(build_time.as_secs_f64()),
            Some(base_time.as_secs_f64()),
            Some(write_ceil.as_secs_f64()),
        ),
        Metric::new(
            "build rate (M rows/s)",
            Some(m(rows / build_time.as_secs_f64())),
            Some(m(rows / base_time.as_secs_f64())),
            Some(m(rows / write_ceil.as_secs_f64())),
        ),
        Metric::new("index bytes/key, beyond verification", Some(index_per_key), None, Some(4.0)),
        Metric::new(
            "index + verification bytes/key",
            Some(index_per_key + verify_per_key),
            base_map_bytes.map(|b| b as f64 / rows),
            None,
        ),
        Metric::new(
            "probes/s, present, 1 thread (M)",
            Some(m(scone_present)),
            Some(m(base_present)),
            Some(m(ceil_probe)),
        ),
        Metric::new("probes/s, absent, 1 thread (M)", Some(m(scone_absent)), Some(m(base_absent)), Some(m(ceil_probe))),
        Metric::new(
            "probes/s, present, batches of 4096, 1 thread (M)",
            Some(m(scone_present_batch)),
            Some(m(base_present)),
            Some(m(ceil_probe)),
        ),
        Metric::new(
            "probes/s, absent, batches of 4096, 1 thread (M)",
            Some(m(scone_absent_batch)),
            Some(m(base_absent)),
            Some(m(ceil_probe)),
        ),
        Metric::new("matched tokens/s, 1 thread (M)", Some(m(scone_match)), Some(m(base_match)), Some(m(ceil_match))),
        Metric::new(format!("gather GB/s, batch {}, 1 thread", a.batch), Some(scone_g1), Some(base_g), Some(ceil_g)),
        Metric::new(
            format!("gather GB/s, batch {}, {threads} threads", a.batch),
            Some(scone_gn),
            Some(base_g),
            Some(ceil_g),
        ),
        Metric::new(
            format!("gather GB/s, batch {}, 1 thread, rows resident", a.batch),
            Some(scone_g1_ram),
            Some(base_g),
            Some(ceil_g),
        ),
        Metric::new(
            format!("gather GB/s, batch {}, {threads} threads, rows resident", a.batch),
            Some(scone_gn_ram),
            Some(base_g),
            Some(ceil_g),
        ),
    ];
    let (model, cores) = machine();
    let date = utc_date();
    let goals = [
        ("matching >= 10 M tokens/s on one core", m(scone_match) >= 10.0),
        ("index <= 10 bytes/key beyond verification", index_per_key <= 10.0),
        ("gather (1 thread, mapped rows) >= 80% of same-run memcpy", scone_g1 >= 0.8 * ceil_g),
        ("gather (1 thread, resident rows) >= 80% of same-run memcpy", scone_g1_ram >= 0.8 * ceil_g),
    ];

    println!("## scone-bench core — {date}");
    println!();
    println!("machine: {model}, {cores} logical cores; table: {} f-grams, d = {} f16 ({row_bytes} B rows), n_max = {N_MAX}, vocab = {}, Zipf s = {}", a.fgrams, a.dim, synth::VOCAB, synth::ZIPF_S);
    println!();
    print!("{}", markdown(&metrics));
    println!();
    println!("- build: {} rows, file {:.2} GB, index {:.1} MB, {} spilled sort runs (budget {} MiB); synthetic data generation alone takes {:.1}s of each build time; open {:.3}s ({:.1}s with rows copied into huge-page memory), full-checksum verify {:.1}s.", summary.rows, summary.file_bytes as f64 / 1e9, summary.index_bytes as f64 / 1e6, summary.spilled_runs, a.memory_budget_mib, gen.as_secs_f64(), open_time.as_secs_f64(), resident_open.as_secs_f64(), verify_time.as_secs_f64());
    println!(
        "- build ceiling: sequential write + fsync of the same {:.2} GB to the same directory ({:.1}s).",
        summary.file_bytes as f64 / 1e9,
        write_ceil.as_secs_f64()
    );
    println!("- index bytes/key: index_bytes / rows; verification data (stored n-grams) is n_max * 4 = {verify_per_key} B/key more; ceiling 4 = a bare u32 slot per key. Baseline: anonymous RSS growth of the HashMap<Vec<u32>, u32> build (keys, buckets, allocator overhead).");
    println!("- probes: {} Zipf-drawn stored n-grams / {} random absent ones, Table::lookup (one at a time) and Table::lookup_batch (groups of 16 prefetched together) vs HashMap::get(&[u32]) one at a time. Ceiling: one independent random 8 B read per probe from an index-sized array (no hashing, no verification).", w.present.len(), w.absent.len());
    println!("- matching: {} stream tokens, {:.1}% of positions matched, mean match length {:.2}; scone and baseline agree on every position. Ceiling: the probe ceiling / (n_max - 1) suffix probes per token.", w.stream.len(), 100.0 * hits as f64 / w.stream.len() as f64, hit_tokens as f64 / hits.max(1) as f64);
    println!("- gather: {} batches of {} Zipf-drawn slots, f16 out ({:.1} MiB per batch); Rows mapped: read from the file mapping (4 KiB page-cache pages); rows resident: the same table opened with OpenOptions::resident_rows (rows copied into transparent-huge-page memory). Baseline = Vec<f16> extend_from_slice per row (1 thread). Ceiling: single-thread memcpy of the same bytes per batch from a contiguous source rotating through 1 GiB (DRAM-bound).", w.batches.len(), a.batch, batch_bytes as f64 / (1 << 20) as f64);
    println!(
        "- median of {reps} timed runs after 1 warm-up ({match_reps} for matching); wall time {:.0}s.",
        t0.elapsed().as_secs_f64()
    );
    println!();
    for (g, ok) in goals {
        println!("- goal {g}: {}", if ok { "met" } else { "NOT met" });
    }

    if let Some(j) = &a.json {
        let metrics_json: Vec<_> = metrics
            .iter()
            .map(|r| {
                serde_json::json!({
                    "metric": r.metric, "scone": r.scone, "baseline": r.baseline, "ceiling": r.ceiling,
                    "scone_over_baseline": r.over_baseline(), "scone_over_ceiling": r.over_ceiling(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "date": date,
            "machine": { "model": model, "logical_cores": cores },
            "params": { "fgrams": a.fgrams, "dim": a.dim, "dtype": "f16", "n_max": N_MAX, "vocab": synth::VOCAB,
                        "zipf_s": synth::ZIPF_S, "queries": w.stream.len(), "probes": a.probes, "batch": a.batch,
                        "batches": a.batches, "reps": reps, "memory_budget_mib": a.memory_budget_mib, "seed": spec.seed },
            "build": { "rows": summary.rows, "file_bytes": summary.file_bytes, "index_bytes": summary.index_bytes,
                       "spilled_runs": summary.spilled_runs, "key_collisions": summary.key_collisions,
                       "build_s": build_time.as_secs_f64(), "baseline_build_s": base_time.as_secs_f64(),
                       "generation_s": gen.as_secs_f64(), "write_ceiling_s": write_ceil.as_secs_f64(),
                       "open_s": open_time.as_secs_f64(), "open_resident_rows_s": resident_open.as_secs_f64(), "verify_s": verify_time.as_secs_f64(),
                       "baseline_map_bytes": base_map_bytes },
            "matching": { "positions": w.stream.len(), "hits": hits, "hit_tokens": hit_tokens },
            "metrics": metrics_json,
            "goals": goals.iter().map(|(g, ok)| serde_json::json!({ "goal": g, "met": ok })).collect::<Vec<_>>(),
            "wall_s": t0.elapsed().as_secs_f64(),
        });
        std::fs::write(j, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", j.display()))?;
    }

    drop(table);
    if !a.keep {
        std::fs::remove_file(&path)?;
        let _ = std::fs::remove_dir(&a.dir); // only if empty
    }
    Ok(())
}
