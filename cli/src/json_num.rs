//! Numbers in `--json` output that JSON itself cannot carry faithfully.
//!
//! JSON readers commonly parse every number into an IEEE double, which holds
//! integers exactly only up to 2^53: a u64 count or key seed past that would
//! be read back as a different number. Such integers are printed as decimal
//! strings. JSON also has no NaN or infinity, and serde_json writes them as
//! `null`, which reads as "absent": a damaged row would look like a missing
//! one. Non-finite values are printed as the strings `"NaN"`, `"Infinity"`
//! and `"-Infinity"` (the spellings JavaScript's `Number()` and Python's
//! `float()` accept). docs/CLI.md states both rules.

use serde_json::Value;

/// A u64 that may exceed 2^53, as a decimal string.
pub fn u64_str(v: u64) -> Value {
    Value::String(v.to_string())
}

/// An optional u64 (`null` when absent), as a decimal string.
pub fn opt_u64_str(v: Option<u64>) -> Value {
    v.map_or(Value::Null, u64_str)
}

/// A float: a JSON number when finite, else `"NaN"`, `"Infinity"` or `"-Infinity"`.
pub fn float(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v.is_infinite() {
        Value::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        // Finite: `from_f64` cannot fail.
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// A row of stored values, each as [`float32`] writes it.
pub fn floats(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|&x| float32(x)).collect())
}

/// One f32: finite values in their shortest decimal form (`0.1`, which reads
/// back as the same f32; serde_json would widen to f64 and print
/// `0.10000000149011612`), others as [`float`] writes them.
pub fn float32(x: f32) -> Value {
    if !x.is_finite() {
        return float(f64::from(x));
    }
    // Rust prints the shortest decimal that reads back as `x`; as an f64
    // that decimal prints the same digits.
    float(x.to_string().parse::<f64>().unwrap_or(f64::from(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_and_non_finite_values() {
        let big = (1u64 << 53) + 1;
        assert_eq!(u64_str(big).to_string(), "\"9007199254740993\"");
        assert_eq!(opt_u64_str(None), Value::Null);
        let row = floats(&[0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -2.5]);
        assert_eq!(row.to_string(), r#"[0.1,"NaN","Infinity","-Infinity",-2.5]"#);
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(0.25).to_string(), "0.25");
        assert_eq!(float32(f32::MAX).to_string(), "3.4028235e+38");
    }
}
