//! Bridge between host staging memory and GPU memory for scone.
//!
//! The CUDA driver (`libcuda`) is loaded at *run time* through cudarc's
//! dynamic loading: this crate builds without a CUDA toolkit, and its
//! binaries start on machines without a GPU, where [`Gpu::open`] returns
//! [`BridgeError::NoDriver`] / [`BridgeError::NoDevice`] instead of
//! panicking.
//!
//! What exists:
//! - [`Gpu`]: an opened device (primary context + one non-blocking stream),
//!   [`Gpu::device_name`], [`Gpu::total_memory`].
//! - [`PinnedBuffer`]: page-locked host bytes (`cuMemHostAlloc`).
//! - [`DeviceBuffer`]: device bytes.
//! - [`Gpu::copy_to_device`] / [`Gpu::copy_to_host`]: asynchronous copies on
//!   the stream, each returning a [`CopyEvent`] to wait on or poll.
//! - [`probe_bandwidth`]: pinned HtoD bandwidth in GB/s.
//! - [`check_driver`], [`driver_version`], [`device_count`].
//! - [`StagingRing`]: `k` pinned staging buffers, each guarded by the event
//!   of its last copy (back-pressure).
//! - [`LookupPipeline`]: match, gather into pinned memory and copy to the
//!   device asynchronously, one [`BatchHandle`] per batch; or, with
//!   [`GatherMode::ZeroCopy`], upload only the slots and let a GPU kernel
//!   gather the rows from device-mapped host memory. On both paths each
//!   batch is deduplicated by default ([`PipelineConfig::dedup`]: every
//!   distinct row crosses the bus once and a scatter kernel writes it to
//!   each position) and an optional GPU hot cache
//!   ([`PipelineConfig::gpu_cache_bytes`]) keeps the hottest rows off the
//!   bus; [`LookupPipeline::submit_slots`] skips the matching. With
//!   [`PipelineConfig::read_mode`] (or [`LookupPipeline::with_reader`]) the
//!   CPU path reads rows with an `engine::read::RowReader` (e.g. `O_DIRECT`
//!   from the table file) straight into the pinned staging buffer.

mod convert;
mod driver;
mod error;
mod gpu;
mod pipeline;
mod probe;
mod scatter;
mod staging;
mod zerocopy;

pub use driver::{check_driver, device_count, driver_version};
pub use error::BridgeError;
pub use gpu::{CopyEvent, DeviceBuffer, Gpu, PinnedBuffer};
pub use pipeline::{BatchHandle, GatherMode, LookupPipeline, PipelineConfig};
pub use probe::probe_bandwidth;
pub use staging::{StagingRing, StagingSlot};
pub use zerocopy::ZeroCopySource;
