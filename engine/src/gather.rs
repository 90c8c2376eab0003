//! Gather: copy the rows of a batch of slots into a caller's dense buffer, in the
//! stored dtype or converted, from the memory-mapped rows section.

use rayon::prelude::*;

use crate::dtype::{convert_row, Dtype};
use crate::error::GatherError;
use crate::prefetch::prefetch_read;
use crate::table::Table;

/// The slot value that stands for "no row": its output row is zero-filled, and the
/// caller uses its own fallback (the token embedding) there.
pub const MISS_SLOT: u32 = u32::MAX;

/// Batches are split across threads in pieces of at least this many output bytes.
const PARALLEL_BYTES: usize = 512 << 10;
/// Rows ahead of the copy whose cache lines are prefetched (32 measured best of
/// 8..64 for 512-byte rows on the development machine).
const PREFETCH_DISTANCE: usize = 32;

/// Options for [`gather`].
#[derive(Clone, Copy, Debug)]
pub struct GatherOptions {
    /// Output dtype (rows are converted when it differs from the table's).
    pub dtype: Dtype,
    /// Upper bound on threads (rayon's global pool); 0 = all of the pool's threads.
    pub max_threads: usize,
}

/// Writes row `slots[i]` to `out[i * row_out .. (i + 1) * row_out]`, where
/// `row_out = dim * opts.dtype.size()`. [`MISS_SLOT`] gives a zero row; any other
/// slot at or beyond the table's rows is an error and nothing is promised of `out`.
pub fn gather(table: &Table, slots: &[u32], opts: GatherOptions, out: &mut [u8]) -> Result<(), GatherError> {
    let row_out = table.dim() * opts.dtype.size();
    let need = slots.len() * row_out;
    if out.len() != need {
        return Err(GatherError::BufferSize { got: out.len(), need, rows: slots.len(), row_bytes: row_out });
    }
    let rows = table.rows();
    if let Some((position, &slot)) = slots.iter().enumerate().find(|(_, &s)| s != MISS_SLOT && s as u64 >= rows) {
        return Err(GatherError::SlotOutOfRange { position, slot, rows });
    }
    if row_out == 0 || slots.is_empty() {
        return Ok(());
    }
    let cap = if opts.max_threads == 0 { rayon::current_num_threads() } else { opts.max_threads };
    // Split into pieces of at least PARALLEL_BYTES, at most one per thread.
    let pieces = (need / PARALLEL_BYTES).clamp(1, cap.max(1));
    if pieces == 1 {
        gather_serial(table, slots, opts.dtype, out);
        return Ok(());
    }
    let per = slots.len().div_ceil(pieces);
    // rayon's pool is persistent: no thread is started per batch.
    slots
        .par_chunks(per)
        .zip(out.par_chunks_mut(per * row_out))
        .for_each(|(sl, o)| gather_serial(table, sl, opts.dtype, o));
    Ok(())
}

/// [`gather`], then every [`MISS_SLOT`] position `i` gets the row of
/// `tokens[i]` from the table's per-token block, when the table has one
/// (otherwise misses stay zero rows). This is what a SCONE model reads: the
/// longest f-gram's row, or the token's own row where no f-gram matches.
pub fn gather_with_token_rows(
    table: &Table,
    slots: &[u32],
    tokens: &[u32],
    opts: GatherOptions,
    out: &mut [u8],
) -> Result<(), GatherError> {
    if slots.len() != tokens.len() {
        return Err(GatherError::TokensLength { slots: slots.len(), tokens: tokens.len() });
    }
    gather(table, slots, opts, out)?;
    if !table.has_token_rows() {
        return Ok(());
    }
    let row_out = table.dim() * opts.dtype.size();
    for (position, (&slot, &token)) in slots.iter().zip(tokens).enumerate() {
        if slot != MISS_SLOT {
            continue;
        }
        let vocab = table.header().vocab_size;
        let src = table.token_row_bytes(token).ok_or(GatherError::TokenOutOfRange { position, token, vocab })?;
        convert_row(src, table.dtype(), &mut out[position * row_out..(position + 1) * row_out], opts.dtype);
    }
    Ok(())
}

/// Gathers with slots already checked against the table.
fn gather_serial(table: &Table, slots: &[u32], to: Dtype, out: &mut [u8]) {
    let rows = table.rows_section();
    let stride = table.header().row_stride as usize;
    let from = table.dtype();
    let row_in = table.dim() * from.size();
    let row_out = table.dim() * to.size();
    for (i, (&slot, o)) in slots.iter().zip(out.chunks_exact_mut(row_out)).enumerate() {
        if let Some(&ahead) = slots.get(i + PREFETCH_DISTANCE) {
            if ahead != MISS_SLOT {
                let base = ahead as usize * stride;
                for line in (0..row_in).step_by(64) {
                    if let Some(b) = rows.get(base + line) {
                        prefetch_read(b);
                    }
                }
            }
        }
        if slot == MISS_SLOT {
            o.fill(0);
            continue;
        }
        let start = slot as usize * stride;
        convert_row(&rows[start..start + row_in], from, o, to);
    }
}
