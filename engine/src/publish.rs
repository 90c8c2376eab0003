//! The steps that make a finished file visible under its name, durably:
//! a rename that refuses to replace, and the directory fsync that makes a
//! rename survive a power cut.

#[cfg(target_os = "linux")]
use std::ffi::CString;
use std::fs::File;
use std::io;
#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Renames `from` to `to` unless something exists at `to`: `Ok(false)` then,
/// and `from` is left where it was. Two builders racing for one name cannot
/// both win (a check before a plain rename would let the second replace the
/// first). Uses `renameat2(RENAME_NOREPLACE)`; where the file system does not
/// support it (EINVAL, e.g. some network file systems) or the kernel lacks
/// it, `link` + `unlink`, which is just as exclusive (link fails with EEXIST).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        let (f, t) = (c_path(from)?, c_path(to)?);
        // SAFETY: both pointers are NUL-terminated strings that outlive the
        // call; renameat2 only reads them.
        let r =
            unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => return Ok(false),
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {}
            _ => return Err(e),
        }
    }
    link_then_unlink(from, to)
}

/// The fallback of [`rename_noreplace`]: as exclusive, but not atomic (a
/// crash between the two steps leaves both names of one whole file).
fn link_then_unlink(from: &Path, to: &Path) -> io::Result<bool> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    // The file is published under `to`; a failure to drop the old name
    // leaves a second name of the same file, not a reason to report failure.
    let _ = std::fs::remove_file(from);
    Ok(true)
}

#[cfg(target_os = "linux")]
fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Fsyncs a directory, so that the names created, renamed or removed in it
/// survive a crash. File systems that cannot fsync a directory (EINVAL) are
/// taken at their word that they need not.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match File::open(dir)?.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// The folder a path's name lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_replace_refuses_an_existing_target_and_keeps_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        for publish in [rename_noreplace, link_then_unlink] {
            std::fs::write(&a, b"new").unwrap();
            std::fs::write(&b, b"old").unwrap();
            assert!(!publish(&a, &b).unwrap());
            assert_eq!((std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()), (b"new".to_vec(), b"old".to_vec()));
            assert!(publish(&a, &c).unwrap());
            assert!(!a.exists());
            assert_eq!(std::fs::read(&c).unwrap(), b"new");
            std::fs::remove_file(&c).unwrap();
        }
    }
}
