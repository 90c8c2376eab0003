//! Crash test: a child process (this test binary, re-run with
//! `SCONE_CRASH_CHILD_DIR` set) builds tables and swaps them into a catalog,
//! with gc now and then, in a loop, and is SIGKILLed at a random moment. After
//! each kill: the catalog opens, its current version opens and verifies and
//! holds one version's rows, every version file present is whole, and after
//! gc no temporary file and no unreferenced version file remains.
//!
//! `SCONE_CRASH_POINTS` kills (default 20, for CI); the full run is
//! `SCONE_CRASH_POINTS=200 cargo test -p scone-engine --test catalog_crash -- --nocapture`
//! (docs/CATALOG.md records its figures). `SCONE_CRASH_SEED` picks the kill times.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use engine::{Catalog, Table};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "SCONE_CRASH_CHILD_DIR";

/// The child's loop; it only runs in the re-executed child.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let cat = Catalog::open(&dir).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    for round in 0u64.. {
        let next = cat.current("emb").unwrap().version + 1;
        // Bigger than the readers' tables, so a kill often lands mid-build.
        build_valued(&staging, next as f32, 512, true);
        assert_eq!(cat.swap("emb", &staging).unwrap().version, next);
        if round % 3 == 2 {
            cat.gc().unwrap();
        }
    }
}

/// What a kill left before gc, counted over the run.
#[derive(Default, Debug)]
struct Leftovers {
    build_temps: u32,
    uncommitted_versions: u32,
    retired_files: u32,
    manifest_temps: u32,
    staged_tables: u32,
    versions_advanced: u32,
}

#[test]
fn a_killed_builder_or_swap_leaves_a_consistent_catalog() {
    let points: u32 = std::env::var("SCONE_CRASH_POINTS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("SCONE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::create(dir.path()).unwrap();
    let staging = cat.staging_path("emb").unwrap();
    build_valued(&staging, 1.0, 512, false);
    cat.add("emb", &staging).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seen = Leftovers::default();
    let started = Instant::now();
    let mut last_version = 1;
    for point in 0..points {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--test-threads=1", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..250_000)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "point {point}: the child ended by itself ({status}); it should loop until killed"
        );
        let version = check_after_kill(dir.path(), &mut seen, point);
        seen.versions_advanced += (version != last_version) as u32;
        last_version = version;
    }
    eprintln!(
        "{points} kills in {:.1} s (seed {seed}); current version reached {last_version}; before gc: {seen:?}",
        started.elapsed().as_secs_f64()
    );
}

/// Checks the invariants after a kill; returns the current version.
fn check_after_kill(dir: &Path, seen: &mut Leftovers, point: u32) -> u64 {
    let cat = Catalog::open(dir).unwrap_or_else(|e| panic!("point {point}: the catalog does not open: {e}"));
    let snap = cat.reader("emb").unwrap_or_else(|e| panic!("point {point}: no current version: {e}"));
    snap.verify().unwrap_or_else(|e| panic!("point {point}: the current version is damaged: {e}"));
    let version = snap.version().version;
    assert_eq!(table_value(&snap), version as f32, "point {point}: version {version} holds another's rows");
    drop(snap);
    // No half table is visible: every table file that has a name opens and verifies.
    let current = cat.current("emb").unwrap();
    for f in tree(dir) {
        let name = f.rsplit('/').next().unwrap();
        if name.starts_with('.') {
            seen.build_temps += f.starts_with("incoming/") as u32;
            continue;
        }
        if name.starts_with("manifest.tmp-") {
            seen.manifest_temps += 1;
            continue;
        }
        if f.ends_with(".scone") {
            Table::open(dir.join(&f))
                .and_then(|t| t.verify().map(|_| ()))
                .unwrap_or_else(|e| panic!("point {point}: {f} is visible but not whole: {e}"));
            let listed = cat.list().unwrap()[0].retired.iter().any(|r| r.file == f);
            if f.starts_with("incoming/") {
                seen.staged_tables += 1;
            } else if listed {
                seen.retired_files += 1;
            } else if f != current.file {
                seen.uncommitted_versions += 1;
            }
        }
    }
    cat.gc().unwrap_or_else(|e| panic!("point {point}: gc failed: {e}"));
    let mut left: Vec<String> = tree(dir).into_iter().filter(|f| f != "incoming/emb.scone").collect();
    left.sort();
    assert_eq!(left, ["lock".to_string(), "manifest".into(), current.file], "point {point}: litter after gc");
    assert!(cat.list().unwrap()[0].retired.is_empty(), "point {point}");
    version
}
