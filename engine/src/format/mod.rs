//! The on-disk layout of a table file. The byte-level description lives in
//! docs/FORMAT.md; keep the two in step.
//!
//! ```text
//! offset 0     header block (4096 bytes): magic, format version, header length,
//!              header checksum, the [`Header`] (header_codec.rs), zero padding
//! 4096         rows section        rows * row_stride bytes
//! (4096-aligned) counts section    rows * u64 LE (only when the build had counts)
//! (4096-aligned) ngrams section    rows * n_max * u32 LE, padded with u32::MAX
//! (4096-aligned) index section     index.len * u64 LE
//! (4096-aligned) token rows section optional, vocab_size * row_stride bytes (row of token id i at i)
//! (4096-aligned) tokenizer section optional, opaque bytes + kind string in the header
//! ```

mod header_codec;

use serde::{Deserialize, Serialize};

use crate::dtype::Dtype;

pub const MAGIC: [u8; 8] = *b"SCONETBL";
/// The version this build writes ([`FormatVersion::CURRENT`] as a number).
pub const FORMAT_VERSION: u32 = FormatVersion::CURRENT as u32;

/// The table format versions this build reads. A new version adds a variant
/// (and committed fixtures, engine/tests/fixtures/); a reader keeps opening
/// every earlier one. docs/FORMAT.md has the log of versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum FormatVersion {
    /// 2026-11: the first format (header byte layout in docs/FORMAT.md).
    V1 = 1,
}

impl FormatVersion {
    /// The version new tables are written in.
    pub const CURRENT: FormatVersion = FormatVersion::V1;

    /// The version stored as `v`, if this build knows it.
    pub fn from_u32(v: u32) -> Option<FormatVersion> {
        match v {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }
}
/// Size of the header block; the rows section starts here.
pub const HEADER_BLOCK: u64 = 4096;
/// Every section starts at a multiple of this (O_DIRECT and page alignment).
pub const SECTION_ALIGN: u64 = 4096;
/// Row stride is a multiple of this (cache lines, vector loads).
pub const STRIDE_ALIGN: u64 = 64;
/// Pads unused token positions of an n-gram record in the ngrams section.
pub const TOKEN_PAD: u32 = u32::MAX;
/// Longest n-gram a table may hold.
pub const MAX_N: usize = 16;
/// Largest row dimension a table may declare: a header can then never make a
/// reader allocate more than `MAX_DIM * 4` bytes for one row.
pub const MAX_DIM: u32 = 1 << 20;
/// Bytes before the header: magic, version, header length, header checksum.
pub const PREAMBLE: usize = 8 + 4 + 4 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SectionKind {
    Rows,
    Counts,
    Ngrams,
    Index,
    Tokenizer,
    /// Optional dense block: one row per token id (`vocab_size` rows, same
    /// stride and dtype as the rows section), served where no f-gram matches.
    TokenRows,
}

impl std::fmt::Display for SectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SectionKind::Rows => "rows",
            SectionKind::Counts => "counts",
            SectionKind::Ngrams => "ngrams",
            SectionKind::Index => "index",
            SectionKind::Tokenizer => "tokenizer",
            SectionKind::TokenRows => "token rows",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: SectionKind,
    pub offset: u64,
    pub len: u64,
    /// xxh3-64 (seed 0) of the section's `len` bytes.
    pub checksum: u64,
}

/// Parameters of the linear-probing index; see `index.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Number of home positions (keys map to `0..capacity`).
    pub capacity: u64,
    /// Low bits of an entry that hold the slot; the high bits hold the key's top bits.
    pub slot_bits: u32,
    /// Entries in the section (capacity + overflow tail + one terminating empty entry).
    pub len: u64,
    /// Keys keep only their top `key_bits` bits (64 in production). Fewer bits force
    /// key collisions, which tests use to exercise the collision path end to end.
    pub key_bits: u32,
    /// Marker entries: keys of proper suffixes (2 tokens or more) of f-grams that
    /// are not f-grams themselves. With them every such suffix has an entry, so
    /// the matcher stops at the first suffix length with none (see index.rs).
    pub markers: u64,
}

impl IndexParams {
    /// The mask applied to every key before it is stored or probed.
    pub fn key_mask(&self) -> u64 {
        match self.key_bits {
            0 => 0,
            b if b >= 64 => u64::MAX,
            b => !(u64::MAX >> b),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    /// `scone-engine <version>`.
    pub tool: String,
    /// Free text from the builder's caller (input files, trainer run...).
    pub source: String,
    /// Number of pairs of distinct n-grams whose 64-bit keys collided; all stay retrievable.
    pub key_collisions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// What kind of tokenizer the tokenizer section holds, e.g. `scone-word-tokenizer v1`.
    pub kind: String,
    /// xxh3-64 of the tokenizer section, so a serving stack can check it holds the same one.
    pub fingerprint: u64,
}

/// Everything about a table except its bulk sections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub dim: u32,
    pub dtype: Dtype,
    /// Longest n-gram length stored (n-grams have 2..=n_max tokens).
    pub n_max: u32,
    /// Token ids are < vocab_size.
    pub vocab_size: u32,
    pub rows: u64,
    pub row_stride: u64,
    pub key_seed: u64,
    /// True when rows are ordered by descending count (the build had counts).
    pub hottest_first: bool,
    pub index: IndexParams,
    pub build: BuildInfo,
    pub tokenizer: Option<TokenizerInfo>,
    pub sections: Vec<Section>,
}

impl Header {
    pub fn row_bytes(&self) -> u64 {
        self.dim as u64 * self.dtype.size() as u64
    }

    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

/// Checks a header's numbers against each other (not yet against the file):
/// every table the builder writes passes, and a header that fails could only
/// answer wrongly or ask for absurd memory. Returns the reason.
pub fn check_header_fields(h: &Header) -> Result<(), String> {
    use crate::index::{capacity_for, slot_bits_for};
    if h.dim == 0 || h.dim > MAX_DIM {
        return Err(format!("dimension {} not in 1..={MAX_DIM}", h.dim));
    }
    if h.n_max < 2 || h.n_max as usize > MAX_N {
        return Err(format!("n_max {} not in 2..={MAX_N}", h.n_max));
    }
    if h.rows == 0 || h.rows >= u32::MAX as u64 - 1 {
        return Err(format!("row count {} not in 1..{}", h.rows, u32::MAX - 1));
    }
    if h.vocab_size == 0 {
        return Err("vocabulary size 0: no token id can be stored".into());
    }
    let row_bytes = h.row_bytes();
    if h.row_stride < row_bytes
        || !h.row_stride.is_multiple_of(STRIDE_ALIGN)
        || h.row_stride != row_stride(h.dim, h.dtype)
    {
        return Err(format!(
            "row stride {} is not the {}-byte stride of a {row_bytes}-byte row",
            h.row_stride,
            row_stride(h.dim, h.dtype)
        ));
    }
    let ix = &h.index;
    if ix.key_bits == 0 || ix.key_bits > 64 {
        return Err(format!("index key bits {} not in 1..=64", ix.key_bits));
    }
    if ix.slot_bits != slot_bits_for(h.rows) {
        return Err(format!(
            "index slot bits {} should be {} for {} rows",
            ix.slot_bits,
            slot_bits_for(h.rows),
            h.rows
        ));
    }
    // Each f-gram has at most n_max - 2 proper suffixes of 2 tokens or more.
    let max_markers = h.rows.saturating_mul(h.n_max as u64 - 2);
    if ix.markers > max_markers {
        return Err(format!(
            "{} marker entries; {} rows of at most {} tokens allow {max_markers}",
            ix.markers, h.rows, h.n_max
        ));
    }
    let keys = h.rows + ix.markers;
    if ix.capacity != capacity_for(keys) {
        return Err(format!("index capacity {} should be {} for {keys} keys", ix.capacity, capacity_for(keys)));
    }
    // Home range, an overflow tail of at most one entry per key, the terminator.
    if ix.len <= ix.capacity || ix.len > ix.capacity + keys + 1 {
        return Err(format!("index of {} entries does not fit {} home positions and {keys} keys", ix.len, ix.capacity));
    }
    let mut kinds: Vec<SectionKind> = h.sections.iter().map(|s| s.kind).collect();
    kinds.sort_by_key(|k| *k as u8);
    if kinds.windows(2).any(|w| w[0] == w[1]) {
        return Err("a section is listed twice".into());
    }
    Ok(())
}

/// Checks that no two sections share a byte.
pub fn check_no_overlap(sections: &[Section]) -> Result<(), String> {
    let mut v: Vec<&Section> = sections.iter().collect();
    v.sort_by_key(|s| s.offset);
    for w in v.windows(2) {
        if w[0].offset + w[0].len > w[1].offset {
            return Err(format!("sections {} and {} overlap", w[0].kind, w[1].kind));
        }
    }
    Ok(())
}

pub const fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

pub fn row_stride(dim: u32, dtype: Dtype) -> u64 {
    align_up(dim as u64 * dtype.size() as u64, STRIDE_ALIGN)
}

/// Serializes the header block (exactly HEADER_BLOCK bytes).
pub fn encode_header_block(h: &Header) -> Result<Vec<u8>, String> {
    let body = header_codec::encode(h);
    if PREAMBLE + body.len() > HEADER_BLOCK as usize {
        return Err(format!(
            "header is {} bytes, more than the {} the header block holds (shorten the build source text)",
            body.len(),
            HEADER_BLOCK as usize - PREAMBLE
        ));
    }
    let mut block = vec![0u8; HEADER_BLOCK as usize];
    block[..8].copy_from_slice(&MAGIC);
    block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    block[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
    block[16..24].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
    block[PREAMBLE..PREAMBLE + body.len()].copy_from_slice(&body);
    Ok(block)
}

/// What can be wrong with a header block, before a path is attached.
#[derive(Debug)]
pub enum HeaderProblem {
    BadMagic(Vec<u8>),
    Version(u32),
    Damaged(String),
}

/// Parses and checks a header block (at least its first HEADER_BLOCK bytes).
pub fn decode_header_block(block: &[u8]) -> Result<Header, HeaderProblem> {
    if block.len() < PREAMBLE || block[..8] != MAGIC {
        return Err(HeaderProblem::BadMagic(block[..block.len().min(8)].to_vec()));
    }
    let u32_at = |o: usize| u32::from_le_bytes([block[o], block[o + 1], block[o + 2], block[o + 3]]);
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    let len = u32_at(12) as usize;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&block[16..24]);
    let stored = u64::from_le_bytes(sum);
    let Some(body) = block.get(PREAMBLE..PREAMBLE + len).filter(|_| PREAMBLE + len <= HEADER_BLOCK as usize) else {
        return Err(HeaderProblem::Damaged(format!(
            "header length {len} does not fit the {HEADER_BLOCK}-byte header block"
        )));
    };
    let computed = xxhash_rust::xxh3::xxh3_64(body);
    if computed != stored {
        return Err(HeaderProblem::Damaged(format!(
            "header checksum mismatch (stored {stored:#018x}, computed {computed:#018x})"
        )));
    }
    header_codec::decode(body).map_err(|e| HeaderProblem::Damaged(format!("cannot decode header: {e}")))
}
