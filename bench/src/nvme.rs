//! `scone-bench nvme`: direct reads of a table of 4 KiB rows against the
//! device's random-read ceiling (fio, or uring-ceiling where fio is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::read::{AlignedBuf, BackendKind, ReadMode, ReadStats, ReaderOptions, RowReader};
use engine::Table;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::synth::{self, Spec};
use crate::zipf::RankSampler;

/// d = 2048 f16: 4096-byte rows, one page each.
pub const DIM: usize = 2048;

/// Which tool gave the ceiling.
#[derive(Clone, Debug)]
pub enum CeilingTool {
    Fio,
    UringCeiling(PathBuf),
}

impl CeilingTool {
    /// fio when `fio --version` runs, else the uring-ceiling binary at `fallback`.
    pub fn detect(fallback: &Path) -> Result<CeilingTool> {
        if Command::new("fio").arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(CeilingTool::Fio);
        }
        if fallback.is_file() {
            return Ok(CeilingTool::UringCeiling(fallback.to_path_buf()));
        }
        bail!("neither fio nor {} is available (see /work/shared/tools/uring-ceiling/README.md)", fallback.display())
    }

    pub fn name(&self) -> String {
        match self {
            CeilingTool::Fio => {
                let v = Command::new("fio").arg("--version").output().map(|o| o.stdout).unwrap_or_default();
                let v = String::from_utf8_lossy(&v).trim().to_string();
                format!("{v} (ioengine=io_uring, direct=1, rw=randread, bs=4k)")
            }
            CeilingTool::UringCeiling(p) => format!("uring-ceiling ({})", p.display()),
        }
    }

    /// Random 4 KiB O_DIRECT reads of `file` at `qd` for `seconds`: IOPS.
    pub fn iops(&self, file: &Path, qd: u32, seconds: u64) -> Result<f64> {
        match self {
            CeilingTool::Fio => {
                let out = Command::new("fio")
                    .args(["--name=ceiling", "--rw=randread", "--bs=4k", "--direct=1", "--ioengine=io_uring"])
                    .arg(format!("--filename={}", file.display()))
                    .arg(format!("--iodepth={qd}"))
                    .arg(format!("--runtime={seconds}"))
                    .args(["--time_based", "--readonly", "--numjobs=1", "--output-format=json"])
                    .output()
                    .context("running fio")?;
                if !out.status.success() {
                    bail!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                parse_fio_iops(&String::from_utf8_lossy(&out.stdout))
            }
            CeilingTool::UringCeiling(bin) => {
                let out = Command::new(bin)
                    .arg(file)
                    .args(["4096", &qd.to_string(), &seconds.to_string()])
                    .output()
                    .context("running uring-ceiling")?;
                if !out.status.success() {
                    bail!("uring-ceiling failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                parse_uring_ceiling_iops(&String::from_utf8_lossy(&out.stdout))
            }
        }
    }
}

/// Read IOPS summed over the jobs of fio's JSON output (text before the JSON,
/// such as warnings, is skipped).
pub fn parse_fio_iops(out: &str) -> Result<f64> {
    let start = out.find('{').context("no JSON in fio output")?;
    let v: serde_json::Value = serde_json::from_str(&out[start..]).context("parsing fio JSON")?;
    let jobs = v["jobs"].as_array().context("fio JSON has no jobs")?;
    Ok(jobs.iter().filter_map(|j| j["read"]["iops"].as_f64()).sum())
}

/// The number after "iops" (any case, `=` or `:` or space) in uring-ceiling's output.
pub fn parse_uring_ceiling_iops(out: &str) -> Result<f64> {
    let lower = out.to_lowercase();
    let at = lower.find("iops").context("no IOPS in uring-ceiling output")?;
    let num: String = lower[at + 4..]
        .trim_start_matches(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().with_context(|| format!("no number after IOPS in {out:?}"))
}

/// The `p`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The median of `v` (the mean of the middle two for an even count); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The run with the median rows/s (the lower middle one for an even count).
pub fn median_figure(mut runs: Vec<Figure>) -> Figure {
    runs.sort_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s));
    let mid = (runs.len().max(1) - 1) / 2;
    runs.swap_remove(mid)
}

/// The smallest and largest of `v` (NaN, NaN if empty).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// Where [`measure`] reads rows into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutBuf {
    /// A `Vec<u8>` (not 4096-aligned: the direct reader goes through its bounce buffer).
    Vec,
    /// An [`AlignedBuf`]: 4 KiB rows are read straight into it (`bounce_bytes` 0).
    Aligned,
}

/// One measured workload.
#[derive(Clone, Debug)]
pub struct Figure {
    pub workload: String,
    pub qd: u32,
    pub rows_per_s: f64,
    pub gb_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub hit_ratio: f64,
    /// Rows read from storage per second (unique rows not in the hot prefix).
    pub storage_rows_per_s: f64,
    pub batches: usize,
    /// Bytes that went through the reader's bounce buffer (`ReadStats::bounce_bytes`, summed).
    pub bounce_bytes: u64,
}

/// Reads pre-drawn batches round-robin for `seconds` through `reader` into `out`.
pub fn measure(
    name: &str,
    qd: u32,
    reader: &RowReader<'_>,
    batches: &[Vec<u32>],
    seconds: f64,
    out: OutBuf,
) -> Result<Figure> {
    let rb = reader.row_bytes();
    let len = batches[0].len() * rb;
    let (mut vec_out, mut aligned_out);
    let out: &mut [u8] = match out {
        OutBuf::Vec => {
            vec_out = vec![0u8; len];
            &mut vec_out
        }
        OutBuf::Aligned => {
            aligned_out = AlignedBuf::new(len).context("allocating the aligned output buffer")?;
            &mut aligned_out
        }
    };
    let mut lat = Vec::new();
    let mut total = ReadStats::default();
    // One untimed batch (ring and bounce buffer set up).
    reader.read_rows(&batches[0], out)?;
    let t0 = Instant::now();
    let deadline = Duration::from_secs_f64(seconds);
    let mut i = 1;
    while t0.elapsed() < deadline {
        let b = &batches[i % batches.len()];
        let t = Instant::now();
        let st = reader.read_rows(b, out)?;
        lat.push(t.elapsed().as_secs_f64());
        total.add(&st);
        i += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(&*out);
    Ok(Figure::from_run(name, qd, rb, secs, &total, lat))
}

impl Figure {
    /// The figure of one timed run: `secs` of wall time, the summed stats, and
    /// the per-batch latencies in seconds.
    fn from_run(name: &str, qd: u32, row_bytes: usize, secs: f64, total: &ReadStats, mut lat: Vec<f64>) -> Figure {
        lat.sort_by(f64::total_cmp);
        Figure {
            workload: name.to_string(),
            qd,
            rows_per_s: total.rows_requested as f64 / secs,
            gb_per_s: (total.rows_requested * row_bytes) as f64 / secs / 1e9,
            p50_ms: quantile(&lat, 0.5) * 1e3,
            p99_ms: quantile(&lat, 0.99) * 1e3,
            hit_ratio: total.hit_ratio(),
            storage_rows_per_s: total.rows_read as f64 / secs,
            batches: lat.len(),
            bounce_bytes: total.bounce_bytes,
        }
    }
}

/// Like [`measure`], through [`RowReader::prefetch`] with `depth` tickets in
/// flight: the next batches are queued (and share the reader's ring) while the
/// oldest is waited on. Latency is from a ticket's submission to its rows.
pub fn measure_tickets(
    name: &str,
    qd: u32,
    reader: &RowReader<'_>,
    batches: &[Vec<u32>],
    seconds: f64,
    depth: usize,
) -> Result<Figure> {
    let rb = reader.row_bytes();
    let mut lat = Vec::new();
    let mut total = ReadStats::default();
    reader.prefetch(batches[0].clone()).wait()?;
    let t0 = Instant::now();
    let deadline = Duration::from_secs_f64(seconds);
    let mut i = 1;
    let mut inflight = std::collections::VecDeque::new();
    while inflight.len() < depth.max(1) {
        inflight.push_back((Instant::now(), reader.prefetch(batches[i % batches.len()].clone())));
        i += 1;
    }
    while let Some((t, tk)) = inflight.pop_front() {
        let (rows, st) = tk.wait()?;
        lat.push(t.elapsed().as_secs_f64());
        total.add(&st);
        std::hint::black_box(&rows);
        if t0.elapsed() < deadline {
            inflight.push_back((Instant::now(), reader.prefetch(batches[i % batches.len()].clone())));
            i += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(Figure::from_run(name, qd, rb, secs, &total, lat))
}

/// The ceiling and one scone workload at one queue depth, measured alternately.
#[derive(Clone, Debug)]
pub struct Interleaved {
    pub qd: u32,
    /// Ceiling IOPS in measurement order (`reps + 1` of them).
    pub ceilings: Vec<f64>,
    /// The scone runs in measurement order (`reps`), the k-th between ceilings k and k + 1.
    pub runs: Vec<Figure>,
}

impl Interleaved {
    /// Storage reads/s of each scone run, in order.
    pub fn scone_reads(&self) -> Vec<f64> {
        self.runs.iter().map(|f| f.storage_rows_per_s).collect()
    }

    /// Median scone storage reads/s over the median ceiling IOPS.
    pub fn ratio(&self) -> f64 {
        median(&self.scone_reads()) / median(&self.ceilings)
    }

    /// Bounce-buffer bytes summed over the scone runs.
    pub fn bounce_bytes(&self) -> u64 {
        self.runs.iter().map(|f| f.bounce_bytes).sum()
    }

    /// "ceiling 51234, scone 47000, ceiling ..." in measurement order.
    pub fn sequence(&self) -> String {
        let mut parts = Vec::new();
        for (i, c) in self.ceilings.iter().enumerate() {
            parts.push(format!("ceiling {}", f3(*c)));
            if let Some(f) = self.runs.get(i) {
                parts.push(format!("scone {}", f3(f.storage_rows_per_s)));
            }
        }
        parts.join(", ")
    }
}

/// Alternates `ceiling` and `scone` `reps` times, starting and ending with the
/// ceiling: ceiling(0), scone(0), ceiling(1), ..., scone(reps - 1), ceiling(reps).
pub fn interleave(
    qd: u32,
    reps: usize,
    mut ceiling: impl FnMut(usize) -> Result<f64>,
    mut scone: impl FnMut(usize) -> Result<Figure>,
) -> Result<Interleaved> {
    if reps == 0 {
        bail!("--reps must be at least 1");
    }
    let mut ceilings = vec![ceiling(0)?];
    let mut runs = Vec::with_capacity(reps);
    for i in 0..reps {
        runs.push(scone(i)?);
        ceilings.push(ceiling(i + 1)?);
    }
    Ok(Interleaved { qd, ceilings, runs })
}

/// The interleaved uniform-vs-ceiling table: medians, their ratio (the IOPS
/// goal at QD >= 32), min/max of both, and the bounce-buffer bytes.
pub fn interleaved_markdown(rows: &[Interleaved], target_ratio: f64) -> String {
    let mut s = String::from(
        "| QD | ceiling runs | ceiling IOPS median | ceiling min | ceiling max | uniform runs | uniform reads/s median \
         | uniform min | uniform max | median / median | p50 batch ms | p99 batch ms | bounce bytes | goal |\n",
    );
    s.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in rows {
        let (cmin, cmax) = min_max(&r.ceilings);
        let reads = r.scone_reads();
        let (smin, smax) = min_max(&reads);
        let ratio = r.ratio();
        let goal = if r.qd >= 32 {
            let met = if ratio >= target_ratio { "met" } else { "not met" };
            format!("≥ {:.0} % of ceiling: {met}", target_ratio * 100.0)
        } else {
            "—".into()
        };
        let p50: Vec<f64> = r.runs.iter().map(|f| f.p50_ms).collect();
        let p99: Vec<f64> = r.runs.iter().map(|f| f.p99_ms).collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.qd,
            r.ceilings.len(),
            f3(median(&r.ceilings)),
            f3(cmin),
            f3(cmax),
            r.runs.len(),
            f3(median(&reads)),
            f3(smin),
            f3(smax),
            f3(ratio),
            f3(median(&p50)),
            f3(median(&p99)),
            r.bounce_bytes(),
            goal
        ));
    }
    s
}

/// `count` batches of `batch` uniform slots in `0..rows`.
pub fn uniform_batches(rows: u64, batch: usize, count: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| (0..batch).map(|_| rng.gen_range(0..rows) as u32).collect()).collect()
}

/// `count` batches of Zipf(`s`) ranks; in a counted synthetic table slot == rank.
pub fn zipf_batches(rows: u64, s: f64, batch: usize, count: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut z = RankSampler::new(rows, s, seed);
    (0..count).map(|_| (0..batch).map(|_| z.next_rank() as u32).collect()).collect()
}

/// Opens the table at `path` if it has `rows` rows of d = [`DIM`], else builds it.
pub fn table(path: &Path, rows: u64, log: &dyn Fn(&str)) -> Result<(Table, bool)> {
    if let Ok(t) = Table::open(path) {
        if t.rows() == rows && t.dim() == DIM {
            return Ok((t, true));
        }
    }
    let spec = Spec::new(rows, DIM);
    let dir = path.parent().unwrap_or(Path::new("."));
    log(&format!("building {} ({rows} rows of 4 KiB)", path.display()));
    let cfg = synth::build_config(&spec, 1 << 30, Some(dir));
    let (_, took) = synth::build_table(&spec, path, cfg)?;
    log(&format!("built in {:.1}s", took.as_secs_f64()));
    Ok((Table::open(path)?, false))
}

/// Tries `echo 3 > /proc/sys/vm/drop_caches`; whether it was allowed.
pub fn drop_caches() -> bool {
    // sync first, so that dirty pages are dropped too.
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Direct io_uring reader at `qd` with a hot prefix of `hot_bytes`, SQPOLL
/// (idle ms) if `sqpoll` is given, and `spin_us` of completion polling.
pub fn reader<'t>(t: &'t Table, qd: u32, hot_bytes: u64, sqpoll: Option<u32>, spin_us: u32) -> Result<RowReader<'t>> {
    let mode = ReadMode::Direct { backend: BackendKind::Uring, queue_depth: qd };
    let opts = ReaderOptions { hot_bytes, sqpoll, uring_spin_us: spin_us, ..ReaderOptions::default() };
    let r = RowReader::open_with(t, mode, opts)?;
    if !r.is_o_direct() {
        bail!("{}: O_DIRECT refused; the figures would measure the page cache", t.path().display());
    }
    Ok(r)
}

fn f3(v: f64) -> String {
    crate::report::fmt(Some(v))
}

/// The results table. `ceilings[i]` is the IOPS of `qds[i]` (the median of the interleaved runs).
pub fn markdown(figs: &[Figure], qds: &[u32], ceilings: &[f64], target_ratio: f64, zipf_goal: f64) -> String {
    let mut s = String::from(
        "| workload | QD | rows/s | GB/s | p50 batch ms | p99 batch ms | hot hit ratio | storage reads/s | ceiling IOPS | reads/ceiling | bounce bytes | goal |\n",
    );
    s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for f in figs {
        let ceil = qds.iter().position(|&q| q == f.qd).map(|i| ceilings[i]).unwrap_or(f64::NAN);
        let ratio = f.storage_rows_per_s / ceil;
        let goal = if f.workload == "uniform" && f.qd >= 32 {
            let met = if ratio >= target_ratio { "met" } else { "not met" };
            format!("≥ {:.0} % of ceiling: {met}", target_ratio * 100.0)
        } else if f.workload.starts_with("zipf") && f.hit_ratio > 0.0 {
            // "zipf, 10 % hot prefix[, 4 tickets]" against "zipf, no cache[, 4 tickets]".
            let base_name = f.workload.replace("10 % hot prefix", "no cache");
            let base = figs.iter().find(|g| g.qd == f.qd && g.workload == base_name);
            match base {
                Some(b) => {
                    let x = f.rows_per_s / b.rows_per_s;
                    let met = if x >= zipf_goal { "met" } else { "not met" };
                    format!("≥ {zipf_goal:.0}x uncached Zipf: {:.2}x, {met}", x)
                }
                None => "—".into(),
            }
        } else {
            "—".into()
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.workload,
            f.qd,
            f3(f.rows_per_s),
            f3(f.gb_per_s),
            f3(f.p50_ms),
            f3(f.p99_ms),
            f3(f.hit_ratio),
            f3(f.storage_rows_per_s),
            f3(ceil),
            f3(ratio),
            f.bounce_bytes,
            goal
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json_with_a_warning_first() {
        let out = "fio: some warning\n{\"jobs\": [{\"read\": {\"iops\": 1234.5}}, {\"read\": {\"iops\": 10.0}}]}";
        assert_eq!(parse_fio_iops(out).unwrap(), 1244.5);
        assert!(parse_fio_iops("no json").is_err());
    }

    #[test]
    fn parses_uring_ceiling_output() {
        assert_eq!(parse_uring_ceiling_iops("qd 32: IOPS=51234.5 bw=...").unwrap(), 51234.5);
        assert_eq!(parse_uring_ceiling_iops("iops: 7").unwrap(), 7.0);
        assert!(parse_uring_ceiling_iops("nothing").is_err());
    }

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn tickets_and_synchronous_reads_count_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (t, reused) = table(&dir.path().join("t.scone"), 2000, &|_| {}).unwrap();
        assert!(!reused);
        let mode = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 8 };
        let r = RowReader::open_with(&t, mode, ReaderOptions { hot_bytes: 200 * 4096, ..Default::default() }).unwrap();
        let b = uniform_batches(2000, 256, 4, 3);
        let s = measure("uniform", 8, &r, &b, 0.2, OutBuf::Vec).unwrap();
        let a = measure("uniform", 8, &r, &b, 0.2, OutBuf::Aligned).unwrap();
        let k = measure_tickets("uniform, 4 tickets", 8, &r, &b, 0.2, 4).unwrap();
        // 4 KiB rows into a 4096-aligned buffer: no bounce copy; a Vec goes through it.
        assert_eq!(a.bounce_bytes, 0, "{a:?}");
        assert!(s.bounce_bytes > 0, "{s:?}");
        for f in [&s, &a, &k] {
            assert!(f.batches > 0 && f.rows_per_s > 0.0 && f.storage_rows_per_s > 0.0, "{f:?}");
            assert!(f.hit_ratio > 0.05 && f.hit_ratio < 0.15, "{f:?}");
            assert!(f.p50_ms <= f.p99_ms);
        }
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, 5.0, 1.0]), (1.0, 5.0));
        assert!(min_max(&[]).0.is_nan());
    }

    #[test]
    fn a_cached_zipf_figure_is_set_against_its_own_uncached_kind() {
        let f = |name: &str, rows: f64, hit: f64| Figure { workload: name.into(), hit_ratio: hit, ..fig(rows) };
        let figs = [
            f("zipf, no cache", 100.0, 0.0),
            f("zipf, 10 % hot prefix", 250.0, 0.9),
            f("zipf, no cache, 4 tickets", 200.0, 0.0),
            f("zipf, 10 % hot prefix, 4 tickets", 800.0, 0.9),
        ];
        let md = markdown(&figs, &[32], &[1000.0], 0.9, 3.0);
        assert!(md.contains("uncached Zipf: 2.50x, not met"), "{md}");
        assert!(md.contains("uncached Zipf: 4.00x, met"), "{md}");
    }

    #[test]
    fn the_median_figure_is_the_middle_run() {
        assert_eq!(median_figure(vec![fig(3.0), fig(1.0), fig(2.0)]).rows_per_s, 2.0);
        assert_eq!(median_figure(vec![fig(4.0), fig(1.0), fig(3.0), fig(2.0)]).rows_per_s, 2.0);
        assert_eq!(median_figure(vec![fig(7.0)]).rows_per_s, 7.0);
    }

    fn fig(reads: f64) -> Figure {
        Figure {
            workload: "uniform".into(),
            qd: 32,
            rows_per_s: reads,
            gb_per_s: 0.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            hit_ratio: 0.0,
            storage_rows_per_s: reads,
            batches: 1,
            bounce_bytes: 0,
        }
    }

    #[test]
    fn interleave_alternates_starting_and_ending_with_the_ceiling() {
        let order = std::cell::RefCell::new(Vec::new());
        let ceil = [100.0, 80.0, 120.0, 90.0];
        let scone = [95.0, 70.0, 85.0];
        let r = interleave(
            32,
            3,
            |i| {
                order.borrow_mut().push(format!("c{i}"));
                Ok(ceil[i])
            },
            |i| {
                order.borrow_mut().push(format!("s{i}"));
                Ok(fig(scone[i]))
            },
        )
        .unwrap();
        assert_eq!(order.into_inner(), ["c0", "s0", "c1", "s1", "c2", "s2", "c3"]);
        assert_eq!(r.ceilings, ceil);
        // median scone 85, median ceiling (90 + 100) / 2 = 95.
        assert!((r.ratio() - 85.0 / 95.0).abs() < 1e-12);
        assert_eq!(
            r.sequence(),
            "ceiling 100, scone 95.0, ceiling 80.0, scone 70.0, ceiling 120, scone 85.0, ceiling 90.0"
        );
        let md = interleaved_markdown(&[r], 0.9);
        assert!(md.lines().nth(2).unwrap().ends_with("| 0 | ≥ 90 % of ceiling: not met |"), "{md}");
        assert_eq!(md.lines().next().unwrap().matches('|').count(), md.lines().nth(2).unwrap().matches('|').count());
        assert!(interleave(1, 0, |_| Ok(1.0), |_| Ok(fig(1.0))).is_err());
    }

    #[test]
    fn batches_are_in_range_and_zipf_is_skewed() {
        let u = uniform_batches(1000, 64, 3, 1);
        assert!(u.iter().flatten().all(|&s| s < 1000) && u.len() == 3 && u[0].len() == 64);
        let z = zipf_batches(1000, 1.1, 4096, 1, 1);
        let hot = z[0].iter().filter(|&&s| s < 100).count();
        assert!(hot > 4096 / 2, "{hot}");
    }
}
