//! A reader's snapshot: the current version of a table, open and holding a
//! shared `flock` on its file so that gc leaves it alone, for as long as the
//! table is alive (the lock belongs to the table's own descriptor).
//!
//! The race with gc: between reading the manifest and taking the lock, the
//! version may have been replaced and collected. Gc unlinks only while it
//! holds the exclusive lock, so once our shared lock is granted, either the
//! file is still linked under its name (and stays, until we let go), or it is
//! gone and the manifest has moved on: then start again from the manifest.

use std::ops::Deref;
use std::sync::Arc;

use super::error::{io_err, CatalogError};
use super::manifest::{version_path, Manifest, VersionRecord};
use super::{identity, Catalog};
use crate::error::OpenError;
use crate::flock;
use crate::table::{OpenOptions, Table};

/// Bounds the retries of a reader racing a fast writer; each retry means a
/// new version was published meanwhile, so this is never reached in practice.
const MAX_ATTEMPTS: usize = 1000;

/// An open version of a catalog table. Clones share the open table; the
/// version's file stays on disk until the last clone (and every `Arc<Table>`
/// taken from it) is dropped and gc runs.
#[derive(Clone, Debug)]
pub struct TableSnapshot {
    name: String,
    version: VersionRecord,
    table: Arc<Table>,
    /// Declared after `table`, so dropped after it: when the last clone goes,
    /// the table's descriptor (and its shared lock) is closed first.
    _release: Arc<Release>,
}

/// Removes a retired version's file when the last snapshot of it in this
/// process lets go and no other reader (in any process: the exclusive lock
/// must be free) holds it, so a replaced version does not wait for the next
/// gc. Best effort: anything that fails here is left to `Catalog::gc`,
/// which also drops the manifest's record of the removed file.
#[derive(Debug)]
struct Release {
    dir: std::path::PathBuf,
    name: String,
    version: VersionRecord,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Ok(m) = Manifest::read(&self.dir) else { return };
        let retired = m.entry(&self.name).is_some_and(|e| e.retired.iter().any(|r| r == &self.version));
        if retired {
            let _ = crate::builder::remove_if_unlocked(&version_path(&self.dir, &self.version));
        }
    }
}

impl TableSnapshot {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &VersionRecord {
        &self.version
    }

    /// The open table; holding this `Arc` holds the snapshot.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }
}

impl Deref for TableSnapshot {
    type Target = Table;

    fn deref(&self) -> &Table {
        &self.table
    }
}

pub(super) fn open(cat: &Catalog, name: &str, opts: OpenOptions) -> Result<TableSnapshot, CatalogError> {
    let mut last_gone = None;
    for _ in 0..MAX_ATTEMPTS {
        let m = Manifest::read(cat.dir())?;
        let rec = m.entry(name).ok_or_else(|| cat.no_such(name))?.current.clone();
        let path = version_path(cat.dir(), &rec);
        // The version this attempt found missing last time is still current:
        // the file is gone for another reason than gc.
        if last_gone.as_ref() == Some(&rec) {
            return Err(CatalogError::Open(OpenError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the current version's file is missing from the catalog",
                ),
            }));
        }
        let table = match Table::open_with(&path, opts) {
            Ok(t) => t,
            Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                last_gone = Some(rec);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        flock::lock_shared(table.file()).map_err(io_err(&path, "cannot lock the table version"))?;
        if !flock::is_linked_at(table.file(), &path).map_err(io_err(&path, "cannot stat the table version"))? {
            last_gone = Some(rec);
            continue;
        }
        let found = identity(table.file()).map_err(io_err(&path, "cannot read the table version"))?;
        if found != (rec.header_xxh3, rec.file_len) {
            return Err(CatalogError::Mismatch {
                path,
                name: name.into(),
                version: rec.version,
                reason: format!(
                    "header xxh3 {:#018x} and length {} recorded, {:#018x} and {} found",
                    rec.header_xxh3, rec.file_len, found.0, found.1
                ),
            });
        }
        let release = Arc::new(Release { dir: cat.dir().to_path_buf(), name: name.into(), version: rec.clone() });
        return Ok(TableSnapshot { name: name.into(), version: rec, table: Arc::new(table), _release: release });
    }
    Err(io_err(cat.dir(), format!("could not open a version of `{name}`"))(std::io::Error::other(format!(
        "the current version changed under {MAX_ATTEMPTS} attempts in a row"
    ))))
}
