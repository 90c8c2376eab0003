//! The catalog: add, swap, snapshots that outlive a swap, gc, damage.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use engine::{Catalog, CatalogError, OpenError};

fn version_files(cat: &Catalog, name: &str) -> Vec<String> {
    dir_entries(&cat.dir().join("tables").join(name))
}

#[test]
fn a_snapshot_keeps_its_version_across_a_swap_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path().join("cat")).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    build_valued(&staging, 1.0, 4, false);
    let v1 = cat.add("emb", &staging).unwrap();
    assert_eq!((v1.version, v1.file.as_str(), v1.rows), (1, "tables/emb/1.scone", 40));
    assert!(!staging.exists(), "add moves the table into the catalog");
    let old = cat.reader("emb").unwrap();
    assert_eq!((old.version().version, table_value(&old)), (1, 1.0));

    build_valued(&staging, 2.0, 4, false);
    let v2 = cat.swap("emb", &staging).unwrap();
    assert_eq!(v2.version, 2);
    let new = Catalog::open(cat.dir()).unwrap().reader("emb").unwrap();
    assert_eq!((new.version().version, table_value(&new)), (2, 2.0));
    assert_eq!(table_value(&old), 1.0, "the old snapshot still answers from version 1");
    let listing = cat.list().unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!((listing[0].current.version, listing[0].retired.len()), (2, 1));

    // Held: gc keeps version 1's file, and the holder can still read it whole.
    let held = old.table().clone();
    drop(old);
    let report = cat.gc().unwrap();
    assert_eq!(report.held_versions, [cat.version_path(&v1)]);
    assert!(report.removed_versions.is_empty());
    assert_eq!(version_files(&cat, "emb"), ["1.scone", "2.scone"]);
    held.verify().unwrap();
    assert!(held.file().metadata().unwrap().nlink() > 0);
    // Released: gc removes it and forgets it.
    drop(held);
    let report = cat.gc().unwrap();
    assert_eq!(report.removed_versions, [cat.version_path(&v1)]);
    assert_eq!(version_files(&cat, "emb"), ["2.scone"]);
    assert!(cat.list().unwrap()[0].retired.is_empty());
    assert_eq!(table_value(&new), 2.0);
    assert_eq!(cat.current("emb").unwrap(), v2);
}

#[test]
fn a_table_from_another_file_system_is_copied_in_and_verified() {
    // /dev/shm is a tmpfs on Linux: another file system than the test's tempdir.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else { return };
    let dir = tempfile::tempdir().unwrap();
    if std::fs::metadata(shm.path()).unwrap().dev() == std::fs::metadata(dir.path()).unwrap().dev() {
        return;
    }
    let cat = Catalog::create(dir.path()).unwrap();
    let src = shm.path().join("t.scone");
    build_valued(&src, 5.0, 4, false);
    let rec = cat.add("emb", &src).unwrap();
    assert!(!src.exists(), "the source is removed after the commit");
    assert_eq!(table_value(&cat.reader("emb").unwrap()), 5.0);
    assert_eq!(tree(cat.dir()), ["lock", "manifest", "tables/emb/1.scone"]);
    assert_eq!(std::fs::metadata(cat.version_path(&rec)).unwrap().len(), rec.file_len);
}

#[test]
fn misuse_is_an_error_that_names_the_fix_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let t = dir.path().join("t.scone");
    build_valued(&t, 1.0, 4, false);
    let msg = |e: CatalogError| e.to_string();
    assert!(msg(cat.swap("emb", &t).unwrap_err()).contains("no table named `emb`; add it with `scone catalog add`"));
    cat.add("emb", &t).unwrap();
    build_valued(&t, 2.0, 4, false);
    assert!(msg(cat.add("emb", &t).unwrap_err())
        .contains("already has a table named `emb`; replace its version with `scone catalog swap`"));
    assert!(t.exists(), "a refused add leaves the source where it was");
    for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
        assert!(matches!(cat.add(bad, &t), Err(CatalogError::BadName { .. })), "{bad:?}");
    }
    // Not a table: refused before anything changes.
    let junk = dir.path().join("junk.scone");
    std::fs::write(&junk, vec![7u8; 10000]).unwrap();
    let e = cat.swap("emb", &junk).unwrap_err();
    assert!(matches!(e, CatalogError::Open(OpenError::BadMagic { .. })), "{e}");
    assert!(e.to_string().contains("junk.scone"));
    assert!(junk.exists());
    assert_eq!(cat.current("emb").unwrap().version, 1);
    assert!(matches!(Catalog::create(dir.path()), Err(CatalogError::AlreadyExists { .. })));
    let e = Catalog::open(dir.path().join("tables")).unwrap_err();
    assert!(e.to_string().contains("not a catalog (no manifest); create one with `scone catalog init`"), "{e}");
    assert!(matches!(cat.reader("nope"), Err(CatalogError::NoSuchTable { .. })));
}

#[test]
fn a_damaged_manifest_is_an_error_naming_it_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let t = dir.path().join("t.scone");
    build_valued(&t, 1.0, 4, false);
    cat.add("emb", &t).unwrap();
    let manifest = dir.path().join("manifest");
    let good = std::fs::read(&manifest).unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|len| good[..len].to_vec()).collect();
    for at in 0..good.len() {
        let mut b = good.clone();
        b[at] ^= 0x10;
        damaged.push(b);
    }
    for (case, bytes) in damaged.into_iter().enumerate() {
        std::fs::write(&manifest, &bytes).unwrap();
        let open = Catalog::open(dir.path()).err().unwrap_or_else(|| panic!("case {case} opened"));
        for e in [open, cat.reader("emb").unwrap_err(), cat.gc().unwrap_err()] {
            let m = e.to_string();
            assert!(m.starts_with(&format!("{}: ", manifest.display())), "{m}");
            assert!(matches!(e, CatalogError::DamagedManifest { .. } | CatalogError::UnsupportedVersion { .. }), "{m}");
        }
    }
    std::fs::write(&manifest, &good).unwrap();
    assert_eq!(table_value(&cat.reader("emb").unwrap()), 1.0);
}

#[test]
fn a_version_file_replaced_behind_the_catalog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let t = dir.path().join("t.scone");
    build_valued(&t, 1.0, 4, false);
    let rec = cat.add("emb", &t).unwrap();
    build_valued(&cat.version_path(&rec), 9.0, 4, true);
    let e = cat.reader("emb").unwrap_err();
    assert!(matches!(e, CatalogError::Mismatch { version: 1, .. }), "{e}");
    assert!(e.to_string().contains("tables/emb/1.scone"), "{e}");
    std::fs::remove_file(cat.version_path(&rec)).unwrap();
    let e = cat.reader("emb").unwrap_err().to_string();
    assert!(e.contains("tables/emb/1.scone") && e.contains("missing"), "{e}");
}

#[test]
fn gc_removes_the_litter_of_interrupted_operations_and_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    build_valued(&staging, 1.0, 4, false);
    cat.add("emb", &staging).unwrap();
    let litter = [
        "manifest.tmp-123-456",            // a manifest write that died
        "tables/emb/.2.scone.tmp-123-456", // a copy into the catalog that died
        "tables/emb/2.scone",              // a swap that died before its commit
        "tables/ghost/1.scone",            // an add that died before its commit
        "incoming/.emb.scone.tmp-123-456", // a build that died
    ];
    for f in litter {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"litter").unwrap();
    }
    // A build in progress, and a finished table waiting to be swapped in, stay.
    let live =
        engine::TableBuilder::create(dir.path().join("incoming/next.scone"), config(4, engine::Dtype::F32, 3, 50))
            .unwrap();
    build_valued(&dir.path().join("incoming/other.scone"), 3.0, 4, false);
    let report = cat.gc().unwrap();
    let mut removed: Vec<String> =
        report.removed_litter.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
    removed.sort();
    let mut want = litter.map(String::from).to_vec();
    want.sort();
    assert_eq!(removed, want);
    let left = tree(dir.path());
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(left[0].starts_with("incoming/.next.scone.tmp-"), "{left:?}");
    assert_eq!(&left[1..], ["incoming/other.scone", "lock", "manifest", "tables/emb/1.scone"]);
    drop(live);
    assert_eq!(table_value(&cat.reader("emb").unwrap()), 1.0);
}

#[test]
fn a_retired_version_goes_when_its_last_snapshot_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path().join("cat")).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    build_valued(&staging, 1.0, 4, false);
    cat.add("emb", &staging).unwrap();
    let a = cat.reader("emb").unwrap();
    let b = a.clone();
    let other = Catalog::open(cat.dir()).unwrap().reader("emb").unwrap();
    build_valued(&staging, 2.0, 4, false);
    cat.swap("emb", &staging).unwrap();
    drop(a);
    drop(other);
    // One clone still holds version 1.
    assert_eq!(version_files(&cat, "emb"), ["1.scone", "2.scone"]);
    assert_eq!(table_value(&b), 1.0);
    drop(b);
    // No gc ran: the last snapshot removed the file as it let go.
    assert_eq!(version_files(&cat, "emb"), ["2.scone"]);
    let report = cat.gc().unwrap();
    assert!(report.removed_versions.is_empty() && report.held_versions.is_empty());
    assert!(cat.list().unwrap()[0].retired.is_empty(), "gc forgets the removed version");
    // A current version is never removed by its snapshots.
    drop(cat.reader("emb").unwrap());
    assert_eq!(version_files(&cat, "emb"), ["2.scone"]);
}
