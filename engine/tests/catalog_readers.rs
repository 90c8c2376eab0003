//! Readers at full speed across many swaps: every answer comes from exactly
//! one version, no read fails, and no file is removed under a reader.

mod common;

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use engine::{Catalog, TableSnapshot};

const SWAPS: u64 = 60;
const READERS: usize = 4;

/// A snapshot answers from its own version, whole, from a file that is
/// still linked.
fn check(s: &TableSnapshot) {
    assert_eq!(
        table_value(s),
        s.version().version as f32,
        "version {} answered with another's rows",
        s.version().version
    );
    assert!(
        s.file().metadata().unwrap().nlink() > 0,
        "version {}'s file was removed under its reader",
        s.version().version
    );
}

#[test]
fn readers_see_exactly_one_version_and_keep_it_across_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    build_valued(&staging, 1.0, 16, false);
    cat.add("emb", &staging).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (cat, done, opened) = (cat.clone(), done.clone(), opened.clone());
            std::thread::spawn(move || {
                // Each reader holds its last few snapshots across swaps and
                // re-reads them: an old version must stay whole and linked.
                let mut held: VecDeque<TableSnapshot> = VecDeque::new();
                let mut last = 0;
                let mut versions_seen = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let s = cat.reader("emb").expect("a reader never fails");
                    check(&s);
                    assert!(s.version().version >= last, "versions go forward within a thread");
                    versions_seen += (s.version().version != last) as u64;
                    last = s.version().version;
                    opened.fetch_add(1, Ordering::Relaxed);
                    held.iter().for_each(check);
                    held.push_back(s);
                    if held.len() > 3 {
                        held.pop_front();
                    }
                }
                versions_seen
            })
        })
        .collect();
    let mut held_by_gc = 0;
    for v in 2..=SWAPS {
        build_valued(&staging, v as f32, 16, false);
        assert_eq!(cat.swap("emb", &staging).unwrap().version, v);
        held_by_gc += cat.gc().unwrap().held_versions.len();
    }
    done.store(true, Ordering::Relaxed);
    let seen: Vec<u64> = readers.into_iter().map(|r| r.join().expect("reader thread")).collect();
    let opened = opened.load(Ordering::Relaxed);
    eprintln!(
        "{READERS} readers opened {opened} snapshots across {SWAPS} versions (distinct versions seen per reader: {seen:?}); gc found {held_by_gc} retired versions held"
    );
    assert!(seen.iter().all(|&n| n > 1), "every reader ran across swaps: {seen:?}");
    // No reader left: everything but the current version goes.
    let report = cat.gc().unwrap();
    assert!(report.held_versions.is_empty());
    assert_eq!(dir_entries(&dir.path().join("tables/emb")), [format!("{SWAPS}.scone")]);
    assert!(cat.list().unwrap()[0].retired.is_empty());
}
