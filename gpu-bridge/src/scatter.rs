//! Deduplicated transfer: each distinct row of a batch crosses the bus once
//! (or not at all when it is in the GPU hot cache), and a small kernel
//! (`kernels/scatter.cu`, `scatter_rows`) writes it to every position that
//! asked for it, plus the hit mask.
//!
//! The host side ([`Dedup::plan`]) turns the batch's slots into
//! - `uniq`: the distinct hit slots that are not in the GPU cache, in order
//!   of first appearance (these rows are staged / read over the bus), and
//! - `idx`: one `u32` per position: [`MISS_SLOT`] for a miss, the slot itself
//!   when it is below the cached row count (a cache row), otherwise
//!   `cached + u` for `uniq[u]`.

use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use engine::{Table, MISS_SLOT};

use crate::driver::no_panic;
use crate::error::{cuda_err, BridgeError};
use crate::{DeviceBuffer, Gpu};

/// PTX of `kernels/scatter.cu` (see `kernels/build.sh`).
const SCATTER_PTX: &str = include_str!("../kernels/scatter.ptx");
/// Threads per block: 8 warps, one position per warp.
const BLOCK: u32 = 256;
const POSITIONS_PER_BLOCK: u32 = BLOCK / 32;

/// GPU hot cache: the table's rows `0..rows` (the hottest: tables are laid
/// out hottest-first) in device memory, `stride` bytes apart (the table's
/// row stride).
#[derive(Debug)]
pub(crate) struct GpuCache {
    buf: DeviceBuffer,
    rows: u32,
    stride: u64,
}

/// Rows of a GPU hot cache of `bytes` bytes: whole strides (the cache keeps
/// the table's row stride), at most `n_rows`.
pub(crate) fn cache_rows(bytes: usize, stride: u64, n_rows: u64) -> u32 {
    let rows = (bytes as u64).checked_div(stride).unwrap_or(0).min(n_rows);
    u32::try_from(rows).unwrap_or(u32::MAX)
}

impl GpuCache {
    /// Copies the first `bytes / stride` rows (at most all) of `table` to
    /// device memory (synchronously, once). `None` when that is no row.
    /// `max_positions` is the pipeline's batch capacity: the cached count
    /// plus it must stay below [`MISS_SLOT`] (indices `cached + u`).
    pub(crate) fn load(
        table: &Table,
        gpu: &Gpu,
        bytes: usize,
        max_positions: usize,
    ) -> Result<Option<GpuCache>, BridgeError> {
        let stride = table.header().row_stride;
        let rows = cache_rows(bytes, stride, table.rows());
        if rows == 0 {
            return Ok(None);
        }
        if u64::from(rows) + max_positions as u64 >= u64::from(MISS_SLOT) {
            return Err(BridgeError::InvalidArgument(format!(
                "GPU cache of {rows} rows plus {max_positions} positions does not fit u32 indices"
            )));
        }
        let mut staging = gpu.alloc_pinned(rows as usize * stride as usize)?;
        {
            let host = staging.as_mut_slice()?;
            for (s, dst) in (0..rows).zip(host.chunks_exact_mut(stride as usize)) {
                let row =
                    table.row_bytes(s).ok_or_else(|| BridgeError::InvalidArgument(format!("table has no row {s}")))?;
                dst[..row.len()].copy_from_slice(row);
            }
        }
        let mut buf = gpu.alloc_device(staging.len())?;
        gpu.copy_to_device(&staging, &mut buf)?.synchronize()?;
        Ok(Some(GpuCache { buf, rows, stride }))
    }

    /// Rows held (slots `0..rows()`).
    pub(crate) fn rows(&self) -> u32 {
        self.rows
    }

    /// The device rows, `stride()` bytes apart.
    pub(crate) fn buffer(&self) -> &DeviceBuffer {
        &self.buf
    }

    /// Bytes between consecutive cached rows (the table's row stride).
    pub(crate) fn stride(&self) -> u64 {
        self.stride
    }
}

/// Per-batch deduplication with an open-addressing map from slot to its
/// index in `uniq`, reused across batches (entries are tagged with a batch
/// epoch, so nothing is cleared per batch).
#[derive(Debug)]
pub(crate) struct Dedup {
    /// `epoch << 32 | slot`; an entry is live only if its epoch is current.
    keys: Vec<u64>,
    vals: Vec<u32>,
    epoch: u32,
    shift: u32,
}

impl Dedup {
    /// A map for batches of up to `max_positions` positions (load factor at
    /// most 1/2).
    pub(crate) fn new(max_positions: usize) -> Dedup {
        let cap = (2 * max_positions).max(16).next_power_of_two();
        Dedup { keys: vec![0; cap], vals: vec![0; cap], epoch: 0, shift: 64 - cap.trailing_zeros() }
    }

    /// Fills `uniq` and `idx` for `slots` (see the module doc). `dedup` off:
    /// every non-cached hit gets its own `uniq` entry (duplicates are staged
    /// again; the cache still applies). Returns the number of hits.
    pub(crate) fn plan(
        &mut self,
        slots: &[u32],
        cached: u32,
        dedup: bool,
        uniq: &mut Vec<u32>,
        idx: &mut Vec<u32>,
    ) -> usize {
        uniq.clear();
        idx.clear();
        idx.reserve(slots.len());
        assert!(!dedup || slots.len() * 2 <= self.keys.len(), "batch larger than the dedup map was sized for");
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.keys.fill(0);
            self.epoch = 1;
        }
        let tag = u64::from(self.epoch) << 32;
        let mask = self.keys.len() - 1;
        let mut hits = 0;
        for &s in slots {
            if s == MISS_SLOT {
                idx.push(MISS_SLOT);
                continue;
            }
            hits += 1;
            if s < cached {
                idx.push(s);
                continue;
            }
            if !dedup {
                idx.push(cached + uniq.len() as u32);
                uniq.push(s);
                continue;
            }
            let key = tag | u64::from(s);
            let mut b = (u64::from(s).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
            loop {
                let k = self.keys[b];
                if k == key {
                    idx.push(cached + self.vals[b]);
                    break;
                }
                if k >> 32 != u64::from(self.epoch) {
                    let u = uniq.len() as u32;
                    self.keys[b] = key;
                    self.vals[b] = u;
                    uniq.push(s);
                    idx.push(cached + u);
                    break;
                }
                b = (b + 1) & mask;
            }
        }
        hits
    }
}

/// The loaded `scatter_rows` kernel.
#[derive(Debug)]
pub(crate) struct ScatterKernel {
    func: CudaFunction,
}

/// Where `scatter_rows` reads rows from.
pub(crate) struct ScatterSources<'a> {
    /// Staged distinct rows (device memory), `ustride` bytes apart, and how
    /// many there are.
    pub uniq: &'a DeviceBuffer,
    pub ustride: u64,
    pub n_uniq: usize,
    /// The GPU hot cache, if any.
    pub cache: Option<&'a GpuCache>,
    /// Bytes per row (of the output and of both sources).
    pub row_bytes: u32,
}

impl ScatterKernel {
    pub(crate) fn load(gpu: &Gpu) -> Result<ScatterKernel, BridgeError> {
        let ctx = gpu.ctx().clone();
        let func = no_panic("loading scatter kernel", move || {
            let module = ctx.load_module(Ptx::from_src(SCATTER_PTX)).map_err(cuda_err("loading scatter PTX"))?;
            module.load_function("scatter_rows").map_err(cuda_err("cuModuleGetFunction(scatter_rows)"))
        })?;
        Ok(ScatterKernel { func })
    }

    /// Enqueues `scatter_rows` on `gpu`'s stream for the first
    /// `host_idx.len()` indices of `idx` (already on the device, equal to
    /// `host_idx`): rows into `out[p * row_bytes ..]`, mask bytes into
    /// `mask[p]`. Every index is checked here against the sources, so the
    /// kernel reads only inside them.
    pub(crate) fn launch(
        &self,
        gpu: &Gpu,
        src: &ScatterSources<'_>,
        host_idx: &[u32],
        idx: &DeviceBuffer,
        out: &mut DeviceBuffer,
        mask: &mut DeviceBuffer,
    ) -> Result<(), BridgeError> {
        let n = host_idx.len();
        if n == 0 {
            return Ok(());
        }
        let row_bytes = src.row_bytes;
        let rb = row_bytes as usize;
        let (cache_ptr_rows, cstride) = src.cache.map_or((0, 0), |c| (c.rows(), c.stride()));
        if src.n_uniq > 0
            && (src.ustride < u64::from(row_bytes) || src.uniq.len() < (src.n_uniq - 1) * src.ustride as usize + rb)
        {
            return Err(BridgeError::InvalidArgument("staged rows buffer too small".into()));
        }
        let limit = u64::from(cache_ptr_rows) + src.n_uniq as u64;
        if let Some(bad) = host_idx.iter().find(|&&k| k != MISS_SLOT && u64::from(k) >= limit) {
            return Err(BridgeError::InvalidArgument(format!("scatter index {bad} out of range ({limit} rows)")));
        }
        let n32 = u32::try_from(n).map_err(|_| BridgeError::InvalidArgument(format!("{n} positions")))?;
        if idx.len() < n * 4 || out.len() < n * rb || mask.len() < n {
            return Err(BridgeError::InvalidArgument("scatter buffers too small".into()));
        }
        let (Some(idx), Some(out), Some(mask)) = (idx.slice(), out.slice_mut(), mask.slice_mut()) else {
            return Err(BridgeError::InvalidArgument("empty scatter buffers".into()));
        };
        let cfg = LaunchConfig {
            grid_dim: (n32.div_ceil(POSITIONS_PER_BLOCK), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let null = 0u64;
        let mut b = gpu.stream().launch_builder(&self.func);
        match src.uniq.slice() {
            Some(u) if src.n_uniq > 0 => b.arg(u),
            _ => b.arg(&null),
        };
        b.arg(&src.ustride);
        match src.cache.and_then(|c| c.buffer().slice()) {
            Some(c) => b.arg(c),
            None => b.arg(&null),
        };
        b.arg(&cstride).arg(&cache_ptr_rows).arg(&row_bytes).arg(idx).arg(&n32).arg(out).arg(mask);
        // SAFETY: the arguments match scatter_rows's parameters in number,
        // order and type (u64 uniq pointer, u64 ustride, u64 cache pointer,
        // u64 cstride, u32 cached, u32 row_bytes, idx pointer, u32 n, out
        // pointer, mask pointer). The kernel reads n u32 indices (`idx`
        // holds >= 4n bytes); each is a miss (nothing read), below `cached`
        // (a cache row: the cache holds `cached * cstride` bytes; no cache
        // comes with cached = 0 and a null pointer) or `cached + u` with
        // u < n_uniq (checked above; `uniq` holds (n_uniq - 1) * ustride +
        // row_bytes bytes, and is passed as null only when n_uniq = 0, when
        // no index points into it). It writes n * row_bytes bytes of `out`
        // and n bytes of `mask` (both at least that large).
        unsafe { b.launch(cfg) }.map_err(cuda_err("cuLaunchKernel(scatter_rows)"))?;
        Ok(())
    }
}

/// The CPU reference of `scatter_rows` (for tests): rows for `idx` from
/// `cache` (rows `0..cached`, `cstride` apart) and `uniq` (dense rows of
/// `row_bytes`), and the mask.
#[cfg(test)]
pub(crate) fn scatter_reference(
    cache: &[u8],
    cstride: usize,
    cached: u32,
    uniq: &[u8],
    row_bytes: usize,
    idx: &[u32],
) -> (Vec<u8>, Vec<u8>) {
    let mut out = vec![0u8; idx.len() * row_bytes];
    let mut mask = vec![0u8; idx.len()];
    for (p, &k) in idx.iter().enumerate() {
        if k == MISS_SLOT {
            continue;
        }
        mask[p] = 1;
        let src = if k < cached {
            &cache[k as usize * cstride..][..row_bytes]
        } else {
            &uniq[(k - cached) as usize * row_bytes..][..row_bytes]
        };
        out[p * row_bytes..(p + 1) * row_bytes].copy_from_slice(src);
    }
    (out, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_rows_counts_whole_strides() {
        assert_eq!(cache_rows(0, 2048, 100), 0);
        assert_eq!(cache_rows(2047, 2048, 100), 0);
        assert_eq!(cache_rows(2048 * 30 + 5, 2048, 100), 30);
        assert_eq!(cache_rows(usize::MAX, 64, 100), 100);
        assert_eq!(cache_rows(1 << 20, 0, 100), 0);
    }

    #[test]
    fn plan_dedups_and_routes_cached_rows() {
        let mut d = Dedup::new(8);
        let (mut uniq, mut idx) = (Vec::new(), Vec::new());
        let slots = [7, 3, MISS_SLOT, 7, 1, 9, 3, 7];
        // No cache, dedup on.
        assert_eq!(d.plan(&slots, 0, true, &mut uniq, &mut idx), 7);
        assert_eq!(uniq, [7, 3, 1, 9]);
        assert_eq!(idx, [0, 1, MISS_SLOT, 0, 2, 3, 1, 0]);
        // Cache of rows 0..4: slots 3 and 1 come from it.
        assert_eq!(d.plan(&slots, 4, true, &mut uniq, &mut idx), 7);
        assert_eq!(uniq, [7, 9]);
        assert_eq!(idx, [4, 3, MISS_SLOT, 4, 1, 5, 3, 4]);
        // Dedup off: every non-cached hit is staged.
        d.plan(&slots, 4, false, &mut uniq, &mut idx);
        assert_eq!(uniq, [7, 7, 9, 7]);
        assert_eq!(idx, [4, 3, MISS_SLOT, 5, 1, 6, 3, 7]);
        assert_eq!(d.plan(&[], 4, true, &mut uniq, &mut idx), 0);
        assert!(uniq.is_empty() && idx.is_empty());
    }

    #[test]
    fn plan_survives_many_batches_and_epoch_wrap() {
        let mut d = Dedup::new(300);
        let mut x = 12345u64;
        let (mut uniq, mut idx) = (Vec::new(), Vec::new());
        for round in 0..200 {
            if round == 100 {
                d.epoch = u32::MAX - 1;
            }
            let slots: Vec<u32> = (0..300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x.is_multiple_of(11) {
                        MISS_SLOT
                    } else {
                        (x % 97) as u32 * 1_000_003 % 5000
                    }
                })
                .collect();
            let cached = (round % 3) * 700;
            d.plan(&slots, cached, true, &mut uniq, &mut idx);
            let mut seen = std::collections::HashSet::new();
            assert!(uniq.iter().all(|s| seen.insert(*s) && *s >= cached), "round {round}");
            for (&s, &k) in slots.iter().zip(&idx) {
                let back = if k == MISS_SLOT || k < cached { k } else { uniq[(k - cached) as usize] };
                assert_eq!(back, s, "round {round}");
            }
        }
    }
}
