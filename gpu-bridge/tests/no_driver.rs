//! CPU-only: opening a device must never panic, whatever the machine has.
//! With `SCONE_EXPECT_NO_GPU=1` (set it on machines without an NVIDIA
//! driver, e.g. CI) the test also requires the error to be `NoDriver`.

use gpu_bridge::{check_driver, device_count, BridgeError, Gpu};

fn expect_no_gpu() -> bool {
    std::env::var("SCONE_EXPECT_NO_GPU").is_ok_and(|v| v == "1")
}

#[test]
fn open_returns_without_panicking() {
    let result = std::panic::catch_unwind(|| Gpu::open(0));
    let result = result.expect("Gpu::open panicked");
    if expect_no_gpu() {
        match result {
            Err(BridgeError::NoDriver(msg)) => {
                assert!(!msg.is_empty());
                eprintln!("as expected: NoDriver({msg})");
            }
            other => panic!("SCONE_EXPECT_NO_GPU=1 but Gpu::open(0) gave {other:?}"),
        }
    } else {
        eprintln!("Gpu::open(0) -> {:?}", result.as_ref().map(|g| g.device_name()));
    }
}

#[test]
fn driver_queries_agree_and_do_not_panic() {
    let driver = std::panic::catch_unwind(check_driver).expect("check_driver panicked");
    let count = std::panic::catch_unwind(device_count).expect("device_count panicked");
    match driver {
        Err(BridgeError::NoDriver(_)) => {
            assert!(matches!(count, Err(BridgeError::NoDriver(_))), "{count:?}");
            // A nonsense ordinal also reports the missing driver first.
            assert!(matches!(Gpu::open(usize::MAX), Err(BridgeError::NoDriver(_))));
        }
        Err(other) => panic!("check_driver returned an unexpected error kind: {other:?}"),
        Ok(()) => {
            assert!(!expect_no_gpu(), "SCONE_EXPECT_NO_GPU=1 but libcuda loaded");
            // The driver is there; an ordinal past the end must be NoDevice.
            if let Ok(n) = count {
                assert!(matches!(
                    Gpu::open(n),
                    Err(BridgeError::NoDevice { ordinal, count }) if ordinal == n && count == n
                ));
            }
        }
    }
}
