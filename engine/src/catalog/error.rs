//! What can go wrong with a catalog. Every message names the file or folder.

use std::path::PathBuf;

use crate::error::OpenError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The OS error is part of the message and not also `source()`, so a
    /// report that prints the chain states it once.
    #[error("{path}: {context}: {error}")]
    Io { path: PathBuf, context: String, error: std::io::Error },
    #[error("{path}: not a catalog (no manifest); create one with `scone catalog init` (Catalog::create)")]
    NotACatalog { path: PathBuf },
    #[error("{path}: a catalog already exists there")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: the catalog manifest is damaged: {reason}; restore it from a backup (the version files under tables/ are untouched)")]
    DamagedManifest { path: PathBuf, reason: String },
    #[error("{path}: catalog manifest format version {found} is not supported by this build (supports {supported}); upgrade scone")]
    UnsupportedVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("`{name}` is not a valid table name: {reason}")]
    BadName { name: String, reason: String },
    #[error("{dir}: the catalog has no table named `{name}`; add it with `scone catalog add` (Catalog::add)")]
    NoSuchTable { dir: PathBuf, name: String },
    #[error("{dir}: the catalog already has a table named `{name}`; replace its version with `scone catalog swap` (Catalog::swap)")]
    TableExists { dir: PathBuf, name: String },
    /// The table offered to `add`/`swap`, or a version file, does not open.
    /// Displayed as the open error itself, with no `source()`: that error's
    /// message already states its OS error, and a chain printer would repeat it.
    #[error("{0}")]
    Open(OpenError),
    #[error("{path}: version {version} of `{name}` is not the file the manifest recorded: {reason}")]
    Mismatch { path: PathBuf, name: String, version: u64, reason: String },
}

impl From<OpenError> for CatalogError {
    fn from(e: OpenError) -> Self {
        CatalogError::Open(e)
    }
}

/// Attaches a path and what was being done to an I/O error.
pub(crate) fn io_err(
    path: impl Into<PathBuf>,
    context: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> CatalogError {
    let (path, context) = (path.into(), context.into());
    move |error| CatalogError::Io { path, context, error }
}
