//! External sort of fixed-size byte records, ordered by a byte-wise compared
//! prefix. Keeps at most `budget` bytes of records in memory; beyond that it
//! spills sorted runs to temporary files and merges them. This is what keeps the
//! builder's memory bounded whatever the table size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Sorter for records of `rec_len` bytes compared on their first `key_len` bytes.
/// Callers make keys unique (e.g. by appending an ordinal) when they need a
/// deterministic order.
pub struct ExternalSorter {
    rec_len: usize,
    key_len: usize,
    budget_records: usize,
    buf: Vec<u8>,
    runs: Vec<File>,
    temp_dir: PathBuf,
    total: u64,
}

impl ExternalSorter {
    pub fn new(rec_len: usize, key_len: usize, budget_bytes: usize, temp_dir: &Path) -> Self {
        assert!(key_len <= rec_len && rec_len > 0);
        // Sorting needs the records plus a u32 index each.
        let budget_records = (budget_bytes / (rec_len + 4)).max(2);
        ExternalSorter {
            rec_len,
            key_len,
            budget_records,
            buf: Vec::new(),
            runs: Vec::new(),
            temp_dir: temp_dir.to_path_buf(),
            total: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn runs_spilled(&self) -> usize {
        self.runs.len()
    }

    pub fn push(&mut self, rec: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(rec.len(), self.rec_len);
        self.buf.extend_from_slice(rec);
        self.total += 1;
        if self.buf.len() / self.rec_len >= self.budget_records {
            self.spill()?;
        }
        Ok(())
    }

    fn sorted_order(&self) -> Vec<u32> {
        let (r, k) = (self.rec_len, self.key_len);
        let n = self.buf.len() / r;
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize * r, b as usize * r);
            self.buf[a..a + k].cmp(&self.buf[b..b + k]).then(a.cmp(&b))
        });
        order
    }

    fn spill(&mut self) -> std::io::Result<()> {
        let order = self.sorted_order();
        let file = tempfile::tempfile_in(&self.temp_dir)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for i in order {
            let a = i as usize * self.rec_len;
            w.write_all(&self.buf[a..a + self.rec_len])?;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        self.buf.clear();
        Ok(())
    }

    /// Finishes input and returns the records in order.
    pub fn finish(mut self) -> std::io::Result<SortedRecords> {
        if self.runs.is_empty() {
            let order = self.sorted_order();
            return Ok(SortedRecords {
                rec_len: self.rec_len,
                key_len: self.key_len,
                source: Source::Memory { buf: std::mem::take(&mut self.buf), order, next: 0 },
            });
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        let per_run = (self.budget_records * self.rec_len / self.runs.len()).clamp(64 << 10, 4 << 20);
        for (i, f) in self.runs.drain(..).enumerate() {
            let mut r = BufReader::with_capacity(per_run, f);
            let mut rec = vec![0u8; self.rec_len];
            if read_record(&mut r, &mut rec)? {
                heap.push(HeapItem { rec, run: i, key_len: self.key_len });
            }
            readers.push(r);
        }
        Ok(SortedRecords { rec_len: self.rec_len, key_len: self.key_len, source: Source::Merge { readers, heap } })
    }
}

fn read_record(r: &mut impl Read, rec: &mut [u8]) -> std::io::Result<bool> {
    match r.read_exact(rec) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

struct HeapItem {
    rec: Vec<u8>,
    run: usize,
    key_len: usize,
}

impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for ascending output; ties by run keep it stable.
        other.rec[..other.key_len].cmp(&self.rec[..self.key_len]).then(other.run.cmp(&self.run))
    }
}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}

enum Source {
    Memory { buf: Vec<u8>, order: Vec<u32>, next: usize },
    Merge { readers: Vec<BufReader<File>>, heap: BinaryHeap<HeapItem> },
}

/// The sorted output of an [`ExternalSorter`].
pub struct SortedRecords {
    rec_len: usize,
    #[allow(dead_code)]
    key_len: usize,
    source: Source,
}

impl SortedRecords {
    /// Copies the next record into `out`; false when done.
    pub fn next_into(&mut self, out: &mut [u8]) -> std::io::Result<bool> {
        match &mut self.source {
            Source::Memory { buf, order, next } => {
                let Some(&i) = order.get(*next) else { return Ok(false) };
                *next += 1;
                let a = i as usize * self.rec_len;
                out.copy_from_slice(&buf[a..a + self.rec_len]);
                Ok(true)
            }
            Source::Merge { readers, heap } => {
                let Some(mut top) = heap.pop() else { return Ok(false) };
                out.copy_from_slice(&top.rec);
                if read_record(&mut readers[top.run], &mut top.rec)? {
                    heap.push(top);
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sorted(budget: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(12, 4, budget, dir.path());
        let mut all = Vec::new();
        for i in 0..5000u64 {
            let mut rec = vec![0u8; 12];
            rec[..4].copy_from_slice(&(rng.gen_range(0..300u32)).to_be_bytes());
            rec[4..].copy_from_slice(&i.to_le_bytes());
            s.push(&rec).unwrap();
            all.push(rec);
        }
        let runs = s.runs_spilled();
        let mut out = s.finish().unwrap();
        let mut got = Vec::new();
        let mut rec = vec![0u8; 12];
        while out.next_into(&mut rec).unwrap() {
            got.push(rec.clone());
        }
        // Stable by input order for equal keys.
        all.sort_by(|a, b| a[..4].cmp(&b[..4]));
        (all, got, runs)
    }

    #[test]
    fn in_memory_and_spilled_agree() {
        let (want, got, runs) = sorted(1 << 20);
        assert_eq!(runs, 0);
        assert_eq!(want, got);
        let (want, got, runs) = sorted(1000);
        assert!(runs > 10, "tiny budget must spill, got {runs} runs");
        assert_eq!(want, got);
    }
}
