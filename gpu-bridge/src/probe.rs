//! Pinned host-to-device bandwidth measurement.

use crate::error::cuda_err;
use crate::{BridgeError, Gpu};

/// Measures pinned host-to-device copy bandwidth in GB/s (10^9 bytes per
/// second): one untimed warm-up copy of `bytes`, then `iters` back-to-back
/// copies of `bytes` from a (cached) pinned buffer into a device buffer on
/// `gpu`'s stream, timed on the GPU with CUDA events.
pub fn probe_bandwidth(gpu: &Gpu, bytes: usize, iters: usize) -> Result<f64, BridgeError> {
    if bytes == 0 || iters == 0 {
        return Err(BridgeError::InvalidArgument(format!(
            "probe_bandwidth needs bytes > 0 and iters > 0 (got {bytes}, {iters})"
        )));
    }
    let mut src = gpu.alloc_pinned(bytes)?;
    for (i, b) in src.as_mut_slice()?.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let mut dst = gpu.alloc_device(bytes)?;
    gpu.copy_to_device(&src, &mut dst)?.synchronize()?;

    let start = gpu.record_timing_event()?;
    for _ in 0..iters {
        gpu.enqueue_htod(&src, &mut dst)?;
    }
    let end = gpu.record_timing_event()?;
    let ms = start.elapsed_ms(&end).map_err(cuda_err("cuEventElapsedTime"))?;
    gpu.synchronize()?;
    if ms.is_nan() || ms <= 0.0 {
        return Err(BridgeError::Cuda(format!("event timer reported {ms} ms for {iters} copies of {bytes} bytes")));
    }
    let total = bytes as f64 * iters as f64;
    Ok(total / (f64::from(ms) / 1e3) / 1e9)
}
