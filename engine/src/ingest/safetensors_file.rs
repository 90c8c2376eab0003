//! Reader for `.safetensors` files: one 2-D tensor `[rows, dim]` of dtype
//! `F32`, `F16`, `BF16` or `F64`, chosen by name or as the file's only tensor.
//!
//! The header is parsed by the `safetensors` crate over the memory map (which
//! also checks that the data offsets exactly cover the rest of the file); the
//! tensor's data is then decoded one row at a time straight from the map.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};

use super::error::IngestError;
use super::raw::{map_file, ElemType, MappedMatrix};

/// An opened `.safetensors` embedding matrix.
#[derive(Debug)]
pub struct SafetensorsFile {
    pub(super) matrix: MappedMatrix,
    name: String,
    pub(super) dtype: &'static str,
}

impl SafetensorsFile {
    /// Maps `path` and selects the tensor called `tensor_name`, or, when
    /// `None`, the file's only tensor (an error if it holds several).
    pub fn open(path: &Path, tensor_name: Option<&str>) -> Result<Self, IngestError> {
        let map = map_file(path)?;
        let bad = |reason: String| IngestError::malformed(path, reason);
        let st = SafeTensors::deserialize(&map).map_err(|e| bad(describe(e)))?;
        let (name, view) = match tensor_name {
            Some(name) => match st.tensor(name) {
                Ok(view) => (name.to_string(), view),
                Err(_) => return Err(bad(format!("no tensor named '{name}' (the file holds: {})", list_names(&st)))),
            },
            None => {
                let mut all = st.tensors();
                match all.len() {
                    0 => return Err(bad("the file holds no tensors".into())),
                    1 => all.pop().expect("one tensor"),
                    n => {
                        return Err(bad(format!(
                            "the file holds {n} tensors ({}); name the one to read",
                            list_names(&st)
                        )))
                    }
                }
            }
        };
        let elem = match view.dtype() {
            Dtype::F32 => ElemType::F32,
            Dtype::F16 => ElemType::F16,
            Dtype::BF16 => ElemType::BF16,
            Dtype::F64 => ElemType::F64,
            other => {
                return Err(bad(format!(
                    "tensor '{name}' has unsupported dtype {other:?} \
                     (supported: F32, F16, BF16, F64)"
                )))
            }
        };
        let shape = view.shape().to_vec();
        let &[rows, dim] = shape.as_slice() else {
            return Err(bad(format!(
                "tensor '{name}' must be 2-D [rows, dim], found {}-D shape {shape:?}",
                shape.len()
            )));
        };
        let data = view.data();
        // `data` borrows from `map`; remember where it starts so the matrix can
        // own the map alone.
        let data_offset = data.as_ptr() as usize - map.as_ptr() as usize;
        drop(st);
        let matrix = MappedMatrix::new(path, map, data_offset, rows as u64, dim, elem)?;
        Ok(SafetensorsFile { matrix, name, dtype: super::dtype_name(elem) })
    }

    /// The file this matrix was read from.
    pub fn path(&self) -> &Path {
        &self.matrix.path
    }

    /// The name of the selected tensor.
    pub fn tensor_name(&self) -> &str {
        &self.name
    }
}

fn list_names(st: &SafeTensors<'_>) -> String {
    let mut names: Vec<&String> = st.names();
    names.sort();
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("'{n}'")).collect();
    let more = names.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else if shown.is_empty() {
        "nothing".into()
    } else {
        shown.join(", ")
    }
}

/// Words for the crate's errors (its `Display` is just `Debug`).
fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => "not a safetensors file: shorter than the 8-byte header length".into(),
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            "not a safetensors file (or truncated): the header length in the first 8 bytes \
             exceeds the file or the 100 MB limit"
                .into()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization => {
            "bad safetensors header: not a valid UTF-8 JSON object of tensor entries".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "truncated data (or trailing bytes): the tensors' data offsets do not end exactly \
             at the end of the file"
                .into()
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("bad safetensors header: invalid data offsets for tensor '{name}'")
        }
        SafeTensorError::TensorInvalidInfo | SafeTensorError::ValidationOverflow => {
            "bad safetensors header: a tensor's shape and dtype do not match its data size".into()
        }
        other => format!("invalid safetensors file: {other:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingest::npy::tests::write_file;
    use crate::ingest::{EmbeddingSource, RowValues};
    use safetensors::tensor::TensorView;

    /// Serialises `(name, dtype, shape, little-endian bytes)` tensors.
    pub(crate) fn st_image(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dt, shape, data)| (*n, TensorView::new(*dt, shape.clone(), data).unwrap()))
            .collect();
        safetensors::serialize(views, &None).unwrap()
    }

    pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn values(rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|i| i as f32 * 0.25 - 1.0).collect()
    }

    fn read_all(f: &SafetensorsFile) -> Vec<f32> {
        let mut out = vec![0f32; f.rows() as usize * f.dim()];
        for (r, chunk) in out.chunks_mut(f.dim()).enumerate() {
            f.read_row_f32(r as u64, chunk).unwrap();
        }
        out
    }

    fn open_err(bytes: &[u8], name: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "x.safetensors", bytes);
        match SafetensorsFile::open(&p, name) {
            Err(IngestError::Malformed { path, reason }) => {
                assert_eq!(path, p);
                reason
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_all_dtypes() {
        let v = values(5, 4); // exactly representable in f16 and bf16
        let f16b: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes()).collect();
        let bf16b: Vec<u8> = v.iter().flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes()).collect();
        let f64b: Vec<u8> = v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        for (dt, bytes, name) in [
            (Dtype::F32, f32_bytes(&v), "f32"),
            (Dtype::F16, f16b, "f16"),
            (Dtype::BF16, bf16b, "bf16"),
            (Dtype::F64, f64b, "f64"),
        ] {
            let img = st_image(&[("emb", dt, vec![5, 4], bytes)]);
            let p = write_file(dir.path(), &format!("{name}.safetensors"), &img);
            let f = SafetensorsFile::open(&p, None).unwrap();
            assert_eq!((f.rows(), f.dim(), f.source_dtype()), (5, 4, name));
            assert_eq!(f.tensor_name(), "emb");
            assert_eq!(f.path(), p);
            assert_eq!(read_all(&f), v);
        }
    }

    /// An F64 tensor's rows come out as f64, bit for bit (the builder rounds
    /// them once); the others as f32.
    #[test]
    fn f64_rows_keep_every_bit() {
        let v = [1.0 + 2f64.powi(-11) + 2f64.powi(-40), -1e300, 0.1, 65519.99];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "d.safetensors", &st_image(&[("emb", Dtype::F64, vec![2, 2], bytes)]));
        let f = SafetensorsFile::open(&p, None).unwrap();
        let mut row = RowValues::default();
        for r in 0..2 {
            f.read_row(r, &mut row).unwrap();
            assert_eq!(row, RowValues::F64(v[2 * r as usize..2 * r as usize + 2].to_vec()));
        }
        let p = write_file(
            dir.path(),
            "s.safetensors",
            &st_image(&[("emb", Dtype::F32, vec![1, 2], f32_bytes(&[0.1, 2.0]))]),
        );
        SafetensorsFile::open(&p, None).unwrap().read_row(0, &mut row).unwrap();
        assert_eq!(row, RowValues::F32(vec![0.1, 2.0]));
    }

    #[test]
    fn select_by_name() {
        let a = values(2, 3);
        let b: Vec<f32> = values(3, 2).iter().map(|x| x + 100.0).collect();
        let img =
            st_image(&[("a", Dtype::F32, vec![2, 3], f32_bytes(&a)), ("b", Dtype::F32, vec![3, 2], f32_bytes(&b))]);
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "two.safetensors", &img);
        let fb = SafetensorsFile::open(&p, Some("b")).unwrap();
        assert_eq!((fb.rows(), fb.dim()), (3, 2));
        assert_eq!(read_all(&fb), b);
        let fa = SafetensorsFile::open(&p, Some("a")).unwrap();
        assert_eq!(read_all(&fa), a);

        let r = open_err(&img, None);
        assert!(r.contains("2 tensors") && r.contains("'a', 'b'"), "{r}");
        let r = open_err(&img, Some("c"));
        assert!(r.contains("no tensor named 'c'") && r.contains("'a', 'b'"), "{r}");
    }

    #[test]
    fn no_tensors() {
        let img = safetensors::serialize(Vec::<(&str, TensorView<'_>)>::new(), &None).unwrap();
        assert!(open_err(&img, None).contains("no tensors"));
    }

    #[test]
    fn three_d_rejected() {
        let img = st_image(&[("t", Dtype::F32, vec![2, 2, 2], vec![0; 32])]);
        let r = open_err(&img, None);
        assert!(r.contains("2-D") && r.contains("3-D") && r.contains("[2, 2, 2]"), "{r}");
        let img = st_image(&[("t", Dtype::F32, vec![4], vec![0; 16])]);
        assert!(open_err(&img, Some("t")).contains("1-D"));
    }

    #[test]
    fn unsupported_dtype() {
        let img = st_image(&[("t", Dtype::I32, vec![2, 2], vec![0; 16])]);
        let r = open_err(&img, None);
        assert!(r.contains("unsupported dtype I32"), "{r}");
    }

    #[test]
    fn truncated_and_garbage() {
        let img = st_image(&[("t", Dtype::F32, vec![3, 2], f32_bytes(&values(3, 2)))]);
        let r = open_err(&img[..img.len() - 1], None);
        assert!(r.contains("truncated"), "{r}");
        let r = open_err(&img[..20], None);
        assert!(r.contains("truncated"), "{r}");
        assert!(open_err(&img[..5], None).contains("not a safetensors file"));
        let mut bad = img.clone();
        bad[9] = b'#';
        assert!(open_err(&bad, None).contains("bad safetensors header"));
        assert!(open_err(b"\x93NUMPY\x01\x00\x00\x00", None).contains("not a safetensors"));
    }

    #[test]
    fn non_finite_names_row_and_column() {
        let mut v = values(5, 3);
        v[3 * 3 + 1] = f32::NAN;
        let bf: Vec<u8> = v.iter().flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        for (dt, bytes) in [(Dtype::F32, f32_bytes(&v)), (Dtype::BF16, bf)] {
            let img = st_image(&[("t", dt, vec![5, 3], bytes)]);
            let p = write_file(dir.path(), "nan.safetensors", &img);
            let f = SafetensorsFile::open(&p, None).unwrap();
            let mut row = [0f32; 3];
            f.read_row_f32(2, &mut row).unwrap();
            let e = f.read_row_f32(3, &mut row).unwrap_err();
            assert!(matches!(&e, IngestError::NonFinite { path, record: 3, column: 1 } if *path == p), "{e:?}");
            f.read_row_f32(4, &mut row).unwrap();
        }
    }

    #[test]
    fn f16_infinity_detected() {
        let bytes: Vec<u8> = [1.0f32, 70000.0] // overflows f16 to +inf
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
            .collect();
        let img = st_image(&[("t", Dtype::F16, vec![1, 2], bytes)]);
        let dir = tempfile::tempdir().unwrap();
        let f = SafetensorsFile::open(&write_file(dir.path(), "i.safetensors", &img), None).unwrap();
        let e = f.read_row_f32(0, &mut [0f32; 2]).unwrap_err();
        assert!(matches!(e, IngestError::NonFinite { record: 0, column: 1, .. }));
    }
}
