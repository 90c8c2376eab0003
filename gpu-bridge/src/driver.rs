//! Run-time loading of the CUDA driver.
//!
//! cudarc (feature `dynamic-loading`) `dlopen`s libcuda lazily and resolves
//! every entry point on its first call; a missing library or symbol is a
//! *panic* there. This module makes that impossible for the code paths of
//! this crate: before anything else touches the driver, [`check_driver`]
//!
//! 1. probes for the library with cudarc's own candidate list
//!    (`is_culib_present`, which does not panic), and
//! 2. resolves every driver symbol this crate's code paths call
//!    ([`REQUIRED_SYMBOLS`]), so that a too-old driver is reported as
//!    [`BridgeError::NoDriver`] instead of panicking mid-operation.
//!
//! The probes run inside `catch_unwind` as a second line of defence. The
//! outcome is computed once per process and cached.

use std::panic::{catch_unwind, UnwindSafe};
use std::sync::OnceLock;

use cudarc::driver::{result, sys};

use crate::error::{classify_init_error, cuda_err};
use crate::BridgeError;

/// Every driver entry point reached through cudarc by this crate (context
/// setup, streams, events, pinned and device allocation, async copies and
/// error strings), under the names the `cuda-12060` bindings resolve.
/// All exist in drivers for CUDA 11.2 and newer.
pub(crate) const REQUIRED_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuGetErrorName",
    "cuGetErrorString",
    "cuDeviceGet",
    "cuDeviceGetCount",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventElapsedTime",
    "cuEventDestroy_v2",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemAlloc_v2",
    "cuMemAllocAsync",
    "cuMemFree_v2",
    "cuMemFreeAsync",
    "cuMemsetD8Async",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    // Zero-copy gather (src/zerocopy.rs).
    "cuMemHostRegister_v2",
    "cuMemHostUnregister",
    "cuMemHostGetDevicePointer_v2",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
];

/// Runs `f`, turning a panic (cudarc panics when a library or symbol is
/// missing) into `NoDriver`.
pub(crate) fn no_panic<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, BridgeError> + UnwindSafe,
) -> Result<T, BridgeError> {
    catch_unwind(f).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        Err(BridgeError::NoDriver(format!("{what}: CUDA binding panicked: {msg}")))
    })
}

fn load_and_resolve() -> Result<(), BridgeError> {
    no_panic("loading libcuda", || {
        // SAFETY: `is_culib_present` dlopen()s candidate names of the CUDA
        // driver library (running their initialisers, as any CUDA program
        // does) and immediately closes them again; it keeps no handles.
        let present = unsafe { sys::is_culib_present() };
        if !present {
            let candidates = cudarc::get_lib_name_candidates("cuda");
            return Err(BridgeError::NoDriver(format!(
                "libcuda could not be loaded (tried libcuda.so.1 and {} other names; \
                 is the NVIDIA driver installed and on the loader path?)",
                candidates.len().saturating_sub(1)
            )));
        }
        // SAFETY: same library loading as above, now kept open for the rest
        // of the process in cudarc's static; it cannot panic because the
        // probe just succeeded with the same candidate list.
        let lib = unsafe { sys::culib() };
        let missing: Vec<&str> = REQUIRED_SYMBOLS
            .iter()
            .copied()
            // SAFETY: the symbol is only looked up to learn whether it
            // exists; the returned pointer is dropped without being called
            // or stored, so its declared type does not matter.
            .filter(|name| unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_err())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(BridgeError::NoDriver(format!("libcuda was loaded but lacks {missing:?}; the driver is too old")))
        }
    })
}

/// Checks, once per process, that the CUDA driver library can be loaded and
/// has every entry point this crate uses. Does not initialise the driver or
/// look at devices. Never panics.
pub fn check_driver() -> Result<(), BridgeError> {
    static STATE: OnceLock<Result<(), BridgeError>> = OnceLock::new();
    STATE.get_or_init(load_and_resolve).clone()
}

/// The CUDA version the installed driver supports, as `(major, minor)`
/// (e.g. `(12, 4)`).
pub fn driver_version() -> Result<(u32, u32), BridgeError> {
    check_driver()?;
    no_panic("cuDriverGetVersion", || {
        let mut version: std::ffi::c_int = 0;
        // SAFETY: `check_driver` resolved this symbol; the driver writes one
        // int through the pointer, which points to a live local.
        unsafe { sys::cuDriverGetVersion(&mut version) }.result().map_err(cuda_err("cuDriverGetVersion"))?;
        let version = u32::try_from(version).unwrap_or(0);
        Ok((version / 1000, (version % 1000) / 10))
    })
}

/// Initialises the driver (`cuInit`) and returns the number of visible
/// devices; 0 when the driver reports that there is none.
pub fn device_count() -> Result<usize, BridgeError> {
    check_driver()?;
    no_panic("counting devices", || {
        match result::init() {
            Ok(()) => {}
            Err(e) => {
                return match classify_init_error("cuInit", e, 0) {
                    BridgeError::NoDevice { .. } => Ok(0),
                    other => Err(other),
                }
            }
        }
        let count = result::device::get_count().map_err(|e| classify_init_error("cuDeviceGetCount", e, 0))?;
        Ok(usize::try_from(count).unwrap_or(0))
    })
}
