//! Exact, memory-bounded n-gram counting.
//!
//! Counts accumulate in a hash map until its estimated size passes
//! [`CountConfig::memory_budget_bytes`]; the map is then sorted and spilled
//! to a temporary *run* file. [`NgramCounter::finish`] k-way merges the
//! runs (plus whatever is still in memory), summing equal n-grams, and
//! yields them as a stream, so the full table never has to fit in memory.
//!
//! Output order: n-grams ascend by their token sequence compared as slices
//! (lexicographic; a prefix sorts before its extensions, so `[1] < [1, 0] <
//! [2]`). N-grams never cross document boundaries.
//!
//! # Run file format
//! All integers little-endian: the 8-byte magic `SCNGRUN1`, then records
//! `len: u8 (1..=MAX_N), tokens: [u32; len], count: u64` in strictly
//! ascending order, then a single `0` byte as end marker so truncation is
//! detected. Run files are deleted when dropped.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use thiserror::Error;

/// Longest supported n-gram.
pub const MAX_N: usize = 8;
/// Estimated bytes one distinct n-gram costs while counting: the map entry
/// plus its control byte, doubled for load factor and growth slack, plus
/// the entry again for the sorted copy made when spilling.
pub const BYTES_PER_ENTRY: usize = 3 * std::mem::size_of::<(Key, u64)>() + 2;
/// Most runs merged at once; more runs are first merged in batches so the
/// number of open files stays bounded.
const MERGE_FAN_IN: usize = 64;
const RUN_MAGIC: &[u8; 8] = b"SCNGRUN1";

/// Counting parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountConfig {
    /// Shortest n-gram counted (>= 1).
    pub n_min: usize,
    /// Longest n-gram counted (n_min..=[`MAX_N`]).
    pub n_max: usize,
    /// Spill to disk once the in-memory table is estimated to exceed this
    /// (estimate: distinct n-grams × [`BYTES_PER_ENTRY`]). At least one
    /// entry is always held.
    pub memory_budget_bytes: usize,
    /// Where run files go; `None` means the system temp dir.
    pub temp_dir: Option<PathBuf>,
}

impl Default for CountConfig {
    /// n = 2..=4 with a 1 GiB budget.
    fn default() -> Self {
        CountConfig { n_min: 2, n_max: 4, memory_budget_bytes: 1 << 30, temp_dir: None }
    }
}

/// One n-gram and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NgramCount {
    pub tokens: Vec<u32>,
    pub count: u64,
}

/// What counting did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountStats {
    /// Documents added.
    pub docs: u64,
    /// N-gram occurrences counted (with multiplicity).
    pub occurrences: u64,
    /// Sorted runs spilled to disk while counting.
    pub spilled_runs: usize,
    /// Extra runs written while merging because there were more than the
    /// merge fan-in.
    pub intermediate_runs: usize,
}

/// Errors from counting and merging.
#[derive(Debug, Error)]
pub enum CountError {
    #[error("invalid config: n_min={n_min}, n_max={n_max} (need 1 <= n_min <= n_max <= {MAX_N})")]
    InvalidConfig { n_min: usize, n_max: usize },
    #[error("creating run file in {dir}: {source}", dir = .dir.display())]
    CreateRun {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("run file {path}: {source}", path = .path.display())]
    RunIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("run file {path}: corrupt: {detail}", path = .path.display())]
    CorruptRun { path: PathBuf, detail: String },
}

/// Fixed-size n-gram key: no heap allocation per distinct n-gram. Unused
/// slots stay zero so derived equality and hashing agree with the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    len: u8,
    toks: [u32; MAX_N],
}

impl Key {
    fn new(tokens: &[u32]) -> Key {
        let mut toks = [0; MAX_N];
        toks[..tokens.len()].copy_from_slice(tokens);
        Key { len: tokens.len() as u8, toks }
    }

    fn as_slice(&self) -> &[u32] {
        &self.toks[..self.len as usize]
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.len);
        for &t in self.as_slice() {
            state.write_u32(t);
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Fx-style multiplicative hasher: our keys are a few small integers and
/// need no DoS resistance, so SipHash would only cost speed.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(buf));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type CountMap = HashMap<Key, u64, BuildHasherDefault<FxHasher>>;

/// Incremental counter: feed documents with [`add_doc`](Self::add_doc),
/// then stream the merged counts from [`finish`](Self::finish).
pub struct NgramCounter {
    cfg: CountConfig,
    max_entries: usize,
    map: CountMap,
    runs: Vec<NamedTempFile>,
    stats: CountStats,
}

impl NgramCounter {
    pub fn new(cfg: CountConfig) -> Result<Self, CountError> {
        if cfg.n_min == 0 || cfg.n_min > cfg.n_max || cfg.n_max > MAX_N {
            return Err(CountError::InvalidConfig { n_min: cfg.n_min, n_max: cfg.n_max });
        }
        Ok(NgramCounter {
            max_entries: (cfg.memory_budget_bytes / BYTES_PER_ENTRY).max(1),
            cfg,
            map: CountMap::default(),
            runs: Vec::new(),
            stats: CountStats::default(),
        })
    }

    /// Counts every n-gram (n_min..=n_max) lying wholly inside `doc`.
    pub fn add_doc(&mut self, doc: &[u32]) -> Result<(), CountError> {
        self.stats.docs += 1;
        for start in 0..doc.len() {
            let longest = self.cfg.n_max.min(doc.len() - start);
            for n in self.cfg.n_min..=longest {
                *self.map.entry(Key::new(&doc[start..start + n])).or_insert(0) += 1;
                self.stats.occurrences += 1;
                if self.map.len() >= self.max_entries {
                    self.spill()?;
                }
            }
        }
        Ok(())
    }

    /// Statistics so far.
    pub fn stats(&self) -> &CountStats {
        &self.stats
    }

    fn spill(&mut self) -> Result<(), CountError> {
        let entries = sorted_entries(std::mem::take(&mut self.map));
        let run = write_run(self.cfg.temp_dir.as_deref(), entries.into_iter().map(Ok))?;
        self.runs.push(run);
        self.stats.spilled_runs += 1;
        Ok(())
    }

    /// Merges all runs and the in-memory remainder into one sorted stream.
    pub fn finish(mut self) -> Result<MergedCounts, CountError> {
        // Reduce to at most MERGE_FAN_IN runs so open files stay bounded.
        while self.runs.len() > MERGE_FAN_IN {
            let batch: Vec<NamedTempFile> = self.runs.drain(..MERGE_FAN_IN).collect();
            let merged = MergedCounts::new(open_runs(batch)?, self.stats.clone());
            let run =
                write_run(self.cfg.temp_dir.as_deref(), merged.map(|r| r.map(|c| (Key::new(&c.tokens), c.count))))?;
            self.runs.push(run);
            self.stats.intermediate_runs += 1;
        }
        let mut sources = open_runs(std::mem::take(&mut self.runs))?;
        let in_memory = sorted_entries(std::mem::take(&mut self.map));
        if !in_memory.is_empty() {
            sources.push(Source::Memory(in_memory.into_iter()));
        }
        Ok(MergedCounts::new(sources, self.stats))
    }
}

fn sorted_entries(map: CountMap) -> Vec<(Key, u64)> {
    let mut entries: Vec<(Key, u64)> = map.into_iter().collect();
    entries.sort_unstable_by_key(|e| e.0);
    entries
}

/// Writes ascending entries as a run file (see module docs).
fn write_run(
    dir: Option<&Path>,
    entries: impl Iterator<Item = Result<(Key, u64), CountError>>,
) -> Result<NamedTempFile, CountError> {
    let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let file = tempfile::Builder::new()
        .prefix("scone-ngrams-")
        .suffix(".run")
        .tempfile_in(&dir)
        .map_err(|source| CountError::CreateRun { dir, source })?;
    let io_err = |source| CountError::RunIo { path: file.path().to_path_buf(), source };
    let mut w = BufWriter::new(file.as_file());
    w.write_all(RUN_MAGIC).map_err(io_err)?;
    for entry in entries {
        let (key, count) = entry?;
        w.write_all(&[key.len]).map_err(io_err)?;
        for &t in key.as_slice() {
            w.write_all(&t.to_le_bytes()).map_err(io_err)?;
        }
        w.write_all(&count.to_le_bytes()).map_err(io_err)?;
    }
    w.write_all(&[0]).map_err(io_err)?;
    w.flush().map_err(io_err)?;
    drop(w);
    Ok(file)
}

/// Streams a run file back, validating format and ordering.
struct RunReader {
    file: NamedTempFile,
    reader: BufReader<File>,
    last: Option<Key>,
}

impl RunReader {
    fn open(file: NamedTempFile) -> Result<Self, CountError> {
        let handle = file.reopen().map_err(|source| CountError::RunIo { path: file.path().to_path_buf(), source })?;
        let mut run = RunReader { reader: BufReader::new(handle), file, last: None };
        let mut magic = [0u8; 8];
        run.read_exact(&mut magic)?;
        if &magic != RUN_MAGIC {
            return Err(run.corrupt("bad magic".into()));
        }
        Ok(run)
    }

    fn corrupt(&self, detail: String) -> CountError {
        CountError::CorruptRun { path: self.file.path().to_path_buf(), detail }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), CountError> {
        self.reader.read_exact(buf).map_err(|source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt("truncated (no end marker)".into())
            } else {
                CountError::RunIo { path: self.file.path().to_path_buf(), source }
            }
        })
    }

    /// The next record, or `None` at the end marker.
    fn next_entry(&mut self) -> Result<Option<(Key, u64)>, CountError> {
        let mut len = [0u8; 1];
        self.read_exact(&mut len)?;
        let len = len[0] as usize;
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_N {
            return Err(self.corrupt(format!("n-gram length {len} exceeds {MAX_N}")));
        }
        let mut toks = [0u32; MAX_N];
        let mut word = [0u8; 4];
        for t in &mut toks[..len] {
            self.read_exact(&mut word)?;
            *t = u32::from_le_bytes(word);
        }
        let mut count = [0u8; 8];
        self.read_exact(&mut count)?;
        let key = Key::new(&toks[..len]);
        if self.last.is_some_and(|last| last >= key) {
            return Err(self.corrupt("records not strictly ascending".into()));
        }
        self.last = Some(key);
        Ok(Some((key, u64::from_le_bytes(count))))
    }
}

fn open_runs(files: Vec<NamedTempFile>) -> Result<Vec<Source>, CountError> {
    files.into_iter().map(|f| RunReader::open(f).map(|r| Source::Run(Box::new(r)))).collect()
}

enum Source {
    Memory(std::vec::IntoIter<(Key, u64)>),
    Run(Box<RunReader>),
}

impl Source {
    fn next_entry(&mut self) -> Result<Option<(Key, u64)>, CountError> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::Run(r) => r.next_entry(),
        }
    }
}

/// Sorted stream of summed counts (see module docs for the order). Yields
/// at most one error, then ends. Run files are deleted when it is dropped.
pub struct MergedCounts {
    sources: Vec<Source>,
    /// Min-heap on (key, source index) holding each source's head.
    heap: BinaryHeap<Reverse<(Key, usize, u64)>>,
    stats: CountStats,
    pending_error: Option<CountError>,
    failed: bool,
}

impl MergedCounts {
    fn new(mut sources: Vec<Source>, stats: CountStats) -> Self {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        let mut pending_error = None;
        for (i, src) in sources.iter_mut().enumerate() {
            match src.next_entry() {
                Ok(Some((key, count))) => heap.push(Reverse((key, i, count))),
                Ok(None) => {}
                Err(e) => {
                    pending_error = Some(e);
                    break;
                }
            }
        }
        MergedCounts { sources, heap, stats, pending_error, failed: false }
    }

    /// Counting statistics (spilled runs etc.).
    pub fn stats(&self) -> &CountStats {
        &self.stats
    }

    fn refill(&mut self, src: usize) -> Result<(), CountError> {
        if let Some((key, count)) = self.sources[src].next_entry()? {
            self.heap.push(Reverse((key, src, count)));
        }
        Ok(())
    }

    fn next_merged(&mut self) -> Result<Option<(Key, u64)>, CountError> {
        let Some(Reverse((key, src, mut total))) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(src)?;
        while let Some(Reverse((next, _, _))) = self.heap.peek() {
            if *next != key {
                break;
            }
            let Some(Reverse((_, src, count))) = self.heap.pop() else {
                break;
            };
            // Saturate rather than wrap: u64 cannot overflow on real corpora.
            total = total.saturating_add(count);
            self.refill(src)?;
        }
        Ok(Some((key, total)))
    }
}

impl Iterator for MergedCounts {
    type Item = Result<NgramCount, CountError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(e) = self.pending_error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        match self.next_merged() {
            Ok(Some((key, count))) => Some(Ok(NgramCount { tokens: key.as_slice().to_vec(), count })),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Counts all n-grams of `docs` and collects them in sorted order.
pub fn count_ngrams<I>(docs: I, cfg: &CountConfig) -> Result<Vec<NgramCount>, CountError>
where
    I: IntoIterator,
    I::Item: AsRef<[u32]>,
{
    count_ngrams_with_stats(docs, cfg).map(|(counts, _)| counts)
}

/// Like [`count_ngrams`], also returning the counting statistics.
pub fn count_ngrams_with_stats<I>(docs: I, cfg: &CountConfig) -> Result<(Vec<NgramCount>, CountStats), CountError>
where
    I: IntoIterator,
    I::Item: AsRef<[u32]>,
{
    let mut counter = NgramCounter::new(cfg.clone())?;
    for doc in docs {
        counter.add_doc(doc.as_ref())?;
    }
    let merged = counter.finish()?;
    let stats = merged.stats().clone();
    let counts = merged.collect::<Result<Vec<_>, _>>()?;
    Ok((counts, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n_min: usize, n_max: usize, budget: usize, dir: &Path) -> CountConfig {
        CountConfig { n_min, n_max, memory_budget_bytes: budget, temp_dir: Some(dir.to_path_buf()) }
    }

    #[test]
    fn rejects_bad_config() {
        for (lo, hi) in [(0, 2), (3, 2), (2, MAX_N + 1)] {
            let c = CountConfig { n_min: lo, n_max: hi, ..CountConfig::default() };
            assert!(matches!(NgramCounter::new(c), Err(CountError::InvalidConfig { .. })));
        }
    }

    #[test]
    fn small_example_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let docs: [&[u32]; 2] = [&[1, 0, 1, 0], &[0, 1]];
        let got = count_ngrams(docs, &cfg(1, 2, 1 << 20, dir.path())).unwrap();
        let want: Vec<(Vec<u32>, u64)> = vec![(vec![0], 3), (vec![0, 1], 2), (vec![1], 3), (vec![1, 0], 2)];
        let got: Vec<_> = got.into_iter().map(|c| (c.tokens, c.count)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn many_runs_merge_in_batches_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Vec<u32>> = (0..50u32).map(|d| (0..40).map(|i| (i * 7 + d) % 13).collect()).collect();
        let (big, big_stats) = count_ngrams_with_stats(&docs, &cfg(2, 4, usize::MAX, dir.path())).unwrap();
        assert_eq!(big_stats.spilled_runs, 0);
        let (small, stats) = count_ngrams_with_stats(&docs, &cfg(2, 4, 3 * BYTES_PER_ENTRY, dir.path())).unwrap();
        assert!(stats.spilled_runs > MERGE_FAN_IN, "{stats:?}");
        assert!(stats.intermediate_runs > 0, "{stats:?}");
        assert_eq!(small, big);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_run_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let run =
            write_run(Some(dir.path()), [(Key::new(&[2, 3]), 5), (Key::new(&[1]), 1)].into_iter().map(Ok)).unwrap();
        let path = run.path().to_path_buf();
        let mut merged = MergedCounts::new(open_runs(vec![run]).unwrap(), CountStats::default());
        // The merge reads one record ahead, so the error may surface early.
        let err = merged.by_ref().find_map(Result::err).unwrap();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert!(merged.next().is_none());

        let run = write_run(Some(dir.path()), std::iter::empty()).unwrap();
        let bytes = std::fs::read(run.path()).unwrap();
        std::fs::write(run.path(), &bytes[..bytes.len() - 1]).unwrap();
        let mut merged = MergedCounts::new(open_runs(vec![run]).unwrap(), CountStats::default());
        let err = merged.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
