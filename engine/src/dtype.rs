//! Row storage dtypes and conversions between them.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// How the values of a row are stored (and the dtypes a gather can produce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// Bytes per value.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(Dtype::F32),
            "f16" | "float16" | "half" => Some(Dtype::F16),
            "bf16" | "bfloat16" => Some(Dtype::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A row of values as the input file holds them, before rounding to the
/// stored dtype. `f64` rows stay `f64` until [`encode_row`]: rounding them to
/// `f32` first and then to f16/bf16 would round twice (some values one unit
/// off, and values that round to MAX rejected as overflow).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceRow<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl SourceRow<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            SourceRow::F32(r) => r.len(),
            SourceRow::F64(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Slices, vectors and arrays of f32 or f64 become a [`SourceRow`].
macro_rules! source_row_from {
    ($t:ty, $variant:ident) => {
        impl<'a> From<&'a [$t]> for SourceRow<'a> {
            fn from(r: &'a [$t]) -> Self {
                SourceRow::$variant(r)
            }
        }

        impl<'a> From<&'a Vec<$t>> for SourceRow<'a> {
            fn from(r: &'a Vec<$t>) -> Self {
                SourceRow::$variant(r)
            }
        }

        impl<'a, const N: usize> From<&'a [$t; N]> for SourceRow<'a> {
            fn from(r: &'a [$t; N]) -> Self {
                SourceRow::$variant(r)
            }
        }
    };
}

source_row_from!(f32, F32);
source_row_from!(f64, F64);

/// One input value in its source type, printed as the user wrote it (the
/// shortest decimal that reads back to it; scientific notation for very large
/// or small magnitudes, never a 39-digit integer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceValue {
    F32(f32),
    F64(f64),
}

impl std::fmt::Display for SourceValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = |a: f64| a == 0.0 || (1e-4..1e16).contains(&a.abs()) || !a.is_finite();
        match *self {
            SourceValue::F32(v) if plain(f64::from(v)) => write!(f, "{v}"),
            SourceValue::F32(v) => write!(f, "{v:e}"),
            SourceValue::F64(v) if plain(v) => write!(f, "{v}"),
            SourceValue::F64(v) => write!(f, "{v:e}"),
        }
    }
}

/// Why a value could not be stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EncodeProblem {
    /// NaN or infinite in the input.
    NonFinite { column: usize, value: SourceValue },
    /// Finite, but its correctly rounded value in the storage dtype is
    /// infinite (a value that rounds to the dtype's MAX is stored).
    Overflow { column: usize, value: SourceValue },
}

impl EncodeProblem {
    /// The reason, as the builder reports it for a record or token row.
    pub fn describe(&self, dtype: Dtype) -> String {
        match *self {
            EncodeProblem::NonFinite { column, value } => format!("value {value} at column {column} is not finite"),
            EncodeProblem::Overflow { column, value } => format!(
                "value {value} at column {column} overflows {dtype} (its nearest {dtype} is infinite; \
                 largest finite: {})",
                dtype.max_finite()
            ),
        }
    }
}

impl Dtype {
    /// The largest finite value of this dtype.
    pub fn max_finite(self) -> SourceValue {
        match self {
            Dtype::F32 => SourceValue::F32(f32::MAX),
            Dtype::F16 => SourceValue::F32(f16::MAX.to_f32()),
            Dtype::BF16 => SourceValue::F32(bf16::MAX.to_f32()),
        }
    }
}

/// Encodes one row into `out` (exactly `row.len() * dtype.size()` bytes,
/// little-endian), rounding each value once, from its source type straight to
/// `dtype` (to nearest, ties to even). Rejects NaN/Inf and values whose
/// rounded result is infinite, naming the column.
pub fn encode_row<'a>(row: impl Into<SourceRow<'a>>, dtype: Dtype, out: &mut [u8]) -> Result<(), EncodeProblem> {
    let row = row.into();
    debug_assert_eq!(out.len(), row.len() * dtype.size());
    let chunks = out.chunks_exact_mut(dtype.size());
    match row {
        SourceRow::F32(r) => {
            for (column, (&v, o)) in r.iter().zip(chunks).enumerate() {
                encode_value(v, SourceValue::F32(v), column, dtype, o)?;
            }
        }
        SourceRow::F64(r) => {
            for (column, (&v, o)) in r.iter().zip(chunks).enumerate() {
                encode_value(v, SourceValue::F64(v), column, dtype, o)?;
            }
        }
    }
    Ok(())
}

/// A source value that converts to each storage dtype in one rounding.
trait Narrow: Copy {
    fn is_finite(self) -> bool;
    fn to_f32(self) -> f32;
    fn to_f16(self) -> f16;
    fn to_bf16(self) -> bf16;
}

impl Narrow for f32 {
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn to_f32(self) -> f32 {
        self
    }
    // `half`'s f32 conversions round once, correctly (tested in `narrow`).
    fn to_f16(self) -> f16 {
        f16::from_f32(self)
    }
    fn to_bf16(self) -> bf16 {
        bf16::from_f32(self)
    }
}

impl Narrow for f64 {
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    // `as` rounds to nearest, ties to even, and gives infinity on overflow.
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_f16(self) -> f16 {
        crate::narrow::f16_from_f64(self)
    }
    fn to_bf16(self) -> bf16 {
        crate::narrow::bf16_from_f64(self)
    }
}

fn encode_value<T: Narrow>(
    v: T,
    value: SourceValue,
    column: usize,
    dtype: Dtype,
    o: &mut [u8],
) -> Result<(), EncodeProblem> {
    if !v.is_finite() {
        return Err(EncodeProblem::NonFinite { column, value });
    }
    let overflow = || EncodeProblem::Overflow { column, value };
    match dtype {
        Dtype::F32 => {
            let x = v.to_f32();
            if x.is_infinite() {
                return Err(overflow());
            }
            o.copy_from_slice(&x.to_le_bytes());
        }
        Dtype::F16 => {
            let h = v.to_f16();
            if h.is_infinite() {
                return Err(overflow());
            }
            o.copy_from_slice(&h.to_le_bytes());
        }
        Dtype::BF16 => {
            let h = v.to_bf16();
            if h.is_infinite() {
                return Err(overflow());
            }
            o.copy_from_slice(&h.to_le_bytes());
        }
    }
    Ok(())
}

/// Converts one stored row (`src`, in `from`) into `dst` (in `to`). Both are
/// little-endian byte slices of the same number of values.
pub fn convert_row(src: &[u8], from: Dtype, dst: &mut [u8], to: Dtype) {
    if from == to {
        dst.copy_from_slice(src);
        return;
    }
    let n = src.len() / from.size();
    debug_assert_eq!(dst.len(), n * to.size());
    for i in 0..n {
        let v = decode_value(src, from, i);
        let o = &mut dst[i * to.size()..(i + 1) * to.size()];
        match to {
            Dtype::F32 => o.copy_from_slice(&v.to_le_bytes()),
            Dtype::F16 => o.copy_from_slice(&f16::from_f32(v).to_le_bytes()),
            Dtype::BF16 => o.copy_from_slice(&bf16::from_f32(v).to_le_bytes()),
        }
    }
}

/// The i-th value of a stored little-endian row, as f32.
pub fn decode_value(src: &[u8], dtype: Dtype, i: usize) -> f32 {
    match dtype {
        Dtype::F32 => f32::from_le_bytes([src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]]),
        Dtype::F16 => f16::from_le_bytes([src[2 * i], src[2 * i + 1]]).to_f32(),
        Dtype::BF16 => bf16::from_le_bytes([src[2 * i], src[2 * i + 1]]).to_f32(),
    }
}

/// Decodes a whole stored row to f32.
pub fn decode_row(src: &[u8], dtype: Dtype) -> Vec<f32> {
    (0..src.len() / dtype.size()).map(|i| decode_value(src, dtype, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let row = [0.5f32, -2.0, 1024.0];
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let mut buf = vec![0u8; row.len() * dt.size()];
            encode_row(&row, dt, &mut buf).unwrap();
            assert_eq!(decode_row(&buf, dt), row.to_vec());
            let mut f32buf = vec![0u8; row.len() * 4];
            convert_row(&buf, dt, &mut f32buf, Dtype::F32);
            assert_eq!(decode_row(&f32buf, Dtype::F32), row.to_vec());
        }
        let mut buf = vec![0u8; 4];
        assert!(matches!(
            encode_row(&[1.0, f32::NAN], Dtype::F16, &mut buf),
            Err(EncodeProblem::NonFinite { column: 1, .. })
        ));
        assert!(matches!(
            encode_row(&[1e6, 0.0], Dtype::F16, &mut buf),
            Err(EncodeProblem::Overflow { column: 0, .. })
        ));
        assert!(matches!(
            encode_row(&[0.0, f32::INFINITY], Dtype::BF16, &mut buf),
            Err(EncodeProblem::NonFinite { column: 1, .. })
        ));
    }

    /// 2^e, exactly (see `narrow`'s tests: `powi` need not be exact).
    fn pow2(e: i32) -> f64 {
        f64::from_bits(((1023 + e) as u64) << 52)
    }

    fn encode_one(v: f64, dt: Dtype) -> Result<Vec<u8>, EncodeProblem> {
        let mut buf = vec![0u8; dt.size()];
        encode_row(&[v], dt, &mut buf).map(|()| buf)
    }

    /// f64 rows round once: a value one f64 ulp above a tie rounds up (via
    /// f32 it would collapse onto the tie and round to even), and a value
    /// that rounds to MAX is stored, not rejected.
    #[test]
    fn f64_rows_round_once() {
        let above_tie = 1.0 + pow2(-11) + pow2(-40);
        assert_eq!(encode_one(above_tie, Dtype::F16).unwrap(), 0x3c01u16.to_le_bytes());
        let above_tie_b = 1.0 + pow2(-8) + pow2(-40);
        assert_eq!(encode_one(above_tie_b, Dtype::BF16).unwrap(), 0x3f81u16.to_le_bytes());
        assert_eq!(encode_one(65519.99, Dtype::F16).unwrap(), f16::MAX.to_le_bytes());
        let e = encode_one(65520.0, Dtype::F16).unwrap_err();
        assert_eq!(e, EncodeProblem::Overflow { column: 0, value: SourceValue::F64(65520.0) });
        assert_eq!(
            e.describe(Dtype::F16),
            "value 65520 at column 0 overflows f16 (its nearest f16 is infinite; largest finite: 65504)"
        );
        // f32: the f64 just below the f32 overflow threshold rounds to f32::MAX.
        let threshold = f64::from(f32::MAX) + pow2(103);
        assert_eq!(encode_one(f64::from_bits(threshold.to_bits() - 1), Dtype::F32).unwrap(), f32::MAX.to_le_bytes());
        let e = encode_one(1e300, Dtype::F32).unwrap_err();
        assert_eq!(
            e.describe(Dtype::F32),
            "value 1e300 at column 0 overflows f32 (its nearest f32 is infinite; largest finite: 3.4028235e38)"
        );
        assert!(matches!(encode_one(f64::NAN, Dtype::F32), Err(EncodeProblem::NonFinite { .. })));
    }

    #[test]
    fn values_print_as_written() {
        assert_eq!(SourceValue::F64(0.1).to_string(), "0.1");
        assert_eq!(SourceValue::F32(0.1).to_string(), "0.1");
        assert_eq!(SourceValue::F32(f32::MAX).to_string(), "3.4028235e38");
        assert_eq!(SourceValue::F64(-1e-300).to_string(), "-1e-300");
        assert_eq!(SourceValue::F64(f64::NEG_INFINITY).to_string(), "-inf");
        assert_eq!(SourceValue::F64(0.0).to_string(), "0");
    }
}
