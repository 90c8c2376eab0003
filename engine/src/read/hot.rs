//! The hot prefix: the first rows of the table (the hottest: the builder lays
//! rows out by descending count) held in huge-page anonymous memory.

use std::io;

use memmap2::{Mmap, MmapOptions};

use super::{align_down, align_up, Direct, ReadError, ReadReq, MAX_SPAN};

/// Rows `0..rows` as the file holds them: `map[i]` is file byte `base + i`.
pub(super) struct HotPrefix {
    pub(super) map: Mmap,
    pub(super) base: u64,
    pub(super) rows: u64,
}

impl HotPrefix {
    /// Reads the first `floor(hot_bytes / row_stride)` rows (at most all of them)
    /// through the reader's backend, in aligned 1 MiB reads straight into the
    /// anonymous mapping. `None` when that is no rows.
    pub(super) fn load(d: &Direct, hot_bytes: u64) -> Result<Option<HotPrefix>, ReadError> {
        let rows = (hot_bytes / d.stride.max(1)).min(d.rows);
        if rows == 0 || d.row_bytes == 0 {
            return Ok(None);
        }
        // MAX_SPAN is a multiple of both alignments, so every read below starts
        // offset-aligned in the file and memory-aligned in the (page-aligned) map.
        let a = d.align.offset;
        let base = align_down(d.rows_offset, a);
        let need_end = d.offset((rows - 1) as u32) + d.row_bytes as u64;
        let end = align_up(need_end, a);
        let file_len = d.backend.len();
        if need_end > file_len {
            let msg = format!("hot prefix needs bytes up to {need_end}; the file is {file_len} bytes");
            return Err(d.io_err(file_len, io::Error::new(io::ErrorKind::UnexpectedEof, msg)));
        }
        let mut map = MmapOptions::new().len((end - base) as usize).map_anon().map_err(|e| d.io_err(base, e))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        {
            let mut reqs: Vec<ReadReq<'_>> = Vec::new();
            let mut rest: &mut [u8] = &mut map[..];
            let mut at = base;
            while at < end {
                let len = MAX_SPAN.min(end - at);
                let (head, tail) = rest.split_at_mut(len as usize);
                let need = need_end.min(at + len) - at;
                reqs.push(ReadReq::new(at, head, need as usize));
                rest = tail;
                at += len;
            }
            d.backend.read_batch(&mut reqs).map_err(|e| d.io_err(e.offset, e.source))?;
            if let Some(r) = reqs.iter().find(|r| r.filled < r.need) {
                let msg = format!("backend returned {} of {} bytes", r.filled, r.need);
                return Err(d.io_err(r.offset + r.filled as u64, io::Error::new(io::ErrorKind::UnexpectedEof, msg)));
            }
        }
        let map = map.make_read_only().map_err(|e| d.io_err(base, e))?;
        Ok(Some(HotPrefix { map, base, rows }))
    }
}
