//! A catalog of table versions: a folder holding named tables, each with a
//! current version, swapped atomically while readers keep serving the version
//! they opened.
//!
//! The state is one small manifest replaced by atomic rename (`manifest`);
//! version files are immutable and never reuse a name (`install`); a reader
//! holds a shared `flock` on its version's file (`snapshot`), and garbage
//! collection removes a replaced version only when it can take an exclusive
//! one (`gc`). Writers (add, swap, gc) serialize on an exclusive lock of the
//! catalog's `lock` file, across processes. Why a manifest and not an embedded
//! database, the layout, the protocol and what a crash at each step leaves:
//! docs/CATALOG.md.

mod error;
mod gc;
mod install;
mod manifest;
mod snapshot;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use error::CatalogError;
pub use gc::GcReport;
pub use manifest::VersionRecord;
pub use snapshot::TableSnapshot;

use crate::flock;
use crate::publish::sync_dir;
use crate::table::OpenOptions;
use error::io_err;
use manifest::Manifest;

/// The writer lock file, beside the manifest.
const LOCK: &str = "lock";
/// Version files, one folder per table name.
const TABLES: &str = "tables";
/// Where tables are built before they are added (same file system: the move
/// into the catalog is then a rename).
const INCOMING: &str = "incoming";

/// An open catalog (a folder). Cheap: every operation reads the manifest
/// afresh, so changes made by other processes are seen.
#[derive(Clone, Debug)]
pub struct Catalog {
    dir: PathBuf,
}

/// A table of the catalog, as `list` reports it.
#[derive(Clone, Debug)]
pub struct TableListing {
    pub name: String,
    pub current: VersionRecord,
    /// Replaced versions whose files have not been collected yet.
    pub retired: Vec<VersionRecord>,
}

impl Catalog {
    /// Creates an empty catalog in `dir` (created if missing). Fails if `dir`
    /// already holds one.
    pub fn create(dir: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let dir = dir.as_ref().to_path_buf();
        for sub in [TABLES, INCOMING] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io_err(dir.join(sub), "cannot create the folder"))?;
        }
        let cat = Catalog { dir };
        let _lock = cat.lock()?;
        if cat.dir.join(manifest::MANIFEST).exists() {
            return Err(CatalogError::AlreadyExists { path: cat.dir });
        }
        Manifest::default().write(&cat.dir)?;
        Ok(cat)
    }

    /// Opens the catalog in `dir`, checking its manifest.
    pub fn open(dir: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let cat = Catalog { dir: dir.as_ref().to_path_buf() };
        Manifest::read(&cat.dir)?;
        Ok(cat)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path in the catalog's `incoming/` folder to build a new version of
    /// `name` at: on the catalog's file system, so adding it moves no bytes.
    pub fn staging_path(&self, name: &str) -> Result<PathBuf, CatalogError> {
        check_name(name).map_err(|reason| CatalogError::BadName { name: name.into(), reason })?;
        Ok(self.dir.join(INCOMING).join(format!("{name}.scone")))
    }

    /// The tables, sorted by name.
    pub fn list(&self) -> Result<Vec<TableListing>, CatalogError> {
        let m = Manifest::read(&self.dir)?;
        let mut out: Vec<TableListing> = m
            .tables
            .into_iter()
            .map(|t| TableListing { name: t.name, current: t.current, retired: t.retired })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The current version of `name`.
    pub fn current(&self, name: &str) -> Result<VersionRecord, CatalogError> {
        let m = Manifest::read(&self.dir)?;
        m.entry(name).map(|e| e.current.clone()).ok_or_else(|| self.no_such(name))
    }

    /// Where a version's file is.
    pub fn version_path(&self, rec: &VersionRecord) -> PathBuf {
        manifest::version_path(&self.dir, rec)
    }

    /// Adds a new table `name` whose first version is the table file at
    /// `table` (moved into the catalog). Fails if the name exists.
    pub fn add(&self, name: &str, table: impl AsRef<Path>) -> Result<VersionRecord, CatalogError> {
        install::install(self, name, table.as_ref(), install::Expect::New)
    }

    /// Makes the table file at `table` (moved into the catalog) the current
    /// version of `name`. Readers that hold the previous version keep it; its
    /// file is removed by [`Catalog::gc`] once none does.
    pub fn swap(&self, name: &str, table: impl AsRef<Path>) -> Result<VersionRecord, CatalogError> {
        install::install(self, name, table.as_ref(), install::Expect::Existing)
    }

    /// A snapshot of the current version of `name`, open and locked against
    /// collection for as long as it (or a clone of its table) lives.
    pub fn reader(&self, name: &str) -> Result<TableSnapshot, CatalogError> {
        snapshot::open(self, name, OpenOptions::default())
    }

    /// [`Catalog::reader`] with the table's open options.
    pub fn reader_with(&self, name: &str, opts: OpenOptions) -> Result<TableSnapshot, CatalogError> {
        snapshot::open(self, name, opts)
    }

    /// Removes the files of replaced versions that no reader holds, and the
    /// litter of interrupted operations. See [`GcReport`].
    pub fn gc(&self) -> Result<GcReport, CatalogError> {
        gc::collect(self)
    }

    /// The writer lock: held by add, swap and gc for their whole
    /// read-modify-write of the manifest; released when the file closes.
    fn lock(&self) -> Result<File, CatalogError> {
        let path = self.dir.join(LOCK);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "cannot open the catalog's lock file"))?;
        flock::lock_exclusive(&f).map_err(io_err(&path, "cannot lock the catalog"))?;
        Ok(f)
    }

    fn no_such(&self, name: &str) -> CatalogError {
        CatalogError::NoSuchTable { dir: self.dir.clone(), name: name.into() }
    }

    fn tables_dir(&self) -> PathBuf {
        self.dir.join(TABLES)
    }

    fn sync(&self, dir: &Path) -> Result<(), CatalogError> {
        sync_dir(dir).map_err(io_err(dir, "cannot fsync the folder"))
    }
}

/// Table names become folder names: 1 to 64 of `A-Z a-z 0-9 _ - .`, not
/// starting with a dot.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{} bytes long; names have 1 to 64", name.len()));
    }
    if name.starts_with('.') {
        return Err("starts with a dot".into());
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        Some(c) => Err(format!("contains {c:?}; use letters, digits, `_`, `-` and `.`")),
        None => Ok(()),
    }
}

/// The identity a version is recorded with: xxh3-64 of the header block, and
/// the file length.
fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut block = vec![0u8; (crate::format::HEADER_BLOCK).min(len) as usize];
    file.read_exact_at(&mut block, 0)?;
    Ok((xxhash_rust::xxh3::xxh3_64(&block), len))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
