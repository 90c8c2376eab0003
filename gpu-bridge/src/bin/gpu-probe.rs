//! `gpu-probe [ORDINAL]`: reports whether the CUDA driver loads, which device
//! is at ORDINAL (default 0), and its pinned host-to-device bandwidth at
//! 16 MiB and 64 MiB. Exits 0 with an explanation when there is no driver or
//! device; exits 1 on a real CUDA failure or bad arguments.

use std::process::ExitCode;

use gpu_bridge::{check_driver, device_count, driver_version, probe_bandwidth, BridgeError, Gpu};

const MIB: usize = 1 << 20;
const ITERS: usize = 20;

fn main() -> ExitCode {
    let ordinal = match std::env::args().nth(1) {
        None => 0,
        Some(arg) => match arg.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("usage: gpu-probe [DEVICE_ORDINAL]");
                return ExitCode::from(2);
            }
        },
    };
    match run(ordinal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (BridgeError::NoDriver(_) | BridgeError::NoDevice { .. })) => {
            println!("no GPU available: {e}");
            println!("(nothing to measure; this is not an error)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gpu-probe failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(ordinal: usize) -> Result<(), BridgeError> {
    match check_driver() {
        Ok(()) => {
            let (major, minor) = driver_version()?;
            println!("CUDA driver: libcuda loaded (supports CUDA {major}.{minor})");
        }
        Err(e) => {
            println!("CUDA driver: not usable");
            return Err(e);
        }
    }
    println!("devices visible: {}", device_count()?);
    let gpu = Gpu::open(ordinal)?;
    println!(
        "device {}: {} ({:.1} GiB)",
        gpu.ordinal(),
        gpu.device_name(),
        gpu.total_memory() as f64 / (1u64 << 30) as f64
    );
    for size in [16 * MIB, 64 * MIB] {
        let gbps = probe_bandwidth(&gpu, size, ITERS)?;
        println!("pinned HtoD {:>3} MiB x {ITERS}: {gbps:.2} GB/s", size / MIB);
    }
    Ok(())
}
