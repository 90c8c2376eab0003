//! `scone info`, `scone get`, `scone verify`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use engine::dtype::decode_row;
use engine::read::{BackendKind, ModeInfo, ReadMode, ReaderOptions, RowReader};
use engine::{format, Table};
use serde_json::json;

use crate::json_num::{float, float32, floats, opt_u64_str, u64_str};

use crate::text::resolve;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Rows from the file mapping (page cache).
    Mmap,
    /// Rows copied at open into huge-page memory.
    Resident,
    /// `O_DIRECT` reads on every call (io_uring or a pread pool).
    Direct,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    Uring,
    Pread,
    Auto,
}

/// How rows are read (`engine::read::RowReader`); docs/READ_PATH.md.
#[derive(Args, Clone, Copy, Debug)]
pub struct ReadArgs {
    /// Read mode.
    #[arg(long, value_enum, default_value = "mmap")]
    pub mode: ModeArg,
    /// Direct mode: reads in flight (pread: threads, at most 64).
    #[arg(long, default_value_t = 128)]
    pub queue_depth: u32,
    /// Direct mode: io_uring, the pread pool, or io_uring falling back to pread.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Direct mode: bytes of the hottest rows held in memory (hot prefix).
    #[arg(long, default_value_t = 0)]
    pub hot_bytes: u64,
    /// Direct mode, io_uring: a kernel thread polls the submission queue,
    /// sleeping after IDLE_MS idle milliseconds (falls back to a plain ring where refused).
    #[arg(long, value_name = "IDLE_MS")]
    pub sqpoll: Option<u32>,
    /// Direct mode, io_uring: register the bounce buffers with the ring (READ_FIXED).
    #[arg(long)]
    pub registered_buffers: bool,
    /// Tests only: make io_uring setup fail, as on a kernel without it.
    #[arg(long, hide = true)]
    pub simulate_uring_failure: bool,
    /// Checksum the rows at open (reads the whole rows section once; without
    /// it a damaged row is served as it is, and only `scone verify` finds it).
    #[arg(long)]
    pub verify_rows: bool,
}

impl ReadArgs {
    /// Opens the table, checksumming its rows too with `--verify-rows`.
    pub fn open_table(&self, path: &Path) -> Result<Table> {
        let opts = engine::OpenOptions { verify_rows: self.verify_rows, ..engine::OpenOptions::default() };
        Ok(Table::open_with(path, opts)?)
    }

    pub fn open<'t>(&self, t: &'t Table) -> Result<RowReader<'t>> {
        let backend = match self.backend {
            BackendArg::Uring => BackendKind::Uring,
            BackendArg::Pread => BackendKind::Pread,
            BackendArg::Auto => BackendKind::Auto,
        };
        let mode = match self.mode {
            ModeArg::Mmap => ReadMode::Mmap,
            ModeArg::Resident => ReadMode::Resident,
            ModeArg::Direct => ReadMode::Direct { backend, queue_depth: self.queue_depth },
        };
        let opts = ReaderOptions {
            hot_bytes: self.hot_bytes,
            simulate_uring_setup_failure: self.simulate_uring_failure,
            sqpoll: self.sqpoll,
            registered_buffers: self.registered_buffers,
            ..ReaderOptions::default()
        };
        RowReader::open_with(t, mode, opts).with_context(|| format!("cannot open a {mode:?} reader"))
    }
}

fn mode_json(m: &ModeInfo) -> serde_json::Value {
    json!({
        "mode": m.mode,
        "backend": m.backend,
        "queue_depth": m.queue_depth,
        "pread_threads": m.pread_threads,
        "fallback": m.fallback,
        "o_direct": m.o_direct,
        "hot_rows": m.hot_rows,
        "hot_bytes": m.hot_bytes,
        "sqpoll": m.sqpoll,
        "description": m.to_string(),
    })
}

#[derive(Args)]
pub struct InfoArgs {
    pub table: PathBuf,
    /// Print JSON (format in docs/CLI.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let path = a.table.as_path();
    let as_json = a.json;
    let t = Table::open(path)?;
    let reader = a.read.open(&t)?;
    let mode = reader.mode_info();
    let h = t.header();
    let index_bytes_per_key = t.index_bytes() as f64 / h.rows as f64;
    if as_json {
        let v = json!({
            "path": path.display().to_string(),
            "format_version": format::FORMAT_VERSION,
            "file_bytes": t.file_len(),
            "dim": h.dim,
            "dtype": h.dtype.name(),
            "n_max": h.n_max,
            "vocab_size": h.vocab_size,
            "rows": h.rows,
            "row_stride": h.row_stride,
            "key_seed": u64_str(h.key_seed),
            "hottest_first": h.hottest_first,
            "index": {
                "kind": "linear-probing",
                "capacity": h.index.capacity,
                "entries": h.index.len,
                "slot_bits": h.index.slot_bits,
                "key_bits": h.index.key_bits,
                "markers": h.index.markers,
                "bytes": t.index_bytes(),
                "bytes_per_key": index_bytes_per_key,
            },
            "key_collisions": h.build.key_collisions,
            "build": { "created_unix": h.build.created_unix, "tool": h.build.tool, "source": h.build.source },
            "tokenizer": h.tokenizer.as_ref().map(|t| json!({"kind": t.kind, "fingerprint": format!("{:016x}", t.fingerprint)})),
            "sections": h.sections.iter().map(|s| json!({
                "kind": s.kind.to_string(), "offset": s.offset, "len": s.len, "checksum": format!("{:016x}", s.checksum),
            })).collect::<Vec<_>>(),
            "read_mode": mode_json(&mode),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("table        {}", path.display());
    outln!("format       v{} ({} bytes)", format::FORMAT_VERSION, t.file_len());
    outln!("rows         {} x dim {} {} (stride {} bytes)", h.rows, h.dim, h.dtype, h.row_stride);
    outln!("n-grams      2..={} tokens, vocabulary {}", h.n_max, h.vocab_size);
    outln!("order        {}", if h.hottest_first { "hottest first (by count)" } else { "input order" });
    outln!(
        "index        linear probing, {} entries for {} home slots, {:.2} bytes/key, {} suffix markers, {} key collisions",
        h.index.len, h.index.capacity, index_bytes_per_key, h.index.markers, h.build.key_collisions
    );
    outln!("key seed     {:#018x}", h.key_seed);
    match &h.tokenizer {
        Some(tk) => outln!("tokenizer    {} (fingerprint {:016x})", tk.kind, tk.fingerprint),
        None => outln!("tokenizer    none"),
    }
    outln!("built        {} by {}", h.build.created_unix, h.build.tool);
    if !h.build.source.is_empty() {
        outln!("source       {}", h.build.source);
    }
    outln!("read mode    {mode}");
    outln!("sections");
    for s in &h.sections {
        outln!("  {:<10} offset {:>14}  len {:>14}  xxh3 {:016x}", s.kind.to_string(), s.offset, s.len, s.checksum);
    }
    Ok(())
}

#[derive(Args)]
pub struct GetArgs {
    pub table: PathBuf,
    /// The n-gram's token ids (e.g. `12 7 93`).
    pub ids: Vec<String>,
    /// Give the n-gram as text, tokenized with the table's embedded tokenizer.
    #[arg(long, conflicts_with = "ids")]
    pub text: Option<String>,
    /// Print every value of the row, not only a summary.
    #[arg(long)]
    pub full: bool,
    /// Print JSON (format in docs/CLI.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn get(a: GetArgs) -> Result<()> {
    let t = a.read.open_table(&a.table)?;
    let reader = a.read.open(&t)?;
    let (ngram, pieces) = resolve(&t, &a.ids, a.text.as_deref())?;
    let found = t.lookup(&ngram);
    let row = match found {
        Some(s) => {
            let mut buf = vec![0u8; reader.row_bytes()];
            reader.read_rows(&[s], &mut buf).with_context(|| format!("reading row {s}"))?;
            Some(decode_row(&buf, t.dtype()))
        }
        None => None,
    };
    let summary = row.as_ref().map(|r| {
        let (min, max) = r.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / r.len() as f64;
        let norm = r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        (min, max, mean, norm)
    });
    if a.json {
        let v = json!({
            "read_mode": mode_json(&reader.mode_info()),
            "ngram": ngram,
            "pieces": pieces,
            "found": found.is_some(),
            "slot": found,
            "count": opt_u64_str(found.and_then(|s| t.count(s))),
            "row": row.as_ref().zip(summary).map(|(r, (min, max, mean, norm))| json!({
                "dim": r.len(), "dtype": t.dtype().name(),
                "min": float32(min), "max": float32(max), "mean": float(mean), "l2_norm": float(norm),
                "head": floats(&r[..r.len().min(8)]),
                "values": if a.full { floats(r) } else { serde_json::Value::Null },
            })),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let shown = if pieces.iter().all(|p| !p.is_empty()) { format!(" \"{}\"", pieces.join(" ")) } else { String::new() };
    match (found, row, summary) {
        (Some(slot), Some(r), Some((min, max, mean, norm))) => {
            outln!("{ngram:?}{shown}: slot {slot}");
            if !matches!(a.read.mode, ModeArg::Mmap) {
                outln!("read mode    {}", reader.mode_info());
            }
            if let Some(c) = t.count(slot) {
                outln!("count        {c}");
            }
            outln!(
                "row          dim {} {}, min {min:.4}, max {max:.4}, mean {mean:.4}, l2 {norm:.4}",
                r.len(),
                t.dtype()
            );
            let head: Vec<String> =
                r.iter().take(if a.full { r.len() } else { 8 }).map(|v| format!("{v:.4}")).collect();
            outln!("values       [{}{}]", head.join(", "), if a.full || r.len() <= 8 { "" } else { ", ..." });
        }
        _ => outln!("{ngram:?}{shown}: not in the table"),
    }
    Ok(())
}

pub fn verify(path: &Path) -> Result<()> {
    let t = Table::open(path)?;
    let started = std::time::Instant::now();
    // check_rows: the checksums, and for damaged rows the first row holding a
    // value the builder never writes.
    let sections = engine::verify_rows::check_rows(&t).with_context(|| "verification failed")?;
    let bytes: u64 = sections.iter().map(|s| s.len).sum();
    for s in &sections {
        outln!("ok  {:<10} {:>14} bytes  xxh3 {:016x}", s.kind.to_string(), s.len, s.checksum);
    }
    let secs = started.elapsed().as_secs_f64();
    outln!("{}: all {} sections verified ({bytes} bytes in {secs:.2} s)", path.display(), sections.len());
    Ok(())
}
