//! Reopening the very file a table holds, with other flags (`O_DIRECT`).
//!
//! A reader must read the file the table validated, not whatever its path
//! names now: a table replaced by rename between the table's open and the
//! reader's would otherwise mix two versions. Linux's `/proc/self/fd/N` opens
//! the inode behind a descriptor even after its name was renamed over or
//! unlinked; where `/proc` is not mounted the path is opened and its device
//! and inode compared with the table's, so a replaced file is an error, never
//! a silent switch.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why [`reopen_same_file`] failed.
#[derive(Debug)]
pub enum ReopenError {
    /// The path now names another file than the table's.
    Replaced,
    Io(io::Error),
}

/// Opens `file` (whose name was `path`) again with `O_DIRECT`. `Ok(None)`
/// where the file system refuses `O_DIRECT` (the caller then reads buffered,
/// through a duplicate of `file`; one log line says so).
pub fn reopen_same_file(file: &File, path: &Path) -> Result<Option<File>, ReopenError> {
    let direct =
        |p: &Path| std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(p);
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let opened = match direct(Path::new(&proc_path)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => direct(path),
        other => other,
    };
    let reopened = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            static LOGGED: AtomicBool = AtomicBool::new(false);
            if !LOGGED.swap(true, Ordering::Relaxed) {
                eprintln!("scone: {}: O_DIRECT refused ({e}); reading through the page cache", path.display());
            }
            return Ok(None);
        }
        Err(e) => return Err(ReopenError::Io(e)),
    };
    let (a, b) = (file.metadata().map_err(ReopenError::Io)?, reopened.metadata().map_err(ReopenError::Io)?);
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(ReopenError::Replaced);
    }
    Ok(Some(reopened))
}
