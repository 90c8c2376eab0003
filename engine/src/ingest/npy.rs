//! Reader for NumPy `.npy` files holding one 2-D little-endian float array.
//!
//! The header is parsed by hand (format versions 1.0, 2.0 and 3.0):
//!
//! ```text
//! \x93NUMPY <major u8> <minor u8> <header_len: u16 LE (v1) | u32 LE (v2, v3)>
//! {'descr': '<f4', 'fortran_order': False, 'shape': (rows, dim), }   (padded, '\n')
//! <rows * dim elements, C order>
//! ```
//!
//! Supported `descr`: `'<f4'`, `'<f2'`, `'<f8'`. Big-endian arrays, Fortran
//! order, other dtypes and any shape that is not 2-D are rejected with
//! [`IngestError::Malformed`]. Bytes after the data are ignored, as `np.load`
//! does. The data is memory-mapped and decoded one row at a time.

use std::path::Path;

use super::error::IngestError;
use super::raw::{map_file, ElemType, MappedMatrix};

/// The six magic bytes that open every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Deepest nesting accepted in the header literal (guards the recursive parser).
const MAX_DEPTH: usize = 32;

/// An opened `.npy` embedding matrix.
#[derive(Debug)]
pub struct NpyFile {
    pub(super) matrix: MappedMatrix,
    pub(super) dtype: &'static str,
}

impl NpyFile {
    /// Maps `path`, parses and validates its header, and checks that the file
    /// is long enough for `rows * dim` elements.
    pub fn open(path: &Path) -> Result<Self, IngestError> {
        let map = map_file(path)?;
        let header = parse_npy(&map).map_err(|reason| IngestError::malformed(path, reason))?;
        let matrix = MappedMatrix::new(path, map, header.data_offset, header.rows, header.dim, header.elem)?;
        Ok(NpyFile { matrix, dtype: super::dtype_name(header.elem) })
    }
}

/// What the header says about the data.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    data_offset: usize,
    elem: ElemType,
    rows: u64,
    dim: usize,
}

/// Parses the preamble and header dictionary of a `.npy` file. The error is
/// a human-readable reason.
fn parse_npy(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.len() < NPY_MAGIC.len() || &bytes[..NPY_MAGIC.len()] != NPY_MAGIC {
        let n = bytes.len().min(NPY_MAGIC.len());
        return Err(format!(
            "bad magic: a .npy file starts with \"\\x93NUMPY\", this one starts with \"{}\"",
            bytes[..n].escape_ascii()
        ));
    }
    if bytes.len() < 8 {
        return Err("truncated header: file ends inside the format version".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(format!("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err("truncated header: file ends inside the header length".into());
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let end = start + header_len;
    if bytes.len() < end {
        return Err(format!(
            "truncated header: header claims {header_len} bytes but the file ends after {}",
            bytes.len() - start
        ));
    }
    let text = &bytes[start..end];
    if utf8 && std::str::from_utf8(text).is_err() {
        return Err("header of a version 3.0 file is not valid UTF-8".into());
    }
    let mut parser = Parser { s: text, pos: 0, utf8 };
    let dict = parser.parse_document().map_err(|e| format!("bad header: {e}"))?;
    let (elem, rows, dim) = validate_dict(dict)?;
    Ok(NpyHeader { data_offset: end, elem, rows, dim })
}

/// Checks the header dictionary: exactly the keys `descr`, `fortran_order`
/// and `shape`, a supported little-endian float dtype, C order, 2-D shape.
fn validate_dict(dict: Py) -> Result<(ElemType, u64, usize), String> {
    let Py::Dict(entries) = dict else {
        return Err(format!("bad header: expected a dict literal, found {dict}"));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let Py::Str(key) = key else {
            return Err(format!("bad header: dict key {key} is not a string"));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => return Err(format!("bad header: unexpected key '{key}'")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("bad header: key '{key}' appears twice"));
        }
    }
    let missing = |k: &str| format!("bad header: missing key '{k}'");
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;

    let elem = match &descr {
        Py::Str(d) => match d.as_str() {
            "<f4" => ElemType::F32,
            "<f2" => ElemType::F16,
            "<f8" => ElemType::F64,
            ">f4" | ">f2" | ">f8" => {
                return Err(format!(
                    "big-endian dtype '{d}' is not supported; convert with \
                     arr.astype('<{}') and save again",
                    &d[1..]
                ))
            }
            _ => return Err(format!("unsupported dtype '{d}' (supported: '<f4', '<f2', '<f8')")),
        },
        other => {
            return Err(format!(
                "unsupported dtype {other}: structured dtypes are not supported \
                 (supported: '<f4', '<f2', '<f8')"
            ))
        }
    };
    match fortran {
        Py::Bool(false) => {}
        Py::Bool(true) => {
            return Err("Fortran-order (column-major) arrays are not supported; save \
                        np.ascontiguousarray(arr) instead"
                .into())
        }
        other => return Err(format!("bad header: fortran_order is {other}, not a bool")),
    }
    let Py::Tuple(dims) = &shape else {
        return Err(format!("bad header: shape is {shape}, not a tuple"));
    };
    let dims: Vec<u64> = dims
        .iter()
        .map(|d| match d {
            Py::Int(v) => u64::try_from(*v).map_err(|_| format!("bad header: shape {shape}")),
            _ => Err(format!("bad header: shape {shape} holds a non-integer")),
        })
        .collect::<Result<_, _>>()?;
    let &[rows, dim] = dims.as_slice() else {
        return Err(format!("expected a 2-D array [rows, dim], found {}-D shape {shape}", dims.len()));
    };
    let dim = usize::try_from(dim).map_err(|_| format!("row width {dim} is too large"))?;
    Ok((elem, rows, dim))
}

/// A Python literal as found in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Py {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Py>),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

impl std::fmt::Display for Py {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn seq(f: &mut std::fmt::Formatter<'_>, items: &[Py]) -> std::fmt::Result {
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{it}")?;
            }
            Ok(())
        }
        match self {
            Py::Str(s) => write!(f, "'{}'", s.escape_debug()),
            Py::Int(v) => write!(f, "{v}"),
            Py::Bool(true) => f.write_str("True"),
            Py::Bool(false) => f.write_str("False"),
            Py::None => f.write_str("None"),
            Py::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Py::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Py::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Recursive-descent parser for the subset of Python literal syntax that
/// `numpy.lib.format` writes: dicts, tuples, lists, strings, ints, booleans
/// and `None`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Version 3.0 headers are UTF-8; earlier versions are Latin-1.
    utf8: bool,
}

impl Parser<'_> {
    /// Parses one value followed only by whitespace (the header is padded
    /// with spaces and ends with `\n`).
    fn parse_document(&mut self) -> Result<Py, String> {
        let v = self.value(0)?;
        self.skip_ws();
        if self.pos != self.s.len() {
            return Err(format!("unexpected text after the dict at byte {}", self.pos));
        }
        Ok(v)
    }

    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        match self.peek() {
            Some(c) if c == b => {
                self.pos += 1;
                Ok(())
            }
            Some(c) => Err(format!("expected '{}' at byte {}, found '{}'", b as char, self.pos, c.escape_ascii())),
            None => Err(format!("expected '{}', found end of header", b as char)),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err("literal nested too deeply".into());
        }
        match self.peek() {
            None => Err("unexpected end of header".into()),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Py::Dict(entries));
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                    } else {
                        self.expect(b'}')?;
                        return Ok(Py::Dict(entries));
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut trailing_comma = false;
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                        trailing_comma = true;
                    } else {
                        trailing_comma = false;
                        self.expect(close)?;
                        break;
                    }
                }
                if open == b'[' {
                    Ok(Py::List(items))
                } else if items.len() == 1 && !trailing_comma {
                    // `(x)` is just a parenthesised `x`, as in Python.
                    Ok(items.pop().unwrap_or(Py::None))
                } else {
                    Ok(Py::Tuple(items))
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let mut raw = Vec::new();
                loop {
                    match self.s.get(self.pos).copied() {
                        None => return Err("unterminated string".into()),
                        Some(b'\\') => {
                            let Some(&c) = self.s.get(self.pos + 1) else {
                                return Err("unterminated string".into());
                            };
                            raw.push(c);
                            self.pos += 2;
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            raw.push(c);
                            self.pos += 1;
                        }
                    }
                }
                let s = if self.utf8 {
                    String::from_utf8_lossy(&raw).into_owned()
                } else {
                    raw.iter().map(|&b| char::from(b)).collect()
                };
                Ok(Py::Str(s))
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                if self.s[self.pos] == b'-' {
                    self.pos += 1;
                }
                while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                let v: i128 = digits.parse().map_err(|_| format!("bad integer '{digits}' at byte {start}"))?;
                // Python 2 era headers may write long integers as `3L`.
                if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(Py::Int(v))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.s.get(self.pos).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Py::Bool(true)),
                    b"False" => Ok(Py::Bool(false)),
                    b"None" => Ok(Py::None),
                    w => Err(format!("unexpected name '{}' at byte {start}", w.escape_ascii())),
                }
            }
            Some(c) => Err(format!("unexpected character '{}' at byte {}", c.escape_ascii(), self.pos)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingest::{EmbeddingSource, RowValues};
    use std::io::Write;

    /// Builds a `.npy` file image by hand: preamble for `version`, the given
    /// dict literal padded with spaces to a multiple of 64 bytes, then `data`.
    pub(crate) fn npy_image(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let pre = if version == 1 { 10 } else { 12 };
        let mut header = dict.as_bytes().to_vec();
        let pad = (64 - (pre + header.len() + 1) % 64) % 64;
        header.resize(header.len() + pad, b' ');
        header.push(b'\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn f32_npy(rows: usize, dim: usize, values: &[f32]) -> Vec<u8> {
        assert_eq!(values.len(), rows * dim);
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        npy_image(1, &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"), &data)
    }

    pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).and_then(|mut f| f.write_all(bytes)).expect("write test file");
        p
    }

    fn values(rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|i| i as f32 * 0.5 - 3.0).collect()
    }

    fn read_all(f: &NpyFile) -> Vec<f32> {
        let mut out = vec![0f32; f.rows() as usize * f.dim()];
        for (r, chunk) in out.chunks_mut(f.dim()).enumerate() {
            f.read_row_f32(r as u64, chunk).unwrap();
        }
        out
    }

    fn malformed_reason(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "x.npy", bytes);
        match NpyFile::open(&p) {
            Err(IngestError::Malformed { path, reason }) => {
                assert_eq!(path, p);
                reason
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_f4() {
        let dir = tempfile::tempdir().unwrap();
        let v = values(5, 3);
        let p = write_file(dir.path(), "e.npy", &f32_npy(5, 3, &v));
        let f = NpyFile::open(&p).unwrap();
        assert_eq!((f.rows(), f.dim(), f.source_dtype()), (5, 3, "f32"));
        assert_eq!(f.path(), p);
        assert_eq!(read_all(&f), v);
    }

    #[test]
    fn round_trip_f2_and_f8_all_versions() {
        let dir = tempfile::tempdir().unwrap();
        let v = values(4, 6); // all exactly representable in f16
        for version in [1u8, 2, 3] {
            let d2: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes()).collect();
            let img = npy_image(version, "{'descr': '<f2', 'fortran_order': False, 'shape': (4, 6), }", &d2);
            let p = write_file(dir.path(), &format!("h{version}.npy"), &img);
            let f = NpyFile::open(&p).unwrap();
            assert_eq!((f.rows(), f.dim(), f.source_dtype()), (4, 6, "f16"));
            assert_eq!(read_all(&f), v);

            let d8: Vec<u8> = v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
            // Double quotes, no trailing comma, different key order, `L` suffix.
            let img = npy_image(version, "{\"shape\": (4L, 6), \"fortran_order\": False, \"descr\": \"<f8\"}", &d8);
            let p = write_file(dir.path(), &format!("d{version}.npy"), &img);
            let f = NpyFile::open(&p).unwrap();
            assert_eq!((f.rows(), f.dim(), f.source_dtype()), (4, 6, "f64"));
            assert_eq!(read_all(&f), v);
        }
    }

    #[test]
    fn unaligned_data_offset_and_trailing_bytes_are_fine() {
        // Hand-made header not padded to 64 bytes: data starts at an odd offset.
        let dict = b"{'descr':'<f4','fortran_order':False,'shape':(2,2)}\n";
        let mut img = NPY_MAGIC.to_vec();
        img.extend_from_slice(&[1, 0]);
        img.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        img.extend_from_slice(dict);
        assert_ne!(img.len() % 4, 0);
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            img.extend_from_slice(&v.to_le_bytes());
        }
        img.extend_from_slice(b"junk");
        let dir = tempfile::tempdir().unwrap();
        let f = NpyFile::open(&write_file(dir.path(), "u.npy", &img)).unwrap();
        assert_eq!(read_all(&f), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn empty_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let f = NpyFile::open(&write_file(dir.path(), "z.npy", &f32_npy(0, 8, &[]))).unwrap();
        assert_eq!((f.rows(), f.dim()), (0, 8));
    }

    #[test]
    fn truncated_data() {
        let mut img = f32_npy(4, 3, &values(4, 3));
        img.truncate(img.len() - 1);
        let r = malformed_reason(&img);
        assert!(r.contains("truncated data"), "{r}");
        assert!(r.contains("48 bytes"), "{r}");
    }

    #[test]
    fn truncated_header() {
        let img = f32_npy(4, 3, &values(4, 3));
        for cut in [3, 7, 9, 40] {
            let r = malformed_reason(&img[..cut]);
            assert!(r.contains("truncated header") || r.contains("bad magic"), "{r}");
        }
        assert!(malformed_reason(&img[..40]).contains("truncated header"));
        assert!(malformed_reason(&[]).contains("bad magic"));
    }

    #[test]
    fn wrong_magic() {
        let mut img = f32_npy(1, 1, &[1.0]);
        img[1] = b'X';
        let r = malformed_reason(&img);
        assert!(r.contains("bad magic"), "{r}");
        assert!(r.contains("\\x93XUMPY"), "{r}");
    }

    #[test]
    fn bad_version() {
        let mut img = f32_npy(1, 1, &[1.0]);
        img[6] = 4;
        assert!(malformed_reason(&img).contains("version 4.0"));
    }

    #[test]
    fn three_d_and_one_d_shapes() {
        let d = [0u8; 4 * 8];
        let r = malformed_reason(&npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", &d));
        assert!(r.contains("2-D") && r.contains("3-D") && r.contains("(2, 2, 2)"), "{r}");
        let r = malformed_reason(&npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }", &d));
        assert!(r.contains("1-D") && r.contains("(8,)"), "{r}");
        let r = malformed_reason(&npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &d));
        assert!(r.contains("0-D"), "{r}");
    }

    #[test]
    fn big_endian_rejected_with_hint() {
        let r = malformed_reason(&npy_image(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }", &[0; 4]));
        assert!(r.contains("big-endian") && r.contains("'>f4'"), "{r}");
        assert!(r.contains("astype('<f4')"), "{r}");
    }

    #[test]
    fn unsupported_dtypes() {
        for descr in ["'<i4'", "'|u1'", "'<c8'", "'=f4'"] {
            let r = malformed_reason(&npy_image(
                1,
                &format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1, 1), }}"),
                &[0; 8],
            ));
            assert!(r.contains("unsupported dtype"), "{r}");
        }
        let r = malformed_reason(&npy_image(
            1,
            "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1, 1), }",
            &[0; 8],
        ));
        assert!(r.contains("structured"), "{r}");
    }

    #[test]
    fn fortran_order_rejected() {
        let r = malformed_reason(&npy_image(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", &[0; 16]));
        assert!(r.contains("Fortran"), "{r}");
    }

    #[test]
    fn bad_dicts() {
        for (dict, want) in [
            ("{'descr': '<f4', 'shape': (1, 1), }", "missing key 'fortran_order'"),
            ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}", "appears twice"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'x': 1}", "unexpected key 'x'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, -1)}", "shape"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1)}", "not a bool"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': 1}", "not a tuple"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)", "bad header"),
            ("{'descr': '<f4, 'fortran_order': False}", "bad header"),
            ("['descr']", "expected a dict"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} x", "after the dict"),
            ("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 1)}", "'Maybe'"),
        ] {
            let r = malformed_reason(&npy_image(1, dict, &[0; 8]));
            assert!(r.contains(want), "{dict}: {r}");
        }
        let deep = format!("{}{}", "(".repeat(100), ")".repeat(100));
        let r = malformed_reason(&npy_image(2, &deep, &[]));
        assert!(r.contains("nested too deeply"), "{r}");
    }

    #[test]
    fn non_finite_names_row_and_column() {
        let mut v = values(5, 3);
        v[3 * 3 + 1] = f32::NAN;
        v[4 * 3 + 2] = f32::NEG_INFINITY;
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "n.npy", &f32_npy(5, 3, &v));
        let f = NpyFile::open(&p).unwrap();
        let mut row = [0f32; 3];
        for r in 0..3 {
            f.read_row_f32(r, &mut row).unwrap();
        }
        let e = f.read_row_f32(3, &mut row).unwrap_err();
        assert!(matches!(&e, IngestError::NonFinite { path, record: 3, column: 1 } if *path == p), "{e:?}");
        assert!(e.to_string().contains("row 3, column 1"), "{e}");
        let e = f.read_row_f32(4, &mut row).unwrap_err();
        assert!(matches!(e, IngestError::NonFinite { record: 4, column: 2, .. }));
    }

    #[test]
    fn f8_out_of_f32_range_is_non_finite() {
        let data: Vec<u8> = [1.0f64, 1e300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let img = npy_image(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", &data);
        let dir = tempfile::tempdir().unwrap();
        let f = NpyFile::open(&write_file(dir.path(), "big.npy", &img)).unwrap();
        let e = f.read_row_f32(0, &mut [0f32; 2]).unwrap_err();
        assert!(matches!(e, IngestError::NonFinite { record: 0, column: 1, .. }));
    }

    /// `read_row` keeps `f64` values exact (a finite 1e300 is the builder's
    /// to judge) and still rejects NaN and infinity, naming the column.
    #[test]
    fn f8_rows_stay_f64() {
        let tie = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        let data: Vec<u8> = [tie, 1e300, 2.0, f64::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        let img = npy_image(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", &data);
        let dir = tempfile::tempdir().unwrap();
        let f = NpyFile::open(&write_file(dir.path(), "f8.npy", &img)).unwrap();
        let mut row = RowValues::default();
        f.read_row(0, &mut row).unwrap();
        assert_eq!(row, RowValues::F64(vec![tie, 1e300]));
        let e = f.read_row(1, &mut row).unwrap_err();
        assert!(matches!(e, IngestError::NonFinite { record: 1, column: 1, .. }), "{e:?}");
        // Other files give f32, whatever `out` held before.
        let g = NpyFile::open(&write_file(dir.path(), "f4.npy", &f32_npy(1, 2, &[0.5, -1.0]))).unwrap();
        g.read_row(0, &mut row).unwrap();
        assert_eq!(row, RowValues::F32(vec![0.5, -1.0]));
    }

    #[test]
    fn missing_file_is_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.npy");
        let e = NpyFile::open(&p).unwrap_err();
        assert!(matches!(&e, IngestError::Io { path, .. } if *path == p), "{e:?}");
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn row_out_of_range_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "e.npy", &f32_npy(1, 1, &[1.0]));
        let _ = NpyFile::open(&p).unwrap().read_row_f32(1, &mut [0.0]);
    }
}
