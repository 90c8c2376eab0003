//! The builder's failure paths: injected write and fsync faults, missing
//! folders, races for one path, temporary files of dead builds. Every failure
//! must leave no table and no temporary file, and say what failed about the
//! user's output file, stating the OS error once.

mod common;

use common::*;
use engine::builder::{remove_stale_temp_files, WriteFaults};
use engine::{BuildError, Dtype, Table, TableBuilder};

/// Builds `spec` at `path`, with `faults` injected once the output is open.
fn build_with(path: &std::path::Path, spec: &Spec, faults: WriteFaults) -> Result<(), BuildError> {
    let mut b = TableBuilder::create(path, config(8, Dtype::F32, 4, 50))?;
    b.inject_write_faults(faults);
    for (i, (g, r)) in spec.ngrams.iter().zip(&spec.rows).enumerate() {
        b.push(g, r, spec.counts.as_ref().map(|c| c[i]))?;
    }
    b.finish().map(|_| ())
}

#[test]
fn every_injected_fault_leaves_no_table_and_no_temp_file() {
    // With counts out of order too: that path reads rows back and truncates.
    for counts in [false, true] {
        let spec = random_spec(7, 300, 50, 4, 8, counts);
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.scone");
        build_with(&good, &spec, WriteFaults::default()).unwrap();
        let len = std::fs::metadata(&good).unwrap().len();
        std::fs::remove_file(&good).unwrap();
        // Bytes written in all: the placeholder header, the file, the header again.
        let total = len + 4096;
        let mut faults: Vec<WriteFaults> = [0, 1, 4095, 4096, 5000, len / 2, len - 1, len, total - 1]
            .into_iter()
            .map(|at| WriteFaults { fail_after_bytes: Some(at), ..Default::default() })
            .collect();
        faults.push(WriteFaults { fail_sync: true, ..Default::default() });
        faults.push(WriteFaults { short_writes: Some(0), ..Default::default() });
        faults.push(WriteFaults { short_writes: Some(3), fail_after_bytes: Some(len / 3), ..Default::default() });
        for f in faults {
            let path = dir.path().join("t.scone");
            let err = build_with(&path, &spec, f.clone()).expect_err(&format!("{f:?} must fail the build"));
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{}: ", path.display())), "{f:?}: {msg}");
            assert!(!msg.contains(".tmp-"), "{f:?}: the message names the temporary file: {msg}");
            assert!(dir_entries(dir.path()).is_empty(), "{f:?} left {:?}", dir_entries(dir.path()));
        }
    }
}

#[test]
fn short_writes_are_resumed_and_build_the_same_table() {
    let spec = random_spec(8, 200, 50, 4, 8, true);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.scone"), dir.path().join("b.scone"));
    build_with(&a, &spec, WriteFaults::default()).unwrap();
    build_with(&b, &spec, WriteFaults { short_writes: Some(7), ..Default::default() }).unwrap();
    let (ta, tb) = (Table::open(&a).unwrap(), Table::open(&b).unwrap());
    tb.verify().unwrap();
    assert_eq!(ta.header().sections, tb.header().sections, "same bytes, same checksums");
    assert_eq!(dir_entries(dir.path()), ["a.scone", "b.scone"]);
}

#[test]
fn a_failed_fsync_is_reported_and_not_retried() {
    let spec = random_spec(9, 50, 50, 4, 8, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let err = build_with(&path, &spec, WriteFaults { fail_sync: true, ..Default::default() }).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!("{}: cannot fsync the table; nothing was published: injected fsync failure", path.display())
    );
    assert!(dir_entries(dir.path()).is_empty());
}

/// The OS error appears once in the message, and not again as a source.
fn assert_states_os_error_once(err: &BuildError, os: &str) {
    let msg = err.to_string();
    assert_eq!(msg.matches(os).count(), 1, "{msg}");
    assert!(std::error::Error::source(err).is_none(), "a chain printer would repeat it: {msg}");
}

#[test]
fn a_missing_temp_dir_fails_early_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let mut cfg = config(3, Dtype::F32, 3, 10);
    cfg.temp_dir = Some(dir.path().join("no-such-dir"));
    let err = TableBuilder::create(&path, cfg).err().expect("no temp dir, no build");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}: cannot use the temporary directory ", path.display())), "{msg}");
    assert!(msg.contains("no-such-dir") && !msg.contains(".tmp-"), "{msg}");
    assert_states_os_error_once(&err, "No such file or directory");
    assert!(dir_entries(dir.path()).is_empty(), "left {:?}", dir_entries(dir.path()));
}

#[test]
fn a_missing_output_folder_names_the_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("t.scone");
    let err = TableBuilder::create(&path, config(3, Dtype::F32, 3, 10)).err().expect("no folder, no build");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}: cannot create the table's temporary file in ", path.display())), "{msg}");
    assert!(!msg.contains(".tmp-"), "{msg}");
    assert_states_os_error_once(&err, "No such file or directory");
}

#[test]
fn exists_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    build_valued(&path, 1.0, 4, false);
    let err = TableBuilder::create(&path, config(4, Dtype::F32, 3, 50)).err().expect("the table exists");
    let msg = err.to_string();
    assert!(msg.contains("--force") && msg.contains("BuildConfig::overwrite"), "{msg}");
}

#[test]
fn of_two_builds_racing_for_one_path_only_the_first_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let start = |v: f32| {
        let mut b = TableBuilder::create(&path, config(4, Dtype::F32, 3, 50)).unwrap();
        for i in 0..40u32 {
            b.push(&[i, i + 1], &[v; 4], None).unwrap();
        }
        b
    };
    // Both pass the existence check in `create`; the loser finds out at the rename.
    let (first, second) = (start(1.0), start(2.0));
    assert_eq!(dir_entries(dir.path()).len(), 2, "two locked temporary files");
    first.finish().unwrap();
    let err = second.finish().unwrap_err();
    assert!(matches!(err, BuildError::Exists { .. }), "{err}");
    assert_eq!(table_value(&Table::open(&path).unwrap()), 1.0, "the first table stays");
    assert_eq!(dir_entries(dir.path()), ["t.scone"]);
}

#[test]
fn temp_files_of_dead_builds_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    // A dead build's file (nobody holds its lock) and another target's.
    std::fs::write(dir.path().join(".t.scone.tmp-999999-1"), b"half a table").unwrap();
    std::fs::write(dir.path().join(".u.scone.tmp-999999-1"), b"another target").unwrap();
    let live = TableBuilder::create(&path, config(4, Dtype::F32, 3, 50)).unwrap();
    let entries = dir_entries(dir.path());
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.contains(&".u.scone.tmp-999999-1".to_string()));
    // A second build of the same target leaves the live one's file alone.
    let second = TableBuilder::create(&path, config(4, Dtype::F32, 3, 50)).unwrap();
    assert_eq!(dir_entries(dir.path()).len(), 3);
    assert!(remove_stale_temp_files(&path).unwrap().is_empty());
    drop((live, second));
    assert_eq!(dir_entries(dir.path()), [".u.scone.tmp-999999-1"]);
}
