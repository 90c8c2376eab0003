//! An open, immutable table: the header, the memory-mapped sections, lookups.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::dtype::Dtype;
use crate::error::OpenError;
use crate::format::{
    decode_header_block, Header, HeaderProblem, Section, SectionKind, HEADER_BLOCK, SECTION_ALIGN, TOKEN_PAD,
};
use crate::index::{check_entries, IndexView};
use crate::key::ngram_key;

/// How to open a table.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Also checksum the rows section at open (reads the whole file). `scone verify`
    /// and [`Table::verify`] do it on demand instead.
    pub verify_rows: bool,
    /// Copy the index and the stored n-grams (what every probe touches) into
    /// anonymous memory backed by transparent huge pages where the system allows,
    /// instead of probing the file mapping. Random probes over a 100 MB index
    /// then miss the TLB far less often. Costs one copy of those sections (about
    /// 9.4 + 4 * n_max bytes per key) at open. Default: on.
    pub resident_index: bool,
    /// Copy the rows section into anonymous memory with transparent huge pages as
    /// well. Random row gathers over a mapped file pay a TLB miss per row (4 KiB
    /// page-cache pages); with 2 MiB pages they mostly do not. Needs the whole
    /// rows section in RAM and one copy at open. Default: off (tables may be
    /// larger than RAM; the mapping pages rows in on demand).
    pub resident_rows: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { verify_rows: false, resident_index: true, resident_rows: false }
    }
}

/// An open table. Cheap to share across threads (`&Table` is `Sync`).
pub struct Table {
    path: PathBuf,
    /// The file opened once at open: every read of this table (mapping, direct
    /// reads, resident copies) goes through it, never through `path` again, so
    /// a table replaced on disk after open is never mixed into this one. Catalog
    /// readers lock it (docs/CATALOG.md).
    file: File,
    header: Header,
    map: Mmap,
    rows: Section,
    ngrams: Section,
    index: Section,
    counts: Option<Section>,
    tokenizer: Option<Section>,
    token_rows: Option<Section>,
    /// The index section followed by the ngrams section, copied out of the file
    /// (see [`OpenOptions::resident_index`]).
    resident: Option<Mmap>,
    /// The rows section, copied out of the file (see [`OpenOptions::resident_rows`]).
    resident_rows: Option<Mmap>,
    /// Most index entries a probe reads ([`crate::index::check_entries`]).
    probe_limit: u64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).field("header", &self.header).finish()
    }
}

impl Table {
    /// Opens a table, checking the header and the checksums of every section but
    /// the rows.
    pub fn open(path: impl AsRef<Path>) -> Result<Table, OpenError> {
        Self::open_with(path, OpenOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Table, OpenError> {
        let path = path.as_ref().to_path_buf();
        if cfg!(target_endian = "big") {
            return Err(OpenError::BigEndianHost { path });
        }
        let file = open_regular(&path)?;
        Self::from_file(path, file, opts)
    }

    /// The same file opened again with other options (e.g. resident rows):
    /// through this table's own file handle, so it is the very same file even
    /// if `path` now names another one.
    pub fn reopen_with(&self, opts: OpenOptions) -> Result<Table, OpenError> {
        let file = self.file.try_clone().map_err(|source| OpenError::Io { path: self.path.clone(), source })?;
        Self::from_file(self.path.clone(), file, opts)
    }

    fn from_file(path: PathBuf, file: File, opts: OpenOptions) -> Result<Table, OpenError> {
        // SAFETY: tables are immutable: scone never writes to a file once it has been
        // renamed into place (a new version is a new file). Modifying or truncating a
        // table file while it is open is outside the contract (docs/FORMAT.md); the
        // mapping is read-only, so no Rust reference ever aliases a write from us.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| OpenError::Io { path: path.clone(), source })?;
        let block = &map[..map.len().min(HEADER_BLOCK as usize)];
        let header = decode_header_block(block).map_err(|p| match p {
            HeaderProblem::BadMagic(found) => OpenError::BadMagic { path: path.clone(), found },
            HeaderProblem::Version(found) => {
                OpenError::UnsupportedVersion { path: path.clone(), found, supported: crate::format::FORMAT_VERSION }
            }
            HeaderProblem::Damaged(reason) => OpenError::BadHeader { path: path.clone(), reason },
        })?;
        let mut t = Self::check_layout(path, file, header, map)?;
        let io = |source| OpenError::Io { path: t.path.clone(), source };
        if opts.resident_index {
            let copy = copy_to_anonymous(&[t.bytes(&t.index), t.bytes(&t.ngrams)]).map_err(io)?;
            t.resident = Some(copy);
        }
        if opts.resident_rows {
            let copy = copy_to_anonymous(&[t.bytes(&t.rows)]).map_err(io)?;
            t.resident_rows = Some(copy);
        }
        // The sections' checks are independent: run them side by side (each
        // is a pass over up to gigabytes at 10^8+ rows). The first error in
        // section order is reported.
        let mut sections: Vec<Section> =
            [Some(t.ngrams), Some(t.index), t.counts, t.tokenizer].into_iter().flatten().collect();
        if opts.verify_rows {
            sections.extend([Some(t.rows), t.token_rows].into_iter().flatten());
        }
        let results: Vec<Result<Option<u64>, OpenError>> = {
            use rayon::prelude::*;
            let t = &t;
            sections.par_iter().map(|s| t.check_section(s)).collect()
        };
        for r in results {
            if let Some(limit) = r? {
                t.probe_limit = limit;
            }
        }
        Ok(t)
    }

    /// Validates the header's numbers against each other and the file size.
    fn check_layout(path: PathBuf, file: File, header: Header, map: Mmap) -> Result<Table, OpenError> {
        let bad_header = |reason: String| OpenError::BadHeader { path: path.clone(), reason };
        let h = &header;
        crate::format::check_header_fields(h).map_err(bad_header)?;
        let file_len = map.len() as u64;
        let section = |kind: SectionKind, expect_len: Option<u64>| -> Result<Option<Section>, OpenError> {
            let Some(s) = h.section(kind).copied() else { return Ok(None) };
            let bad = |reason: String| OpenError::BadSection { path: path.clone(), section: kind, reason };
            if !s.offset.is_multiple_of(SECTION_ALIGN) || s.offset < HEADER_BLOCK {
                return Err(bad(format!(
                    "offset {} is not a {SECTION_ALIGN}-aligned offset after the header",
                    s.offset
                )));
            }
            if s.offset.checked_add(s.len).is_none_or(|end| end > file_len) {
                return Err(bad(format!(
                    "{} bytes at offset {} run past the end of the {file_len}-byte file (truncated?)",
                    s.len, s.offset
                )));
            }
            if let Some(want) = expect_len {
                if s.len != want {
                    return Err(bad(format!("is {} bytes; the header implies {want}", s.len)));
                }
            }
            Ok(Some(s))
        };
        let missing = |kind| OpenError::BadSection { path: path.clone(), section: kind, reason: "missing".into() };
        let rows = section(SectionKind::Rows, Some(h.rows.saturating_mul(h.row_stride)))?
            .ok_or_else(|| missing(SectionKind::Rows))?;
        let ngrams = section(SectionKind::Ngrams, Some(h.rows * h.n_max as u64 * 4))?
            .ok_or_else(|| missing(SectionKind::Ngrams))?;
        let index = section(SectionKind::Index, Some(h.index.len.saturating_mul(8)))?
            .ok_or_else(|| missing(SectionKind::Index))?;
        let counts = section(SectionKind::Counts, Some(h.rows * 8))?;
        let tokenizer = section(SectionKind::Tokenizer, None)?;
        let token_rows = section(SectionKind::TokenRows, Some((h.vocab_size as u64).saturating_mul(h.row_stride)))?;
        if h.hottest_first && counts.is_none() {
            return Err(missing(SectionKind::Counts));
        }
        let present: Vec<Section> =
            [Some(rows), counts, Some(ngrams), Some(index), tokenizer, token_rows].into_iter().flatten().collect();
        crate::format::check_no_overlap(&present).map_err(bad_header)?;
        // The builder pads the file to the end of its last section's page: a
        // file of any other length was truncated or appended to.
        let end = present.iter().map(|s| s.offset + s.len).max().unwrap_or(HEADER_BLOCK);
        let want = crate::format::align_up(end, SECTION_ALIGN);
        if file_len != want {
            return Err(bad_header(format!(
                "the file is {file_len} bytes; its sections end at {end}, so it should be {want} (truncated or appended to?)"
            )));
        }
        if h.tokenizer.is_some() != tokenizer.is_some() {
            return Err(bad_header("the tokenizer's description and its section must come together".into()));
        }
        Ok(Table {
            path,
            file,
            header,
            map,
            rows,
            ngrams,
            index,
            counts,
            tokenizer,
            token_rows,
            resident: None,
            resident_rows: None,
            probe_limit: 0,
        })
    }

    /// Checksums a section and checks what its content must satisfy; for the
    /// index, returns the probe bound that check proved.
    fn check_section(&self, s: &Section) -> Result<Option<u64>, OpenError> {
        let computed = xxhash_rust::xxh3::xxh3_64(self.bytes(s));
        if computed != s.checksum {
            return Err(OpenError::Checksum { path: self.path.clone(), section: s.kind, stored: s.checksum, computed });
        }
        let bad = |reason| OpenError::BadSection { path: self.path.clone(), section: s.kind, reason };
        match s.kind {
            SectionKind::Index => {
                let c = check_entries(self.index_entries(), &self.header.index, self.header.rows).map_err(bad)?;
                Ok(Some(c.probe_limit))
            }
            SectionKind::Ngrams => {
                check_ngram_records(self.ngram_words(), self.n_max(), self.header.vocab_size).map_err(bad)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Checksums every section, the rows included, and looks every stored
    /// n-gram up (each must be found at its own row). Returns the sections checked.
    pub fn verify(&self) -> Result<Vec<Section>, OpenError> {
        let all = [Some(self.rows), self.counts, Some(self.ngrams), Some(self.index), self.tokenizer, self.token_rows];
        let all: Vec<Section> = all.into_iter().flatten().collect();
        for s in &all {
            self.check_section(s)?;
        }
        // Every row's n-gram must be found at its own slot: an index whose
        // entries are well-formed but whose keys do not match the stored
        // n-grams (a crafted, re-checksummed file) would answer "not found".
        for slot in 0..self.rows() as u32 {
            let g = self.ngram(slot).unwrap_or(&[]);
            if self.lookup(g) != Some(slot) {
                return Err(OpenError::BadSection {
                    path: self.path.clone(),
                    section: SectionKind::Index,
                    reason: format!("the n-gram {g:?} of row {slot} is not found at its row by its key"),
                });
            }
        }
        Ok(all)
    }

    fn bytes(&self, s: &Section) -> &[u8] {
        match (s.kind, &self.resident, &self.resident_rows) {
            // The resident copy holds the index, then the ngrams (open_with).
            (SectionKind::Index, Some(r), _) => &r[..s.len as usize],
            (SectionKind::Ngrams, Some(r), _) => &r[self.index.len as usize..],
            (SectionKind::Rows, _, Some(r)) => r,
            // In bounds: check_layout verified offset + len <= file length.
            _ => &self.map[s.offset as usize..(s.offset + s.len) as usize],
        }
    }

    /// Whether the rows were copied into (huge-page) anonymous memory.
    pub fn rows_are_resident(&self) -> bool {
        self.resident_rows.is_some()
    }

    /// Whether the index and n-grams were copied into (huge-page) anonymous memory.
    pub fn index_is_resident(&self) -> bool {
        self.resident.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file this table was opened from (the handle every reader of it
    /// reads through; see [`reopen_file`](Self::reopen_file)).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A new handle on this table's file, optionally with `O_DIRECT`, for a
    /// reader of its own. It is always the same file (inode) as the table's,
    /// even after `path` was replaced: on Linux it is reopened through
    /// `/proc/self/fd`; where that is unavailable the path is opened and its
    /// device and inode compared with the table's, and a replaced file is an
    /// error ([`OpenError::Replaced`]). Returns the file and whether it is
    /// `O_DIRECT` (false where the file system refuses it; then a duplicate
    /// of the table's own handle is returned, reading through the page cache).
    pub fn reopen_file(&self, direct: bool) -> Result<(File, bool), OpenError> {
        let io = |source| OpenError::Io { path: self.path.clone(), source };
        if !direct {
            return Ok((self.file.try_clone().map_err(io)?, false));
        }
        match crate::read::reopen_same_file(&self.file, &self.path) {
            Ok(Some(f)) => Ok((f, true)),
            Ok(None) => Ok((self.file.try_clone().map_err(io)?, false)),
            Err(crate::read::ReopenError::Replaced) => Err(OpenError::Replaced { path: self.path.clone() }),
            Err(crate::read::ReopenError::Io(e)) => Err(io(e)),
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn rows(&self) -> u64 {
        self.header.rows
    }

    pub fn dim(&self) -> usize {
        self.header.dim as usize
    }

    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    pub fn n_max(&self) -> usize {
        self.header.n_max as usize
    }

    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn index_entries(&self) -> &[u64] {
        // Aligned: the section starts at a multiple of 4096 in a page-aligned file
        // map, or at offset 0 of the page-aligned resident copy.
        bytemuck::cast_slice(self.bytes(&self.index))
    }

    pub fn index(&self) -> IndexView<'_> {
        IndexView::new(self.index_entries(), &self.header.index).with_probe_limit(self.probe_limit)
    }

    /// Bytes the index occupies in memory.
    pub fn index_bytes(&self) -> u64 {
        self.index.len
    }

    /// The padded token records, `n_max` u32 per slot. (Aligned: a 4096-aligned
    /// file offset, or a multiple of 8 bytes into the resident copy.)
    pub(crate) fn ngram_words(&self) -> &[u32] {
        bytemuck::cast_slice(self.bytes(&self.ngrams))
    }

    /// The stored n-gram at `slot` (None if out of range).
    pub fn ngram(&self, slot: u32) -> Option<&[u32]> {
        let n = self.n_max();
        let rec = self.ngram_words().get(slot as usize * n..(slot as usize + 1) * n)?;
        let len = rec.iter().position(|&t| t == TOKEN_PAD).unwrap_or(n);
        Some(&rec[..len])
    }

    /// The count stored for `slot`, when the table was built with counts.
    pub fn count(&self, slot: u32) -> Option<u64> {
        let c = self.counts?;
        let b = self.bytes(&c).get(slot as usize * 8..slot as usize * 8 + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// The stored bytes of a row (without stride padding).
    pub fn row_bytes(&self, slot: u32) -> Option<&[u8]> {
        if slot as u64 >= self.header.rows {
            return None;
        }
        let start = slot as usize * self.header.row_stride as usize;
        self.bytes(&self.rows).get(start..start + self.header.row_bytes() as usize)
    }

    /// The whole rows section (stride-padded), for gathers.
    pub(crate) fn rows_section(&self) -> &[u8] {
        self.bytes(&self.rows)
    }

    /// The slot of an n-gram, verified against the stored tokens.
    pub fn lookup(&self, ngram: &[u32]) -> Option<u32> {
        if ngram.len() < 2 || ngram.len() > self.n_max() {
            return None;
        }
        let key = ngram_key(ngram, self.header.key_seed);
        self.index().probe(key, |slot| self.ngram(slot) == Some(ngram))
    }

    /// Looks up many n-grams; `out[i]` is the slot of `ngrams[i]`. Works in groups:
    /// hash and prefetch every index line of a group, then read the candidates and
    /// prefetch their stored n-grams, then verify, so that the cache misses of a
    /// group overlap instead of following one another.
    pub fn lookup_batch(&self, ngrams: &[&[u32]], out: &mut Vec<Option<u32>>) {
        const GROUP: usize = 16;
        let ix = self.index();
        let words = self.ngram_words();
        let n = self.n_max();
        let seed = self.header.key_seed;
        out.reserve(ngrams.len());
        for group in ngrams.chunks(GROUP) {
            let mut keys = [0u64; GROUP];
            for (k, g) in keys.iter_mut().zip(group) {
                *k = ngram_key(g, seed);
                ix.prefetch(*k);
            }
            let mut cand = [u32::MAX; GROUP];
            for (c, &k) in cand.iter_mut().zip(&keys) {
                *c = ix.first_candidate(k).unwrap_or(u32::MAX);
                if let Some(w) = words.get(*c as usize * n) {
                    crate::prefetch::prefetch_read(w);
                }
            }
            for ((g, &k), &c) in group.iter().zip(&keys).zip(&cand) {
                let found = if g.len() < 2 || g.len() > n || c == u32::MAX {
                    None
                } else if self.ngram(c) == Some(g) {
                    Some(c)
                } else {
                    ix.probe(k, |slot| self.ngram(slot) == Some(*g))
                };
                out.push(found);
            }
        }
    }

    /// Whether the table has the dense per-token block (one row per token id).
    pub fn has_token_rows(&self) -> bool {
        self.token_rows.is_some()
    }

    /// The stored row of token id `token` from the per-token block, in the
    /// table's dtype (row_bytes long); `None` without the block or for an id
    /// outside the vocabulary.
    pub fn token_row_bytes(&self, token: u32) -> Option<&[u8]> {
        let s = self.token_rows.as_ref()?;
        if token >= self.header.vocab_size {
            return None;
        }
        let at = token as usize * self.header.row_stride as usize;
        Some(&self.bytes(s)[at..at + self.header.row_bytes() as usize])
    }

    /// The embedded tokenizer, if the builder was given one: (kind, bytes).
    pub fn tokenizer(&self) -> Option<(&str, &[u8])> {
        let info = self.header.tokenizer.as_ref()?;
        Some((info.kind.as_str(), self.bytes(self.tokenizer.as_ref()?)))
    }

    /// Checks that the table was built with the tokenizer the caller encodes
    /// text with: its header must record tokenizer `kind` with `fingerprint`
    /// (xxh3-64 of the serialized tokenizer, which is also the checksum of the
    /// table's tokenizer section, verified at open). A table without a
    /// tokenizer section fails the check too: nothing shows which ids it holds.
    pub fn check_tokenizer(&self, kind: &str, fingerprint: u64) -> Result<(), OpenError> {
        let found = match (&self.header.tokenizer, &self.tokenizer) {
            (Some(info), Some(section)) => {
                // The header's fingerprint and the section's checksum are written
                // equal; should they differ, report the one that disagrees.
                let fp = if info.fingerprint != fingerprint { info.fingerprint } else { section.checksum };
                Some((info.kind.clone(), fp))
            }
            _ => None,
        };
        match &found {
            Some((k, fp)) if k == kind && *fp == fingerprint => Ok(()),
            _ => Err(OpenError::TokenizerMismatch {
                path: self.path.clone(),
                expected_kind: kind.to_owned(),
                expected_fingerprint: fingerprint,
                found,
            }),
        }
    }
}

/// Checks the padded n-gram records: each holds 2..=n_max token ids below
/// `vocab_size`, then only padding. A record that breaks this could never be
/// matched (or would match ids the tokenizer never produces).
fn check_ngram_records(words: &[u32], n_max: usize, vocab_size: u32) -> Result<(), String> {
    use rayon::prelude::*;
    // Chunks of 64 Ki records checked in parallel; one bad record is reported.
    const CHUNK: usize = 1 << 16;
    words
        .par_chunks(CHUNK * n_max)
        .enumerate()
        .try_for_each(|(c, w)| check_records_from(w, c * CHUNK, n_max, vocab_size))
}

fn check_records_from(words: &[u32], first: usize, n_max: usize, vocab_size: u32) -> Result<(), String> {
    for (slot, rec) in words.chunks_exact(n_max).enumerate().map(|(i, r)| (first + i, r)) {
        let len = rec.iter().position(|&t| t == TOKEN_PAD).unwrap_or(n_max);
        if len < 2 {
            return Err(format!("record {slot} holds {len} tokens; an f-gram has at least 2"));
        }
        if let Some(t) = rec[..len].iter().find(|&&t| t >= vocab_size) {
            return Err(format!("record {slot} holds token id {t}, not below the vocabulary size {vocab_size}"));
        }
        if rec[len..].iter().any(|&t| t != TOKEN_PAD) {
            return Err(format!("record {slot} has a token after its padding"));
        }
    }
    Ok(())
}

/// Opens `path` for reading if it is a regular file. Opened non-blocking, so
/// that a FIFO or device is refused instead of blocking the open forever;
/// the flag has no effect on reads of a regular file.
fn open_regular(path: &Path) -> Result<File, OpenError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source| OpenError::Io { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    let ft = file.metadata().map_err(io)?.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(OpenError::NotARegularFile { path: path.to_path_buf(), what });
    }
    Ok(file)
}

/// Copies `parts` back to back into one anonymous mapping advised to use huge
/// pages (a hint: where transparent huge pages are off it stays on small pages).
fn copy_to_anonymous(parts: &[&[u8]]) -> std::io::Result<Mmap> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut anon = memmap2::MmapOptions::new().len(len.max(1)).map_anon()?;
    #[cfg(target_os = "linux")]
    let _ = anon.advise(memmap2::Advice::HugePage);
    let mut at = 0;
    for p in parts {
        anon[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    anon.make_read_only()
}
