//! Correctly rounded narrowing of `f64` to the 16-bit storage floats.
//!
//! `half` 2.x does not round `f64` in one step: `f16::from_f64` converts to
//! `f32` first where the CPU has F16C (two roundings), and its portable path
//! and `bf16::from_f64` drop the low 32 mantissa bits before rounding (a tie
//! broken by those bits goes the wrong way). Either way some values land one
//! unit off. These functions round the exact `f64` value once, to nearest,
//! ties to even, as IEEE 754 `convertFormat` does: a value rounds to infinity
//! only when its correctly rounded result is infinite (at or past the midpoint
//! between MAX and the next power of two), never merely because it exceeds MAX.
//!
//! The rounding works on integers: the 53-bit significand is shifted right to
//! the target's quantum (its ulp at that exponent, or the subnormal ulp), and
//! the dropped bits decide the rounding; a carry out of the mantissa moves into
//! the exponent by plain addition, which IEEE's bit layout makes correct.

use half::{bf16, f16};

/// `f64` to `f16`, correctly rounded (NaN stays NaN, with its sign).
pub fn f16_from_f64(v: f64) -> f16 {
    f16::from_bits(narrow(v, 5, 10))
}

/// `f64` to `bf16`, correctly rounded (NaN stays NaN, with its sign).
pub fn bf16_from_f64(v: f64) -> bf16 {
    bf16::from_bits(narrow(v, 8, 7))
}

/// The bits of `v` rounded to a binary float with `exp_bits` exponent bits and
/// `man_bits` stored mantissa bits (1 + exp_bits + man_bits == 16).
fn narrow(v: f64, exp_bits: u32, man_bits: u32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 48) & 0x8000) as u16;
    let exp_all = (1u16 << exp_bits) - 1;
    let inf = sign | (exp_all << man_bits);
    let f64_exp = ((bits >> 52) & 0x7ff) as i32;
    let f64_man = bits & ((1u64 << 52) - 1);
    if f64_exp == 0x7ff {
        // NaN keeps a set quiet bit; infinity stays infinity.
        return if f64_man == 0 { inf } else { inf | (1 << (man_bits - 1)) };
    }
    if f64_exp == 0 {
        // f64 subnormals (and zeros) are below half the smallest f16/bf16
        // subnormal: they round to a signed zero.
        return sign;
    }
    let bias = (1i32 << (exp_bits - 1)) - 1;
    let unbiased = f64_exp - 1023;
    if unbiased > bias {
        // At least twice the largest power of two of the target: infinite.
        return inf;
    }
    let sig = f64_man | (1u64 << 52);
    // Right shift that turns `sig` into a count of target quanta: the normal
    // quantum is 2^(unbiased - man_bits), the subnormal one 2^(1 - bias - man_bits).
    let min_normal = 1 - bias;
    let shift =
        if unbiased >= min_normal { 52 - man_bits as i32 } else { 52 - man_bits as i32 + (min_normal - unbiased) };
    if shift > 54 {
        // Below half the smallest subnormal (sig < 2^53 <= 2^(shift - 1)).
        return sign;
    }
    let shift = shift as u32;
    let mut n = sig >> shift;
    let rest = sig & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if rest > half || (rest == half && n & 1 == 1) {
        n += 1;
    }
    // Normal: the exponent field is (unbiased + bias), and `n` carries the
    // implicit bit, so adding it to the field minus one gives the encoding
    // (a carry to 2^(man_bits + 1) bumps the exponent). Subnormal: `n` itself
    // (n == 2^man_bits is the smallest normal, encoded the same way).
    let magnitude = if unbiased >= min_normal { (((unbiased + bias - 1) as u64) << man_bits) + n } else { n };
    let inf_magnitude = (exp_all as u64) << man_bits;
    if magnitude >= inf_magnitude {
        inf
    } else {
        sign | magnitude as u16
    }
}

#[cfg(test)]
mod tests {
    //! Checked against an independent reference: the target's finite values in
    //! order, a binary search for the two neighbours of `v`, and an exact
    //! comparison with their midpoint (exact in f64: both neighbours have at
    //! most 11 significant bits). Past MAX the next neighbour is the power of
    //! two that the target cannot hold, whose encoding is infinity.

    use super::*;
    use rand::{Rng, SeedableRng};

    /// Non-negative finite values of a 16-bit float, ascending, plus the
    /// "next" value past MAX (2^(emax + 1)), with their bit patterns.
    fn ladder(inf_bits: u16, to_f64: fn(u16) -> f64) -> Vec<(f64, u16)> {
        let mut v: Vec<(f64, u16)> = (0..inf_bits).map(|b| (to_f64(b), b)).collect();
        let max = v.last().unwrap().0;
        let next_pow2 = pow2(((max.to_bits() >> 52) as i32 - 1023) + 1);
        v.push((next_pow2, inf_bits));
        v
    }

    /// The correctly rounded bits of `x` (finite) on `ladder`.
    fn reference(ladder: &[(f64, u16)], x: f64) -> u16 {
        let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = x.abs();
        let top = ladder.last().unwrap();
        if a >= top.0 {
            return sign | top.1;
        }
        // Largest index with value <= a.
        let i = ladder.partition_point(|&(v, _)| v <= a) - 1;
        let (lo, hi) = (ladder[i], ladder[i + 1]);
        let mid = (lo.0 + hi.0) / 2.0;
        let pick = if a < mid {
            lo.1
        } else if a > mid {
            hi.1
        } else if lo.1 & 1 == 0 {
            lo.1
        } else {
            hi.1
        };
        sign | pick
    }

    /// 2^e, exactly (`powi` may be off by an ulp, and Miri perturbs it on
    /// purpose, since IEEE does not require it to be exact).
    fn pow2(e: i32) -> f64 {
        f64::from_bits(((1023 + e) as u64) << 52)
    }

    fn f16_f64(b: u16) -> f64 {
        f64::from(f16::from_bits(b).to_f32())
    }

    fn bf16_f64(b: u16) -> f64 {
        f64::from(bf16::from_bits(b).to_f32())
    }

    fn next_up(x: f64) -> f64 {
        f64::from_bits(x.to_bits() + 1)
    }

    fn next_down(x: f64) -> f64 {
        f64::from_bits(x.to_bits() - 1)
    }

    /// Every value, every midpoint between neighbours and the f64 values one
    /// ulp either side of it (and of each value), with both signs.
    fn probes(ladder: &[(f64, u16)]) -> Vec<f64> {
        let mut out = Vec::new();
        for w in ladder.windows(2).step_by(STEP) {
            let (lo, hi) = (w[0].0, w[1].0);
            let mid = (lo + hi) / 2.0;
            out.extend([lo, mid, next_up(mid), next_down(mid), next_up(lo)]);
            if lo > 0.0 {
                out.push(next_down(lo));
            }
        }
        let top = ladder.last().unwrap().0;
        out.extend([top, next_down(top), next_up(top), f64::MAX, f64::MIN_POSITIVE, 5e-324]);
        let neg: Vec<f64> = out.iter().map(|x| -x).collect();
        out.extend(neg);
        out
    }

    /// Under Miri (about a thousand times slower) every 499th case runs.
    const STEP: usize = if cfg!(miri) { 499 } else { 1 };

    fn sample<T>(v: Vec<T>) -> Vec<T> {
        v.into_iter().step_by(STEP).collect()
    }

    fn random_f64s(n: usize, seed: u64) -> Vec<f64> {
        let n = if cfg!(miri) { n / 499 } else { n };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| match i % 3 {
                // Any bit pattern (mostly far outside the range: overflow and underflow).
                0 => f64::from_bits(rng.gen::<u64>()),
                // In and around the f16 range.
                1 => rng.gen_range(-70000.0..70000.0),
                // Small magnitudes, subnormal territory of f16.
                _ => rng.gen_range(-1.0..1.0) * pow2(rng.gen_range(-30..2)),
            })
            .filter(|x: &f64| !x.is_nan())
            .collect()
    }

    #[test]
    fn f16_matches_the_reference_at_every_neighbour_and_midpoint() {
        let l = ladder(0x7c00, f16_f64);
        assert_eq!(l.len(), 0x7c01);
        let mut xs = probes(&l);
        xs.extend(random_f64s(200_000, 1));
        for x in xs {
            assert_eq!(f16_from_f64(x).to_bits(), reference(&l, x), "x = {x:e} ({:#018x})", x.to_bits());
        }
    }

    #[test]
    fn bf16_matches_the_reference_at_every_neighbour_and_midpoint() {
        let l = ladder(0x7f80, bf16_f64);
        let mut xs = probes(&l);
        xs.extend(random_f64s(200_000, 2));
        xs.extend(random_f64s(100_000, 3).into_iter().map(|x| x * 1e30));
        for x in xs {
            assert_eq!(bf16_from_f64(x).to_bits(), reference(&l, x), "x = {x:e} ({:#018x})", x.to_bits());
        }
    }

    /// Every one of the 65536 bit patterns, as a target: it round-trips, and
    /// NaNs stay NaNs.
    #[test]
    fn every_bit_pattern_round_trips() {
        for b in sample((0..=u16::MAX).collect()) {
            let h = f16::from_bits(b);
            let back = f16_from_f64(f64::from(h.to_f32()));
            if h.is_nan() {
                assert!(back.is_nan(), "{b:#06x}");
            } else {
                assert_eq!(back.to_bits(), b);
            }
            let g = bf16::from_bits(b);
            let back = bf16_from_f64(f64::from(g.to_f32()));
            if g.is_nan() {
                assert!(back.is_nan(), "{b:#06x}");
            } else {
                assert_eq!(back.to_bits(), b);
            }
        }
    }

    /// `half`'s f32 conversions round correctly (the f32 path uses them), and
    /// agree with these functions on f32 inputs (exact in f64).
    #[test]
    fn half_from_f32_is_correctly_rounded() {
        let lf = ladder(0x7c00, f16_f64);
        let lb = ladder(0x7f80, bf16_f64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut xs: Vec<f32> = probes(&lf).iter().chain(&probes(&lb)).map(|&x| x as f32).collect();
        // f32 neighbours of the midpoints, which the f64 probes round onto.
        for w in lf.windows(2).chain(lb.windows(2)).step_by(STEP) {
            let mid = ((w[0].0 + w[1].0) / 2.0) as f32;
            xs.extend([mid, f32::from_bits(mid.to_bits() + 1), f32::from_bits(mid.to_bits().saturating_sub(1))]);
        }
        xs.extend((0..if cfg!(miri) { 600 } else { 300_000 }).map(|_| f32::from_bits(rng.gen::<u32>())));
        for x in xs.into_iter().filter(|x| !x.is_nan()) {
            let d = f64::from(x);
            assert_eq!(f16::from_f32(x).to_bits(), reference(&lf, d), "f16 of {x:e}");
            assert_eq!(bf16::from_f32(x).to_bits(), reference(&lb, d), "bf16 of {x:e}");
            assert_eq!(f16_from_f64(d), f16::from_f32(x));
            assert_eq!(bf16_from_f64(d), bf16::from_f32(x));
        }
    }

    /// The cases that motivated this module, spelled out.
    #[test]
    fn known_double_rounding_and_max_cases() {
        // 1 + 2^-11 is the tie between 1 and 1 + 2^-10 (ties to even: 1);
        // one f64 ulp above must round up. Via f32 it collapses onto the tie.
        let above_tie = 1.0 + pow2(-11) + pow2(-40);
        assert_eq!(f16_from_f64(above_tie).to_bits(), 0x3c01);
        assert_eq!(f16_from_f64(1.0 + pow2(-11)).to_bits(), 0x3c00);
        // 65519.99 rounds to MAX (65504), not infinity; 65520 (the tie with
        // 2^16, MAX's mantissa is odd) is infinite.
        assert_eq!(f16_from_f64(65519.99), f16::MAX);
        assert!(f16_from_f64(65520.0).is_infinite());
        assert_eq!(f16_from_f64(-65519.99), f16::MIN);
        let bmax = f64::from(bf16::MAX.to_f32());
        let bnext = pow2(128);
        assert_eq!(bf16_from_f64(next_down((bmax + bnext) / 2.0)), bf16::MAX);
        assert!(bf16_from_f64((bmax + bnext) / 2.0).is_infinite());
        // Subnormal ties: half the smallest f16 subnormal rounds to 0, just
        // above it to the smallest subnormal.
        assert_eq!(f16_from_f64(pow2(-25)).to_bits(), 0);
        assert_eq!(f16_from_f64(next_up(pow2(-25))).to_bits(), 1);
        assert_eq!(f16_from_f64(-0.0).to_bits(), 0x8000);
        assert!(f16_from_f64(f64::NAN).is_nan() && bf16_from_f64(-f64::NAN).is_nan());
        assert_eq!(bf16_from_f64(f64::NEG_INFINITY), bf16::NEG_INFINITY);
    }
}
