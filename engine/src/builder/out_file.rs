//! The table's output file behind a seam that tests can make misbehave:
//! short writes, failed writes, a failed fsync ([`WriteFaults`]). Hidden from
//! the documented API; the builder's error paths are tested through it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Faults to inject into a build's output file (tests only; see
/// `TableBuilder::inject_write_faults`).
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct WriteFaults {
    /// Every write that would take the output past this many bytes (counted
    /// over all write calls) fails with an I/O error.
    pub fail_after_bytes: Option<u64>,
    /// No write call accepts more than this many bytes (a well-behaved writer
    /// must loop); 0 makes every write return `Ok(0)`.
    pub short_writes: Option<usize>,
    /// The final fsync fails.
    pub fail_sync: bool,
}

pub(super) struct OutFile {
    file: File,
    faults: Option<WriteFaults>,
    written: u64,
}

impl OutFile {
    pub(super) fn new(file: File) -> OutFile {
        OutFile { file, faults: None, written: 0 }
    }

    pub(super) fn set_faults(&mut self, faults: WriteFaults) {
        self.faults = Some(faults);
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    pub(super) fn sync_all(&self) -> io::Result<()> {
        if self.faults.as_ref().is_some_and(|f| f.fail_sync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync_all()
    }
}

impl Write for OutFile {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        if let Some(f) = &self.faults {
            if f.fail_after_bytes.is_some_and(|at| self.written + buf.len() as u64 > at) {
                return Err(io::Error::other("injected write failure"));
            }
            if let Some(cap) = f.short_writes {
                buf = &buf[..buf.len().min(cap)];
            }
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Read for OutFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for OutFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}
