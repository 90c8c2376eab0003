//! Garbage collection: removes the files of retired versions that no reader
//! holds (an exclusive `flock` can be taken), version files no manifest
//! names (an add or swap that died before its commit), and temporary files of
//! interrupted copies, manifest writes and builds in `incoming/`.

use std::io;
use std::path::{Path, PathBuf};

use super::error::{io_err, CatalogError};
use super::manifest::{is_manifest_temp, version_path, Manifest};
use super::{Catalog, INCOMING};
use crate::builder::{is_any_temp_name, remove_if_unlocked};

/// What one collection did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Retired versions whose files were removed.
    pub removed_versions: Vec<PathBuf>,
    /// Retired versions still held by a reader (in any process); kept.
    pub held_versions: Vec<PathBuf>,
    /// Uncommitted version files and temporary files removed.
    pub removed_litter: Vec<PathBuf>,
}

pub(super) fn collect(cat: &Catalog) -> Result<GcReport, CatalogError> {
    let _lock = cat.lock()?;
    let mut m = Manifest::read(cat.dir())?;
    let before = m.clone();
    let mut report = GcReport::default();

    // 1. Retired versions nobody holds. The unlink happens under the
    //    exclusive lock (remove_if_unlocked); a reader that opened the file
    //    just before finds it unlinked once it gets its shared lock.
    for entry in &mut m.tables {
        let mut kept = Vec::new();
        for rec in entry.retired.drain(..) {
            let path = version_path(cat.dir(), &rec);
            if !path.exists() {
                continue; // collected by a gc that died before its commit
            }
            if remove_if_unlocked(&path).map_err(io_err(&path, "cannot remove a retired version"))? {
                report.removed_versions.push(path);
            } else {
                report.held_versions.push(path);
                kept.push(rec);
            }
        }
        entry.retired = kept;
    }

    // 2. Files under tables/ the manifest does not name.
    let tables = cat.tables_dir();
    for dir in read_dir(&tables)? {
        let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if !dir.is_dir() {
            continue;
        }
        let entry = m.entry(&name);
        for file in read_dir(&dir)?.into_iter().filter(|f| f.is_file()) {
            let referenced = entry.is_some_and(|e| {
                std::iter::once(&e.current).chain(&e.retired).any(|r| version_path(cat.dir(), r) == file)
            });
            if !referenced && remove_if_unlocked(&file).map_err(io_err(&file, "cannot remove litter"))? {
                report.removed_litter.push(file);
            }
        }
        if entry.is_none() {
            // A table whose add died before its commit: its folder goes too.
            let _ = std::fs::remove_dir(&dir);
        } else {
            cat.sync(&dir)?;
        }
    }
    cat.sync(&tables)?;

    // 3. Temporary files of manifest writes that died (writers hold the lock
    //    we hold, so none is in progress) and of builds in incoming/ that died.
    for file in read_dir(cat.dir())? {
        if file.file_name().is_some_and(|n| is_manifest_temp(&n.to_string_lossy())) {
            std::fs::remove_file(&file).map_err(io_err(&file, "cannot remove litter"))?;
            report.removed_litter.push(file);
        }
    }
    let incoming = cat.dir().join(INCOMING);
    for file in read_dir(&incoming)?.into_iter().filter(|f| f.is_file()) {
        let litter = file.file_name().is_some_and(|n| is_any_temp_name(&n.to_string_lossy()));
        if litter && remove_if_unlocked(&file).map_err(io_err(&file, "cannot remove litter"))? {
            report.removed_litter.push(file);
        }
    }

    if m != before {
        m.generation += 1;
        m.write(cat.dir())?;
    } else if !report.removed_litter.is_empty() {
        cat.sync(cat.dir())?;
    }
    Ok(report)
}

/// The entries of a folder (none if it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let ctx = "cannot list the folder";
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, ctx)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        out.push(e.map_err(io_err(dir, ctx))?.path());
    }
    out.sort();
    Ok(out)
}
