//! Advisory whole-file locks (`flock(2)`), the one mechanism that tells a live
//! user of a file from a dead one across processes: the kernel drops a lock
//! when the last descriptor of its open file description closes, including
//! when the process is killed. The builder holds an exclusive lock on its
//! temporary file (so a stale one can be told from one being written), catalog
//! readers hold a shared lock on the version they serve (so garbage collection
//! can tell a retired version nobody holds), and catalog writers serialize on
//! an exclusive lock of the catalog's lock file.
//!
//! `libc::flock` rather than `std::fs::File::lock`: the std API needs Rust
//! 1.89 and the workspace promises 1.85; `fs4`/`fs2` would add a dependency for
//! three calls. Locks of two descriptors of one file conflict even within a
//! process, which the catalog relies on (its readers and its collector may
//! share a process).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Blocks until a shared lock is held.
pub(crate) fn lock_shared(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_SH)
}

/// Blocks until an exclusive lock is held.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_EX)
}

/// Takes an exclusive lock if nobody holds any lock on the file; `Ok(false)` if
/// someone does.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for as long as `file` is borrowed, and
        // flock(2) reads and writes no memory of ours.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `file` is still the file at `path`: not unlinked, not replaced. A
/// lock taken on a file that was unlinked in the meantime protects nothing.
pub(crate) fn is_linked_at(file: &File, path: &std::path::Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    if held.nlink() == 0 {
        return Ok(false);
    }
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.dev() == held.dev() && m.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
