//! Errors raised while reading the bulk builder's input files.
//!
//! Every variant names the file it concerns. Record numbers follow two
//! conventions, chosen to match what users see in their own tools:
//!
//! * embedding **rows** and **columns** are 0-based (as in NumPy indexing);
//! * n-gram text **lines** are 1-based (as in editors, `sed -n Np`, `grep -n`).

use std::path::{Path, PathBuf};

/// An error while reading an embedding file or an n-gram text file.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum IngestError {
    /// The operating system failed to open, map or read the file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The file is not the format it claims to be, or is a variant of it that
    /// is not supported: bad magic, unparsable header, unsupported dtype,
    /// a tensor that is not 2-D, Fortran order, data shorter than
    /// `rows * dim * itemsize`, a missing or ambiguous tensor name, ...
    #[error("{}: {reason}", .path.display())]
    Malformed {
        /// The embedding file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },

    /// A line of the n-gram text file does not have the form
    /// `t1 t2 ... tn[\tcount]`.
    #[error("{}: line {line}: {reason}", .path.display())]
    BadLine {
        /// The n-gram text file.
        path: PathBuf,
        /// The offending line, **1-based**.
        line: u64,
        /// What is wrong, in words.
        reason: String,
    },

    /// An embedding value is NaN or infinite in the file (or, from
    /// `read_row_f32`, a finite `f64` outside the `f32` range).
    #[error(
        "{}: row {record}, column {column}: value is not finite (NaN or infinity)",
        .path.display()
    )]
    NonFinite {
        /// The embedding file.
        path: PathBuf,
        /// The row, **0-based**.
        record: u64,
        /// The column, **0-based**.
        column: usize,
    },

    /// The embedding file and the n-gram file hold different numbers of
    /// records. `lines` counts every line of the n-gram file (a final line
    /// without a trailing newline counts; the newline ending the last line
    /// does not start another one).
    #[error(
        "{} has {rows} rows but {} has {lines} lines; they must match one to one",
        .embeddings.display(),
        .ngrams.display()
    )]
    RowCountMismatch {
        /// The embedding file.
        embeddings: PathBuf,
        /// Rows in the embedding file.
        rows: u64,
        /// The n-gram text file.
        ngrams: PathBuf,
        /// Lines in the n-gram text file.
        lines: u64,
    },
}

impl IngestError {
    /// The file the error concerns (for [`IngestError::RowCountMismatch`],
    /// the n-gram file).
    pub fn path(&self) -> &Path {
        match self {
            IngestError::Io { path, .. }
            | IngestError::Malformed { path, .. }
            | IngestError::BadLine { path, .. }
            | IngestError::NonFinite { path, .. } => path,
            IngestError::RowCountMismatch { ngrams, .. } => ngrams,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IngestError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn malformed(path: &Path, reason: impl Into<String>) -> Self {
        IngestError::Malformed { path: path.to_path_buf(), reason: reason.into() }
    }

    pub(crate) fn bad_line(path: &Path, line: u64, reason: impl Into<String>) -> Self {
        IngestError::BadLine { path: path.to_path_buf(), line, reason: reason.into() }
    }
}
