//! Error type of the bridge.

use cudarc::driver::{sys::CUresult, DriverError};

/// Everything that can go wrong between host staging memory and the GPU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The CUDA driver library (`libcuda.so.1`) could not be loaded, is a
    /// stub, or lacks an entry point this crate needs. The string says which.
    #[error("CUDA driver not available: {0}")]
    NoDriver(String),
    /// The driver loaded, but there is no device with this ordinal.
    #[error("no CUDA device with ordinal {ordinal} ({count} device(s) visible)")]
    NoDevice {
        /// The ordinal that was asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// A CUDA driver call failed; the string names the operation and the
    /// driver's error code and message.
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// Gathering rows from the table failed (a slot out of range, a buffer
    /// of the wrong size); the string is the engine's message.
    #[error("gather failed: {0}")]
    Gather(String),
    /// Reading rows with the pipeline's `RowReader`
    /// (`PipelineConfig::read_mode`) failed, or opening it did; the string
    /// is the engine's message, naming the table file and, for a failed
    /// read, the file offset.
    #[error("reading rows failed: {0}")]
    Read(String),
    /// The caller passed something unusable (mismatched lengths, a buffer of
    /// another device, a zero iteration count, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Classifies a driver error raised by `what` (used where a failing call may
/// mean "no usable driver/device" rather than a real fault: `cuInit`,
/// `cuDeviceGetCount`).
pub(crate) fn classify_init_error(what: &str, err: DriverError, ordinal: usize) -> BridgeError {
    match err.0 {
        CUresult::CUDA_ERROR_NO_DEVICE => BridgeError::NoDevice { ordinal, count: 0 },
        CUresult::CUDA_ERROR_STUB_LIBRARY
        | CUresult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
        | CUresult::CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE => {
            // Do not format `err` with Display: that calls back into the
            // driver (cuGetErrorString), which a stub library cannot answer.
            BridgeError::NoDriver(format!("{what} failed with {:?}", err.0))
        }
        _ => cuda(what, err),
    }
}

/// Wraps a driver error from operation `what`.
pub(crate) fn cuda(what: &str, err: DriverError) -> BridgeError {
    BridgeError::Cuda(format!("{what}: {err}"))
}

/// `map_err` adaptor for [`cuda`].
pub(crate) fn cuda_err(what: &'static str) -> impl FnOnce(DriverError) -> BridgeError {
    move |err| cuda(what, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_device_and_stub_are_classified_without_touching_the_driver() {
        // None of these paths may call into libcuda (there is none here).
        let e = classify_init_error("cuInit", DriverError(CUresult::CUDA_ERROR_NO_DEVICE), 3);
        assert_eq!(e, BridgeError::NoDevice { ordinal: 3, count: 0 });
        let e = classify_init_error("cuInit", DriverError(CUresult::CUDA_ERROR_STUB_LIBRARY), 0);
        assert!(matches!(e, BridgeError::NoDriver(ref m) if m.contains("STUB_LIBRARY")), "{e:?}");
    }
}
