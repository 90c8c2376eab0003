//! Checking a table's rows before serving them.
//!
//! Opening a table checksums its header and, by default, not its rows (that
//! reads the whole file), so a damaged row is served as if it were good.
//! [`check_rows`] is the check a server runs when it can afford one pass over
//! the rows: every section's checksum ([`Table::verify`]), and, when the rows
//! or token rows fail theirs, a scan that names the first row holding a value
//! the builder never writes (NaN or infinity), so the report says which row
//! is bad and not only that some byte is. It uses only the table's public
//! API; an `OpenOptions` switch that runs it at open belongs with `Table`.

use std::path::PathBuf;

use crate::dtype::decode_value;
use crate::error::OpenError;
use crate::format::{Section, SectionKind};
use crate::Table;

/// A row found holding a value the builder never writes.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// `Some(slot)` for an f-gram row, `None` for a token row.
    pub slot: Option<u32>,
    /// The f-gram's tokens, or the single token id of a token row.
    pub ngram: Vec<u32>,
    pub column: usize,
    pub value: f32,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.slot {
            Some(slot) => write!(f, "row {slot} (n-gram {:?})", self.ngram)?,
            None => write!(f, "token row {}", self.ngram.first().copied().unwrap_or(0))?,
        }
        write!(f, ", column {}, holds {}", self.column, self.value)
    }
}

/// Why a table's rows must not be served.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum RowsDamaged {
    /// A section's checksum failed; for the rows sections, `first_bad` is the
    /// first row holding a non-finite value, if any does.
    #[error("{source}{}", match first_bad {
        Some(b) => format!("; first damaged row found: {b}"),
        None if matches!(**source, OpenError::Checksum { section: SectionKind::Rows | SectionKind::TokenRows, .. }) =>
            "; every stored value is finite, so the damage is in values that look valid".to_string(),
        None => String::new(),
    })]
    Checksum { source: Box<OpenError>, first_bad: Option<Box<BadRow>> },
}

impl RowsDamaged {
    /// The table file.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            RowsDamaged::Checksum { source, .. } => match &**source {
                OpenError::Checksum { path, .. } => Some(path),
                _ => None,
            },
        }
    }
}

/// Checksums every section of `table` (the rows included: one pass over the
/// file). On a rows or token-rows mismatch, scans them for the first value
/// that is not finite and reports it with the error. Returns the sections
/// checked.
pub fn check_rows(table: &Table) -> Result<Vec<Section>, RowsDamaged> {
    table.verify().map_err(|source| {
        let first_bad = match &source {
            OpenError::Checksum { section: SectionKind::Rows, .. } => first_non_finite_row(table),
            OpenError::Checksum { section: SectionKind::TokenRows, .. } => first_non_finite_token_row(table),
            _ => None,
        };
        RowsDamaged::Checksum { source: Box::new(source), first_bad: first_bad.map(Box::new) }
    })
}

/// The first column of `row` (stored bytes) that is not finite, with its value.
fn non_finite(row: &[u8], table: &Table) -> Option<(usize, f32)> {
    (0..table.dim()).map(|c| (c, decode_value(row, table.dtype(), c))).find(|(_, v)| !v.is_finite())
}

fn first_non_finite_row(table: &Table) -> Option<BadRow> {
    (0..u32::try_from(table.rows()).unwrap_or(u32::MAX)).find_map(|slot| {
        let (column, value) = non_finite(table.row_bytes(slot)?, table)?;
        let ngram = table.ngram(slot).map(<[u32]>::to_vec).unwrap_or_default();
        Some(BadRow { slot: Some(slot), ngram, column, value })
    })
}

fn first_non_finite_token_row(table: &Table) -> Option<BadRow> {
    (0..table.header().vocab_size).find_map(|token| {
        let (column, value) = non_finite(table.token_row_bytes(token)?, table)?;
        Some(BadRow { slot: None, ngram: vec![token], column, value })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildConfig, Dtype, TableBuilder};

    /// A 3-row f32 table whose row for [1, 2] starts with 1234.5; returns its
    /// path and the file offset of that value.
    fn table(dir: &std::path::Path) -> (PathBuf, usize) {
        let path = dir.join("t.scone");
        let mut b = TableBuilder::create(&path, BuildConfig::new(3, Dtype::F32, 2, 10)).unwrap();
        b.push(&[3, 4], &[0.5f32, 1.0, 2.0], None).unwrap();
        b.push(&[1, 2], &[1234.5f32, 0.0, -1.0], None).unwrap();
        b.push(&[5, 6], &[7.0f32, 8.0, 9.0], None).unwrap();
        b.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == 1234.5f32.to_le_bytes()).unwrap();
        (path, at)
    }

    fn damage(path: &std::path::Path, at: usize, v: f32) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn intact_rows_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = table(dir.path());
        let t = Table::open(&path).unwrap();
        let checked = check_rows(&t).unwrap();
        assert!(checked.iter().any(|s| s.kind == SectionKind::Rows));
    }

    #[test]
    fn a_nan_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, at) = table(dir.path());
        damage(&path, at + 8, f32::NAN);
        let t = Table::open(&path).expect("open does not read the rows");
        let e = check_rows(&t).unwrap_err();
        let RowsDamaged::Checksum { first_bad: Some(bad), .. } = &e else { panic!("{e}") };
        assert_eq!((bad.ngram.as_slice(), bad.column), (&[1, 2][..], 2));
        assert!(bad.value.is_nan());
        let msg = e.to_string();
        assert!(msg.contains("section rows checksum mismatch"), "{msg}");
        assert!(msg.contains("(n-gram [1, 2]), column 2, holds NaN"), "{msg}");
        assert_eq!(e.path(), Some(&path));
    }

    #[test]
    fn a_finite_change_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (path, at) = table(dir.path());
        damage(&path, at, 1234.25);
        let t = Table::open(&path).unwrap();
        let msg = check_rows(&t).unwrap_err().to_string();
        assert!(msg.contains("section rows checksum mismatch"), "{msg}");
        assert!(msg.contains("every stored value is finite"), "{msg}");
    }
}
