//! Zero-copy gather: the table's rows stay in (pinned, device-mapped) host
//! memory and a GPU kernel reads the requested rows directly over the bus
//! (UVA), writing `[positions, row bytes]` into device memory. The CPU only
//! uploads the slot numbers (4 bytes per position).

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use engine::{Table, MISS_SLOT};

use crate::driver::no_panic;
use crate::error::{cuda_err, BridgeError};
use crate::scatter::GpuCache;
use crate::{DeviceBuffer, Gpu, PinnedBuffer};

/// PTX of `kernels/gather.cu` (see `kernels/build.sh`).
const GATHER_PTX: &str = include_str!("../kernels/gather.ptx");
/// Threads per block: 8 warps, one position per warp.
const BLOCK: u32 = 256;
const POSITIONS_PER_BLOCK: u32 = BLOCK / 32;

/// Where the device-mapped rows live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopySource {
    /// The table's own resident rows (`OpenOptions::resident_rows`),
    /// page-locked in place with `cuMemHostRegister`: no copy, no extra memory.
    Registered,
    /// A copy of the rows section in a pinned allocation made at setup
    /// (the table's rows are a file mapping, or registering failed).
    PinnedCopy,
}

/// The table's rows as device-readable host memory, plus the loaded kernel.
/// Dropping it waits for all work in the context before unregistering or
/// freeing the memory (a kernel may still be reading it). It borrows the
/// table (`'t`): kernels read the table's resident rows in place, so the
/// table must outlive every launch, and the borrow makes that a type
/// error rather than a caller's promise.
pub(crate) struct ZeroCopyRows<'t> {
    ctx: Arc<CudaContext>,
    func: CudaFunction,
    /// Device address of row 0.
    dev_rows: u64,
    stride: u64,
    row_bytes: u32,
    n_rows: u64,
    source: ZeroCopySource,
    /// Host address registered with `cuMemHostRegister` (unregistered on drop).
    registered: Option<usize>,
    /// The pinned copy (freed on drop, after the wait).
    _copy: Option<PinnedBuffer>,
    /// The table whose rows `dev_rows` maps (when `Registered`).
    _table: PhantomData<&'t Table>,
}

impl std::fmt::Debug for ZeroCopyRows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroCopyRows")
            .field("source", &self.source)
            .field("n_rows", &self.n_rows)
            .field("stride", &self.stride)
            .finish()
    }
}

impl<'t> ZeroCopyRows<'t> {
    /// Makes `table`'s rows readable by `gpu`'s device, for as long as the
    /// returned value (which borrows `table`) lives.
    pub(crate) fn new(table: &'t Table, gpu: &Gpu) -> Result<ZeroCopyRows<'t>, BridgeError> {
        let ctx = gpu.ctx().clone();
        let func = no_panic("loading gather kernel", {
            let ctx = ctx.clone();
            move || {
                let module = ctx.load_module(Ptx::from_src(GATHER_PTX)).map_err(cuda_err("loading gather PTX"))?;
                module.load_function("gather_rows").map_err(cuda_err("cuModuleGetFunction(gather_rows)"))
            }
        })?;
        let stride = table.header().row_stride;
        let row_bytes = u32::try_from(table.dim() * table.dtype().size())
            .map_err(|_| BridgeError::InvalidArgument("row too large for the gather kernel".into()))?;
        let n_rows = table.rows();
        let last = u32::try_from(n_rows.saturating_sub(1))
            .map_err(|_| BridgeError::InvalidArgument("too many rows for u32 slots".into()))?;
        let (first, last) = match (table.row_bytes(0), table.row_bytes(last)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(BridgeError::InvalidArgument("table has no rows".into())),
        };
        // Both rows are sub-slices of the same rows section (`Table::row_bytes`
        // slices one `&[u8]`, at slot * stride), so [first, end of last) lies
        // inside it: the section's first (rows - 1) * stride + row_bytes bytes.
        let base = first.as_ptr();
        let len = (last.as_ptr() as usize - base as usize) + last.len();
        debug_assert_eq!(len as u64, (n_rows - 1) * stride + u64::from(row_bytes));
        let mut zc = ZeroCopyRows {
            ctx,
            func,
            dev_rows: 0,
            stride,
            row_bytes,
            n_rows,
            source: ZeroCopySource::PinnedCopy,
            registered: None,
            _copy: None,
            _table: PhantomData,
        };
        // SAFETY: `base..base + len` lies within the table's rows section
        // (shown above), which is alive and immutable while `table` is
        // borrowed here.
        let rows = unsafe { std::slice::from_raw_parts(base, len) };
        if table.rows_are_resident() && zc.try_register(base, len)? {
            return Ok(zc);
        }
        let copy = gpu.pinned_from_slice(rows)?;
        let host = copy.host_ptr()?;
        zc.dev_rows = device_pointer(host)?;
        zc._copy = Some(copy);
        Ok(zc)
    }

    /// Registers `base..base + len` (the resident rows: an anonymous,
    /// read-only, page-aligned mapping) and looks up its device address.
    /// Ok(false): the driver refused; the caller falls back to a copy.
    fn try_register(&mut self, base: *const u8, len: usize) -> Result<bool, BridgeError> {
        self.ctx.bind_to_thread().map_err(cuda_err("binding context"))?;
        let read_only = self
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED)
            .unwrap_or(0)
            != 0;
        let flags = sys::CU_MEMHOSTREGISTER_PORTABLE | sys::CU_MEMHOSTREGISTER_DEVICEMAP;
        let attempts: &[u32] = if read_only { &[flags | sys::CU_MEMHOSTREGISTER_READ_ONLY, flags] } else { &[flags] };
        for &f in attempts {
            // SAFETY: `base..base + len` is memory of the table's resident
            // rows mapping (see `new`), alive for this value's lifetime: it
            // borrows the table (`'t`), and a `Table`'s resident rows do not
            // move while it is borrowed. Registering only page-locks it and maps it
            // for the device; neither the driver nor the kernel writes to it.
            let r = unsafe { sys::cuMemHostRegister_v2(base as *mut c_void, len, f) };
            if r == sys::CUresult::CUDA_SUCCESS {
                self.registered = Some(base as usize);
                self.source = ZeroCopySource::Registered;
                self.dev_rows = device_pointer(base)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Where the rows live.
    pub(crate) fn source(&self) -> ZeroCopySource {
        self.source
    }

    /// Enqueues the gather kernel on `gpu`'s stream: for each of the first
    /// `n` slots in `slots` (u32, already on the device), row bytes into
    /// `out[p * row_bytes ..]`. `host_slots` are the same slots, checked here
    /// so that the kernel never reads outside the mapped rows. With a
    /// `cache`, slots below its row count are read from device memory.
    pub(crate) fn launch(
        &self,
        gpu: &Gpu,
        host_slots: &[u32],
        slots: &DeviceBuffer,
        out: &mut DeviceBuffer,
        cache: Option<&GpuCache>,
    ) -> Result<(), BridgeError> {
        let n = host_slots.len();
        if let Some(bad) = host_slots.iter().find(|&&s| s != MISS_SLOT && u64::from(s) >= self.n_rows) {
            return Err(BridgeError::Gather(format!("slot {bad} out of range (table has {} rows)", self.n_rows)));
        }
        if n == 0 {
            return Ok(());
        }
        let n32 = u32::try_from(n).map_err(|_| BridgeError::InvalidArgument(format!("{n} positions")))?;
        if slots.len() < n * 4 || out.len() < n * self.row_bytes as usize {
            return Err(BridgeError::InvalidArgument("gather buffers too small".into()));
        }
        let (Some(slots), Some(out)) = (slots.slice(), out.slice_mut()) else {
            return Err(BridgeError::InvalidArgument("empty gather buffers".into()));
        };
        let cfg = LaunchConfig {
            grid_dim: (n32.div_ceil(POSITIONS_PER_BLOCK), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let no_cache = 0u64;
        let mut b = gpu.stream().launch_builder(&self.func);
        b.arg(&self.dev_rows).arg(&self.stride).arg(&self.row_bytes).arg(slots).arg(&n32).arg(out);
        let cached = match cache.and_then(|c| c.buffer().slice().map(|s| (s, c.rows()))) {
            Some((s, rows)) => {
                if cache.map(GpuCache::stride) != Some(self.stride) {
                    return Err(BridgeError::InvalidArgument("GPU cache stride differs from the rows'".into()));
                }
                b.arg(s);
                rows
            }
            None => {
                b.arg(&no_cache);
                0
            }
        };
        b.arg(&cached);
        // SAFETY: the arguments match gather_rows's parameters in number,
        // order and type (u64 rows address, u64 stride, u32 row_bytes, slot
        // pointer, u32 n, output pointer, cache pointer, u32 cached). The
        // kernel reads n u32 slots (`slots` holds >= 4n bytes), rows only at
        // checked slots (< n_rows, or MISS_SLOT, which is not read): slots
        // below `cached` from the cache (`cached * stride` bytes, holding
        // rows 0..cached; a null cache comes with cached = 0), others inside
        // the mapped range, and writes n * row_bytes bytes (`out` holds at
        // least that).
        unsafe { b.launch(cfg) }.map_err(cuda_err("cuLaunchKernel(gather_rows)"))?;
        Ok(())
    }
}

/// Device address of pinned / registered host memory at `host`.
fn device_pointer(host: *const u8) -> Result<u64, BridgeError> {
    let mut dptr: sys::CUdeviceptr = 0;
    // SAFETY: `host` is the start of memory that was just allocated with
    // cuMemHostAlloc or registered with cuMemHostRegister in the current
    // context; the driver writes one device pointer into the live local.
    unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dptr, host as *mut c_void, 0) }
        .result()
        .map_err(cuda_err("cuMemHostGetDevicePointer"))?;
    Ok(dptr)
}

impl Drop for ZeroCopyRows<'_> {
    fn drop(&mut self) {
        // A kernel enqueued on any stream may still read the rows.
        let _ = self.ctx.synchronize();
        if let Some(base) = self.registered.take() {
            let _ = self.ctx.bind_to_thread();
            // SAFETY: `base` was registered by `try_register` in this context
            // and no work that reads it is pending (synchronised above).
            let _ = unsafe { sys::cuMemHostUnregister(base as *mut c_void) };
        }
    }
}
