//! The bulk builder: streams (n-gram, row, count) records into a new immutable
//! table file with bounded memory.
//!
//! Rows go hottest-first when counts are given, otherwise in input order. Input
//! that already arrives hottest-first (the trainer's selection does) is written
//! straight through; at the first count out of order the rows written so far are
//! read back into an external sort by descending count. Keys are sorted
//! externally too, which finds duplicate n-grams and key collisions, adds the
//! suffix markers (docs/FORMAT.md) and feeds the index writer in key order.
//! Everything is written to a hidden, locked temporary file beside the target
//! (`temp_file`), fsynced and renamed into place (without replacing, unless
//! asked): an interrupted or failed build leaves no table visible, and the
//! temporary file of a build that died is found and removed by the next build
//! of the same target. After a failed fsync the build stops and reports it: a
//! retry could succeed after the kernel dropped the dirty pages it failed to
//! write, and a table that was never written whole would be published.

mod out_file;
mod temp_file;

#[doc(hidden)]
pub use out_file::WriteFaults;
pub use temp_file::remove_stale_temp_files;
pub(crate) use temp_file::{is_any_temp_name, remove_if_unlocked};

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use crate::dtype::{encode_row, Dtype, SourceRow};
use crate::error::BuildError;
use crate::extsort::ExternalSorter;
use crate::format::{
    align_up, encode_header_block, row_stride, BuildInfo, Header, IndexParams, Section, SectionKind, TokenizerInfo,
    HEADER_BLOCK, MAX_DIM, MAX_N, SECTION_ALIGN, TOKEN_PAD,
};
use crate::index::IndexWriter;
use crate::key::{suffix_keys, DEFAULT_KEY_SEED};
use crate::publish::{parent_dir, rename_noreplace, sync_dir};
use out_file::OutFile;
use temp_file::TempTable;

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
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad(format!("dim must be in 1..={MAX_DIM}, got {}", self.dim));
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
    /// Sorted runs spilled to disk by the row and key sorts together.
    pub spilled_runs: usize,
    /// Whether rows went through the external sort (counts given out of order).
    pub rows_sorted: bool,
    /// Suffix marker entries added to the index.
    pub markers: u64,
}

/// Streams records into a new table. See the module docs.
pub struct TableBuilder {
    cfg: BuildConfig,
    path: PathBuf,
    /// The locked temporary file; removed when the builder is dropped before
    /// the rename.
    tmp: TempTable,
    out: Option<HashingWriter<BufWriter<OutFile>>>,
    row_bytes: usize,
    stride: usize,
    records: u64,
    with_counts: Option<bool>,
    /// Counted builds whose counts arrived out of order: rows wait here to be
    /// laid out hottest-first.
    row_sorter: Option<ExternalSorter>,
    /// Count of the last record written straight through (counted builds).
    last_count: u64,
    index_sorter: ExternalSorter,
    ngrams: HashingWriter<BufWriter<File>>,
    counts: HashingWriter<BufWriter<File>>,
    /// The dense per-token block (see [`TableBuilder::push_token_row`]).
    token_rows: HashingWriter<BufWriter<File>>,
    token_rows_pushed: u64,
    scratch: Vec<u8>,
    index_rec: Vec<u8>,
    temp_dir: PathBuf,
    spilled_runs: usize,
    key_mask: u64,
}

const ROW_KEY: usize = 16; // !count BE, ordinal BE
const IDX_KEY: usize = 16; // key BE, ordinal BE
/// The ordinal of a marker record in the key sort: after every f-gram of its key.
const MARKER_ORDINAL: u64 = u64::MAX;

impl TableBuilder {
    /// Starts a build of the table at `path`.
    pub fn create(path: impl AsRef<Path>, cfg: BuildConfig) -> Result<Self, BuildError> {
        cfg.validate()?;
        let path = path.as_ref().to_path_buf();
        if path.exists() && !cfg.overwrite {
            return Err(BuildError::Exists { path });
        }
        let dir = parent_dir(&path).to_path_buf();
        // Builds of this target that died left their temporary files behind.
        remove_stale_temp_files(&path).map_err(|error| BuildError::Io {
            path: path.clone(),
            context: format!("cannot remove stale temporary files in {}", dir.display()),
            error,
        })?;
        let (tmp, file) = TempTable::create(&path).map_err(|error| BuildError::Io {
            path: path.clone(),
            context: format!("cannot create the table's temporary file in {}", dir.display()),
            error,
        })?;
        // From here on, an early return drops `tmp`, which removes the file.
        let mut out = BufWriter::with_capacity(4 << 20, OutFile::new(file));
        // Placeholder header block; the real one is written last.
        out.write_all(&[0u8; HEADER_BLOCK as usize]).map_err(|error| out_error(&path, error))?;
        let temp_dir = cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let n_max = cfg.n_max as usize;
        let row_bytes = cfg.dim as usize * cfg.dtype.size();
        let key_mask = IndexParams { capacity: 0, slot_bits: 0, len: 0, key_bits: cfg.key_bits, markers: 0 }.key_mask();
        Ok(TableBuilder {
            index_sorter: index_sorter(&cfg, &temp_dir),
            ngrams: side_writer(&path, &temp_dir)?,
            counts: side_writer(&path, &temp_dir)?,
            token_rows: side_writer(&path, &temp_dir)?,
            token_rows_pushed: 0,
            index_rec: vec![0u8; IDX_KEY + 4 + 4 * n_max],
            last_count: u64::MAX,
            temp_dir,
            stride: row_stride(cfg.dim, cfg.dtype) as usize,
            row_bytes,
            scratch: vec![0u8; ROW_KEY + 4 * n_max + row_bytes],
            out: Some(HashingWriter::new(out)),
            cfg,
            path,
            tmp,
            records: 0,
            with_counts: None,
            row_sorter: None,
            spilled_runs: 0,
            key_mask,
        })
    }

    /// Makes the output file misbehave from now on (tests of the error paths).
    #[doc(hidden)]
    pub fn inject_write_faults(&mut self, faults: WriteFaults) {
        if let Some(out) = self.out.as_mut() {
            out.inner.get_mut().set_faults(faults);
        }
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Adds the row of token id `token_rows_pushed()` to the table's dense
    /// per-token block: the row served where no f-gram of 2 tokens or more
    /// ends at a position (SCONE runs its f-gram model on the token alone
    /// there). Optional; a table that has the block has one row for every
    /// token id below `vocab_size`, pushed in id order.
    pub fn push_token_row<'r>(&mut self, row: impl Into<SourceRow<'r>>) -> Result<(), BuildError> {
        let row = row.into();
        let token = self.token_rows_pushed;
        let bad = |reason: String| Err(BuildError::BadTokenRow { token, reason });
        if token >= self.cfg.vocab_size as u64 {
            return bad(format!("the vocabulary has only {} tokens", self.cfg.vocab_size));
        }
        if row.len() != self.cfg.dim as usize {
            return bad(format!("row has {} values; the table's dim is {}", row.len(), self.cfg.dim));
        }
        let mut buf = vec![0u8; self.stride];
        if let Err(p) = encode_row(row, self.cfg.dtype, &mut buf[..self.row_bytes]) {
            return bad(p.describe(self.cfg.dtype));
        }
        self.token_rows.write_all(&buf).map_err(|e| self.temp_err(e))?;
        self.token_rows_pushed += 1;
        Ok(())
    }

    /// Token rows pushed so far (the id the next one gets).
    pub fn token_rows_pushed(&self) -> u64 {
        self.token_rows_pushed
    }

    /// Adds one f-gram with its embedding row (`f32` or `f64` values, rounded
    /// once to the table's dtype) and optional count. Either every record has
    /// a count or none does.
    pub fn push<'r>(
        &mut self,
        ngram: &[u32],
        row: impl Into<SourceRow<'r>>,
        count: Option<u64>,
    ) -> Result<(), BuildError> {
        let row = row.into();
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
            (None, c) => self.with_counts = Some(c),
            (Some(true), false) => return bad("no count, but earlier records had counts; give all or none".into()),
            (Some(false), true) => return bad("has a count, but earlier records had none; give all or none".into()),
            _ => {}
        }
        // Encode the row into the tail of the scratch record.
        let (head, row_out) = self.scratch.split_at_mut(ROW_KEY + 4 * n_max);
        if let Err(p) = encode_row(row, self.cfg.dtype, row_out) {
            return bad(p.describe(self.cfg.dtype));
        }
        head[..8].copy_from_slice(&(!count.unwrap_or(0)).to_be_bytes());
        head[8..16].copy_from_slice(&record.to_be_bytes());
        put_tokens(&mut head[ROW_KEY..], ngram);
        self.records += 1;
        if let Some(c) = count {
            if self.row_sorter.is_none() && c > self.last_count {
                self.start_sorting(record)?;
            }
            self.last_count = c;
        }
        match &mut self.row_sorter {
            Some(sorter) => sorter.push(&self.scratch).map_err(|e| temp_error(&self.path, &self.temp_dir, e)),
            None => {
                let rec = std::mem::take(&mut self.scratch);
                let r = self.lay_out(&rec, record);
                self.scratch = rec;
                r
            }
        }
    }

    /// The first `written` records went straight to their slots, but record
    /// `written` has a higher count than its predecessor: read them back into a
    /// row sort, and start the outputs again.
    fn start_sorting(&mut self, written: u64) -> Result<(), BuildError> {
        let n_max = self.cfg.n_max as usize;
        let rec_len = ROW_KEY + 4 * n_max + self.row_bytes;
        let mut sorter = ExternalSorter::new(rec_len, ROW_KEY, self.cfg.memory_budget / 4 * 3, &self.temp_dir);
        let (path, temp_dir) = (self.path.clone(), self.temp_dir.clone());
        let out_err = |e| out_error(&path, e);
        let temp_err = |e| temp_error(&path, &temp_dir, e);
        let out = self.out.as_mut().expect("builder output is open until finish");
        out.inner.flush().map_err(out_err)?;
        self.ngrams.inner.flush().map_err(temp_err)?;
        self.counts.inner.flush().map_err(temp_err)?;
        let rows_file = out.inner.get_mut();
        rows_file.seek(SeekFrom::Start(HEADER_BLOCK)).map_err(out_err)?;
        let ngrams_file = self.ngrams.inner.get_mut();
        ngrams_file.seek(SeekFrom::Start(0)).map_err(temp_err)?;
        let counts_file = self.counts.inner.get_mut();
        counts_file.seek(SeekFrom::Start(0)).map_err(temp_err)?;
        {
            let mut rows_in = BufReader::with_capacity(1 << 20, &mut *rows_file);
            let mut ngrams_in = BufReader::new(&mut *ngrams_file);
            let mut counts_in = BufReader::new(&mut *counts_file);
            let mut rec = vec![0u8; rec_len];
            let mut row = vec![0u8; self.stride];
            let mut count = [0u8; 8];
            for ordinal in 0..written {
                rows_in.read_exact(&mut row).map_err(out_err)?;
                ngrams_in.read_exact(&mut rec[ROW_KEY..ROW_KEY + 4 * n_max]).map_err(temp_err)?;
                counts_in.read_exact(&mut count).map_err(temp_err)?;
                rec[..8].copy_from_slice(&(!u64::from_le_bytes(count)).to_be_bytes());
                rec[8..16].copy_from_slice(&ordinal.to_be_bytes());
                rec[ROW_KEY + 4 * n_max..].copy_from_slice(&row[..self.row_bytes]);
                sorter.push(&rec).map_err(temp_err)?;
            }
        }
        rows_file.set_len(HEADER_BLOCK).map_err(out_err)?;
        rows_file.seek(SeekFrom::Start(HEADER_BLOCK)).map_err(out_err)?;
        out.take_hash();
        self.ngrams = side_writer(&self.path, &self.temp_dir)?;
        self.counts = side_writer(&self.path, &self.temp_dir)?;
        self.index_sorter = index_sorter(&self.cfg, &self.temp_dir);
        self.row_sorter = Some(sorter);
        Ok(())
    }

    fn temp_err(&self, e: std::io::Error) -> BuildError {
        temp_error(&self.path, &self.temp_dir, e)
    }

    fn out_err(&self, e: std::io::Error) -> BuildError {
        out_error(&self.path, e)
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
        // Index records: the f-gram's key, and a marker for each proper suffix of
        // two tokens or more (finish drops the markers of suffixes that are f-grams).
        let mut tokens = [0u32; MAX_N];
        let n = decode_tokens(tokens_bytes, &mut tokens);
        let mut keys = [0u64; MAX_N];
        suffix_keys(&tokens[..n], self.cfg.key_seed, &mut keys[..n]);
        let irec = &mut self.index_rec;
        irec[8..16].copy_from_slice(&rec[8..16]); // ordinal
        irec[16..20].copy_from_slice(&(slot as u32).to_le_bytes());
        for len in (2..=n).rev() {
            irec[..8].copy_from_slice(&(keys[len - 1] & self.key_mask).to_be_bytes());
            put_tokens(&mut irec[IDX_KEY + 4..], &tokens[n - len..n]);
            self.index_sorter.push(irec).map_err(|e| temp_error(&self.path, &self.temp_dir, e))?;
            irec[8..16].copy_from_slice(&MARKER_ORDINAL.to_be_bytes());
            irec[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        Ok(())
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
        let vocab = self.cfg.vocab_size as u64;
        if self.token_rows_pushed != 0 && self.token_rows_pushed != vocab {
            return Err(BuildError::Config(format!(
                "{} token rows pushed; the per-token block needs one for each of the {vocab} token ids",
                self.token_rows_pushed
            )));
        }
        // 1. Rows in final order.
        let rows_sorted = self.row_sorter.is_some();
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
            (
                SectionKind::Counts,
                std::mem::replace(&mut self.counts, side_writer(&self.path, &self.temp_dir)?),
                with_counts,
            ),
            (SectionKind::Ngrams, std::mem::replace(&mut self.ngrams, side_writer(&self.path, &self.temp_dir)?), true),
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

        // 3. Index. Pass one merges the sorted keys, finds duplicates and
        // collisions, and keeps the markers no f-gram makes redundant; pass two
        // writes the index, whose size depends on how many entries pass one kept.
        offset = pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;
        out.take_hash();
        let index_sorter = std::mem::replace(&mut self.index_sorter, ExternalSorter::new(1, 1, 0, &self.temp_dir));
        let candidates = index_sorter.len();
        self.spilled_runs += index_sorter.runs_spilled();
        let mut sorted = index_sorter.finish().map_err(|e| self.temp_err(e))?;
        let n_max = self.cfg.n_max as usize;
        let mut rec = vec![0u8; IDX_KEY + 4 + 4 * n_max];
        // Entries sharing the current key: (ordinal, tokens), markers with MARKER_ORDINAL.
        let mut group: Vec<(u64, [u8; 4 * MAX_N])> = Vec::new();
        let mut group_key = None;
        let (mut collisions, mut entries, mut markers, mut done) = (0u64, 0u64, 0u64, 0u64);
        let mut kept = side_writer(&self.path, &self.temp_dir)?;
        while sorted.next_into(&mut rec).map_err(|e| self.temp_err(e))? {
            let key = u64::from_be_bytes(rec[..8].try_into().expect("8 bytes"));
            let ordinal = u64::from_be_bytes(rec[8..16].try_into().expect("8 bytes"));
            let mut tokens = [0u8; 4 * MAX_N];
            tokens[..4 * n_max].copy_from_slice(&rec[20..]);
            if group_key != Some(key) {
                group.clear();
                group_key = Some(key);
            }
            let same = group.iter().find(|(_, t)| *t == tokens).map(|&(o, _)| o);
            if ordinal != MARKER_ORDINAL {
                if let Some(first) = same {
                    return Err(BuildError::DuplicateNgram { first, second: ordinal, ngram: get_tokens(&rec[20..]) });
                }
                collisions += group.len() as u64; // only f-grams precede an f-gram in its group
            } else if same.is_some() {
                continue; // the suffix is an f-gram, or already has its marker
            } else {
                markers += 1;
            }
            group.push((ordinal, tokens));
            kept.write_all(&key.to_le_bytes())
                .and_then(|_| kept.write_all(&rec[16..20]))
                .map_err(|e| self.temp_err(e))?;
            entries += 1;
            done += 1;
            if done.is_multiple_of(65536) {
                progress(BuildPhase::Index, done, candidates);
            }
        }
        let mut writer = IndexWriter::new(entries, rows, self.cfg.key_bits);
        let (mut kept, _, _) = kept.finish().map_err(|e| self.temp_err(e))?;
        kept.seek(SeekFrom::Start(0)).map_err(|e| self.temp_err(e))?;
        let mut kept = BufReader::with_capacity(1 << 20, kept);
        let mut entry = [0u8; 12];
        for _ in 0..entries {
            kept.read_exact(&mut entry).map_err(|e| self.temp_err(e))?;
            let key = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            let r = match u32::from_le_bytes(entry[8..].try_into().expect("4 bytes")) {
                u32::MAX => writer.push_marker(key, &mut out),
                slot => writer.push(key, slot, &mut out),
            };
            r.map_err(|e| self.out_err(e))?;
        }
        progress(BuildPhase::Index, candidates, candidates);
        let mut index = writer.finish(&mut out).map_err(|e| self.out_err(e))?;
        index.markers = markers;
        let index_bytes = index.len * 8;
        sections.push(Section { kind: SectionKind::Index, offset, len: index_bytes, checksum: out.take_hash() });
        offset += index_bytes;

        // 4. Optional dense per-token rows, copied from their side file.
        if self.token_rows_pushed > 0 {
            offset = pad_to(&mut out, offset).map_err(|e| self.out_err(e))?;
            let w = std::mem::replace(&mut self.token_rows, side_writer(&self.path, &self.temp_dir)?);
            let (mut file, len, checksum) = w.finish().map_err(|e| self.temp_err(e))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| self.temp_err(e))?;
            std::io::copy(&mut file, &mut out.inner).map_err(|e| self.out_err(e))?;
            out.take_hash();
            sections.push(Section { kind: SectionKind::TokenRows, offset, len, checksum });
            offset += len;
        }

        // 5. Optional tokenizer.
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

        // 6. Header last, then fsync and rename: the table appears whole or not at all.
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
        // No retry after a failed fsync (module docs): the error returns and
        // dropping `self.tmp` removes the temporary file.
        file.sync_all().map_err(|error| BuildError::Io {
            path: self.path.clone(),
            context: "cannot fsync the table; nothing was published".into(),
            error,
        })?;
        // The file stays open (and locked) until the rename is done, so no
        // other build's stale-file sweep can take it for a dead one.
        let publish = |error| BuildError::Io {
            path: self.path.clone(),
            context: "cannot rename the finished table into place".into(),
            error,
        };
        if self.cfg.overwrite {
            std::fs::rename(self.tmp.path(), &self.path).map_err(publish)?;
        } else if !rename_noreplace(self.tmp.path(), &self.path).map_err(publish)? {
            // Another build published a table there since `create` checked.
            return Err(BuildError::Exists { path: self.path.clone() });
        }
        self.tmp.disarm();
        drop(file);
        // Make the rename durable. Where that fails the table may not survive
        // a crash, and the build reports failure, so it must not stay visible.
        let dir = parent_dir(&self.path).to_path_buf();
        if let Err(error) = sync_dir(&dir) {
            let _ = std::fs::remove_file(&self.path);
            return Err(BuildError::Io {
                path: self.path.clone(),
                context: format!("cannot fsync the folder {} after the rename; the table was removed", dir.display()),
                error,
            });
        }
        Ok(BuildSummary {
            path: self.path.clone(),
            rows,
            key_collisions: collisions,
            file_bytes,
            index_bytes,
            spilled_runs: self.spilled_runs,
            rows_sorted,
            markers,
        })
    }
}

/// The key sort: (key, record, slot, n-gram) records ordered by key, then record.
fn index_sorter(cfg: &BuildConfig, temp_dir: &Path) -> ExternalSorter {
    ExternalSorter::new(IDX_KEY + 4 + 4 * cfg.n_max as usize, IDX_KEY, cfg.memory_budget / 4, temp_dir)
}

/// A checksummed, buffered temporary file in `temp_dir` that disappears when
/// dropped (an unnamed file: nothing to clean up after a crash).
fn side_writer(table: &Path, temp_dir: &Path) -> Result<HashingWriter<BufWriter<File>>, BuildError> {
    let f = tempfile::tempfile_in(temp_dir).map_err(|e| temp_error(table, temp_dir, e))?;
    Ok(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)))
}

/// An error writing the table: named by the user's path, not the temporary file's.
fn out_error(table: &Path, error: std::io::Error) -> BuildError {
    BuildError::Io { path: table.to_path_buf(), context: "cannot write the table".into(), error }
}

/// An error in the sort runs and side files under the temporary directory.
fn temp_error(table: &Path, temp_dir: &Path, error: std::io::Error) -> BuildError {
    BuildError::Io {
        path: table.to_path_buf(),
        context: format!("cannot use the temporary directory {}", temp_dir.display()),
        error,
    }
}

/// Reads a padded n-gram record into `out`; returns its length.
fn decode_tokens(bytes: &[u8], out: &mut [u32; MAX_N]) -> usize {
    let mut n = 0;
    for c in bytes.chunks_exact(4) {
        let t = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if t == TOKEN_PAD {
            break;
        }
        out[n] = t;
        n += 1;
    }
    n
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
fn pad_to(out: &mut HashingWriter<BufWriter<OutFile>>, offset: u64) -> std::io::Result<u64> {
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
