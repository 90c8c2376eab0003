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

/// Why a value could not be stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EncodeProblem {
    /// NaN or infinite in the input.
    NonFinite { column: usize, value: f32 },
    /// Finite in f32 but out of range of the storage dtype (would become Inf).
    Overflow { column: usize, value: f32 },
}

impl EncodeProblem {
    /// The reason, as the builder reports it for a record or token row.
    pub fn describe(&self, dtype: Dtype) -> String {
        match *self {
            EncodeProblem::NonFinite { column, value } => format!("value {value} at column {column} is not finite"),
            EncodeProblem::Overflow { column, value } => format!("value {value} at column {column} overflows {dtype}"),
        }
    }
}

/// Encodes one f32 row into `out` (exactly `row.len() * dtype.size()` bytes, little-endian).
/// Rejects NaN/Inf and values that overflow the storage dtype, naming the column.
pub fn encode_row(row: &[f32], dtype: Dtype, out: &mut [u8]) -> Result<(), EncodeProblem> {
    debug_assert_eq!(out.len(), row.len() * dtype.size());
    for (column, (&v, o)) in row.iter().zip(out.chunks_exact_mut(dtype.size())).enumerate() {
        if !v.is_finite() {
            return Err(EncodeProblem::NonFinite { column, value: v });
        }
        match dtype {
            Dtype::F32 => o.copy_from_slice(&v.to_le_bytes()),
            Dtype::F16 => {
                let h = f16::from_f32(v);
                if h.is_infinite() {
                    return Err(EncodeProblem::Overflow { column, value: v });
                }
                o.copy_from_slice(&h.to_le_bytes());
            }
            Dtype::BF16 => {
                let h = bf16::from_f32(v);
                if h.is_infinite() {
                    return Err(EncodeProblem::Overflow { column, value: v });
                }
                o.copy_from_slice(&h.to_le_bytes());
            }
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
}
