//! Pipelined lookup: match tokens, gather their rows straight into a pinned
//! staging buffer, and copy them to the GPU asynchronously, so that the CPU
//! work of batch `i + 1` overlaps the host-to-device copy of batch `i`.

use engine::read::{ReadMode, ReadStats, ReaderOptions, RowReader};
use engine::{gather, Dtype, GatherOptions, Hit, SuffixMatcher, Table, MISS_SLOT};

use crate::convert::ConvertKernel;
use crate::scatter::{Dedup, GpuCache, ScatterKernel, ScatterSources};
use crate::staging::StagingRing;
use crate::zerocopy::{ZeroCopyRows, ZeroCopySource};
use crate::{BridgeError, CopyEvent, DeviceBuffer, Gpu};

/// How rows reach the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatherMode {
    /// The CPU gathers rows into pinned staging memory, which is copied to
    /// the device (DMA). Works for any table (rows read from the mapping).
    #[default]
    CpuGather,
    /// Zero-copy: the rows are device-mapped host memory (the table's
    /// resident rows registered in place, otherwise a pinned copy made at
    /// setup) and a kernel gathers them over the bus; only the slots (4 B
    /// per position) and the mask are copied.
    ZeroCopy,
}

impl GatherMode {
    /// The mode part of [`PipelineConfig::automatic`]: zero-copy when the table's rows are
    /// resident in DRAM (`OpenOptions::resident_rows`), the CPU gather
    /// otherwise (rows paged in from a file mapping, later NVMe reads, or
    /// where dedup/compression on the CPU sends fewer bytes).
    pub fn auto(table: &Table) -> GatherMode {
        if table.rows_are_resident() {
            GatherMode::ZeroCopy
        } else {
            GatherMode::CpuGather
        }
    }
}

/// How a [`LookupPipeline`] is set up.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Most positions in one batch; sizes the staging and device buffers.
    pub max_positions: usize,
    /// Staging buffers in the ring (at least 2; 3 lets one batch be
    /// gathered while two are queued or being copied).
    pub ring_len: usize,
    /// Threads for the gather (rayon's global pool); 0 = all of them.
    pub gather_threads: usize,
    /// Write-combined staging memory (see [`Gpu::alloc_pinned_write_combined`]).
    pub write_combined: bool,
    /// CPU gather + copy, or zero-copy kernel gather (default: CPU gather;
    /// see [`GatherMode::auto`]).
    pub mode: GatherMode,
    /// GPU hot cache size in bytes (default 0: none), both modes. The first
    /// `gpu_cache_bytes / row stride` rows (at most all; tables are laid out
    /// hottest-first, so these are the most frequent f-grams) are copied to
    /// device memory once at setup; positions with those slots are served
    /// from there and their rows never cross the bus.
    pub gpu_cache_bytes: usize,
    /// Deduplicate each batch (default on): every distinct non-cached row
    /// crosses the bus once, and the `scatter_rows` kernel writes it to each
    /// position that asked for it. Off: the CPU gather stages every
    /// position's row (still skipping cached rows when there is a cache),
    /// and the zero-copy kernel reads every position's row.
    pub dedup: bool,
    /// Where the CPU-gather path takes rows from (default `None`:
    /// `engine::gather` from the table's file mapping, with
    /// `gather_threads`). `Some(mode)`: an `engine::read::RowReader` opened
    /// with `mode` and [`PipelineConfig::reader_options`] reads the rows to
    /// stage (with dedup and/or a cache only the distinct non-cached rows)
    /// straight into the pinned staging buffer. With
    /// `ReadMode::Direct { .. }` that is `O_DIRECT` reads through io_uring
    /// (or the pread pool): the table may be larger than DRAM, and rows
    /// whose size is a multiple of the file's direct-I/O alignment (512 B on
    /// most disks, from statx; 4 KiB where unknown: e.g. d = 1024 or 2048
    /// f16) land in the page-aligned pinned buffer with no bounce copy
    /// (other row sizes go through the reader's aligned bounce buffer). `Mmap` and `Resident` read from memory as
    /// the reader does. CPU gather only: zero-copy mode with a read mode
    /// is refused. See also [`LookupPipeline::with_reader`].
    pub read_mode: Option<ReadMode>,
    /// Options of the reader opened for [`PipelineConfig::read_mode`]
    /// (default: `ReaderOptions::default()`; e.g. `hot_bytes` for a DRAM hot
    /// prefix below the GPU cache, `registered_buffers`).
    pub reader_options: ReaderOptions,
    /// The dtype of the rows delivered on the device (default `None`: the
    /// table's stored dtype, no conversion). When it differs, rows cross the
    /// bus in the stored dtype and the `convert_rows` kernel converts them on
    /// the device (widening to f32 is exact; narrowing rounds to nearest
    /// even, as `engine::gather` with `GatherOptions::dtype` does on the
    /// CPU): an f16 table delivered as f32 costs the bus half of what
    /// converting on the host would.
    pub out_dtype: Option<Dtype>,
}

impl PipelineConfig {
    /// `max_positions` per batch, a ring of 3 cached pinned buffers, all
    /// gather threads, CPU gather, no GPU cache, dedup on.
    pub fn new(max_positions: usize) -> PipelineConfig {
        PipelineConfig {
            max_positions,
            ring_len: 3,
            gather_threads: 0,
            write_combined: false,
            mode: GatherMode::CpuGather,
            gpu_cache_bytes: 0,
            dedup: true,
            read_mode: None,
            reader_options: ReaderOptions::default(),
            out_dtype: None,
        }
    }

    /// The automatic choice for `table`, from the session-2 measurements on
    /// the H200 host (docs/PERFORMANCE.md, "Dedup + scatter and the GPU hot
    /// cache"):
    /// - mode: [`GatherMode::auto`] (zero-copy when the rows are resident in
    ///   DRAM, so the GPU can read them over the bus; CPU gather otherwise);
    /// - dedup: on, except zero-copy with a GPU cache. Zero-copy without a
    ///   cache gained 1.5-2.7x from dedup at every measured size; with a
    ///   cache serving ~90 % of positions from device memory, the kernel
    ///   without dedup was 1.2-1.5x faster (the host plan and the second
    ///   kernel cost more than the few bus rows they save). On the CPU path
    ///   the measurements were mixed (0.7-1.4x either way), and dedup never
    ///   sends more bytes, so it stays on;
    /// - `gpu_cache_bytes` as given (a cache only helps skewed keys, which
    ///   the pipeline cannot know in advance).
    ///
    /// Everything else as [`PipelineConfig::new`].
    pub fn automatic(table: &Table, max_positions: usize, gpu_cache_bytes: usize) -> PipelineConfig {
        let mode = GatherMode::auto(table);
        let cached = crate::scatter::cache_rows(gpu_cache_bytes, table.header().row_stride, table.rows()) > 0;
        PipelineConfig {
            mode,
            dedup: !(mode == GatherMode::ZeroCopy && cached),
            gpu_cache_bytes,
            ..PipelineConfig::new(max_positions)
        }
    }
}

/// Device side of the indexed (dedup / cache) paths: the scatter kernel,
/// the per-position indices and the distinct rows (staged by the CPU, or
/// gathered over the bus by the zero-copy kernel). One of each suffices:
/// stream order puts each batch's copies after the previous batch's kernels.
struct Indexed {
    kernel: ScatterKernel,
    idx: DeviceBuffer,
    uniq: DeviceBuffer,
}

/// Matches, gathers and uploads batches of token positions against one
/// table. Rows arrive on the device in [`PipelineConfig::out_dtype`] (the
/// table's stored dtype by default), densely as `[positions, dim]`, with a
/// `u8` hit mask `[positions]` (1 = row from the table, 0 = miss: zero row,
/// the caller substitutes its fallback embedding).
///
/// Four ways through, chosen by [`PipelineConfig`]:
/// - CPU gather, no dedup, no cache: every position's row is gathered into
///   pinned staging memory; rows and mask are copied.
/// - CPU gather with dedup and/or a GPU cache: only the distinct non-cached
///   rows are gathered and copied, with a `u32` index per position; the
///   `scatter_rows` kernel writes rows (from those or the cache) and mask.
/// - Zero-copy, no dedup: slots and mask are copied; `gather_rows` reads
///   each position's row over the bus (or from the cache).
/// - Zero-copy with dedup: the distinct non-cached slots and the indices
///   are copied; `gather_rows` reads each distinct row over the bus once
///   into device memory, then `scatter_rows` writes rows and mask.
///
/// With an output dtype other than the stored one, each path writes its
/// rows into an intermediate device buffer and `convert_rows` converts them
/// into the batch's rows buffer.
///
/// Copies and kernels run on a stream of their own.
/// [`LookupPipeline::submit`] does not synchronise with the device except
/// through the ring's back-pressure (waiting for the work that last used the
/// staging buffer it reuses).
pub struct LookupPipeline<'t> {
    table: &'t Table,
    matcher: SuffixMatcher<'t>,
    gpu: Gpu,
    ring: StagingRing,
    cfg: PipelineConfig,
    /// Bytes per row in the stored dtype (staged, copied, scattered).
    stored_row_bytes: usize,
    /// Bytes per delivered row (`dim * out dtype size`).
    out_row_bytes: usize,
    /// Bytes of a stored-dtype rows buffer (`max_positions * row_bytes`).
    mask_offset: usize,
    /// Output dtype differs from the stored one: the kernel and the
    /// stored-dtype rows buffer the paths write into before conversion (one
    /// suffices: stream order serialises batches on it).
    convert: Option<(ConvertKernel, DeviceBuffer)>,
    /// Byte offset of the second area of each staging buffer: the mask or
    /// the indices (after the rows, or after the slots in zero-copy mode).
    stage_mask_offset: usize,
    /// Zero-copy mode: the mapped rows and the device slot buffer (one
    /// suffices: stream order puts each batch's slot copy after the
    /// previous batch's kernel).
    zero_copy: Option<(ZeroCopyRows<'t>, DeviceBuffer)>,
    /// Dedup / cache paths (see the type doc).
    indexed: Option<Indexed>,
    cache: Option<GpuCache>,
    dedup: Dedup,
    hits: Vec<Hit>,
    slots: Vec<u32>,
    uniq: Vec<u32>,
    idx: Vec<u32>,
    /// The row source of the CPU paths when reading with a `RowReader`
    /// ([`PipelineConfig::read_mode`], [`LookupPipeline::with_reader`]).
    reader: Option<RowReader<'t>>,
    /// The reader's counts summed since the last [`LookupPipeline::take_read_stats`].
    read_stats: ReadStats,
    /// Whether reads still go straight into staging (see [`Detour`]).
    detour: Detour,
    /// Device buffer pairs (rows, mask) returned by [`LookupPipeline::recycle`].
    free: Vec<(DeviceBuffer, DeviceBuffer)>,
}

impl std::fmt::Debug for LookupPipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupPipeline")
            .field("table", &self.table.path())
            .field("cfg", &self.cfg)
            .field("ring", &self.ring)
            .finish()
    }
}

/// The device side of one submitted batch. Its buffers are capacity-sized
/// (`max_positions` rows); the first [`BatchHandle::rows_len`] and
/// [`BatchHandle::positions`] bytes hold this batch once
/// [`BatchHandle::event`] has completed. Work on other streams must wait
/// for the event (or use the buffers through cudarc, which tracks it).
#[derive(Debug)]
pub struct BatchHandle {
    gpu: Gpu,
    rows: DeviceBuffer,
    mask: DeviceBuffer,
    positions: usize,
    row_bytes: usize,
    stats: Staged,
    event: CopyEvent,
}

/// What staging one batch did (host-side counts).
#[derive(Debug, Clone, Copy, Default)]
struct Staged {
    hits: usize,
    cache_hits: usize,
    bus_rows: usize,
    bus_bytes: usize,
}

impl BatchHandle {
    /// Device rows `[positions, dim]`, dense, in the pipeline's output
    /// dtype ([`PipelineConfig::out_dtype`], by default the table's).
    pub fn rows(&self) -> &DeviceBuffer {
        &self.rows
    }

    /// Device hit mask `[positions]`, one byte each: 1 hit, 0 miss.
    pub fn mask(&self) -> &DeviceBuffer {
        &self.mask
    }

    /// Positions in the batch.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Bytes of valid rows at the start of [`BatchHandle::rows`].
    pub fn rows_len(&self) -> usize {
        self.positions * self.row_bytes
    }

    /// Bytes per row (`dim * output dtype size`).
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Positions with a matched f-gram.
    pub fn hit_count(&self) -> usize {
        self.stats.hits
    }

    /// Positions whose row came from the GPU hot cache
    /// ([`PipelineConfig::gpu_cache_bytes`]; 0 without one). The other hits'
    /// rows crossed the bus (once per distinct row with dedup).
    pub fn cache_hits(&self) -> usize {
        self.stats.cache_hits
    }

    /// Rows that crossed the bus for this batch: staged and copied (CPU
    /// gather; without dedup and cache every position's row, zero rows of
    /// misses included) or read by the gather kernel (zero-copy). With
    /// dedup, the distinct non-cached hit slots.
    pub fn bus_rows(&self) -> usize {
        self.stats.bus_rows
    }

    /// Bytes that crossed the bus host-to-device for this batch: rows plus
    /// the per-position data (mask, slots or indices).
    pub fn bus_bytes(&self) -> usize {
        self.stats.bus_bytes
    }

    /// Completes when the batch's copies and kernels have finished.
    pub fn event(&self) -> &CopyEvent {
        &self.event
    }

    /// Orders work issued later on `consumer`'s stream after this batch
    /// (`cuStreamWaitEvent` on the batch's event): the consumer's kernels
    /// may read [`BatchHandle::rows`] and [`BatchHandle::mask`] with no host
    /// synchronisation. `consumer` must be on the same device.
    pub fn order_on(&self, consumer: &Gpu) -> Result<(), BridgeError> {
        if consumer.ordinal() != self.gpu.ordinal() {
            return Err(BridgeError::InvalidArgument(format!(
                "batch is on device {}, the consumer stream on device {}",
                self.gpu.ordinal(),
                consumer.ordinal()
            )));
        }
        consumer.wait_for(&self.event)
    }

    /// Blocks until the batch is on the device.
    pub fn wait(&self) -> Result<(), BridgeError> {
        self.event.synchronize()
    }

    /// Whether the batch is on the device, without blocking.
    pub fn is_complete(&self) -> Result<bool, BridgeError> {
        self.event.is_complete()
    }

    /// Waits, then copies the valid rows and mask back to the host
    /// (synchronously, through pageable memory: for tests).
    pub fn copy_back_for_tests(&self) -> Result<(Vec<u8>, Vec<u8>), BridgeError> {
        self.wait()?;
        let mut rows = self.gpu.read_device(&self.rows)?;
        rows.truncate(self.rows_len());
        let mut mask = self.gpu.read_device(&self.mask)?;
        mask.truncate(self.positions);
        Ok((rows, mask))
    }

    /// The device buffers (rows, mask), e.g. to keep them after the handle.
    pub fn into_buffers(self) -> (DeviceBuffer, DeviceBuffer) {
        (self.rows, self.mask)
    }
}

impl<'t> LookupPipeline<'t> {
    /// Sets up a pipeline on `gpu`'s device, with a new stream for its copies
    /// and kernels, a ring of `cfg.ring_len` pinned staging buffers, and the
    /// GPU cache if `cfg.gpu_cache_bytes` holds at least one row.
    ///
    /// With [`PipelineConfig::read_mode`] set, opens the `RowReader` here
    /// (an open failure, e.g. `ReadMode::Direct` with `BackendKind::Uring`
    /// where io_uring is unavailable, is [`BridgeError::Read`]).
    pub fn new(table: &'t Table, gpu: &Gpu, cfg: PipelineConfig) -> Result<LookupPipeline<'t>, BridgeError> {
        let reader = match cfg.read_mode {
            Some(mode) => {
                Self::check_read_mode(&cfg)?;
                Some(RowReader::open_with(table, mode, cfg.reader_options).map_err(read_err)?)
            }
            None => None,
        };
        Self::build(table, gpu, cfg, reader)
    }

    /// [`LookupPipeline::new`] with a `RowReader` of the caller's as the
    /// CPU path's row source (any mode, options or backend, e.g.
    /// `RowReader::with_backend`); `cfg.read_mode` is set to the reader's
    /// mode. `reader` must read `table` (same file; its row size is
    /// checked). Zero-copy mode is refused.
    pub fn with_reader(
        table: &'t Table,
        gpu: &Gpu,
        mut cfg: PipelineConfig,
        reader: RowReader<'t>,
    ) -> Result<LookupPipeline<'t>, BridgeError> {
        cfg.read_mode = Some(reader.mode());
        Self::check_read_mode(&cfg)?;
        let row_bytes = table.dim() * table.dtype().size();
        if reader.row_bytes() != row_bytes {
            return Err(BridgeError::InvalidArgument(format!(
                "reader rows are {} bytes, the table's {row_bytes}",
                reader.row_bytes()
            )));
        }
        Self::build(table, gpu, cfg, Some(reader))
    }

    fn check_read_mode(cfg: &PipelineConfig) -> Result<(), BridgeError> {
        if cfg.read_mode.is_some() && cfg.mode != GatherMode::CpuGather {
            return Err(BridgeError::InvalidArgument(
                "a read mode (RowReader row source) needs GatherMode::CpuGather".into(),
            ));
        }
        Ok(())
    }

    fn build(
        table: &'t Table,
        gpu: &Gpu,
        cfg: PipelineConfig,
        reader: Option<RowReader<'t>>,
    ) -> Result<LookupPipeline<'t>, BridgeError> {
        if cfg.ring_len < 2 {
            return Err(BridgeError::InvalidArgument(format!(
                "ring_len must be at least 2 to overlap gathering and copying (got {})",
                cfg.ring_len
            )));
        }
        let max = cfg.max_positions;
        let row_bytes = table.dim() * table.dtype().size();
        let too_many = || BridgeError::InvalidArgument(format!("{max} positions are too many"));
        let mask_offset = row_bytes
            .checked_mul(max)
            .filter(|b| max.checked_mul(8).and_then(|m| b.checked_add(m)).is_some())
            .ok_or_else(too_many)?;
        if u32::try_from(row_bytes).is_err() || u32::try_from(max).is_err() {
            return Err(too_many());
        }
        let gpu = gpu.with_new_stream()?;
        let out_dtype = cfg.out_dtype.unwrap_or(table.dtype());
        let out_row_bytes = table.dim() * out_dtype.size();
        out_row_bytes.checked_mul(max).ok_or_else(too_many)?;
        let convert = if out_dtype != table.dtype() {
            Some((ConvertKernel::load(&gpu, table.dtype(), out_dtype)?, gpu.alloc_device(mask_offset)?))
        } else {
            None
        };
        let cache = GpuCache::load(table, &gpu, cfg.gpu_cache_bytes, max)?;
        let load_indexed = |gpu: &Gpu| -> Result<Indexed, BridgeError> {
            Ok(Indexed {
                kernel: ScatterKernel::load(gpu)?,
                idx: gpu.alloc_device(max * 4)?,
                uniq: gpu.alloc_device(mask_offset)?,
            })
        };
        // Staging layouts: [rows | mask] (direct), [rows | idx] (indexed),
        // [slots | mask] (zero-copy), [distinct slots | idx] (zero-copy dedup).
        // Rows start at offset 0 of the (page-aligned) pinned buffer, densely
        // at `row_bytes`: what `RowReader::read_rows` writes, what the
        // scatter kernel reads (`ustride = row_bytes`), and aligned for
        // direct reads into it.
        let (stage_mask_offset, stage_len, zero_copy, indexed) = match cfg.mode {
            GatherMode::CpuGather => {
                let indexed = if cfg.dedup || cache.is_some() { Some(load_indexed(&gpu)?) } else { None };
                (mask_offset, mask_offset + 4 * max, None, indexed)
            }
            GatherMode::ZeroCopy => {
                let rows = ZeroCopyRows::new(table, &gpu)?;
                let indexed = if cfg.dedup { Some(load_indexed(&gpu)?) } else { None };
                (4 * max, 8 * max, Some((rows, gpu.alloc_device(4 * max)?)), indexed)
            }
        };
        let ring = StagingRing::new(&gpu, cfg.ring_len, stage_len, cfg.write_combined)?;
        let dedup = Dedup::new(if indexed.is_some() { max } else { 0 });
        Ok(LookupPipeline {
            table,
            matcher: SuffixMatcher::new(table),
            gpu,
            ring,
            cfg,
            stored_row_bytes: row_bytes,
            out_row_bytes,
            mask_offset,
            convert,
            stage_mask_offset,
            zero_copy,
            indexed,
            cache,
            dedup,
            hits: Vec::with_capacity(max),
            slots: Vec::with_capacity(max),
            uniq: Vec::with_capacity(max),
            idx: Vec::with_capacity(max),
            reader,
            read_stats: ReadStats::default(),
            detour: Detour::default(),
            free: Vec::new(),
        })
    }

    /// The `RowReader` the CPU path reads rows with
    /// ([`PipelineConfig::read_mode`]); `None` when it gathers from the
    /// mapping. `reader().map(RowReader::describe)` names mode and backend.
    pub fn reader(&self) -> Option<&RowReader<'t>> {
        self.reader.as_ref()
    }

    /// Whether the reader still reads straight into the pinned staging
    /// buffers: true unless the kernel refused a direct read into them
    /// (`EFAULT`), after which rows are read into an owned page-aligned
    /// buffer and copied into staging (one line on stderr says so).
    pub fn reads_into_pinned(&self) -> bool {
        self.detour.into_staging
    }

    /// The reader's `ReadStats` summed over the batches since the last call
    /// (rows and bytes read from storage, reads submitted, `bounce_bytes`:
    /// 0 when every row was read straight into pinned memory), and resets
    /// them. All zero without a reader.
    pub fn take_read_stats(&mut self) -> ReadStats {
        std::mem::take(&mut self.read_stats)
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The pipeline's `Gpu` handle (its own copy stream).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The gather mode in use.
    pub fn mode(&self) -> GatherMode {
        self.cfg.mode
    }

    /// In zero-copy mode, whether the rows were registered in place or
    /// copied into pinned memory at setup.
    pub fn zero_copy_source(&self) -> Option<ZeroCopySource> {
        self.zero_copy.as_ref().map(|(z, _)| z.source())
    }

    /// Rows held in the GPU hot cache (slots `0..gpu_cached_rows()`); 0
    /// without a cache.
    pub fn gpu_cached_rows(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.rows() as usize)
    }

    /// Bytes per delivered row (`dim * output dtype size`).
    pub fn row_bytes(&self) -> usize {
        self.out_row_bytes
    }

    /// The dtype of the delivered rows ([`PipelineConfig::out_dtype`] or the
    /// table's).
    pub fn out_dtype(&self) -> Dtype {
        self.cfg.out_dtype.unwrap_or(self.table.dtype())
    }

    /// Matches every position of `tokens` and uploads its row; see
    /// [`LookupPipeline::submit_with_context`].
    pub fn submit(&mut self, tokens: &[u32]) -> Result<BatchHandle, BridgeError> {
        self.submit_with_context(tokens, 0)
    }

    /// Matches positions `start..tokens.len()` (earlier tokens are context
    /// only), stages their rows (see the type doc for the paths) and
    /// enqueues the copies and kernels; returns without waiting for them.
    /// Waits only if the staging buffer it reuses is still in use (more
    /// than `ring_len - 1` batches in flight).
    ///
    /// Token ids the table does not know are misses. On an error (too many
    /// positions, a gather error, a CUDA error) nothing of this batch is
    /// returned, and the pipeline can take the next batch (unless the CUDA
    /// context itself is broken).
    pub fn submit_with_context(&mut self, tokens: &[u32], start: usize) -> Result<BatchHandle, BridgeError> {
        if start > tokens.len() {
            return Err(BridgeError::InvalidArgument(format!(
                "context start {start} is past the {} tokens",
                tokens.len()
            )));
        }
        self.check_positions(tokens.len() - start)?;
        self.hits.clear();
        self.matcher.match_into(tokens, start, &mut self.hits);
        self.slots.clear();
        self.slots.extend(self.hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)));
        self.submit_staged_slots()
    }

    /// Uploads the rows of `slots` (table rows, or [`MISS_SLOT`] for a miss:
    /// zero row, mask 0) without matching: for callers that matched
    /// elsewhere, and for benchmarks of the transfer alone. Same paths,
    /// results and errors as [`LookupPipeline::submit_with_context`]; a slot
    /// outside the table is an [`BridgeError::InvalidArgument`].
    pub fn submit_slots(&mut self, slots: &[u32]) -> Result<BatchHandle, BridgeError> {
        self.check_positions(slots.len())?;
        let rows = self.table.rows();
        if let Some(bad) = slots.iter().find(|&&s| s != MISS_SLOT && u64::from(s) >= rows) {
            return Err(BridgeError::InvalidArgument(format!("slot {bad} out of range (table has {rows} rows)")));
        }
        self.slots.clear();
        self.slots.extend_from_slice(slots);
        self.submit_staged_slots()
    }

    fn check_positions(&self, positions: usize) -> Result<(), BridgeError> {
        if positions > self.cfg.max_positions {
            return Err(BridgeError::InvalidArgument(format!(
                "batch of {positions} positions exceeds the pipeline's max_positions {}",
                self.cfg.max_positions
            )));
        }
        Ok(())
    }

    /// Stages `self.slots` along the configured path.
    fn submit_staged_slots(&mut self) -> Result<BatchHandle, BridgeError> {
        let positions = self.slots.len();
        let (mut rows, mut mask) = match self.free.pop() {
            Some(pair) => pair,
            None => (self.gpu.alloc_device(self.out_rows_len())?, self.gpu.alloc_device(self.cfg.max_positions)?),
        };
        // With a conversion, the paths write stored-dtype rows into the
        // intermediate buffer; `convert_rows` then fills `rows`.
        let mut convert = self.convert.take();
        let staged = {
            let target = match convert.as_mut() {
                Some((_, raw)) => raw,
                None => &mut rows,
            };
            match (self.zero_copy.is_some(), self.indexed.is_some()) {
                (false, false) => self.stage_direct(target, &mut mask),
                (false, true) => self.stage_indexed(target, &mut mask),
                (true, false) => self.stage_zero_copy(target, &mut mask),
                (true, true) => self.stage_zero_copy_dedup(target, &mut mask),
            }
        };
        let staged = match (staged, convert.as_ref()) {
            (Ok((stats, _)), Some((kernel, raw))) => kernel
                .launch(&self.gpu, raw, &mut rows, positions * self.table.dim())
                .and_then(|()| self.gpu.record_event())
                .map(|event| (stats, event)),
            (staged, _) => staged,
        };
        self.convert = convert;
        match staged {
            Ok((stats, event)) => Ok(BatchHandle {
                gpu: self.gpu.clone(),
                rows,
                mask,
                positions,
                row_bytes: self.out_row_bytes,
                stats,
                event,
            }),
            Err(e) => {
                self.free.push((rows, mask));
                Err(e)
            }
        }
    }

    /// Bytes of a delivered rows buffer (`max_positions` rows).
    fn out_rows_len(&self) -> usize {
        self.cfg.max_positions * self.out_row_bytes
    }

    /// CPU gather of every position's row into staging; rows and mask copied.
    fn stage_direct(
        &mut self,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(Staged, CopyEvent), BridgeError> {
        let positions = self.slots.len();
        let rows_len = positions * self.stored_row_bytes;
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (row_area, mask_area) = bytes.split_at_mut(self.mask_offset);
        let mut src = RowSource {
            table: self.table,
            reader: self.reader.as_ref(),
            threads: self.cfg.gather_threads,
            detour: &mut self.detour,
        };
        let (hits, read) =
            gather_direct(&mut src, &self.slots, &mut row_area[..rows_len], &mut mask_area[..positions])?;
        if let Some(st) = read {
            self.read_stats.add(&st);
        }
        slot.copy_to_device(0..rows_len, rows, 0)?;
        slot.copy_to_device(self.mask_offset..self.mask_offset + positions, mask, 0)?;
        // Every position's row is copied (zero rows for misses too).
        let stats = Staged { hits, cache_hits: 0, bus_rows: positions, bus_bytes: rows_len + positions };
        Ok((stats, slot.finish()?))
    }

    /// CPU gather of the distinct non-cached rows into staging; those rows
    /// and the indices copied; `scatter_rows` writes rows and mask.
    fn stage_indexed(
        &mut self,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(Staged, CopyEvent), BridgeError> {
        let positions = self.slots.len();
        let cached = self.cache.as_ref().map_or(0, GpuCache::rows);
        let hits = self.dedup.plan(&self.slots, cached, self.cfg.dedup, &mut self.uniq, &mut self.idx);
        let n_uniq = self.uniq.len();
        let uniq_len = n_uniq * self.stored_row_bytes;
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (row_area, idx_area) = bytes.split_at_mut(self.mask_offset);
        let mut src = RowSource {
            table: self.table,
            reader: self.reader.as_ref(),
            threads: self.cfg.gather_threads,
            detour: &mut self.detour,
        };
        if let Some(st) = src.fill(&self.uniq, &mut row_area[..uniq_len])? {
            self.read_stats.add(&st);
        }
        write_u32s(&mut idx_area[..4 * positions], &self.idx);
        let ix = self.indexed.as_mut().expect("indexed path");
        slot.copy_to_device(0..uniq_len, &mut ix.uniq, 0)?;
        slot.copy_to_device(self.mask_offset..self.mask_offset + 4 * positions, &mut ix.idx, 0)?;
        let src = ScatterSources {
            uniq: &ix.uniq,
            ustride: self.stored_row_bytes as u64,
            n_uniq,
            cache: self.cache.as_ref(),
            row_bytes: self.stored_row_bytes as u32,
        };
        ix.kernel.launch(&self.gpu, &src, &self.idx, &ix.idx, rows, mask)?;
        let stats = Staged {
            hits,
            cache_hits: hits - self.idx.iter().filter(|&&k| k != MISS_SLOT && k >= cached).count(),
            bus_rows: n_uniq,
            bus_bytes: uniq_len + 4 * positions,
        };
        Ok((stats, slot.finish()?))
    }

    /// Zero-copy batch: write the slots and mask into the staging buffer,
    /// copy both, launch the gather kernel into `rows`.
    fn stage_zero_copy(
        &mut self,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(Staged, CopyEvent), BridgeError> {
        let positions = self.slots.len();
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (slot_area, mask_area) = bytes.split_at_mut(self.stage_mask_offset);
        write_u32s(&mut slot_area[..4 * positions], &self.slots);
        let mut hits = 0;
        for (m, &s) in mask_area.iter_mut().zip(&self.slots) {
            *m = u8::from(s != MISS_SLOT);
            hits += usize::from(s != MISS_SLOT);
        }
        let (zc, dev_slots) = self.zero_copy.as_mut().expect("zero-copy mode");
        slot.copy_to_device(0..positions * 4, dev_slots, 0)?;
        slot.copy_to_device(self.stage_mask_offset..self.stage_mask_offset + positions, mask, 0)?;
        zc.launch(&self.gpu, &self.slots, dev_slots, rows, self.cache.as_ref())?;
        let cached = self.cache.as_ref().map_or(0, GpuCache::rows);
        let cache_hits = self.slots.iter().filter(|&&s| s < cached).count();
        let bus_rows = hits - cache_hits;
        let stats = Staged { hits, cache_hits, bus_rows, bus_bytes: bus_rows * self.stored_row_bytes + 5 * positions };
        Ok((stats, slot.finish()?))
    }

    /// Zero-copy with dedup: copy the distinct non-cached slots and the
    /// indices; `gather_rows` reads each of those rows over the bus once
    /// into device memory, then `scatter_rows` writes rows and mask.
    fn stage_zero_copy_dedup(
        &mut self,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(Staged, CopyEvent), BridgeError> {
        let positions = self.slots.len();
        let cached = self.cache.as_ref().map_or(0, GpuCache::rows);
        let hits = self.dedup.plan(&self.slots, cached, true, &mut self.uniq, &mut self.idx);
        let n_uniq = self.uniq.len();
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (slot_area, idx_area) = bytes.split_at_mut(self.stage_mask_offset);
        write_u32s(&mut slot_area[..4 * n_uniq], &self.uniq);
        write_u32s(&mut idx_area[..4 * positions], &self.idx);
        let (zc, dev_slots) = self.zero_copy.as_mut().expect("zero-copy mode");
        let ix = self.indexed.as_mut().expect("indexed path");
        slot.copy_to_device(0..4 * n_uniq, dev_slots, 0)?;
        slot.copy_to_device(self.stage_mask_offset..self.stage_mask_offset + 4 * positions, &mut ix.idx, 0)?;
        // Distinct rows over the bus into `ix.uniq` (no cache: cached slots
        // are not in `uniq`), then the scatter from there and the cache.
        zc.launch(&self.gpu, &self.uniq, dev_slots, &mut ix.uniq, None)?;
        let src = ScatterSources {
            uniq: &ix.uniq,
            ustride: self.stored_row_bytes as u64,
            n_uniq,
            cache: self.cache.as_ref(),
            row_bytes: self.stored_row_bytes as u32,
        };
        ix.kernel.launch(&self.gpu, &src, &self.idx, &ix.idx, rows, mask)?;
        let stats = Staged {
            hits,
            cache_hits: hits - self.idx.iter().filter(|&&k| k != MISS_SLOT && k >= cached).count(),
            bus_rows: n_uniq,
            bus_bytes: n_uniq * (self.stored_row_bytes + 4) + 4 * positions,
        };
        Ok((stats, slot.finish()?))
    }

    /// Returns a finished batch's device buffers for reuse by later batches
    /// (saves a device allocation per batch).
    pub fn recycle(&mut self, handle: BatchHandle) {
        if handle.rows.len() == self.out_rows_len() && handle.mask.len() == self.cfg.max_positions {
            self.free.push(handle.into_buffers());
        }
    }

    /// Blocks until every submitted batch is on the device.
    pub fn wait_all(&self) -> Result<(), BridgeError> {
        self.ring.wait_all()
    }
}

/// `values` as little-endian bytes into `out` (`4 * values.len()` bytes).
fn write_u32s(out: &mut [u8], values: &[u32]) {
    for (dst, v) in out.chunks_exact_mut(4).zip(values) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// A reader's error as a pipeline error (the message names the table file
/// and, for a failed read, the file offset).
fn read_err(e: engine::ReadError) -> BridgeError {
    BridgeError::Read(e.to_string())
}

/// Where the CPU paths take rows from: `engine::gather` from the table's
/// mapping (`reader: None`, `threads` gather threads), or a `RowReader`.
struct RowSource<'a, 't> {
    table: &'a Table,
    reader: Option<&'a RowReader<'t>>,
    threads: usize,
    detour: &'a mut Detour,
}

/// `EFAULT` on Linux: what an `O_DIRECT` read returns when the kernel cannot
/// pin the destination pages.
const EFAULT: i32 = 14;

/// Whether a reader may read straight into the staging buffer. Direct reads
/// of 4 KiB rows go into the pinned (`cuMemHostAlloc`) buffer itself; should
/// the kernel refuse to pin those pages for the device (`EFAULT`), the
/// pipeline logs one line and from then on reads into an owned page-aligned
/// buffer and copies the rows into staging (one memcpy per staged byte).
#[derive(Debug)]
struct Detour {
    into_staging: bool,
    buf: Option<engine::read::AlignedBuf>,
}

impl Default for Detour {
    fn default() -> Detour {
        Detour { into_staging: true, buf: None }
    }
}

impl Detour {
    /// Reads `slots` with `r` into the owned aligned buffer, then copies them to `out`.
    fn read_via_buf(&mut self, r: &RowReader<'_>, slots: &[u32], out: &mut [u8]) -> Result<ReadStats, BridgeError> {
        if self.buf.as_ref().is_none_or(|b| b.len() < out.len()) {
            self.buf = None;
            let b = engine::read::AlignedBuf::new(out.len())
                .map_err(|e| BridgeError::Read(format!("aligned buffer of {} bytes: {e}", out.len())))?;
            self.buf = Some(b);
        }
        let buf = &mut self.buf.as_mut().expect("allocated above")[..out.len()];
        let st = r.read_rows(slots, buf).map_err(read_err)?;
        out.copy_from_slice(buf);
        Ok(st)
    }
}

impl RowSource<'_, '_> {
    /// Writes row `slots[i]` (stored dtype; `MISS_SLOT`: zeros) densely at
    /// `out[i * row_bytes ..]` (`out` exactly `slots.len() * row_bytes`).
    /// Returns the reader's stats (`None` for the gather).
    fn fill(&mut self, slots: &[u32], out: &mut [u8]) -> Result<Option<ReadStats>, BridgeError> {
        match self.reader {
            Some(r) if self.detour.into_staging => match r.read_rows(slots, out) {
                Ok(st) => Ok(Some(st)),
                Err(engine::ReadError::Io { source, path, offset }) if source.raw_os_error() == Some(EFAULT) => {
                    self.detour.into_staging = false;
                    eprintln!(
                        "gpu-bridge: direct read into pinned staging memory refused ({}: offset {offset}: {source}); \
                         reading into an aligned buffer and copying from now on",
                        path.display()
                    );
                    self.detour.read_via_buf(r, slots, out).map(Some)
                }
                Err(e) => Err(read_err(e)),
            },
            Some(r) => self.detour.read_via_buf(r, slots, out).map(Some),
            None => {
                gather(self.table, slots, GatherOptions { dtype: self.table.dtype(), max_threads: self.threads }, out)
                    .map_err(|e| BridgeError::Gather(e.to_string()))?;
                Ok(None)
            }
        }
    }
}

/// The host half of the direct path: writes the rows of `slots` in the
/// table's dtype into `rows_out` (`slots.len() * row bytes`) from `src` and
/// writes `mask_out` (1 hit, 0 miss). Returns the number of hits and the
/// reader's stats.
fn gather_direct(
    src: &mut RowSource<'_, '_>,
    slots: &[u32],
    rows_out: &mut [u8],
    mask_out: &mut [u8],
) -> Result<(usize, Option<ReadStats>), BridgeError> {
    if mask_out.len() != slots.len() {
        return Err(BridgeError::InvalidArgument(format!(
            "mask buffer holds {} bytes for {} positions",
            mask_out.len(),
            slots.len()
        )));
    }
    let read = src.fill(slots, rows_out)?;
    let mut n = 0;
    for (m, &s) in mask_out.iter_mut().zip(slots) {
        *m = u8::from(s != MISS_SLOT);
        n += usize::from(s != MISS_SLOT);
    }
    Ok((n, read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scatter::scatter_reference;
    use engine::{BuildConfig, Dtype, TableBuilder};

    fn small_table(dir: &std::path::Path, dim: usize, dtype: Dtype) -> Table {
        let path = dir.join(format!("t{dim}.scone"));
        let mut b = TableBuilder::create(&path, BuildConfig::new(dim as u32, dtype, 3, 10)).unwrap();
        let ngrams: [&[u32]; 6] = [&[1, 2], &[2, 3], &[1, 2, 3], &[4, 4], &[3, 1], &[5, 6, 7]];
        for (i, g) in ngrams.iter().enumerate() {
            let row: Vec<f32> = (0..dim).map(|c| (i * 10 + c) as f32).collect();
            b.push(g, &row, None).unwrap();
        }
        b.finish().unwrap();
        Table::open(&path).unwrap()
    }

    fn slots_of(table: &Table, tokens: &[u32], start: usize) -> Vec<u32> {
        let hits = SuffixMatcher::new(table).match_tokens(&tokens[start..]);
        let mut all = Vec::new();
        SuffixMatcher::new(table).match_into(tokens, start, &mut all);
        assert_eq!(all.len(), hits.len());
        all.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect()
    }

    #[test]
    fn gather_direct_matches_gather_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 5;
        let table = small_table(dir.path(), dim, Dtype::F16);
        // 99 and u32::MAX are not in the vocabulary: misses, not errors.
        let tokens = [1, 2, 3, 4, 4, 4, 99, u32::MAX, 1, 2];
        let slots = slots_of(&table, &tokens, 0);
        let row_bytes = dim * 2;
        let mut rows = vec![0xAAu8; tokens.len() * row_bytes];
        let mut mask = vec![7u8; tokens.len()];
        let mut src = RowSource { table: &table, reader: None, threads: 0, detour: &mut Detour::default() };
        let (n, read) = gather_direct(&mut src, &slots, &mut rows, &mut mask).unwrap();
        assert!(read.is_none());
        let mut want = vec![0u8; rows.len()];
        gather(&table, &slots, GatherOptions { dtype: Dtype::F16, max_threads: 1 }, &mut want).unwrap();
        assert_eq!(rows, want);
        assert_eq!(mask, [0, 1, 1, 0, 1, 1, 0, 0, 0, 1]);
        assert_eq!(n, 5);

        // Wrong buffer sizes are errors, not panics.
        let mut src = RowSource { table: &table, reader: None, threads: 1, detour: &mut Detour::default() };
        let e = gather_direct(&mut src, &slots, &mut rows[..3], &mut mask);
        assert!(matches!(e, Err(BridgeError::Gather(_))), "{e:?}");
        let e = gather_direct(&mut src, &slots, &mut rows, &mut mask[..2]);
        assert!(matches!(e, Err(BridgeError::InvalidArgument(_))), "{e:?}");
        // The same through a reader: a wrong size is a read error.
        let reader = RowReader::open(&table, ReadMode::Mmap).unwrap();
        let mut src = RowSource { table: &table, reader: Some(&reader), threads: 1, detour: &mut Detour::default() };
        let (n, read) = gather_direct(&mut src, &slots, &mut rows, &mut mask).unwrap();
        assert_eq!((rows == want, n, read.map(|r| r.rows_requested)), (true, 5, Some(slots.len())));
        let e = gather_direct(&mut src, &slots, &mut rows[..3], &mut mask);
        assert!(matches!(e, Err(BridgeError::Read(_))), "{e:?}");
    }

    /// `rows` rows of bigrams (r / 64, r % 64), row r's values from r.
    fn numbered_table(dir: &std::path::Path, dim: usize, dtype: Dtype, rows: usize) -> Table {
        let path = dir.join(format!("n{dim}{dtype:?}.scone"));
        let mut b = TableBuilder::create(&path, BuildConfig::new(dim as u32, dtype, 2, 64)).unwrap();
        for r in 0..rows {
            let row: Vec<f32> = (0..dim).map(|c| ((r * 31 + c * 7) % 251) as f32 - 125.0).collect();
            b.push(&[(r / 64) as u32, (r % 64) as u32], &row, None).unwrap();
        }
        b.finish().unwrap();
        Table::open(&path).unwrap()
    }

    /// The host half of the indexed path with a `RowReader` as the row
    /// source (every mode): the distinct non-cached rows read into a
    /// page-aligned buffer (as the pinned staging buffer is) and scattered
    /// by the CPU reference equal `engine::gather`, for 4 KiB rows (read
    /// straight into the buffer: no bounce bytes) and odd rows (bounced),
    /// and through an unaligned view (bounced); reader errors surface as
    /// `BridgeError::Read` naming the file and offset.
    #[test]
    fn reader_source_plan_and_reference_scatter_equal_gather() {
        use engine::read::{AlignedBuf, BackendKind, FaultyBackend, PreadBackend};
        let dir = tempfile::tempdir().unwrap();
        let modes = [
            ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 4 },
            ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 32 },
            ReadMode::Mmap,
            ReadMode::Resident,
        ];
        for (dim, dtype) in [(2048usize, Dtype::F16), (100, Dtype::F32), (1024, Dtype::F32), (3, Dtype::F16)] {
            let n_rows = 300;
            let table = numbered_table(dir.path(), dim, dtype, n_rows);
            let row_bytes = dim * dtype.size();
            let stride = table.header().row_stride as usize;
            let straight = row_bytes == stride && row_bytes % 4096 == 0;
            // Duplicates, misses, adjacent runs, the last row.
            let mut slots: Vec<u32> = (0..700u32)
                .map(|i| match i % 9 {
                    0 => MISS_SLOT,
                    1 | 2 => i % 5,
                    3 => 100 + i % 40,
                    _ => (i * 7919) % n_rows as u32,
                })
                .collect();
            slots[1] = n_rows as u32 - 1;
            let mut want = vec![0u8; slots.len() * row_bytes];
            gather(&table, &slots, GatherOptions { dtype, max_threads: 1 }, &mut want).unwrap();
            let want_mask: Vec<u8> = slots.iter().map(|&s| u8::from(s != MISS_SLOT)).collect();
            let mut dedup = Dedup::new(slots.len());
            for mode in modes {
                let reader = RowReader::open(&table, mode).unwrap();
                let mut src =
                    RowSource { table: &table, reader: Some(&reader), threads: 1, detour: &mut Detour::default() };
                for cached in [0u32, 37] {
                    let mut cache = vec![0u8; cached as usize * stride];
                    for s in 0..cached {
                        let r = table.row_bytes(s).unwrap();
                        cache[s as usize * stride..][..r.len()].copy_from_slice(r);
                    }
                    for on in [false, true] {
                        let what = format!("d={dim} {dtype:?} {mode:?} cached={cached} dedup={on}");
                        let (mut uniq, mut idx) = (Vec::new(), Vec::new());
                        dedup.plan(&slots, cached, on, &mut uniq, &mut idx);
                        let len = uniq.len() * row_bytes;
                        let mut staged = AlignedBuf::new(len + 64).unwrap();
                        let st = src.fill(&uniq, &mut staged[..len]).unwrap().expect("reader stats");
                        let (rows, mask) = scatter_reference(&cache, stride, cached, &staged[..len], row_bytes, &idx);
                        assert_eq!(mask, want_mask, "{what}");
                        assert!(rows == want, "{what}");
                        assert_eq!(st.rows_requested, uniq.len(), "{what}");
                        if let ReadMode::Direct { .. } = mode {
                            if on {
                                assert_eq!(st.rows_read, uniq.len(), "{what}");
                            }
                            assert_eq!(st.bounce_bytes == 0, straight, "{what}: {st:?}");
                            // An unaligned view goes through the bounce buffer.
                            let st = src.fill(&uniq, &mut staged[64..64 + len]).unwrap().unwrap();
                            assert!(st.bounce_bytes > 0 || uniq.is_empty(), "{what}");
                            let (rows, _) =
                                scatter_reference(&cache, stride, cached, &staged[64..64 + len], row_bytes, &idx);
                            assert!(rows == want, "unaligned: {what}");
                        }
                    }
                }
            }
            // A failing device: the error names the file and the offset.
            let (file, _) = engine::read::open_file(table.path(), false).unwrap();
            let faulty = FaultyBackend::new(Box::new(PreadBackend::new(file, 2).unwrap())).fail_after(0);
            let reader = RowReader::with_backend(&table, Box::new(faulty), engine::read::ReaderOptions::default());
            let mut src =
                RowSource { table: &table, reader: Some(&reader), threads: 1, detour: &mut Detour::default() };
            let mut out = AlignedBuf::new(3 * row_bytes).unwrap();
            match src.fill(&[5, MISS_SLOT, 7], &mut out) {
                Err(BridgeError::Read(m)) => {
                    assert!(m.contains(&table.path().display().to_string()) && m.contains("offset"), "{m}")
                }
                other => panic!("d={dim}: expected a read error, got {other:?}"),
            }
        }
    }

    /// The host half of the indexed path (plan, gather of the distinct
    /// non-cached rows) followed by the CPU reference of `scatter_rows`
    /// equals `engine::gather` of every position, with and without dedup
    /// and cache, for an odd row size.
    #[test]
    fn indexed_plan_and_reference_scatter_equal_gather() {
        let dir = tempfile::tempdir().unwrap();
        for (dim, dtype) in [(5usize, Dtype::F16), (3, Dtype::F32), (40, Dtype::BF16)] {
            let table = small_table(dir.path(), dim, dtype);
            let row_bytes = dim * dtype.size();
            let stride = table.header().row_stride as usize;
            let tokens = [1, 2, 3, 1, 2, 3, 4, 4, 4, 4, 99, 3, 1, 2, 5, 6, 7, 1, 2, 3, 4, 4];
            let slots = slots_of(&table, &tokens, 0);
            let mut want = vec![0u8; slots.len() * row_bytes];
            gather(&table, &slots, GatherOptions { dtype, max_threads: 1 }, &mut want).unwrap();
            let want_mask: Vec<u8> = slots.iter().map(|&s| u8::from(s != MISS_SLOT)).collect();
            let mut dedup = Dedup::new(tokens.len());
            for cached in [0u32, 2, table.rows() as u32] {
                let mut cache = vec![0u8; cached as usize * stride];
                for s in 0..cached {
                    let r = table.row_bytes(s).unwrap();
                    cache[s as usize * stride..][..r.len()].copy_from_slice(r);
                }
                for on in [false, true] {
                    let (mut uniq, mut idx) = (Vec::new(), Vec::new());
                    let hits = dedup.plan(&slots, cached, on, &mut uniq, &mut idx);
                    assert_eq!(hits, want_mask.iter().filter(|&&m| m == 1).count());
                    let mut staged = vec![0u8; uniq.len() * row_bytes];
                    gather(&table, &uniq, GatherOptions { dtype, max_threads: 1 }, &mut staged).unwrap();
                    let (rows, mask) = scatter_reference(&cache, stride, cached, &staged, row_bytes, &idx);
                    assert_eq!(mask, want_mask, "d={dim} cached={cached} dedup={on}");
                    assert!(rows == want, "d={dim} cached={cached} dedup={on}");
                    if on {
                        let distinct: std::collections::HashSet<_> =
                            slots.iter().filter(|&&s| s != MISS_SLOT && s >= cached).collect();
                        assert_eq!(uniq.len(), distinct.len());
                    }
                }
            }
        }
    }

    /// A pread backend that refuses (`EFAULT`) reads whose destination lies
    /// in `forbidden` (as the kernel would for memory it cannot pin).
    struct NoPin {
        inner: engine::read::PreadBackend,
        forbidden: std::ops::Range<usize>,
    }

    impl engine::read::Backend for NoPin {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            if self.forbidden.contains(&(buf.as_ptr() as usize)) {
                return Err(std::io::Error::from_raw_os_error(EFAULT));
            }
            self.inner.read_at(buf, offset)
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn name(&self) -> &'static str {
            "no-pin"
        }
    }

    /// A direct read refused with `EFAULT` for the staging memory switches
    /// the source to reading into its own aligned buffer and copying, with
    /// the same rows, for this and later batches; other errors do not.
    #[test]
    fn efault_into_staging_takes_the_detour() {
        use engine::read::{open_file, AlignedBuf, PreadBackend, ReaderOptions};
        let dir = tempfile::tempdir().unwrap();
        let (dim, dtype) = (2048, Dtype::F16);
        let table = numbered_table(dir.path(), dim, dtype, 50);
        let row_bytes = dim * 2;
        let slots = [4u32, MISS_SLOT, 4, 49, 0, 1, 2];
        let mut want = vec![0u8; slots.len() * row_bytes];
        gather(&table, &slots, GatherOptions { dtype, max_threads: 1 }, &mut want).unwrap();
        let mut staging = AlignedBuf::new(slots.len() * row_bytes).unwrap();
        let base = staging.as_ptr() as usize;
        let (file, _) = open_file(table.path(), false).unwrap();
        let backend = NoPin { inner: PreadBackend::new(file, 2).unwrap(), forbidden: base..base + staging.len() };
        let reader = RowReader::with_backend(&table, Box::new(backend), ReaderOptions::default());
        let mut detour = Detour::default();
        for round in 0..3 {
            staging.fill(0xAB);
            let mut src = RowSource { table: &table, reader: Some(&reader), threads: 1, detour: &mut detour };
            let st = src.fill(&slots, &mut staging).unwrap().unwrap();
            assert!(*staging == *want, "round {round}");
            assert_eq!(st.unique_rows, 5);
            assert!(!detour.into_staging);
        }
        // Other I/O errors are errors, and keep the straight path.
        let (file, _) = open_file(table.path(), false).unwrap();
        let faulty = engine::read::FaultyBackend::new(Box::new(PreadBackend::new(file, 2).unwrap())).fail_after(0);
        let reader = RowReader::with_backend(&table, Box::new(faulty), ReaderOptions::default());
        let mut detour = Detour::default();
        let mut src = RowSource { table: &table, reader: Some(&reader), threads: 1, detour: &mut detour };
        assert!(matches!(src.fill(&slots, &mut staging), Err(BridgeError::Read(_))));
        assert!(detour.into_staging);
    }
}

#[cfg(test)]
mod automatic_tests {
    use super::*;
    use engine::{BuildConfig, OpenOptions, TableBuilder};

    fn table(dir: &std::path::Path, resident: bool) -> Table {
        let path = dir.join("t.scone");
        if !path.exists() {
            let mut b = TableBuilder::create(&path, BuildConfig::new(8, Dtype::F16, 2, 10)).unwrap();
            for g in 0..20u32 {
                b.push(&[g / 10, g % 10], &[g as f32; 8], None).unwrap();
            }
            b.finish().unwrap();
        }
        Table::open_with(&path, OpenOptions { resident_rows: resident, ..OpenOptions::default() }).unwrap()
    }

    #[test]
    fn automatic_rule_picks_mode_and_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let (mapped, resident) = (table(dir.path(), false), table(dir.path(), true));
        let stride = mapped.header().row_stride as usize;
        let c = PipelineConfig::automatic(&mapped, 100, 0);
        assert_eq!((c.mode, c.dedup, c.max_positions), (GatherMode::CpuGather, true, 100));
        let c = PipelineConfig::automatic(&mapped, 100, 5 * stride);
        assert_eq!((c.mode, c.dedup, c.gpu_cache_bytes), (GatherMode::CpuGather, true, 5 * stride));
        let c = PipelineConfig::automatic(&resident, 100, 0);
        assert_eq!((c.mode, c.dedup), (GatherMode::ZeroCopy, true));
        let c = PipelineConfig::automatic(&resident, 100, 5 * stride);
        assert_eq!((c.mode, c.dedup), (GatherMode::ZeroCopy, false));
        // Less than one row of cache is no cache: dedup stays on.
        let c = PipelineConfig::automatic(&resident, 100, stride - 1);
        assert_eq!((c.mode, c.dedup), (GatherMode::ZeroCopy, true));
    }
}
