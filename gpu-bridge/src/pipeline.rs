//! Pipelined lookup: match tokens, gather their rows straight into a pinned
//! staging buffer, and copy them to the GPU asynchronously, so that the CPU
//! work of batch `i + 1` overlaps the host-to-device copy of batch `i`.

use engine::{gather, GatherOptions, Hit, SuffixMatcher, Table, MISS_SLOT};

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
    /// The proposed automatic choice: zero-copy when the table's rows are
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
    /// GPU hot cache size in bytes (default 0: none), zero-copy mode only
    /// (ignored by the CPU gather). The first `gpu_cache_bytes / row
    /// stride` rows (at most all; tables are laid out hottest-first, so
    /// these are the most frequent f-grams) are copied to device memory
    /// once at setup, and the gather kernel reads those slots from there
    /// instead of over the bus.
    pub gpu_cache_bytes: usize,
}

impl PipelineConfig {
    /// `max_positions` per batch, a ring of 3 cached pinned buffers, all
    /// gather threads.
    pub fn new(max_positions: usize) -> PipelineConfig {
        PipelineConfig {
            max_positions,
            ring_len: 3,
            gather_threads: 0,
            write_combined: false,
            mode: GatherMode::CpuGather,
            gpu_cache_bytes: 0,
        }
    }
}

/// Matches, gathers and uploads batches of token positions against one
/// table. Rows arrive on the device in the table's stored dtype (conversion
/// on the device is future work), densely as `[positions, dim]`, with a
/// `u8` hit mask `[positions]` (1 = row from the table, 0 = miss: zero row,
/// the caller substitutes its fallback embedding).
///
/// Copies run on a stream of their own. [`LookupPipeline::submit`] does not
/// synchronise with the device except through the ring's back-pressure
/// (waiting for the copy that last used the staging buffer it reuses).
pub struct LookupPipeline<'t> {
    table: &'t Table,
    matcher: SuffixMatcher<'t>,
    gpu: Gpu,
    ring: StagingRing,
    cfg: PipelineConfig,
    row_bytes: usize,
    /// Bytes of a rows device buffer (`max_positions * row_bytes`).
    mask_offset: usize,
    /// Byte offset of the mask inside each staging buffer (after the rows,
    /// or after the slots in zero-copy mode).
    stage_mask_offset: usize,
    /// Zero-copy mode: the mapped rows and the device slot buffer (one
    /// suffices: stream order puts each batch's slot copy after the
    /// previous batch's kernel).
    zero_copy: Option<(ZeroCopyRows, DeviceBuffer)>,
    hits: Vec<Hit>,
    slots: Vec<u32>,
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
    hits: usize,
    cache_hits: usize,
    event: CopyEvent,
}

impl BatchHandle {
    /// Device rows `[positions, dim]`, dense, in the table's dtype.
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

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Positions with a matched f-gram.
    pub fn hit_count(&self) -> usize {
        self.hits
    }

    /// Positions whose row the kernel read from the GPU hot cache (zero-copy
    /// mode with [`PipelineConfig::gpu_cache_bytes`]; 0 otherwise). The
    /// other hits crossed the bus.
    pub fn cache_hits(&self) -> usize {
        self.cache_hits
    }

    /// Completes when both copies of this batch have finished.
    pub fn event(&self) -> &CopyEvent {
        &self.event
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
    /// Sets up a pipeline on `gpu`'s device, with a new stream for its copies,
    /// a ring of `cfg.ring_len` pinned buffers of
    /// `cfg.max_positions * (row bytes + 1)` bytes each.
    pub fn new(table: &'t Table, gpu: &Gpu, cfg: PipelineConfig) -> Result<LookupPipeline<'t>, BridgeError> {
        if cfg.ring_len < 2 {
            return Err(BridgeError::InvalidArgument(format!(
                "ring_len must be at least 2 to overlap gathering and copying (got {})",
                cfg.ring_len
            )));
        }
        let row_bytes = table.dim() * table.dtype().size();
        let mask_offset = row_bytes
            .checked_mul(cfg.max_positions)
            .filter(|b| b.checked_add(cfg.max_positions).is_some())
            .ok_or_else(|| BridgeError::InvalidArgument(format!("{} positions are too many", cfg.max_positions)))?;
        let gpu = gpu.with_new_stream()?;
        let (stage_mask_offset, zero_copy) = match cfg.mode {
            GatherMode::CpuGather => (mask_offset, None),
            GatherMode::ZeroCopy => {
                let slot_bytes = cfg.max_positions * 4;
                let rows = ZeroCopyRows::new(table, &gpu, cfg.gpu_cache_bytes)?;
                (slot_bytes, Some((rows, gpu.alloc_device(slot_bytes)?)))
            }
        };
        let ring = StagingRing::new(&gpu, cfg.ring_len, stage_mask_offset + cfg.max_positions, cfg.write_combined)?;
        Ok(LookupPipeline {
            table,
            matcher: SuffixMatcher::new(table),
            gpu,
            ring,
            cfg,
            row_bytes,
            mask_offset,
            stage_mask_offset,
            zero_copy,
            hits: Vec::with_capacity(cfg.max_positions),
            slots: Vec::with_capacity(cfg.max_positions),
            free: Vec::new(),
        })
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
    /// without a cache or in CPU-gather mode.
    pub fn gpu_cached_rows(&self) -> usize {
        self.zero_copy.as_ref().map_or(0, |(z, _)| z.cached_rows() as usize)
    }

    /// Bytes per output row (`dim * dtype size`, the table's dtype).
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Matches every position of `tokens` and uploads its row; see
    /// [`LookupPipeline::submit_with_context`].
    pub fn submit(&mut self, tokens: &[u32]) -> Result<BatchHandle, BridgeError> {
        self.submit_with_context(tokens, 0)
    }

    /// Matches positions `start..tokens.len()` (earlier tokens are context
    /// only), gathers the hit rows into the next staging buffer, writes the
    /// hit mask after them, and enqueues both copies; returns without
    /// waiting for them. Waits only if the staging buffer it reuses is
    /// still being copied (more than `ring_len - 1` batches in flight).
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
        let positions = tokens.len() - start;
        if positions > self.cfg.max_positions {
            return Err(BridgeError::InvalidArgument(format!(
                "batch of {positions} positions exceeds the pipeline's max_positions {}",
                self.cfg.max_positions
            )));
        }
        let (mut rows, mut mask) = match self.free.pop() {
            Some(pair) => pair,
            None => (self.gpu.alloc_device(self.mask_offset)?, self.gpu.alloc_device(self.cfg.max_positions)?),
        };
        match self.stage_and_copy(tokens, start, &mut rows, &mut mask) {
            Ok((hits, cache_hits, event)) => Ok(BatchHandle {
                gpu: self.gpu.clone(),
                rows,
                mask,
                positions,
                row_bytes: self.row_bytes,
                hits,
                cache_hits,
                event,
            }),
            Err(e) => {
                self.free.push((rows, mask));
                Err(e)
            }
        }
    }

    fn stage_and_copy(
        &mut self,
        tokens: &[u32],
        start: usize,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(usize, usize, CopyEvent), BridgeError> {
        let positions = tokens.len() - start;
        if self.zero_copy.is_some() {
            return self.stage_zero_copy(tokens, start, rows, mask);
        }
        let rows_len = positions * self.row_bytes;
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (row_area, mask_area) = bytes.split_at_mut(self.mask_offset);
        let hits = stage_batch(
            self.table,
            &self.matcher,
            tokens,
            start,
            self.cfg.gather_threads,
            (&mut self.hits, &mut self.slots),
            &mut row_area[..rows_len],
            &mut mask_area[..positions],
        )?;
        slot.copy_to_device(0..rows_len, rows, 0)?;
        slot.copy_to_device(self.mask_offset..self.mask_offset + positions, mask, 0)?;
        Ok((hits, 0, slot.finish()?))
    }

    /// Zero-copy batch: match, write the slots and mask into the staging
    /// buffer, copy both, launch the gather kernel into `rows`. Returns
    /// (hits, hits served from the GPU hot cache, event).
    fn stage_zero_copy(
        &mut self,
        tokens: &[u32],
        start: usize,
        rows: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(usize, usize, CopyEvent), BridgeError> {
        let positions = tokens.len() - start;
        self.hits.clear();
        self.matcher.match_into(tokens, start, &mut self.hits);
        self.slots.clear();
        self.slots.extend(self.hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)));
        let mut slot = self.ring.acquire()?;
        let bytes = slot.bytes()?;
        let (slot_area, mask_area) = bytes.split_at_mut(self.stage_mask_offset);
        for (dst, s) in slot_area.chunks_exact_mut(4).zip(&self.slots) {
            dst.copy_from_slice(&s.to_le_bytes());
        }
        let mut hits = 0;
        for (m, h) in mask_area.iter_mut().zip(&self.hits) {
            *m = u8::from(h.is_hit());
            hits += usize::from(h.is_hit());
        }
        let (zc, dev_slots) = self.zero_copy.as_mut().expect("zero-copy mode");
        slot.copy_to_device(0..positions * 4, dev_slots, 0)?;
        slot.copy_to_device(self.stage_mask_offset..self.stage_mask_offset + positions, mask, 0)?;
        zc.launch(&self.gpu, &self.slots, dev_slots, rows)?;
        let cached = zc.cached_rows();
        let cache_hits = self.slots.iter().filter(|&&s| s < cached).count();
        Ok((hits, cache_hits, slot.finish()?))
    }

    /// Returns a finished batch's device buffers for reuse by later batches
    /// (saves a device allocation per batch).
    pub fn recycle(&mut self, handle: BatchHandle) {
        if handle.rows.len() == self.mask_offset && handle.mask.len() == self.cfg.max_positions {
            self.free.push(handle.into_buffers());
        }
    }

    /// Blocks until every submitted batch is on the device.
    pub fn wait_all(&self) -> Result<(), BridgeError> {
        self.ring.wait_all()
    }
}

/// The host half of a batch: matches positions `start..` of `tokens`
/// (scratch vectors reused), gathers their rows in the table's dtype into
/// `rows_out` (`positions * row bytes`) and writes `mask_out` (1 hit, 0
/// miss). Returns the number of hits.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_batch(
    table: &Table,
    matcher: &SuffixMatcher<'_>,
    tokens: &[u32],
    start: usize,
    threads: usize,
    (hits, slots): (&mut Vec<Hit>, &mut Vec<u32>),
    rows_out: &mut [u8],
    mask_out: &mut [u8],
) -> Result<usize, BridgeError> {
    hits.clear();
    matcher.match_into(tokens, start, hits);
    slots.clear();
    slots.extend(hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)));
    if mask_out.len() != hits.len() {
        return Err(BridgeError::InvalidArgument(format!(
            "mask buffer holds {} bytes for {} positions",
            mask_out.len(),
            hits.len()
        )));
    }
    gather(table, slots, GatherOptions { dtype: table.dtype(), max_threads: threads }, rows_out)
        .map_err(|e| BridgeError::Gather(e.to_string()))?;
    let mut n = 0;
    for (m, h) in mask_out.iter_mut().zip(hits.iter()) {
        *m = u8::from(h.is_hit());
        n += usize::from(h.is_hit());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{BuildConfig, Dtype, TableBuilder};

    #[test]
    fn stage_batch_matches_gather_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.scone");
        let dim = 5;
        let mut b = TableBuilder::create(&path, BuildConfig::new(dim as u32, Dtype::F16, 3, 10)).unwrap();
        let ngrams: [&[u32]; 4] = [&[1, 2], &[2, 3], &[1, 2, 3], &[4, 4]];
        for (i, g) in ngrams.iter().enumerate() {
            let row: Vec<f32> = (0..dim).map(|c| (i * 10 + c) as f32).collect();
            b.push(g, &row, None).unwrap();
        }
        b.finish().unwrap();
        let table = Table::open(&path).unwrap();
        let matcher = SuffixMatcher::new(&table);
        // 99 and u32::MAX are not in the vocabulary: misses, not errors.
        let tokens = [1, 2, 3, 4, 4, 4, 99, u32::MAX, 1, 2];
        let row_bytes = dim * 2;
        let (mut hits, mut slots) = (Vec::new(), Vec::new());
        let mut rows = vec![0xAAu8; tokens.len() * row_bytes];
        let mut mask = vec![7u8; tokens.len()];
        let n = stage_batch(&table, &matcher, &tokens, 0, 0, (&mut hits, &mut slots), &mut rows, &mut mask).unwrap();

        let want_hits = matcher.match_tokens(&tokens);
        let want_slots: Vec<u32> = want_hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect();
        let mut want = vec![0u8; rows.len()];
        gather(&table, &want_slots, GatherOptions { dtype: Dtype::F16, max_threads: 1 }, &mut want).unwrap();
        assert_eq!(rows, want);
        let want_mask: Vec<u8> = want_hits.iter().map(|h| u8::from(h.is_hit())).collect();
        assert_eq!(mask, want_mask);
        assert_eq!(n, want_mask.iter().filter(|&&m| m == 1).count());
        assert_eq!(mask, [0, 1, 1, 0, 1, 1, 0, 0, 0, 1]);

        // With context: only positions 8.. are staged.
        let n = stage_batch(
            &table,
            &matcher,
            &tokens,
            8,
            1,
            (&mut hits, &mut slots),
            &mut rows[..2 * row_bytes],
            &mut mask[..2],
        )
        .unwrap();
        assert_eq!((n, &mask[..2]), (1, &[0u8, 1][..]));

        // Wrong buffer sizes are errors, not panics.
        let e = stage_batch(&table, &matcher, &tokens, 0, 1, (&mut hits, &mut slots), &mut rows[..3], &mut mask);
        assert!(matches!(e, Err(BridgeError::Gather(_))), "{e:?}");
        let e = stage_batch(&table, &matcher, &tokens, 0, 1, (&mut hits, &mut slots), &mut rows, &mut mask[..2]);
        assert!(matches!(e, Err(BridgeError::InvalidArgument(_))), "{e:?}");
    }
}
