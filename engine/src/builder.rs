//! The bulk builder: streams (n-gram, row, count) records into a new immutable
//! table file with bounded memory.
//!
//! Rows go hottest-first when counts are given (an external sort by descending
//! count), otherwise in input order. Keys are sorted externally too, which finds
//! duplicate n-grams and key collisions and feeds the index writer in key order.
//! Everything is written to a hidden temporary file beside the target, fsynced
//! and renamed into place: an interrupted or failed build leaves no table visible.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use crate::dtype::{encode_row, Dtype, EncodeProblem};
use crate::error::BuildError;
use crate::extsort::ExternalSorter;
use crate::format::{
    align_up, encode_header_block, row_stride, BuildInfo, Header, IndexParams, Section, SectionKind, TokenizerInfo,
    HEADER_BLOCK, MAX_N, SECTION_ALIGN, TOKEN_PAD,
};
use crate::index::IndexWriter;
use crate::key::{ngram_key, DEFAULT_KEY_SEED};

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    pub dim: u32,
    pub dtype: Dtype,
    /// Longest n-gram (2..=16).
    pub n_max: u32,
    /// Token ids must be below this.
    pub vocab_size: u32,
    pub key_seed: u64,
    /// Bytes of sort buffers the build may hold in memory (plus a few MiB of I/O buffers).
    pub memory_budget: usize,
    /// Where sort runs spill; default: the system temporary directory.
    pub temp_dir: Option<PathBuf>,
    /// Free text stored in the header (input files, trainer run...), at most 1024 bytes.
    pub source: String,
    /// Replace an existing table at the target path.
    pub overwrite: bool,
    /// Tokenizer to embed: (kind, serialized bytes).
    pub tokenizer: Option<(String, Vec<u8>)>,
    /// Bits of each key kept (64). Lower only to force key collisions in tests.
    pub key_bits: u32,
}

impl BuildConfig {
    pub fn new(dim: u32, dtype: Dtype, n_max: u32, vocab_size: u32) -> Self {
        BuildConfig {
            dim,
            dtype,
            n_max,
            vocab_size,
            key_seed: DEFAULT_KEY_SEED,
            memory_budget: 1 << 30,
            temp_dir: None,
            source: String::new(),
            overwrite: false,
            tokenizer: None,
            key_bits: 64,
        }
    }

    fn validate(&self) -> Result<(), BuildError> {
        let bad = |m: String| Err(BuildError::Config(m));
        if self.dim == 0 {
            return bad("dim must be at least 1".into());
        }
        if !(2..=MAX_N as u32).contains(&self.n_max) {
            return bad(format!("n_max must be in 2..={MAX_N}, got {}", self.n_max));
        }
        if self.vocab_size == 0 || self.vocab_size == u32::MAX {
            return bad(format!("vocab_size must be in 1..{}, got {}", u32::MAX, self.vocab_size));
        }
        if !(1..=64).contains(&self.key_bits) {
            return bad(format!("key_bits must be in 1..=64, got {}", self.key_bits));
        }
        if self.source.len() > 1024 {
            return bad(format!("source text is {} bytes; at most 1024", self.source.len()));
        }
        Ok(())
    }
}

/// Phases reported to a progress callback during [`TableBuilder::finish_with_progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildPhase {
    /// Writing rows in their final order (done/total in rows).
    Rows,
    /// Sorting keys and writing the index (done/total in keys).
    Index,
}

/// What a finished build reports.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    pub path: PathBuf,
    pub rows: u64,
    pub key_collisions: u64,
    pub file_bytes: u64,
    pub index_bytes: u64,
    pub spilled_runs: usize,
}

/// Streams records into a new table. See the module docs.
pub struct TableBuilder {
    cfg: BuildConfig,
    path: PathBuf,
    tmp_path: PathBuf,
    out: Option<HashingWriter<BufWriter<File>>>,
    row_bytes: usize,
    stride: usize,
    records: u64,
    with_counts: Option<bool>,
    /// Counted builds: rows wait here to be laid out hottest-first.
    row_sorter: Option<ExternalSorter>,
    index_sorter: ExternalSorter,
    ngrams: HashingWriter<BufWriter<File>>,
    counts: HashingWriter<BufWriter<File>>,
    scratch: Vec<u8>,
    spilled_runs: usize,
    key_mask: u64,
    committed: bool,
}

const ROW_KEY: usize = 16; // !count BE, ordinal BE
const IDX_KEY: usize = 16; // key BE, ordinal BE

impl TableBuilder {
    /// Starts a build of the table at `path`.
    pub fn create(path: impl AsRef<Path>, cfg: BuildConfig) -> Result<Self, BuildError> {
        cfg.validate()?;
        let path = path.as_ref().to_path_buf();
        if path.exists() && !cfg.overwrite {
            return Err(BuildError::Exists { path });
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tmp_path = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| BuildError::Io { path: p, source }
        };
        let file = File::create(&tmp_path).map_err(io(&tmp_path))?;
        let mut out = BufWriter::with_capacity(4 << 20, file);
        // Placeholder header block; the real one is written last.
        out.write_all(&[0u8; HEADER_BLOCK as usize]).map_err(io(&tmp_path))?;
        let temp_dir = cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let side = || -> Result<HashingWriter<BufWriter<File>>, BuildError> {
            let f = tempfile::tempfile_in(&temp_dir).map_err(io(&temp_dir))?;
            Ok(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)))
        };
        let n_max = cfg.n_max as usize;
        let row_bytes = cfg.dim as usize * cfg.dtype.size();
        let key_mask = IndexParams { capacity: 0, slot_bits: 0, len: 0, key_bits: cfg.key_bits }.key_mask();
        Ok(TableBuilder {
            index_sorter: ExternalSorter::new(IDX_KEY + 4 + 4 * n_max, IDX_KEY, cfg.memory_budget / 4, &temp_dir),
            ngrams: side()?,
            counts: side()?,
            stride: row_stride(cfg.dim, cfg.dtype) as usize,
            row_bytes,
            scratch: vec![0u8; ROW_KEY + 4 * n_max + row_bytes],
            out: Some(HashingWriter::new(out)),
            cfg,
            path,
            tmp_path,
            records: 0,
            with_counts: None,
            row_sorter: None,
            spilled_runs: 0,
            key_mask,
            committed: false,
        })
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Adds one f-gram with its embedding row (converted to the table's dtype) and
    /// optional count. Either every record has a count or none does.
    pub fn push(&mut self, ngram: &[u32], row: &[f32], count: Option<u64>) -> Result<(), BuildError> {
        let record = self.records;
        let bad = |reason: String| Err(BuildError::BadRecord { record, reason });
        let n_max = self.cfg.n_max as usize;
        if record >= u32::MAX as u64 - 1 {
            return bad(format!("a table holds fewer than {} rows", u32::MAX - 1));
        }
        if ngram.len() < 2 || ngram.len() > n_max {
            return bad(format!("n-gram has {} tokens; tables hold 2..={n_max}", ngram.len()));
        }
        if let Some((i, &t)) = ngram.iter().enumerate().find(|(_, &t)| t >= self.cfg.vocab_size) {
            return bad(format!(
                "token id {t} at position {i} is not below the vocabulary size {}",
                self.cfg.vocab_size
            ));
        }
        if row.len() != self.cfg.dim as usize {
            return bad(format!("row has {} values; the table's dim is {}", row.len(), self.cfg.dim));
        }
        match (self.with_counts, count.is_some()) {
            (None, c) => {
                self.with_counts = Some(c);
                if c {
                    let rec_len = ROW_KEY + 4 * n_max + self.row_bytes;
                    let dir = self.cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
                    self.row_sorter = Some(ExternalSorter::new(rec_len, ROW_KEY, self.cfg.memory_budget / 4 * 3, &dir));
                }
            }
            (Some(true), false) => return bad("no count, but earlier records had counts; give all or none".into()),
            (Some(false), true) => return bad("has a count, but earlier records had none; give all or none".into()),
            _ => {}
        }
        // Encode the row into the tail of the scratch record.
        let (head, row_out) = self.scratch.split_at_mut(ROW_KEY + 4 * n_max);
        if let Err(p) = encode_row(row, self.cfg.dtype, row_out) {
            return bad(match p {
                EncodeProblem::NonFinite { column, value } => format!("value {value} at column {column} is not finite"),
                EncodeProblem::Overflow { column, value } => {
                    format!("value {value} at column {column} overflows {}", self.cfg.dtype)
                }
            });
        }
        head[..8].copy_from_slice(&(!count.unwrap_or(0)).to_be_bytes());
        head[8..16].copy_from_slice(&record.to_be_bytes());
        put_tokens(&mut head[ROW_KEY..], ngram);
        self.records += 1;
        match &mut self.row_sorter {
            Some(sorter) => sorter.push(&self.scratch).map_err(|e| self.temp_err(e)),
            None => {
                let rec = std::mem::take(&mut self.scratch);
                let r = self.lay_out(&rec, record);
                self.scratch = rec;
                r
            }
        }
    }

    fn temp_err(&self, source: std::io::Error) -> BuildError {
        BuildError::Io { path: self.cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir), source }
    }

    fn out_err(&self, source: std::io::Error) -> BuildError {
        BuildError::Io { path: self.tmp_path.clone(), source }
    }

    /// Writes one row-sort record at its final slot: row, n-gram, count, index key.
    fn lay_out(&mut self, rec: &[u8], slot: u64) -> Result<(), BuildError> {
        let n_max = self.cfg.n_max as usize;
        let tokens_bytes = &rec[ROW_KEY..ROW_KEY + 4 * n_max];
        let row = &rec[ROW_KEY + 4 * n_max..];
        let out = self.out.as_mut().expect("builder output is open until finish");
        let pad = [0u8; 64];
        let r = out.write_all(row).and_then(|_| out.write_all(&pad[..self.stride - self.row_bytes]));
        r.map_err(|e| self.out_err(e))?;
        self.ngrams.write_all(tokens_bytes).map_err(|e| self.temp_err(e))?;
        if self.with_counts == Some(true) {
            let count = !u64::from_be_bytes(rec[..8].try_into().expect("8 bytes"));
            self.counts.write_all(&count.to_le_bytes()).map_err(|e| self.temp_err(e))?;
        }
        let tokens = get_tokens(tokens_bytes);
        let key = ngram_key(&tokens, self.cfg.key_seed) & self.key_mask;
        let mut irec = Vec::with_capacity(IDX_KEY + 4 + 4 * n_max);
        irec.extend_from_slice(&key.to_be_bytes());
        irec.extend_from_slice(&rec[8..16]); // ordinal
        irec.extend_from_slice(&(slot as u32).to_le_bytes());
        irec.extend_from_slice(tokens_bytes);
        self.index_sorter.push(&irec).map_err(|e| self.temp_err(e))
    }

    /// Completes the table and makes it visible at its path.
    pub fn finish(self) -> Result<BuildSummary, BuildError> {
        self.finish_with_progress(&mut |_, _, _| {})
    }

    pub fn finish_with_progress(
        mut self,
        progress: &mut dyn FnMut(BuildPhase, u64, u64),
    ) -> Result<BuildSummary, BuildError> {
        let rows = self.records;
        if rows == 0 {
            return Err(BuildError::Empty);
        }
        if rows >= u32::MAX as u64 {
            return Err(BuildError::Config(format!("{rows} rows; a table holds fewer than 2^32 - 1")));
        }
        // 1. Rows in final order.
        if let Some(sorter) = self.row_sorter.take() {
            self.spilled_runs += sorter.runs_spilled();
            let mut sorted = sorter.finish().map_err(|e| self.temp_err(e))?;
            let mut rec = vec![0u8; self.scratch.len()];
            let mut slot = 0u64;
            while sorted.next_into(&mut rec).map_err(|e| self.temp_err(e))? {
                self.lay_out(&rec, slot)?;
                slot += 1;
                if slot.is_multiple_of(65536) {
                    progress(BuildPhase::Rows, slot, rows);
                }
            }
        }
        progress(BuildPhase::Rows, rows, rows);
        let mut out = self.out.take().expect("builder output is open until finish");
        let mut sections = Vec::new();
        let mut offset = HEADER_BLOCK;
        let rows_len = rows * self.stride as u64;
        sections.push(Section { kind: SectionKind::Rows, offset, len: rows_len, checksum: out.take_hash() });
        offset += rows_len;

        // 2. Counts and n-grams, copied from their side files.
        let with_counts = self.with_counts == Some(true);
        let side = [
            (SectionKind::Counts, std::mem::replace(&mut self.counts, dummy_writer()?), with_counts),
            (SectionKind::Ngrams, std::mem::replace(&mut self.ngrams, dummy_writer()?), true),
        ];
        for (kind, w, present) in side {
            if !present {
                continue;
            }
            offset = pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;
            let (mut file, len, checksum) = w.finish().map_err(|e| self.temp_err(e))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| self.temp_err(e))?;
            std::io::copy(&mut file, &mut out.inner).map_err(|e| self.out_err(e))?;
            sections.push(Section { kind, offset, len, checksum });
            offset += len;
        }

        // 3. Index, from keys in sorted order; find duplicates and collisions.
        offset = pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;
        out.take_hash();
        let index_sorter = std::mem::replace(&mut self.index_sorter, ExternalSorter::new(1, 1, 0, Path::new(".")));
        let keys = index_sorter.len();
        self.spilled_runs += index_sorter.runs_spilled();
        let mut sorted = index_sorter.finish().map_err(|e| self.temp_err(e))?;
        let mut writer = IndexWriter::new(keys, rows, self.cfg.key_bits);
        let n_max = self.cfg.n_max as usize;
        let mut rec = vec![0u8; IDX_KEY + 4 + 4 * n_max];
        let mut group: Vec<(u64, Vec<u8>)> = Vec::new(); // (ordinal, tokens) sharing the current key
        let mut group_key = None;
        let mut collisions = 0u64;
        let mut done = 0u64;
        while sorted.next_into(&mut rec).map_err(|e| self.temp_err(e))? {
            let key = u64::from_be_bytes(rec[..8].try_into().expect("8 bytes"));
            let ordinal = u64::from_be_bytes(rec[8..16].try_into().expect("8 bytes"));
            let slot = u32::from_le_bytes(rec[16..20].try_into().expect("4 bytes"));
            let tokens = &rec[20..];
            if group_key != Some(key) {
                group.clear();
                group_key = Some(key);
            }
            if let Some((first, _)) = group.iter().find(|(_, t)| t.as_slice() == tokens) {
                return Err(BuildError::DuplicateNgram { first: *first, second: ordinal, ngram: get_tokens(tokens) });
            }
            collisions += group.len() as u64;
            group.push((ordinal, tokens.to_vec()));
            writer.push(key, slot, &mut out).map_err(|e| self.out_err(e))?;
            done += 1;
            if done.is_multiple_of(65536) {
                progress(BuildPhase::Index, done, keys);
            }
        }
        progress(BuildPhase::Index, keys, keys);
        let index = writer.finish(&mut out).map_err(|e| self.out_err(e))?;
        let index_bytes = index.len * 8;
        sections.push(Section { kind: SectionKind::Index, offset, len: index_bytes, checksum: out.take_hash() });
        offset += index_bytes;

        // 4. Optional tokenizer.
        let mut tokenizer = None;
        if let Some((kind, bytes)) = self.cfg.tokenizer.take() {
            offset = pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;
            out.write_all(&bytes).map_err(|e| self.out_err(e))?;
            let checksum = out.take_hash();
            sections.push(Section { kind: SectionKind::Tokenizer, offset, len: bytes.len() as u64, checksum });
            offset += bytes.len() as u64;
            tokenizer = Some(TokenizerInfo { kind, fingerprint: checksum });
        }
        let file_bytes = align_up(offset, SECTION_ALIGN);
        pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;

        // 5. Header last, then fsync and rename: the table appears whole or not at all.
        let header = Header {
            dim: self.cfg.dim,
            dtype: self.cfg.dtype,
            n_max: self.cfg.n_max,
            vocab_size: self.cfg.vocab_size,
            rows,
            row_stride: self.stride as u64,
            key_seed: self.cfg.key_seed,
            hottest_first: with_counts,
            index,
            build: BuildInfo {
                created_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                tool: format!("scone-engine {}", env!("CARGO_PKG_VERSION")),
                source: self.cfg.source.clone(),
                key_collisions: collisions,
            },
            tokenizer,
            sections,
        };
        let block = encode_header_block(&header).map_err(BuildError::Config)?;
        let mut file = out.inner.into_inner().map_err(|e| self.out_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| self.out_err(e))?;
        file.write_all(&block).map_err(|e| self.out_err(e))?;
        file.sync_all().map_err(|e| self.out_err(e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path)
            .map_err(|source| BuildError::Io { path: self.path.clone(), source })?;
        self.committed = true;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename durable; not every platform lets a directory be fsynced.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(BuildSummary {
            path: self.path.clone(),
            rows,
            key_collisions: collisions,
            file_bytes,
            index_bytes,
            spilled_runs: self.spilled_runs,
        })
    }
}

impl Drop for TableBuilder {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

fn dummy_writer() -> Result<HashingWriter<BufWriter<File>>, BuildError> {
    let f = tempfile::tempfile().map_err(|source| BuildError::Io { path: std::env::temp_dir(), source })?;
    Ok(HashingWriter::new(BufWriter::new(f)))
}

fn put_tokens(out: &mut [u8], ngram: &[u32]) {
    for (i, o) in out.chunks_exact_mut(4).enumerate() {
        o.copy_from_slice(&ngram.get(i).copied().unwrap_or(TOKEN_PAD).to_le_bytes());
    }
}

fn get_tokens(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&t| t != TOKEN_PAD)
        .collect()
}

/// Writes zeros up to the next section boundary; returns the new offset.
fn pad_to(out: &mut HashingWriter<BufWriter<File>>, offset: u64) -> std::io::Result<u64> {
    let next = align_up(offset, SECTION_ALIGN);
    let zeros = [0u8; 4096];
    out.inner.write_all(&zeros[..(next - offset) as usize])?;
    out.take_hash();
    Ok(next)
}

/// A writer that checksums what passes through it, section by section.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Xxh3,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Xxh3::new(), written: 0 }
    }

    /// The checksum of everything written since the last call.
    fn take_hash(&mut self) -> u64 {
        let h = self.hasher.digest();
        self.hasher.reset();
        self.written = 0;
        h
    }
}

impl HashingWriter<BufWriter<File>> {
    fn finish(mut self) -> std::io::Result<(File, u64, u64)> {
        let (len, sum) = (self.written, self.hasher.digest());
        self.inner.flush()?;
        Ok((self.inner.into_inner().map_err(|e| e.into_error())?, len, sum))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
