//! Error types. Each operation has its own small enum; all convert into [`Error`].

use std::path::PathBuf;

use crate::format::SectionKind;

/// Opening or verifying a table file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a scone table (bad magic bytes {found:02x?}); expected a file written by `scone build`")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: table format version {found} is not supported by this build (supports {supported}); rebuild the table or upgrade scone")]
    UnsupportedVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: header is damaged: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: section {section} is damaged: {reason}")]
    BadSection { path: PathBuf, section: SectionKind, reason: String },
    #[error("{path}: section {section} checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the file is damaged; rebuild or restore it")]
    Checksum { path: PathBuf, section: SectionKind, stored: u64, computed: u64 },
    #[error("{path}: is {what}; a table must be a regular file")]
    NotARegularFile { path: PathBuf, what: &'static str },
    #[error("{path}: the file was replaced since the table was opened (another device or inode); reopen the table to read the new version")]
    Replaced { path: PathBuf },
    #[error("{path}: this platform is big-endian; scone tables are little-endian and are only served on little-endian hosts")]
    BigEndianHost { path: PathBuf },
    /// From [`Table::check_tokenizer`](crate::Table::check_tokenizer): the table
    /// was built for another tokenizer than the one the caller serves with, or
    /// embeds none. `found` is the table's (kind, fingerprint), `None` when it
    /// has no tokenizer section.
    #[error(
        "{path}: tokenizer mismatch: the caller uses `{expected_kind}` (fingerprint {expected_fingerprint:016x}) but the table {}; serve it with the tokenizer it was built with, or rebuild it",
        describe_found(.found)
    )]
    TokenizerMismatch { path: PathBuf, expected_kind: String, expected_fingerprint: u64, found: Option<(String, u64)> },
}

fn describe_found(found: &Option<(String, u64)>) -> String {
    match found {
        Some((kind, fp)) => format!("was built with `{kind}` (fingerprint {fp:016x})"),
        None => "has no tokenizer section, so nothing ties it to a tokenizer".to_owned(),
    }
}

/// Building a table. Record numbers are 0-based positions in the input stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `path` is the table being built (never its hidden temporary file);
    /// `context` says what failed. The OS error is part of the message and is
    /// not also returned by `source()`, so that a report that prints the chain
    /// (`anyhow`'s `{:#}`) states it once.
    #[error("{path}: {context}: {error}")]
    Io { path: PathBuf, context: String, error: std::io::Error },
    #[error("invalid build configuration: {0}")]
    Config(String),
    #[error("{path}: a table already exists there; remove it, or replace it with `scone build --force` (BuildConfig::overwrite)")]
    Exists { path: PathBuf },
    #[error("record {record}: {reason}")]
    BadRecord { record: u64, reason: String },
    #[error("token row {token}: {reason}")]
    BadTokenRow { token: u64, reason: String },
    #[error("record {second}: duplicate n-gram {ngram:?} (first seen at record {first})")]
    DuplicateNgram { first: u64, second: u64, ngram: Vec<u32> },
    #[error("no records were pushed; a table needs at least one row")]
    Empty,
}

/// Reading rows out of a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatherError {
    #[error("slot {slot} at batch position {position} is out of range (table has {rows} rows)")]
    SlotOutOfRange { position: usize, slot: u32, rows: u64 },
    #[error("output buffer holds {got} bytes; {need} needed for {rows} rows of {row_bytes} bytes")]
    BufferSize { got: usize, need: usize, rows: usize, row_bytes: usize },
    #[error("{slots} slots but {tokens} tokens; every position needs both")]
    TokensLength { slots: usize, tokens: usize },
    #[error("token {token} at batch position {position} is not below the vocabulary size {vocab}")]
    TokenOutOfRange { position: usize, token: u32, vocab: u32 },
}

/// The umbrella error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Gather(#[from] GatherError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}
