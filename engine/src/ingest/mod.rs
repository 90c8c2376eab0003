//! Readers for the bulk builder's input files.
//!
//! Users hand the builder two files that correspond line for row:
//!
//! * the **embeddings**: a NumPy `.npy` file (`<f4`, `<f2`, `<f8`) or a
//!   `.safetensors` file (`F32`, `F16`, `BF16`, `F64`) holding one 2-D
//!   tensor `[rows, dim]` ([`open_embeddings`]);
//! * the **n-grams**: a text file, one `t1 t2 ... tn[<TAB>count]` line per
//!   row ([`NgramLines`]).
//!
//! [`records`] zips them into [`IngestRecord`]s. Everything streams: the
//! embedding file is memory-mapped and decoded one row at a time, the text
//! file is read through a buffer, so inputs may be far larger than RAM.
//!
//! **Contract:** input files must not be modified or truncated while they are
//! being ingested (they are memory-mapped; see the `SAFETY` note in `raw.rs`).
//!
//! Numbering in errors: embedding rows and columns are 0-based, text lines
//! are 1-based (see [`IngestError`]).

mod error;
mod ngrams;
mod npy;
mod raw;
mod safetensors_file;

use std::fmt::Debug;
use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use error::IngestError;
pub use ngrams::{count_ngram_lines, NgramLines, MAX_LINE_BYTES};
pub use npy::{NpyFile, NPY_MAGIC};
pub use safetensors_file::SafetensorsFile;

use raw::ElemType;

use crate::dtype::SourceRow;

/// A dense `[rows, dim]` matrix of embeddings, read row by row as `f32`.
///
/// Implementations are `Send + Sync`: rows may be read from several threads.
pub trait EmbeddingSource: Send + Sync + Debug {
    /// The file the embeddings come from.
    fn path(&self) -> &Path;

    /// Number of rows (one per n-gram).
    fn rows(&self) -> u64;

    /// Number of values in each row.
    fn dim(&self) -> usize;

    /// Element type stored in the file: `"f32"`, `"f16"`, `"bf16"` or `"f64"`.
    fn source_dtype(&self) -> &'static str;

    /// Decodes row `row` (0-based) into `out`, converting to `f32`, and checks
    /// that every value is finite; otherwise returns
    /// [`IngestError::NonFinite`] naming the row and the first bad column
    /// (`out` is then fully written but must not be used).
    ///
    /// # Panics
    /// If `row >= self.rows()` or `out.len() != self.dim()`: both are bugs in
    /// the caller, not problems with the input.
    fn read_row_f32(&self, row: u64, out: &mut [f32]) -> Result<(), IngestError>;

    /// Decodes row `row` (0-based) into `out` in the file's own precision:
    /// [`RowValues::F64`] for `f64` files, [`RowValues::F32`] for the others
    /// (exact either way, so the builder rounds each value once), replacing
    /// what `out` held; errors as [`read_row_f32`](Self::read_row_f32), except
    /// that finite `f64` values are accepted whatever their magnitude (the
    /// builder reports those its dtype cannot hold).
    ///
    /// # Panics
    /// If `row >= self.rows()` (a bug in the caller).
    fn read_row(&self, row: u64, out: &mut RowValues) -> Result<(), IngestError>;
}

/// One embedding row as its file holds it: `f64` files keep `f64` values;
/// `f32`, `f16` and `bf16` files give `f32` (which holds all three exactly).
#[derive(Clone, Debug, PartialEq)]
pub enum RowValues {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Default for RowValues {
    fn default() -> Self {
        RowValues::F32(Vec::new())
    }
}

impl RowValues {
    /// Number of values.
    pub fn len(&self) -> usize {
        SourceRow::from(self).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `f64` (exact for every source type).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            RowValues::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            RowValues::F64(v) => v.clone(),
        }
    }
}

impl<'a> From<&'a RowValues> for SourceRow<'a> {
    fn from(r: &'a RowValues) -> Self {
        match r {
            RowValues::F32(v) => SourceRow::F32(v),
            RowValues::F64(v) => SourceRow::F64(v),
        }
    }
}

/// Both file types are a memory-mapped matrix plus a dtype name.
macro_rules! matrix_source {
    ($t:ty) => {
        impl EmbeddingSource for $t {
            fn path(&self) -> &Path {
                &self.matrix.path
            }
            fn rows(&self) -> u64 {
                self.matrix.rows()
            }
            fn dim(&self) -> usize {
                self.matrix.dim()
            }
            fn source_dtype(&self) -> &'static str {
                self.dtype
            }
            fn read_row_f32(&self, row: u64, out: &mut [f32]) -> Result<(), IngestError> {
                self.matrix.read_row_f32(row, out)
            }
            fn read_row(&self, row: u64, out: &mut RowValues) -> Result<(), IngestError> {
                self.matrix.read_row(row, out)
            }
        }
    };
}
matrix_source!(NpyFile);
matrix_source!(SafetensorsFile);

fn dtype_name(elem: ElemType) -> &'static str {
    match elem {
        ElemType::F32 => "f32",
        ElemType::F16 => "f16",
        ElemType::BF16 => "bf16",
        ElemType::F64 => "f64",
    }
}

/// The container formats accepted for embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingFormat {
    /// NumPy `.npy`.
    Npy,
    /// Hugging Face `.safetensors`.
    Safetensors,
}

/// Decides the format of `path`: by extension (`.npy`, `.safetensors`,
/// case-insensitive), otherwise by the leading bytes (`\x93NUMPY`, or an
/// 8-byte little-endian header length followed by `{`).
pub fn detect_format(path: &Path) -> Result<EmbeddingFormat, IngestError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => return Ok(EmbeddingFormat::Npy),
        Some("safetensors") => return Ok(EmbeddingFormat::Safetensors),
        _ => {}
    }
    let mut head = Vec::with_capacity(9);
    File::open(path).and_then(|f| f.take(9).read_to_end(&mut head)).map_err(|e| IngestError::io(path, e))?;
    if head.starts_with(NPY_MAGIC) {
        return Ok(EmbeddingFormat::Npy);
    }
    if head.len() == 9 && head[8] == b'{' {
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if n <= 100_000_000 {
            return Ok(EmbeddingFormat::Safetensors);
        }
    }
    let hint = if ext.as_deref() == Some("npz") {
        " (.npz archives are not supported: extract the array to a .npy file)"
    } else {
        ""
    };
    Err(IngestError::malformed(
        path,
        format!(
            "not a .npy or .safetensors file: the extension is not .npy/.safetensors and the \
             leading bytes match neither format{hint}"
        ),
    ))
}

/// Opens an embedding file (see [`detect_format`]). `tensor_name` selects
/// the tensor of a `.safetensors` file (`None`: its only tensor) and is
/// ignored for `.npy` files, which hold a single array.
pub fn open_embeddings(path: &Path, tensor_name: Option<&str>) -> Result<Box<dyn EmbeddingSource>, IngestError> {
    let src: Box<dyn EmbeddingSource> = match detect_format(path)? {
        EmbeddingFormat::Npy => Box::new(NpyFile::open(path)?),
        EmbeddingFormat::Safetensors => Box::new(SafetensorsFile::open(path, tensor_name)?),
    };
    // Before anything allocates a row: a table holds at most MAX_DIM values a row.
    let max = crate::format::MAX_DIM as usize;
    if src.dim() > max {
        let reason = format!("rows of {} values; a table holds at most {max} values a row", src.dim());
        return Err(IngestError::Malformed { path: path.to_path_buf(), reason });
    }
    Ok(src)
}

/// One n-gram with its embedding row.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestRecord {
    /// Token ids of the n-gram.
    pub ngram: Vec<u32>,
    /// The optional count from the text file.
    pub count: Option<u64>,
    /// The embedding in the file's precision (see [`RowValues`]); `row.len() == dim`.
    pub row: RowValues,
}

/// Opens both input files and pairs line `i + 1` of `ngrams` with row `i` of
/// `embeddings`. See [`Records`].
pub fn records(embeddings: &Path, ngrams: &Path, tensor: Option<&str>) -> Result<Records, IngestError> {
    let source = open_embeddings(embeddings, tensor)?;
    let ngrams = NgramLines::open(ngrams)?;
    Ok(Records { source, ngrams, next_row: 0, done: false })
}

/// Iterator of [`IngestRecord`]s returned by [`records`].
///
/// * A [`IngestError::BadLine`] or [`IngestError::NonFinite`] item consumes
///   one line and one row, so iteration may continue in step.
/// * If the files hold different numbers of records, the last item is
///   [`IngestError::RowCountMismatch`] (found at the end: when the text runs
///   out first, or when it has a line past the last row, in which case the
///   rest of the text is counted so that `lines` is exact). Callers wanting an
///   up-front check can compare [`count_ngram_lines`] with `rows()` first.
/// * After an I/O error or a mismatch the iterator ends.
#[derive(Debug)]
pub struct Records {
    source: Box<dyn EmbeddingSource>,
    ngrams: NgramLines,
    next_row: u64,
    done: bool,
}

impl Records {
    /// The embedding source (rows, dim, dtype).
    pub fn source(&self) -> &dyn EmbeddingSource {
        self.source.as_ref()
    }

    /// Rows in the embedding file.
    pub fn rows(&self) -> u64 {
        self.source.rows()
    }

    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.source.dim()
    }

    /// The n-gram text file.
    pub fn ngrams_path(&self) -> &Path {
        self.ngrams.path()
    }

    fn mismatch(&self) -> IngestError {
        IngestError::RowCountMismatch {
            embeddings: self.source.path().to_path_buf(),
            rows: self.source.rows(),
            ngrams: self.ngrams.path().to_path_buf(),
            lines: self.ngrams.lines_read(),
        }
    }
}

impl Iterator for Records {
    type Item = Result<IngestRecord, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut ngram = Vec::new();
        let item = self.ngrams.next_into(&mut ngram);
        let in_rows = self.next_row < self.source.rows();
        match item {
            None => {
                self.done = true;
                in_rows.then(|| Err(self.mismatch()))
            }
            Some(Err(e)) if !matches!(e, IngestError::BadLine { .. }) || self.ngrams.is_done() => {
                self.done = true;
                Some(Err(e))
            }
            Some(_) if !in_rows => {
                // A line past the last row: count the rest for an exact report.
                self.done = true;
                Some(match self.ngrams.count_remaining() {
                    Ok(_) => Err(self.mismatch()),
                    Err(e) => Err(e),
                })
            }
            Some(Err(e)) => {
                self.next_row += 1;
                Some(Err(e))
            }
            Some(Ok(count)) => {
                let r = self.next_row;
                self.next_row += 1;
                let mut row = RowValues::default();
                Some(self.source.read_row(r, &mut row).map(|()| IngestRecord { ngram, count, row }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::npy::tests::{f32_npy, npy_image, write_file};
    use super::safetensors_file::tests::{f32_bytes, st_image};
    use super::*;
    use safetensors::Dtype;

    fn vals(rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|i| i as f32 - 7.5).collect()
    }

    fn st_f32(rows: usize, dim: usize, v: &[f32]) -> Vec<u8> {
        st_image(&[("emb", Dtype::F32, vec![rows, dim], f32_bytes(v))])
    }

    #[test]
    fn sources_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Box<dyn EmbeddingSource>>();
        check::<Records>();
    }

    #[test]
    fn open_by_extension_and_magic() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v = vals(3, 2);
        for (name, bytes, fmt) in [
            ("a.npy", f32_npy(3, 2, &v), EmbeddingFormat::Npy),
            ("a.NPY", f32_npy(3, 2, &v), EmbeddingFormat::Npy),
            ("npy.bin", f32_npy(3, 2, &v), EmbeddingFormat::Npy),
            ("noext", f32_npy(3, 2, &v), EmbeddingFormat::Npy),
            ("b.safetensors", st_f32(3, 2, &v), EmbeddingFormat::Safetensors),
            ("st.bin", st_f32(3, 2, &v), EmbeddingFormat::Safetensors),
        ] {
            let p = write_file(d, name, &bytes);
            assert_eq!(detect_format(&p).unwrap(), fmt, "{name}");
            let src = open_embeddings(&p, None).unwrap();
            assert_eq!((src.rows(), src.dim(), src.source_dtype()), (3, 2, "f32"));
            assert_eq!(src.path(), p);
            let mut row = [0f32; 2];
            src.read_row_f32(2, &mut row).unwrap();
            assert_eq!(row, [v[4], v[5]]);
        }
        // A tensor name is ignored for .npy files.
        let p = write_file(d, "c.npy", &f32_npy(3, 2, &v));
        assert_eq!(open_embeddings(&p, Some("whatever")).unwrap().rows(), 3);
    }

    #[test]
    fn open_unknown_or_mislabelled() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, bytes, want) in [
            ("x.txt", b"1 2 3\n".to_vec(), "not a .npy or .safetensors"),
            ("x.bin", Vec::new(), "not a .npy or .safetensors"),
            ("x.npz", b"PK\x03\x04zipzipzip".to_vec(), ".npz archives"),
            ("x.npy", st_f32(1, 1, &[1.0]), "bad magic"),
            ("x.safetensors", f32_npy(1, 1, &[1.0]), "not a safetensors file"),
        ] {
            let p = write_file(d, name, &bytes);
            match open_embeddings(&p, None) {
                Err(IngestError::Malformed { path, reason }) => {
                    assert_eq!(path, p);
                    assert!(reason.contains(want), "{name}: {reason}");
                }
                other => panic!("{name}: expected Malformed, got {other:?}"),
            }
        }
        let missing = d.join("missing.bin");
        assert!(matches!(
            open_embeddings(&missing, None),
            Err(IngestError::Io { path, .. }) if path == missing
        ));
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v = vals(4, 3);
        let text = "1 2\t10\n3\n4 5 6\t0\n7";
        let n = write_file(d, "n.txt", text.as_bytes());
        let f16: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes()).collect();
        let f16_npy = npy_image(3, "{'descr': '<f2', 'fortran_order': False, 'shape': (4, 3), }", &f16);
        let inputs = [
            write_file(d, "e.npy", &f32_npy(4, 3, &v)),
            write_file(d, "h.npy", &f16_npy),
            write_file(d, "e.safetensors", &st_f32(4, 3, &v)),
        ];
        for e in &inputs {
            let recs = records(e, &n, None).unwrap();
            assert_eq!((recs.rows(), recs.dim()), (4, 3));
            assert_eq!(recs.ngrams_path(), n);
            let got: Vec<IngestRecord> = recs.map(Result::unwrap).collect();
            let want_ngrams: [(&[u32], Option<u64>); 4] =
                [(&[1, 2], Some(10)), (&[3], None), (&[4, 5, 6], Some(0)), (&[7], None)];
            assert_eq!(got.len(), 4);
            for (i, (rec, (ng, c))) in got.iter().zip(want_ngrams).enumerate() {
                assert_eq!(rec.ngram, ng);
                assert_eq!(rec.count, c);
                assert_eq!(rec.row, RowValues::F32(v[i * 3..i * 3 + 3].to_vec()));
            }
        }
    }

    fn collect_errs(e: &Path, n: &Path) -> Vec<Result<IngestRecord, IngestError>> {
        records(e, n, None).unwrap().collect()
    }

    #[test]
    fn row_count_mismatch_more_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = write_file(d, "e.npy", &f32_npy(2, 1, &[1.0, 2.0]));
        // Lines past the end are counted, not parsed (line 4 is not valid).
        let n = write_file(d, "n.txt", b"1\n2\n3\nnot a line\n5");
        let got = collect_errs(&e, &n);
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        match &got[2] {
            Err(IngestError::RowCountMismatch { embeddings, rows, ngrams, lines }) => {
                assert_eq!((embeddings, *rows, ngrams, *lines), (&e, 2, &n, 5));
            }
            other => panic!("{other:?}"),
        }
        let msg = got[2].as_ref().unwrap_err().to_string();
        assert!(msg.contains("2 rows") && msg.contains("5 lines"), "{msg}");
    }

    #[test]
    fn row_count_mismatch_fewer_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v = vals(3, 2);
        let e = write_file(d, "e.safetensors", &st_f32(3, 2, &v));
        let n = write_file(d, "n.txt", b"1\n2\n");
        let got = collect_errs(&e, &n);
        assert_eq!(got.len(), 3);
        assert!(matches!(got[2], Err(IngestError::RowCountMismatch { rows: 3, lines: 2, .. })));
        // Empty text against an empty matrix is fine; against rows is not.
        let empty = write_file(d, "empty.txt", b"");
        let z = write_file(d, "z.npy", &f32_npy(0, 4, &[]));
        assert!(collect_errs(&z, &empty).is_empty());
        let got = collect_errs(&e, &empty);
        assert!(matches!(got[..], [Err(IngestError::RowCountMismatch { rows: 3, lines: 0, .. })]));
        let got = collect_errs(&z, &n);
        assert!(matches!(got[..], [Err(IngestError::RowCountMismatch { rows: 0, lines: 2, .. })]));
    }

    #[test]
    fn records_report_nan_and_bad_lines_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut v = vals(5, 2);
        v[3 * 2 + 1] = f32::NAN;
        let e = write_file(d, "e.npy", &f32_npy(5, 2, &v));
        let n = write_file(d, "n.txt", b"1\n2 x\n3\n4\n5\n");
        let got = collect_errs(&e, &n);
        assert_eq!(got.len(), 5);
        assert!(matches!(
            &got[1],
            Err(IngestError::BadLine { line: 2, path, .. }) if *path == n
        ));
        assert!(matches!(
            &got[3],
            Err(IngestError::NonFinite { record: 3, column: 1, path }) if *path == e
        ));
        let ok: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 3);
        assert_eq!((ok[1].ngram.as_slice(), &ok[1].row), (&[3][..], &RowValues::F32(v[4..6].to_vec())));
        assert_eq!((ok[2].ngram.as_slice(), &ok[2].row), (&[5][..], &RowValues::F32(v[8..10].to_vec())));
    }

    #[test]
    fn records_open_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = write_file(d, "e.npy", &f32_npy(1, 1, &[1.0]));
        let missing = d.join("missing.txt");
        assert!(matches!(
            records(&e, &missing, None),
            Err(IngestError::Io { path, .. }) if path == missing
        ));
        let three_d = write_file(
            d,
            "t.npy",
            &npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }", &[0; 4]),
        );
        assert!(matches!(records(&three_d, &missing, None), Err(IngestError::Malformed { .. })));
        let err = IngestError::malformed(&e, "x");
        assert_eq!(err.path(), e);
    }
}
