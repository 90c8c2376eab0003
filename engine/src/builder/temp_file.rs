//! The table's temporary file: beside the target (so the final rename is
//! atomic), under a name that says whose it is (`.{target}.tmp-{pid}-{nanos}`),
//! and exclusively locked for as long as its builder lives. The lock is what
//! tells a stale temporary file (its builder died: killed, crashed, power cut)
//! from one being written, across processes; the pid in the name is only for
//! people (pids are reused).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::flock;
use crate::publish::parent_dir;

/// A locked temporary file, removed on drop unless [`TempTable::disarm`]ed.
pub(super) struct TempTable {
    path: PathBuf,
    armed: bool,
}

impl TempTable {
    /// Creates and locks a new temporary file for `target`.
    pub(super) fn create(target: &Path) -> io::Result<(TempTable, File)> {
        let dir = parent_dir(target);
        let prefix = temp_prefix(target);
        for attempt in 0u32..64 {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
                    + attempt as u128;
            let path = dir.join(format!("{prefix}{}-{nanos}", std::process::id()));
            // Readable too: an out-of-order count makes the builder read its rows back.
            let file = match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let guard = TempTable { path, armed: true };
            // Another builder's stale-file sweep may have locked and removed the
            // file between its creation and our lock: then start again.
            if flock::try_lock_exclusive(&file)? && flock::is_linked_at(&file, &guard.path)? {
                return Ok((guard, file));
            }
        }
        Err(io::Error::other("could not create and lock a temporary file (64 attempts)"))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed into place: nothing to remove any more.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempTable {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `.{file name}.tmp-`: what every temporary file of `target` starts with.
fn temp_prefix(target: &Path) -> String {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Whether `file_name` is a temporary file of the target with name prefix
/// `prefix`: the prefix, then `{pid}-{nanos}` and nothing else (so that the
/// temporaries of `t.scone.tmp-1` are not taken for those of `t.scone`).
fn is_temp_name(file_name: &str, prefix: &str) -> bool {
    let Some(rest) = file_name.strip_prefix(prefix) else { return false };
    let mut parts = rest.split('-');
    let digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Whether `file_name` is the temporary file of some build (of any target):
/// `.{target}.tmp-{pid}-{nanos}`.
pub(crate) fn is_any_temp_name(file_name: &str) -> bool {
    match (file_name.starts_with('.'), file_name.rfind(".tmp-")) {
        (true, Some(at)) if at > 0 => is_temp_name(file_name, &file_name[..at + 5]),
        _ => false,
    }
}

/// Removes the temporary files that builds of `target` left behind when they
/// died (those whose lock can be taken); returns the paths removed. Files of
/// live builds, in this process or another, stay.
pub fn remove_stale_temp_files(target: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = parent_dir(target);
    let prefix = temp_prefix(target);
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !is_temp_name(&name.to_string_lossy(), &prefix) {
            continue;
        }
        let path = entry.path();
        if remove_if_unlocked(&path)? {
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Removes `path` if no process holds a lock on it. The lock is held while
/// unlinking, so nobody can take it in between and find the file gone later
/// without noticing (they check [`flock::is_linked_at`]).
pub(crate) fn remove_if_unlocked(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        // Gone already, or another user's file we may not open: not ours to remove.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !flock::try_lock_exclusive(&file)? || !flock::is_linked_at(&file, path)? {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_belong_to_exactly_one_target() {
        let p = temp_prefix(Path::new("/x/t.scone"));
        assert_eq!(p, ".t.scone.tmp-");
        assert!(is_temp_name(".t.scone.tmp-12-345", &p));
        assert!(!is_temp_name(".t.scone.tmp-1.tmp-12-345", &p));
        assert!(!is_temp_name(".t.scone.tmp-12", &p));
        assert!(!is_temp_name(".t.scone.tmp-12-34-5", &p));
        assert!(!is_temp_name("t.scone", &p));
        assert!(is_any_temp_name(".t.scone.tmp-12-345"));
        assert!(is_any_temp_name(".t.scone.tmp-1.tmp-12-345"));
        assert!(!is_any_temp_name(".tmp-12-345"));
        assert!(!is_any_temp_name("t.scone.tmp-12-345"));
    }

    #[test]
    fn a_live_temp_file_is_kept_and_a_dead_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.scone");
        let (live, _file) = TempTable::create(&target).unwrap();
        // A dead builder's file: same pattern, nobody holds its lock.
        let dead = dir.path().join(".t.scone.tmp-1-2");
        std::fs::write(&dead, b"half").unwrap();
        let removed = remove_stale_temp_files(&target).unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(live.path().exists() && !dead.exists());
        drop(live);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
