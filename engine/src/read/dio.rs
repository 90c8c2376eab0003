//! The direct-I/O alignment of a reader's file: what `O_DIRECT` requires of
//! file offsets, read lengths and buffer addresses, asked of the file system
//! at open (`statx(2)` with `STATX_DIOALIGN`, Linux 6.1+).

use std::fs::File;
use std::io;

use super::DIRECT_ALIGN;

/// The smallest alignment a reader uses, for offsets and addresses alike
/// (a sector), whatever the file system reports.
pub const MIN_DIRECT_ALIGN: u64 = 512;

/// Where a reader's [`DirectAlign`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignSource {
    /// `statx(STATX_DIOALIGN)` on the `O_DIRECT` file.
    Statx,
    /// `ReaderOptions::force_direct_align` (tests).
    Forced,
    /// The file is not read with `O_DIRECT` (buffered fallback, `o_direct =
    /// false`, or a caller's backend): [`DIRECT_ALIGN`].
    NotDirect,
    /// `statx` failed (or does not exist here): [`DIRECT_ALIGN`].
    StatxFailed,
    /// `statx` does not report the alignment (kernel before 6.1, or a file
    /// system that does not say, e.g. tmpfs): [`DIRECT_ALIGN`].
    NotReported,
    /// The values reported (or forced) were not powers of two up to
    /// [`DIRECT_ALIGN`]: [`DIRECT_ALIGN`].
    Implausible,
}

impl AlignSource {
    /// A short name for [`ModeInfo`](super::ModeInfo)'s line: "statx",
    /// "forced", or "default" with the reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlignSource::Statx => "statx",
            AlignSource::Forced => "forced",
            AlignSource::NotDirect => "default: not O_DIRECT",
            AlignSource::StatxFailed => "default: statx failed",
            AlignSource::NotReported => "default: not reported",
            AlignSource::Implausible => "default: implausible values",
        }
    }
}

/// Alignments a direct reader keeps to: every read's file offset and length
/// are multiples of `offset`, every buffer it reads into starts at a multiple
/// of `mem`. Both are powers of two in [`MIN_DIRECT_ALIGN`]`..=`[`DIRECT_ALIGN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAlign {
    pub offset: u64,
    pub mem: u64,
    pub source: AlignSource,
}

impl DirectAlign {
    /// [`DIRECT_ALIGN`] for both, which every device accepts.
    pub const fn fallback(source: AlignSource) -> DirectAlign {
        DirectAlign { offset: DIRECT_ALIGN, mem: DIRECT_ALIGN, source }
    }

    /// `(offset, mem)` as reported: 0 (either) means not reported; values
    /// that are not powers of two or exceed [`DIRECT_ALIGN`] are implausible;
    /// both are raised to [`MIN_DIRECT_ALIGN`].
    pub fn from_values(offset: u64, mem: u64, source: AlignSource) -> DirectAlign {
        if offset == 0 || mem == 0 {
            return DirectAlign::fallback(AlignSource::NotReported);
        }
        let ok = |a: u64| a.is_power_of_two() && a <= DIRECT_ALIGN;
        if !ok(offset) || !ok(mem) {
            return DirectAlign::fallback(AlignSource::Implausible);
        }
        DirectAlign { offset: offset.max(MIN_DIRECT_ALIGN), mem: mem.max(MIN_DIRECT_ALIGN), source }
    }

    /// The alignment for `file`: `force` if given, else what `statx` reports
    /// when the file is open with `O_DIRECT`, else [`DIRECT_ALIGN`].
    pub fn resolve(file: &File, o_direct: bool, force: Option<(u64, u64)>) -> DirectAlign {
        if force.is_some() || !o_direct {
            return DirectAlign::for_backend(force);
        }
        match statx_dio_align(file) {
            Ok(Some((offset, mem))) => DirectAlign::from_values(offset as u64, mem as u64, AlignSource::Statx),
            Ok(None) => DirectAlign::fallback(AlignSource::NotReported),
            Err(_) => DirectAlign::fallback(AlignSource::StatxFailed),
        }
    }

    /// For a caller's backend (not a file of ours) and for a file not read
    /// with `O_DIRECT`: `force` if given, else [`DIRECT_ALIGN`].
    pub fn for_backend(force: Option<(u64, u64)>) -> DirectAlign {
        match force {
            Some((offset, mem)) => DirectAlign::from_values(offset, mem, AlignSource::Forced),
            None => DirectAlign::fallback(AlignSource::NotDirect),
        }
    }
}

/// `(stx_dio_offset_align, stx_dio_mem_align)` of `file`, or `None` when the
/// kernel does not fill them in (`STATX_DIOALIGN` missing from the mask).
#[cfg(target_os = "linux")]
pub fn statx_dio_align(file: &File) -> io::Result<Option<(u32, u32)>> {
    use std::os::fd::AsRawFd;
    // SAFETY: `libc::statx` is a plain C struct of integers (and integer
    // padding), for which all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the whole call, so its descriptor is valid;
    // the path is a NUL-terminated empty string, which with `AT_EMPTY_PATH`
    // makes statx describe that descriptor itself (no path lookup); `stx` is
    // a live, writable, correctly sized `statx` that nothing else references
    // during the call, and the kernel writes only within it.
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Ok(None);
    }
    Ok(Some((stx.stx_dio_offset_align, stx.stx_dio_mem_align)))
}

/// Not Linux: never reported.
#[cfg(not(target_os = "linux"))]
pub fn statx_dio_align(_file: &File) -> io::Result<Option<(u32, u32)>> {
    Ok(None)
}

/// `x` rounded down to a multiple of `a` (a power of two).
pub(super) fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// `x` rounded up to a multiple of `a` (a power of two).
pub(super) fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_raised() {
        let f = |o, m| DirectAlign::from_values(o, m, AlignSource::Statx);
        assert_eq!(f(512, 512), DirectAlign { offset: 512, mem: 512, source: AlignSource::Statx });
        assert_eq!(f(512, 4), DirectAlign { offset: 512, mem: 512, source: AlignSource::Statx });
        assert_eq!(f(1, 1), DirectAlign { offset: 512, mem: 512, source: AlignSource::Statx });
        assert_eq!(f(4096, 512), DirectAlign { offset: 4096, mem: 512, source: AlignSource::Statx });
        assert_eq!(f(0, 512), DirectAlign::fallback(AlignSource::NotReported));
        assert_eq!(f(512, 0), DirectAlign::fallback(AlignSource::NotReported));
        assert_eq!(f(8192, 512), DirectAlign::fallback(AlignSource::Implausible));
        assert_eq!(f(512, 8192), DirectAlign::fallback(AlignSource::Implausible));
        assert_eq!(f(1536, 512), DirectAlign::fallback(AlignSource::Implausible));
        assert_eq!(f(512, 3), DirectAlign::fallback(AlignSource::Implausible));
    }

    #[test]
    fn rounding() {
        assert_eq!((align_down(1023, 512), align_up(1023, 512)), (512, 1024));
        assert_eq!((align_down(1024, 512), align_up(1024, 512)), (1024, 1024));
        assert_eq!((align_down(4097, 4096), align_up(4097, 4096)), (4096, 8192));
        assert_eq!(align_up(0, 512), 0);
    }
}
