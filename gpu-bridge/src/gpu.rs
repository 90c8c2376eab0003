//! Device handle, pinned host buffers, device buffers and asynchronous copies.

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaEvent, CudaSlice, CudaStream, PinnedHostSlice};

use crate::driver::{check_driver, device_count, no_panic};
use crate::error::{cuda_err, BridgeError};

/// An opened CUDA device with one dedicated copy stream.
///
/// All copies issued through one `Gpu` (and its clones, which share the
/// stream) execute in issue order. `Gpu` is `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
    name: String,
    total_memory: usize,
}

impl Gpu {
    /// Loads the driver (if not yet loaded), initialises it and opens device
    /// `ordinal` (its primary context) with a new non-blocking stream.
    ///
    /// Errors: [`BridgeError::NoDriver`] when libcuda cannot be loaded or is
    /// unusable, [`BridgeError::NoDevice`] when there is no such device,
    /// [`BridgeError::Cuda`] for any other driver failure. Never panics.
    pub fn open(ordinal: usize) -> Result<Gpu, BridgeError> {
        check_driver()?;
        let count = device_count()?;
        if ordinal >= count {
            return Err(BridgeError::NoDevice { ordinal, count });
        }
        no_panic("opening device", move || Self::open_checked(ordinal))
    }

    fn open_checked(ordinal: usize) -> Result<Gpu, BridgeError> {
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("creating primary context"))?;
        // A dedicated stream (rather than the legacy default stream) puts the
        // context in cudarc's multi-stream mode, in which every buffer tracks
        // its pending uses with events. That tracking is what makes reading
        // or writing a `PinnedBuffer` wait for in-flight DMA from/to it.
        let stream = ctx.new_stream().map_err(cuda_err("creating stream"))?;
        if !ctx.is_managing_stream_synchronization() {
            return Err(BridgeError::Cuda("cudarc event tracking is off; buffer use would not be synchronised".into()));
        }
        let name = ctx.name().map_err(cuda_err("cuDeviceGetName"))?;
        let total_memory = ctx.total_mem().map_err(cuda_err("cuDeviceTotalMem"))?;
        Ok(Gpu { ctx, stream, ordinal, name, total_memory })
    }

    /// A handle to the same device and context with a new, separate
    /// non-blocking stream. Work on the two streams is not ordered with
    /// respect to each other (buffers still wait for each other's pending
    /// uses through cudarc's event tracking).
    pub fn with_new_stream(&self) -> Result<Gpu, BridgeError> {
        let ctx = self.ctx.clone();
        let stream = no_panic("creating stream", move || ctx.new_stream().map_err(cuda_err("creating stream")))?;
        Ok(Gpu { stream, ..self.clone() })
    }

    /// Device ordinal this handle was opened with.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Marketing name reported by the driver, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Total device memory in bytes.
    pub fn total_memory(&self) -> usize {
        self.total_memory
    }

    /// Allocates `len` bytes of page-locked (pinned) host memory with
    /// `cuMemHostAlloc` (flags 0: cached, usable from this context), zeroed.
    /// Pinned memory is what lets `copy_to_device` run as a true
    /// asynchronous DMA.
    pub fn alloc_pinned(&self, len: usize) -> Result<PinnedBuffer, BridgeError> {
        self.alloc_pinned_with_flags(len, 0, false)
    }

    /// Like [`Gpu::alloc_pinned`] but write-combined
    /// (`CU_MEMHOSTALLOC_WRITECOMBINED`): faster for the CPU to fill
    /// sequentially and for the GPU to read, but very slow for the CPU to
    /// read back. Meant for host-to-device staging only.
    pub fn alloc_pinned_write_combined(&self, len: usize) -> Result<PinnedBuffer, BridgeError> {
        self.alloc_pinned_with_flags(len, sys::CU_MEMHOSTALLOC_WRITECOMBINED, true)
    }

    /// Allocates pinned memory (cached) holding a copy of `data`.
    pub fn pinned_from_slice(&self, data: &[u8]) -> Result<PinnedBuffer, BridgeError> {
        let mut buf = self.alloc_pinned(data.len())?;
        buf.as_mut_slice()?.copy_from_slice(data);
        Ok(buf)
    }

    fn alloc_pinned_with_flags(
        &self,
        len: usize,
        flags: u32,
        write_combined: bool,
    ) -> Result<PinnedBuffer, BridgeError> {
        if len == 0 {
            return Ok(PinnedBuffer { inner: None, write_combined });
        }
        if len >= isize::MAX as usize {
            return Err(BridgeError::InvalidArgument(format!("pinned allocation of {len} bytes is too large")));
        }
        // SAFETY: `alloc_pinned_with_flags` is unsafe only because the new
        // memory is uninitialised; it is zeroed below before any reference to
        // it can be formed. `len` is non-zero and below isize::MAX, so
        // cudarc's internal size assertions hold.
        let mut slice: PinnedHostSlice<u8> =
            unsafe { self.ctx.alloc_pinned_with_flags(len, flags) }.map_err(cuda_err("cuMemHostAlloc"))?;
        let ptr = slice.as_mut_ptr().map_err(cuda_err("synchronising new pinned buffer"))?;
        // SAFETY: `ptr` is the start of the `len`-byte host allocation owned
        // by `slice`, which was just created: no copy uses it and no other
        // pointer or reference to it exists. `write_bytes` only writes.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(PinnedBuffer { inner: Some(slice), write_combined })
    }

    /// Allocates `len` bytes of device memory, zeroed (the memset is
    /// enqueued on this `Gpu`'s stream, so it is ordered before later copies).
    pub fn alloc_device(&self, len: usize) -> Result<DeviceBuffer, BridgeError> {
        let inner = if len == 0 {
            None
        } else {
            Some(self.stream.alloc_zeros::<u8>(len).map_err(cuda_err("allocating device memory"))?)
        };
        Ok(DeviceBuffer { inner, ordinal: self.ordinal })
    }

    fn check_pinned(&self, buf: &PinnedBuffer) -> Result<(), BridgeError> {
        match &buf.inner {
            Some(slice) if slice.context() != &self.ctx => {
                Err(BridgeError::InvalidArgument("pinned buffer was allocated by a different CUDA context".into()))
            }
            _ => Ok(()),
        }
    }

    fn check_device(&self, buf: &DeviceBuffer) -> Result<(), BridgeError> {
        match &buf.inner {
            Some(slice) if slice.context() != &self.ctx => Err(BridgeError::InvalidArgument(format!(
                "device buffer belongs to device {}, this Gpu is device {}",
                buf.ordinal, self.ordinal
            ))),
            _ => Ok(()),
        }
    }

    /// Enqueues the copy without recording a completion event.
    pub(crate) fn enqueue_htod(&self, src: &PinnedBuffer, dst: &mut DeviceBuffer) -> Result<(), BridgeError> {
        if src.len() > dst.len() {
            return Err(BridgeError::InvalidArgument(format!(
                "copy_to_device: source has {} bytes, destination only {}",
                src.len(),
                dst.len()
            )));
        }
        self.check_pinned(src)?;
        self.check_device(dst)?;
        if let (Some(s), Some(d)) = (&src.inner, &mut dst.inner) {
            self.stream.memcpy_htod(s, d).map_err(cuda_err("cuMemcpyHtoDAsync"))?;
        }
        // Errors of the event bookkeeping done on drop inside cudarc.
        self.ctx.check_err().map_err(cuda_err("copy_to_device"))
    }

    /// Enqueues an asynchronous copy of `src[range]` into
    /// `dst[dst_offset .. dst_offset + range.len()]` on this stream, without
    /// recording an event and *without* cudarc's tracking of `src`. Returns
    /// before the copy has run.
    ///
    /// # Safety
    /// The DMA engine reads `src[range]` after this returns. The caller must
    /// keep those bytes allocated and unmodified until an event recorded on
    /// this stream after this call has completed (or the stream is
    /// synchronised): freeing or refilling `src` earlier lets the device read
    /// freed or half-written memory. `StagingRing` is the one caller: a slot
    /// refuses writes once a copy is enqueued, `acquire` waits for the
    /// slot's event, and dropping the ring waits for all of them.
    pub(crate) unsafe fn enqueue_htod_range(
        &self,
        src: &PinnedBuffer,
        range: std::ops::Range<usize>,
        dst: &mut DeviceBuffer,
        dst_offset: usize,
    ) -> Result<(), BridgeError> {
        let len = range.end.saturating_sub(range.start);
        if range.start > range.end || range.end > src.len() {
            return Err(BridgeError::InvalidArgument(format!(
                "copy range {range:?} is outside the {}-byte pinned buffer",
                src.len()
            )));
        }
        if dst_offset.checked_add(len).is_none_or(|end| end > dst.len()) {
            return Err(BridgeError::InvalidArgument(format!(
                "copy of {len} bytes at offset {dst_offset} does not fit the {}-byte device buffer",
                dst.len()
            )));
        }
        self.check_pinned(src)?;
        self.check_device(dst)?;
        if len == 0 {
            return Ok(());
        }
        if let (Some(s), Some(d)) = (&src.inner, &mut dst.inner) {
            // `as_slice` waits on the buffer's own cudarc event, which only
            // `copy_to_device`/`copy_to_host` record; a plain `&[u8]` source
            // is then copied without further tracking (see the doc above).
            let bytes = s.as_slice().map_err(cuda_err("waiting for copies of pinned buffer"))?;
            let mut view = d.slice_mut(dst_offset..dst_offset + len);
            self.stream.memcpy_htod(&bytes[range], &mut view).map_err(cuda_err("cuMemcpyHtoDAsync"))?;
        }
        self.ctx.check_err().map_err(cuda_err("copy_to_device"))
    }

    /// Records an event on this stream that completes once all work issued
    /// so far on it has finished.
    pub(crate) fn record_event(&self) -> Result<CopyEvent, BridgeError> {
        self.record()
    }

    /// Enqueues an asynchronous copy of all of `src` into the first
    /// `src.len()` bytes of `dst` on this `Gpu`'s stream and returns an event
    /// that completes with it. Returns before the copy has run.
    ///
    /// Reusing `src` is safe at any time: `src.as_mut_slice()` waits until
    /// every copy reading it has finished. `dst.len()` must be at least
    /// `src.len()`; both must belong to this device.
    pub fn copy_to_device(&self, src: &PinnedBuffer, dst: &mut DeviceBuffer) -> Result<CopyEvent, BridgeError> {
        self.enqueue_htod(src, dst)?;
        self.record()
    }

    /// Enqueues an asynchronous copy of all of `src` into the first
    /// `src.len()` bytes of `dst`; `dst.as_slice()` waits for it. Mainly for
    /// tests and verification.
    pub fn copy_to_host(&self, src: &DeviceBuffer, dst: &mut PinnedBuffer) -> Result<CopyEvent, BridgeError> {
        if src.len() > dst.len() {
            return Err(BridgeError::InvalidArgument(format!(
                "copy_to_host: source has {} bytes, destination only {}",
                src.len(),
                dst.len()
            )));
        }
        self.check_device(src)?;
        self.check_pinned(dst)?;
        if let (Some(s), Some(d)) = (&src.inner, &mut dst.inner) {
            self.stream.memcpy_dtoh(s, d).map_err(cuda_err("cuMemcpyDtoHAsync"))?;
        }
        self.ctx.check_err().map_err(cuda_err("copy_to_host"))?;
        self.record()
    }

    /// Copies a device buffer into a new `Vec` and waits for it (pageable
    /// memory, so not fast; for tests and verification).
    pub fn read_device(&self, src: &DeviceBuffer) -> Result<Vec<u8>, BridgeError> {
        self.check_device(src)?;
        let out = match &src.inner {
            Some(s) => self.stream.clone_dtoh(s).map_err(cuda_err("cuMemcpyDtoHAsync"))?,
            None => Vec::new(),
        };
        self.synchronize()?;
        Ok(out)
    }

    /// Makes work issued later on this `Gpu`'s stream wait for `event`
    /// (`cuStreamWaitEvent`): the consumer's side of a
    /// [`BatchHandle`](crate::BatchHandle), ordering its kernels after the batch's copies
    /// with no host synchronisation. Returns at once.
    pub fn wait_for(&self, event: &CopyEvent) -> Result<(), BridgeError> {
        self.stream.wait(&event.event).map_err(cuda_err("cuStreamWaitEvent"))
    }

    /// The cudarc stream this handle issues work on, for callers that launch
    /// their own kernels with cudarc (e.g. on a `Gpu::with_new_stream` of
    /// theirs, ordered after a batch with [`Gpu::wait_for`]).
    pub fn cuda_stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Blocks until all work issued on this `Gpu`'s stream has finished.
    pub fn synchronize(&self) -> Result<(), BridgeError> {
        self.stream.synchronize().map_err(cuda_err("cuStreamSynchronize"))?;
        self.ctx.check_err().map_err(cuda_err("stream work"))
    }

    fn record(&self) -> Result<CopyEvent, BridgeError> {
        let event = self.stream.record_event(None).map_err(cuda_err("recording event"))?;
        Ok(CopyEvent { event: Arc::new(event) })
    }

    /// The CUDA context (for module loading and host registration).
    pub(crate) fn ctx(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream this handle issues work on.
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Records an event with timing enabled (for bandwidth measurements).
    pub(crate) fn record_timing_event(&self) -> Result<CudaEvent, BridgeError> {
        self.stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err("recording timing event"))
    }
}

/// Completion marker of an enqueued copy (a CUDA event recorded right after
/// it on the stream).
///
/// Clones share the same event.
#[derive(Debug, Clone)]
#[must_use = "a copy is asynchronous; wait with `synchronize()` or poll `is_complete()`"]
pub struct CopyEvent {
    event: Arc<CudaEvent>,
}

impl CopyEvent {
    /// Blocks until the copy (and all work issued before it on the same
    /// stream) has finished. Spin-waits, for lowest latency.
    pub fn synchronize(&self) -> Result<(), BridgeError> {
        self.event.synchronize().map_err(cuda_err("cuEventSynchronize"))
    }

    /// Whether the copy has finished, without blocking.
    pub fn is_complete(&self) -> Result<bool, BridgeError> {
        self.event.try_is_complete().map_err(cuda_err("cuEventQuery"))
    }

    /// The underlying cudarc event, for a caller's own stream to wait on
    /// (`CudaStream::wait`); see also [`Gpu::wait_for`].
    pub fn cuda_event(&self) -> &CudaEvent {
        &self.event
    }
}

/// Page-locked host memory allocated with `cuMemHostAlloc`, zeroed at
/// allocation. Freed (after pending copies finish) on drop.
#[derive(Debug)]
pub struct PinnedBuffer {
    /// `None` for a zero-length buffer (the driver does not allocate 0 bytes).
    inner: Option<PinnedHostSlice<u8>>,
    write_combined: bool,
}

impl PinnedBuffer {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| s.len())
    }

    /// Whether the buffer holds zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start of the host allocation (null when empty), for
    /// `cuMemHostGetDevicePointer`.
    pub(crate) fn host_ptr(&self) -> Result<*const u8, BridgeError> {
        match &self.inner {
            Some(s) => Ok(s.as_slice().map_err(cuda_err("waiting for copies of pinned buffer"))?.as_ptr()),
            None => Ok(std::ptr::null()),
        }
    }

    /// Whether the memory is write-combined (see
    /// [`Gpu::alloc_pinned_write_combined`]).
    pub fn is_write_combined(&self) -> bool {
        self.write_combined
    }

    /// The contents. First waits for every enqueued copy that writes into
    /// this buffer (`copy_to_host`) to finish.
    pub fn as_slice(&self) -> Result<&[u8], BridgeError> {
        match &self.inner {
            Some(s) => s.as_slice().map_err(cuda_err("waiting for copies of pinned buffer")),
            None => Ok(&[]),
        }
    }

    /// The contents, writable. First waits for every enqueued copy that
    /// reads or writes this buffer to finish, so refilling a staging buffer
    /// never races the DMA engine.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], BridgeError> {
        match &mut self.inner {
            Some(s) => s.as_mut_slice().map_err(cuda_err("waiting for copies of pinned buffer")),
            None => Ok(&mut []),
        }
    }
}

/// Device memory (`cuMemAlloc`/`cuMemAllocAsync`), zeroed at allocation.
/// Freed on drop (ordered after pending work that uses it).
#[derive(Debug)]
pub struct DeviceBuffer {
    /// `None` for a zero-length buffer.
    inner: Option<CudaSlice<u8>>,
    ordinal: usize,
}

impl DeviceBuffer {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| s.len())
    }

    /// Whether the buffer holds zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ordinal of the device holding this memory.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The cudarc slice (`None` when empty), for kernel arguments.
    pub(crate) fn slice(&self) -> Option<&CudaSlice<u8>> {
        self.inner.as_ref()
    }

    /// The cudarc slice, writable (`None` when empty), for kernel arguments.
    pub(crate) fn slice_mut(&mut self) -> Option<&mut CudaSlice<u8>> {
        self.inner.as_mut()
    }
}
