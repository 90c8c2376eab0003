//! An owned, page-aligned byte buffer for [`RowReader::read_rows`]'s output.
//!
//! [`RowReader::read_rows`]: super::RowReader::read_rows

use std::io;
use std::ops::{Deref, DerefMut};

use memmap2::{MmapMut, MmapOptions};

/// A zeroed buffer whose address is 4096-aligned (an anonymous mapping, so
/// page-aligned: any direct-I/O memory alignment), for reading rows with no
/// bounce copy: a direct reader reads cold rows straight into such a buffer
/// when the table's rows are aligned too (a multiple of the file's direct-I/O
/// alignment, [`RowReader::direct_alignment`](super::RowReader::direct_alignment)).
/// Pinned host memory (e.g. from `cudaHostAlloc`, also page-aligned)
/// qualifies the same way as a plain `&mut [u8]`.
pub struct AlignedBuf {
    map: MmapMut,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes (a length of 0 is allowed).
    pub fn new(len: usize) -> io::Result<AlignedBuf> {
        let map = MmapOptions::new().len(len.max(1)).map_anon()?;
        Ok(AlignedBuf { map, len })
    }

    /// Asks for transparent huge pages (a hint; ignored where unsupported).
    pub fn advise_huge_pages(&self) {
        let _ = self.map.advise(memmap2::Advice::HugePage);
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("addr", &self.map.as_ptr()).finish()
    }
}
