//! End to end: an `f64` `.npy` file built into f16 and bf16 tables stores
//! each value correctly rounded in one step (ties to even), including values
//! that a detour through `f32` would round twice, and values that round to
//! the dtype's largest finite value.

use std::path::{Path, PathBuf};

use engine::{BuildConfig, Dtype, Table, TableBuilder};

/// A version 1 `.npy` image of a `[rows, dim]` little-endian f64 array.
fn f64_npy(rows: usize, dim: usize, values: &[f64]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {dim}), }}").into_bytes();
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.resize(header.len() + pad, b' ');
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Builds `values` (one row) from an f64 `.npy` through the ingest readers,
/// as `scone build` does, and returns the stored row as 16-bit patterns.
fn build_one_row(dir: &Path, name: &str, values: &[f64], dtype: Dtype) -> Result<Vec<u16>, String> {
    let npy = dir.join(format!("{name}.npy"));
    std::fs::write(&npy, f64_npy(1, values.len(), values)).unwrap();
    let ngrams = dir.join(format!("{name}.txt"));
    std::fs::write(&ngrams, "1 2\n").unwrap();
    let out: PathBuf = dir.join(format!("{name}.scone"));
    let mut b = TableBuilder::create(&out, BuildConfig::new(values.len() as u32, dtype, 2, 4)).unwrap();
    for rec in engine::ingest::records(&npy, &ngrams, None).unwrap() {
        let rec = rec.unwrap();
        b.push(&rec.ngram, &rec.row, rec.count).map_err(|e| e.to_string())?;
    }
    b.finish().map_err(|e| e.to_string())?;
    let t = Table::open(&out).unwrap();
    let slot = t.lookup(&[1, 2]).unwrap();
    Ok(t.row_bytes(slot).unwrap().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

const ULP40: f64 = 1.0 / (1u64 << 40) as f64;

#[test]
fn f64_npy_ties_round_once_to_f16() {
    let dir = tempfile::tempdir().unwrap();
    let t = 2f64.powi(-11); // half an f16 ulp at 1.0
    let values = [
        1.0 + t,                                      // tie, even below: 1.0
        1.0 + t + ULP40,                              // above the tie (f32 would drop the 2^-40): up
        1.0 + 3.0 * t,                                // tie, even above
        -(1.0 + t + ULP40),                           // negative, above the tie in magnitude
        65519.99,                                     // rounds to MAX (65504): stored, not overflow
        f64::from_bits(2f64.powi(-25).to_bits() + 1), // just above half the smallest subnormal
    ];
    let got = build_one_row(dir.path(), "h", &values, Dtype::F16).unwrap();
    assert_eq!(got, [0x3c00, 0x3c01, 0x3c02, 0xbc01, 0x7bff, 0x0001]);
    let e = build_one_row(dir.path(), "o", &[1.0, 65520.0], Dtype::F16).unwrap_err();
    assert!(
        e.contains("value 65520 at column 1 overflows f16"),
        "the message names the value as written in the file: {e}"
    );
}

#[test]
fn f64_npy_ties_round_once_to_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let t = 2f64.powi(-8); // half a bf16 ulp at 1.0
    let bmax = f64::from(half::bf16::MAX.to_f32());
    let over = (bmax + 2f64.powi(128)) / 2.0; // the tie with 2^128: infinite
    let below = f64::from_bits(over.to_bits() - 1);
    let values = [1.0 + t, 1.0 + t + ULP40, 1.0 + 3.0 * t, -(1.0 + t + ULP40), below];
    let got = build_one_row(dir.path(), "b", &values, Dtype::BF16).unwrap();
    assert_eq!(got, [0x3f80, 0x3f81, 0x3f82, 0xbf81, 0x7f7f]);
    let e = build_one_row(dir.path(), "bo", &[over], Dtype::BF16).unwrap_err();
    assert!(e.contains(&format!("value {over:e} at column 0 overflows bf16")), "{e}");
    // An f64 beyond the f32 range is an overflow of the dtype, not "not finite".
    let e = build_one_row(dir.path(), "f", &[1e300], Dtype::F32).unwrap_err();
    assert!(e.contains("value 1e300 at column 0 overflows f32"), "{e}");
}

/// A .npy whose rows are wider than any table can hold (here 2^33 values, in a
/// sparse file of the full length) is refused with the file named, before
/// anything allocates a row (this used to abort the process).
#[test]
fn a_dimension_beyond_the_limit_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.npy");
    let dim: u64 = 1 << 33;
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (1, {dim}), }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut head = b"\x93NUMPY\x01\x00".to_vec();
    head.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    head.extend_from_slice(dict.as_bytes());
    let f = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &f, &head).unwrap();
    f.set_len(head.len() as u64 + dim * 4).unwrap();
    let e = engine::ingest::open_embeddings(&path, None).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("wide.npy") && e.contains("at most"), "{e}");
}
