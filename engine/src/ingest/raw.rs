//! Shared machinery: the one memory mapping of an input file, and decoding of
//! row-major little-endian float rows (into `f64` for `f64` files, so that
//! the builder rounds them once, straight to the table's dtype).

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::IngestError;
use super::RowValues;

/// Maps `path` read-only. This is the only `unsafe` in `ingest`.
pub(crate) fn map_file(path: &Path) -> Result<Mmap, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    // SAFETY: `Mmap::map` is unsafe because another process could modify or
    // truncate the file while it is mapped, which would change bytes behind a
    // `&[u8]` (or raise SIGBUS). The file is opened read-only here, and the
    // bulk builder's contract documents that its input files must not be
    // modified while they are being ingested. Nothing in this process writes
    // to the file.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| IngestError::io(path, e))?;
    #[cfg(unix)]
    {
        // Rows are read front to back: ask for aggressive read-ahead. This is
        // only a hint, so a failure is harmless.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(map)
}

/// Element types of the embedding data, all little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    F32,
    F16,
    BF16,
    F64,
}

impl ElemType {
    pub(crate) fn size(self) -> usize {
        match self {
            ElemType::F16 | ElemType::BF16 => 2,
            ElemType::F32 => 4,
            ElemType::F64 => 8,
        }
    }
}

/// A dense row-major `[rows, dim]` matrix living inside a memory-mapped file.
#[derive(Debug)]
pub(crate) struct MappedMatrix {
    pub(crate) path: PathBuf,
    map: Mmap,
    /// Byte offset of element `[0, 0]` in `map`.
    data_offset: usize,
    rows: u64,
    dim: usize,
    elem: ElemType,
    /// `dim * elem.size()`.
    row_bytes: usize,
}

impl MappedMatrix {
    /// Checks that `map[data_offset..]` holds at least `rows * dim` elements.
    pub(crate) fn new(
        path: &Path,
        map: Mmap,
        data_offset: usize,
        rows: u64,
        dim: usize,
        elem: ElemType,
    ) -> Result<Self, IngestError> {
        if dim == 0 && rows > 0 {
            return Err(IngestError::malformed(
                path,
                format!("embedding matrix has shape [{rows}, 0]: rows must not be empty"),
            ));
        }
        let row_bytes = dim.checked_mul(elem.size());
        let total = row_bytes.and_then(|rb| u64::try_from(rb).ok()).and_then(|rb| rb.checked_mul(rows));
        let (Some(row_bytes), Some(total)) = (row_bytes, total) else {
            return Err(IngestError::malformed(
                path,
                format!("shape [{rows}, {dim}] is too large (byte size overflows)"),
            ));
        };
        let available = (map.len() as u64).saturating_sub(data_offset as u64);
        if total > available {
            return Err(IngestError::malformed(
                path,
                format!(
                    "truncated data: shape [{rows}, {dim}] of {}-byte elements needs {total} \
                     bytes of data but the file holds only {available}",
                    elem.size()
                ),
            ));
        }
        Ok(MappedMatrix { path: path.to_path_buf(), map, data_offset, rows, dim, elem, row_bytes })
    }

    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Decodes row `row` into `out` in the file's own precision (`f64` for
    /// `f64` files, `f32` for the others: exact either way) and checks that
    /// every value is finite.
    ///
    /// # Panics
    /// If `row >= self.rows()` (a caller bug).
    pub(crate) fn read_row(&self, row: u64, out: &mut RowValues) -> Result<(), IngestError> {
        if self.elem != ElemType::F64 {
            let mut v = match std::mem::take(out) {
                RowValues::F32(v) => v,
                RowValues::F64(_) => Vec::new(),
            };
            v.resize(self.dim, 0.0);
            let r = self.read_row_f32(row, &mut v);
            *out = RowValues::F32(v);
            return r;
        }
        let mut v = match std::mem::take(out) {
            RowValues::F64(v) => v,
            RowValues::F32(_) => Vec::new(),
        };
        v.resize(self.dim, 0.0);
        let bytes = self.row_bytes(row);
        for (o, c) in v.iter_mut().zip(bytes.chunks_exact(8)) {
            *o = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
        let bad = v.iter().position(|x| !x.is_finite());
        *out = RowValues::F64(v);
        match bad {
            None => Ok(()),
            Some(column) => Err(IngestError::NonFinite { path: self.path.clone(), record: row, column }),
        }
    }

    /// The bytes of row `row`.
    fn row_bytes(&self, row: u64) -> &[u8] {
        assert!(row < self.rows, "row {row} out of range for {} ({} rows)", self.path.display(), self.rows);
        // In range: row < rows and rows * row_bytes fits the map (checked in `new`).
        let start = self.data_offset + row as usize * self.row_bytes;
        &self.map[start..start + self.row_bytes]
    }

    /// Decodes row `row` into `out` as `f32` (`f64` values rounded to
    /// nearest, so finite ones beyond the `f32` range become infinite) and
    /// checks that every value is finite.
    ///
    /// # Panics
    /// If `row >= self.rows()` or `out.len() != self.dim()` (caller bugs).
    pub(crate) fn read_row_f32(&self, row: u64, out: &mut [f32]) -> Result<(), IngestError> {
        assert_eq!(
            out.len(),
            self.dim,
            "output buffer has length {} but rows of {} have {} values",
            out.len(),
            self.path.display(),
            self.dim
        );
        decode_row(self.elem, self.row_bytes(row), out);
        match out.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(column) => Err(IngestError::NonFinite { path: self.path.clone(), record: row, column }),
        }
    }
}

/// Decodes little-endian elements of type `elem` from `bytes` into `out`.
/// `bytes.len()` must be `out.len() * elem.size()`. No alignment is required.
fn decode_row(elem: ElemType, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), out.len() * elem.size());
    match elem {
        ElemType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        ElemType::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                *o = v as f32;
            }
        }
        ElemType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        ElemType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_all_types() {
        let mut out = [0f32; 2];
        let b: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        decode_row(ElemType::F32, &b, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        let b: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        decode_row(ElemType::F64, &b, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        let b: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes()).collect();
        decode_row(ElemType::F16, &b, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        let b: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes()).collect();
        decode_row(ElemType::BF16, &b, &mut out);
        assert_eq!(out, [1.5, -2.0]);
    }
}
