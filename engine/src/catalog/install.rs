//! Adding a version: move the table file in under a fresh version number,
//! then commit a manifest that names it. The step-by-step protocol and what a
//! crash at each step leaves are in docs/CATALOG.md.

use std::io;
use std::path::Path;

use super::error::{io_err, CatalogError};
use super::manifest::{version_file, version_path, Manifest, TableEntry, VersionRecord};
use super::{check_name, identity, now_unix, Catalog};
use crate::publish::{parent_dir, rename_noreplace};
use crate::table::{OpenOptions, Table};

pub(super) enum Expect {
    New,
    Existing,
}

pub(super) fn install(cat: &Catalog, name: &str, src: &Path, expect: Expect) -> Result<VersionRecord, CatalogError> {
    check_name(name).map_err(|reason| CatalogError::BadName { name: name.into(), reason })?;
    // Refuse a wrong name before looking at the file (checked again under the lock).
    expect_name(cat, &Manifest::read(cat.dir())?, name, &expect)?;
    // 1. The offered file must be a table (header and every section but the
    //    rows checked) before anything changes.
    let table = Table::open_with(src, OpenOptions { verify_rows: false, resident_index: false, resident_rows: false })?;
    let (header_xxh3, file_len) = identity(table.file()).map_err(io_err(src, "cannot read the table"))?;
    let rows = table.rows();
    drop(table);

    // 2. Writers serialize from here to the commit.
    let _lock = cat.lock()?;
    let mut m = Manifest::read(cat.dir())?;
    expect_name(cat, &m, name, &expect)?;
    let version = m.entry(name).map_or(1, |e| e.next_version);
    let rec = VersionRecord {
        version,
        file: version_file(name, version),
        header_xxh3,
        file_len,
        rows,
        created_unix: now_unix(),
    };
    let dst = version_path(cat.dir(), &rec);
    let name_dir = parent_dir(&dst).to_path_buf();
    std::fs::create_dir_all(&name_dir).map_err(io_err(&name_dir, "cannot create the table's folder"))?;
    // A file already there was placed by an add or swap that died before its
    // commit (the version number was never published): nobody can hold it.
    match std::fs::remove_file(&dst) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err(&dst, "cannot remove an uncommitted version file")(e))
        }
        _ => {}
    }

    // 3. Place the file under its version name: a hard link on the same file
    //    system (the source name stays until the commit, so a crash loses
    //    nothing), a verified copy elsewhere.
    let copied = match std::fs::hard_link(src, &dst) {
        Ok(()) => false,
        Err(_) => {
            copy_in(src, &dst, (header_xxh3, file_len), name, version)?;
            true
        }
    };
    cat.sync(&name_dir)?;
    cat.sync(&cat.tables_dir())?;
    if copied {
        // A copy is checked whole, rows included, before it is published.
        let check = OpenOptions { verify_rows: true, resident_index: false, resident_rows: false };
        if let Err(e) = Table::open_with(&dst, check) {
            let _ = std::fs::remove_file(&dst);
            return Err(e.into());
        }
    }

    // 4. Commit: the new manifest names the new version; the old current one
    //    is retired (its file stays until gc finds no reader holding it).
    match m.entry_mut(name) {
        Some(e) => {
            let old = std::mem::replace(&mut e.current, rec.clone());
            e.retired.push(old);
            e.next_version = version + 1;
        }
        None => m.tables.push(TableEntry {
            name: name.into(),
            current: rec.clone(),
            retired: Vec::new(),
            next_version: version + 1,
        }),
    }
    m.generation += 1;
    m.write(cat.dir())?;

    // 5. The move is complete: the source name goes. Failing that, the file
    //    merely keeps a second name (tables are never written in place).
    let _ = std::fs::remove_file(src);
    Ok(rec)
}

/// Add needs a new name, swap an existing one.
fn expect_name(cat: &Catalog, m: &Manifest, name: &str, expect: &Expect) -> Result<(), CatalogError> {
    match (m.entry(name), expect) {
        (Some(_), Expect::New) => Err(CatalogError::TableExists { dir: cat.dir().into(), name: name.into() }),
        (None, Expect::Existing) => Err(cat.no_such(name)),
        _ => Ok(()),
    }
}

/// Copies `src` to `dst` through a locked temporary file in `dst`'s folder
/// (so an interrupted copy is litter gc recognises), fsyncs it, checks its
/// identity and renames it into place.
fn copy_in(src: &Path, dst: &Path, want: (u64, u64), name: &str, version: u64) -> Result<(), CatalogError> {
    let dir = parent_dir(dst);
    let tmp_name = format!(
        ".{}.tmp-{}-{}",
        dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let tmp = dir.join(tmp_name);
    let result = (|| -> Result<(), CatalogError> {
        let ctx = "cannot copy the table into the catalog";
        let mut out =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(io_err(dst, ctx))?;
        crate::flock::try_lock_exclusive(&out).map_err(io_err(dst, ctx))?;
        let mut input = std::fs::File::open(src).map_err(io_err(src, "cannot read the table"))?;
        io::copy(&mut input, &mut out).map_err(io_err(dst, ctx))?;
        out.sync_all().map_err(io_err(dst, "cannot fsync the copied table"))?;
        let got = identity(&out).map_err(io_err(dst, ctx))?;
        if got != want {
            return Err(CatalogError::Mismatch {
                path: dst.into(),
                name: name.into(),
                version,
                reason: "the copy differs from the source".into(),
            });
        }
        if !rename_noreplace(&tmp, dst).map_err(io_err(dst, ctx))? {
            return Err(io_err(dst, ctx)(io::Error::from(io::ErrorKind::AlreadyExists)));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
