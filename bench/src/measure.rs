//! Timing and the "ceiling" kernels each scone figure is set beside.

use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `reps` times timed; the median seconds.
pub fn median_secs(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Ceiling for gathers: a plain single-threaded memcpy of a batch's bytes from a
/// contiguous source. The source rotates through a buffer much larger than the
/// last-level cache, so the copy streams from DRAM as a table gather must for
/// its cold rows.
pub struct MemcpyCeiling {
    src: Vec<u8>,
    pos: usize,
}

impl MemcpyCeiling {
    pub fn new(bytes: usize) -> Self {
        // Non-zero fill: a zeroed allocation could be backed by the shared zero page.
        let src = (0..bytes).map(|i| (i as u8) | 1).collect();
        MemcpyCeiling { src, pos: 0 }
    }

    #[inline]
    pub fn copy(&mut self, out: &mut [u8]) {
        if self.pos + out.len() > self.src.len() {
            self.pos = 0;
        }
        out.copy_from_slice(&self.src[self.pos..self.pos + out.len()]);
        self.pos += out.len();
    }
}

/// Ceiling for probes and matching: one independent random 8-byte read per probe
/// from an array the size of the index. Any hashed lookup touches at least one
/// such line; no hashing and no verification is done here.
pub struct RandomReadCeiling {
    array: Vec<u64>,
    positions: Vec<u32>,
}

impl RandomReadCeiling {
    pub fn new(index_bytes: usize, reads: usize, seed: u64) -> Self {
        let n = (index_bytes / 8).max(1);
        let array = (0..n as u64).map(crate::synth::mix).collect();
        let positions = (0..reads as u64).map(|i| (crate::synth::mix(seed ^ i) % n as u64) as u32).collect();
        RandomReadCeiling { array, positions }
    }

    pub fn reads(&self) -> usize {
        self.positions.len()
    }

    /// Sums the array at every position.
    pub fn run(&self) -> u64 {
        self.positions.iter().fold(0u64, |a, &p| a.wrapping_add(self.array[p as usize]))
    }
}
