//! The f-gram list file: the f-grams chosen by selection, with their counts,
//! tied to the tokenizer whose ids they are written in.
//!
//! # Format (`scone-fgrams v1`)
//! UTF-8 text, every line ending in `\n`:
//!
//! ```text
//! # scone-fgrams v1 tokenizer=<16 hex digits> n_max=<n> count=<rows>
//! <count>\t<id> <id> ...        (one line per f-gram, hottest first)
//! # xxh3=<16 hex digits>
//! ```
//!
//! * `tokenizer` is the fingerprint of the tokenizer the ids belong to (for a
//!   [`BpeTokenizer`](crate::BpeTokenizer), its
//!   [`fingerprint`](crate::BpeTokenizer::fingerprint));
//! * each f-gram has between 1 and `n_max` ids, and appears once;
//! * the order of the rows is kept as written (hottest first from selection);
//! * the trailer is xxh3-64 of every byte before it, so damage anywhere is
//!   detected, and a file cut short (no trailer) is reported as truncated.
//!
//! Hex is 16 lowercase digits, written and read (so that flipping a letter's
//! case is damage too). Line numbers in errors are 1-based.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ngram_count::NgramCount;

/// The first word of the header line after `# `.
pub const FGRAM_LIST_MAGIC: &str = "scone-fgrams v1";
const TRAILER: &str = "# xxh3=";

/// An f-gram list as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FgramList {
    pub tokenizer_fingerprint: u64,
    pub n_max: usize,
    pub fgrams: Vec<NgramCount>,
}

/// Errors from writing or reading an f-gram list. Every one names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FgramListError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write f-gram {index}: {reason}")]
    BadInput { path: PathBuf, index: usize, reason: String },
    #[error("{path}:{line}: {reason}")]
    BadLine { path: PathBuf, line: usize, reason: String },
    #[error("{path}: truncated: {reason}")]
    Truncated { path: PathBuf, reason: String },
    #[error("{path}: checksum mismatch (stored {stored:016x}, computed {computed:016x}): the file is damaged")]
    Checksum { path: PathBuf, stored: u64, computed: u64 },
}

/// Writes `fgrams` (in the order given) to `path`, through a temporary file in
/// the same directory that is synced and renamed into place, so the list
/// appears whole or not at all.
pub fn write_fgram_list(
    path: impl AsRef<Path>,
    tokenizer_fingerprint: u64,
    n_max: usize,
    fgrams: &[NgramCount],
) -> Result<(), FgramListError> {
    let path = path.as_ref();
    let bad = |index: usize, reason: String| FgramListError::BadInput { path: path.to_owned(), index, reason };
    if n_max == 0 {
        return Err(bad(0, "n_max must be at least 1".into()));
    }
    let mut text =
        format!("# {FGRAM_LIST_MAGIC} tokenizer={tokenizer_fingerprint:016x} n_max={n_max} count={}\n", fgrams.len());
    let mut seen: HashMap<&[u32], usize> = HashMap::with_capacity(fgrams.len());
    for (i, g) in fgrams.iter().enumerate() {
        if g.tokens.is_empty() || g.tokens.len() > n_max {
            return Err(bad(i, format!("{} ids, expected 1..={n_max}", g.tokens.len())));
        }
        if let Some(first) = seen.insert(&g.tokens, i) {
            return Err(bad(i, format!("duplicate of f-gram {first} {:?}", g.tokens)));
        }
        use std::fmt::Write as _;
        let _ = write!(text, "{}\t", g.count);
        for (j, id) in g.tokens.iter().enumerate() {
            let _ = write!(text, "{}{id}", if j == 0 { "" } else { " " });
        }
        text.push('\n');
    }
    let sum = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    text.push_str(&format!("{TRAILER}{sum:016x}\n"));

    let io = |source| FgramListError::Io { path: path.to_owned(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads and checks a list written by [`write_fgram_list`].
pub fn read_fgram_list(path: impl AsRef<Path>) -> Result<FgramList, FgramListError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| FgramListError::Io { path: path.to_owned(), source })?;
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<FgramList, FgramListError> {
    let bad_line = |line: usize, reason: String| FgramListError::BadLine { path: path.to_owned(), line, reason };
    let truncated = |reason: String| FgramListError::Truncated { path: path.to_owned(), reason };

    // Header (line 1) first, so a file that is not an f-gram list at all says so.
    let header_end = match bytes.iter().position(|&b| b == b'\n') {
        Some(p) => p,
        None if bytes.is_empty() => return Err(truncated("the file is empty".into())),
        None => return Err(truncated("the header line has no end".into())),
    };
    let header = line_str(&bytes[..header_end]).map_err(|r| bad_line(1, r))?;
    let (tokenizer_fingerprint, n_max, count) = parse_header(header).map_err(|r| bad_line(1, r))?;

    // Trailer: the last line, checksumming everything before it.
    if bytes.last() != Some(&b'\n') {
        return Err(truncated("the last line has no end (no `# xxh3=` trailer)".into()));
    }
    let body = &bytes[..bytes.len() - 1];
    let last_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let n_lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
    let last = &body[last_start..];
    let Some(hex) = last.strip_prefix(TRAILER.as_bytes()) else {
        return Err(truncated(format!(
            "no `{TRAILER}` trailer after line {n_lines} (header announces {count} f-grams, found {} lines after it)",
            n_lines - 1
        )));
    };
    let stored = std::str::from_utf8(hex)
        .ok()
        .and_then(parse_hex16)
        .ok_or_else(|| bad_line(n_lines, format!("bad checksum trailer {:?}", String::from_utf8_lossy(last))))?;
    let computed = xxhash_rust::xxh3::xxh3_64(&bytes[..last_start]);
    if stored != computed {
        return Err(FgramListError::Checksum { path: path.to_owned(), stored, computed });
    }

    // Rows: lines 2..n_lines-1.
    let rows = if last_start > header_end + 1 { &bytes[header_end + 1..last_start - 1] } else { &[][..] };
    let mut fgrams = Vec::with_capacity(count.min(1 << 24));
    let mut seen: HashMap<Vec<u32>, usize> = HashMap::with_capacity(count.min(1 << 24));
    if last_start > header_end + 1 {
        for (i, raw) in rows.split(|&b| b == b'\n').enumerate() {
            let line = i + 2;
            let text = line_str(raw).map_err(|r| bad_line(line, r))?;
            let g = parse_row(text, n_max).map_err(|r| bad_line(line, r))?;
            if let Some(first) = seen.insert(g.tokens.clone(), line) {
                return Err(bad_line(line, format!("duplicate f-gram {:?} (first on line {first})", g.tokens)));
            }
            fgrams.push(g);
        }
    }
    if fgrams.len() != count {
        return Err(bad_line(n_lines, format!("header announces {count} f-grams, the file has {}", fgrams.len())));
    }
    Ok(FgramList { tokenizer_fingerprint, n_max, fgrams })
}

fn line_str(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to()))
}

fn parse_hex16(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

fn parse_header(line: &str) -> Result<(u64, usize, usize), String> {
    let expected = format!("expected `# {FGRAM_LIST_MAGIC} tokenizer=<16 hex> n_max=<n> count=<rows>`");
    let Some(rest) = line.strip_prefix("# ").and_then(|r| r.strip_prefix(FGRAM_LIST_MAGIC)) else {
        return Err(format!("not a scone f-gram list header: {expected}, found {line:?}"));
    };
    let fields: Vec<&str> = rest.split(' ').filter(|f| !f.is_empty()).collect();
    let [tok, n_max, count] = fields.as_slice() else {
        return Err(format!("{expected}, found {line:?}"));
    };
    let value = |field: &str, key: &str| -> Result<String, String> {
        field
            .strip_prefix(key)
            .and_then(|v| v.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("expected `{key}=...`, found {field:?}"))
    };
    let tok = value(tok, "tokenizer")?;
    let fingerprint =
        parse_hex16(&tok).ok_or_else(|| format!("tokenizer fingerprint {tok:?} is not 16 lowercase hex digits"))?;
    let n_max_s = value(n_max, "n_max")?;
    let n_max: usize = n_max_s.parse().map_err(|_| format!("n_max {n_max_s:?} is not a number"))?;
    if n_max == 0 {
        return Err("n_max must be at least 1".into());
    }
    let count_s = value(count, "count")?;
    let count: usize = count_s.parse().map_err(|_| format!("count {count_s:?} is not a number"))?;
    Ok((fingerprint, n_max, count))
}

fn parse_row(line: &str, n_max: usize) -> Result<NgramCount, String> {
    let Some((count, ids)) = line.split_once('\t') else {
        return Err(format!("expected `count<TAB>id id ...`, found {line:?}"));
    };
    let count: u64 = count.parse().map_err(|_| format!("count {count:?} is not a non-negative integer"))?;
    let mut tokens = Vec::new();
    for id in ids.split(' ') {
        let v: u32 =
            id.parse().map_err(|_| format!("token id {id:?} is not a u32 (ids are separated by single spaces)"))?;
        tokens.push(v);
    }
    if tokens.len() > n_max {
        return Err(format!("{} ids, more than n_max {n_max}", tokens.len()));
    }
    Ok(NgramCount { tokens, count })
}
