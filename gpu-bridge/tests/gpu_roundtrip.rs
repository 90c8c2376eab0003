//! GPU tests. Each one skips (passes, with a note on stderr) when there is no
//! CUDA driver or device. Set `SCONE_REQUIRE_GPU=1` on a GPU machine to turn
//! a skip into a failure, so a broken driver setup cannot pass silently.

mod common;

use common::gpu_or_skip;
use gpu_bridge::{probe_bandwidth, BridgeError};

const MIB: usize = 1 << 20;

/// Deterministic bytes that differ from position to position and between
/// sizes, so misplaced or truncated copies are caught.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

const SIZES: [usize; 3] = [1, 4097, 16 * MIB];

#[test]
fn pinned_device_host_round_trip() {
    let Some(gpu) = gpu_or_skip() else { return };
    eprintln!("device: {} ({} bytes)", gpu.device_name(), gpu.total_memory());
    assert!(!gpu.device_name().is_empty());
    assert!(gpu.total_memory() > 0);
    for (i, &len) in SIZES.iter().enumerate() {
        let input = pattern(len, i as u64 + 1);
        let src = gpu.pinned_from_slice(&input).unwrap();
        assert_eq!(src.len(), len);
        let mut dev = gpu.alloc_device(len).unwrap();
        assert_eq!(dev.len(), len);
        let up = gpu.copy_to_device(&src, &mut dev).unwrap();
        up.synchronize().unwrap();
        assert!(up.is_complete().unwrap());

        let mut back = gpu.alloc_pinned(len).unwrap();
        let down = gpu.copy_to_host(&dev, &mut back).unwrap();
        down.synchronize().unwrap();
        assert!(back.as_slice().unwrap() == input.as_slice(), "round trip of {len} bytes differs");
        assert!(gpu.read_device(&dev).unwrap() == input, "read_device of {len} bytes differs");
    }
}

#[test]
fn write_combined_staging_and_buffer_reuse() {
    let Some(gpu) = gpu_or_skip() else { return };
    let len = 4097;
    let mut staging = gpu.alloc_pinned_write_combined(len).unwrap();
    assert!(staging.is_write_combined());
    let mut dev = gpu.alloc_device(2 * len).unwrap();
    // Refill the same staging buffer without waiting on the events:
    // as_mut_slice must wait for the previous DMA out of it.
    let mut last = Vec::new();
    for round in 0..4u64 {
        last = pattern(len, 100 + round);
        staging.as_mut_slice().unwrap().copy_from_slice(&last);
        let _ = gpu.copy_to_device(&staging, &mut dev).unwrap();
    }
    gpu.synchronize().unwrap();
    let got = gpu.read_device(&dev).unwrap();
    assert!(got[..len] == last[..], "prefix is not the last upload");
    assert!(got[len..].iter().all(|&b| b == 0), "tail of a fresh device buffer must stay zero");
}

#[test]
fn copies_check_lengths_and_handle_empty_buffers() {
    let Some(gpu) = gpu_or_skip() else { return };
    let src = gpu.alloc_pinned(10).unwrap();
    let mut small = gpu.alloc_device(9).unwrap();
    assert!(matches!(gpu.copy_to_device(&src, &mut small), Err(BridgeError::InvalidArgument(_))));
    let mut small_host = gpu.alloc_pinned(9).unwrap();
    let big = gpu.alloc_device(10).unwrap();
    assert!(matches!(gpu.copy_to_host(&big, &mut small_host), Err(BridgeError::InvalidArgument(_))));

    let empty = gpu.alloc_pinned(0).unwrap();
    assert!(empty.is_empty() && empty.as_slice().unwrap().is_empty());
    let mut empty_dev = gpu.alloc_device(0).unwrap();
    gpu.copy_to_device(&empty, &mut empty_dev).unwrap().synchronize().unwrap();
    assert!(gpu.read_device(&empty_dev).unwrap().is_empty());
}

#[test]
fn bandwidth_probe_reports_a_plausible_rate() {
    let Some(gpu) = gpu_or_skip() else { return };
    assert!(matches!(probe_bandwidth(&gpu, 0, 1), Err(BridgeError::InvalidArgument(_))));
    let gbps = probe_bandwidth(&gpu, 16 * MIB, 5).unwrap();
    eprintln!("pinned HtoD 16 MiB: {gbps:.2} GB/s");
    // PCIe 3 x16 gives ~12 GB/s, PCIe 5 x16 ~55, NVLink-C2C more; anything
    // outside (0.1, 1000) means the timing is broken.
    assert!(gbps.is_finite() && gbps > 0.1 && gbps < 1000.0, "{gbps}");
}
