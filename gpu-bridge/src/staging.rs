//! A ring of pinned staging buffers with one completion event each.
//!
//! The CPU fills buffer `j` while the DMA engine drains the buffers filled
//! before it. Buffer `j` is handed out again only after the event recorded
//! behind its last host-to-device copy has completed (back-pressure): with
//! `k` buffers, at most `k` batches are staged or in flight at once.

use std::ops::Range;

use crate::{BridgeError, CopyEvent, DeviceBuffer, Gpu, PinnedBuffer};

struct Slot {
    buf: PinnedBuffer,
    /// Completes when the last copy out of `buf` has finished.
    done: Option<CopyEvent>,
}

/// `k` pinned host buffers of equal size, used round-robin, each guarded by
/// the event of its last copy. Copies go to the stream of the [`Gpu`] the
/// ring was created with.
pub struct StagingRing {
    gpu: Gpu,
    slots: Vec<Slot>,
    next: usize,
}

impl std::fmt::Debug for StagingRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingRing")
            .field("buffers", &self.slots.len())
            .field("buffer_len", &self.buffer_len())
            .field("next", &self.next)
            .finish()
    }
}

impl StagingRing {
    /// Allocates `k >= 1` pinned buffers of `bytes_each` bytes
    /// (`cuMemHostAlloc`; write-combined if asked: fast for the CPU to fill
    /// and for the GPU to read, very slow for the CPU to read). Copies need
    /// `k >= 2` to overlap with filling; 3 is the usual choice.
    pub fn new(gpu: &Gpu, k: usize, bytes_each: usize, write_combined: bool) -> Result<StagingRing, BridgeError> {
        if k == 0 {
            return Err(BridgeError::InvalidArgument("a staging ring needs at least one buffer".into()));
        }
        let slots = (0..k)
            .map(|_| {
                let buf = if write_combined {
                    gpu.alloc_pinned_write_combined(bytes_each)
                } else {
                    gpu.alloc_pinned(bytes_each)
                }?;
                Ok(Slot { buf, done: None })
            })
            .collect::<Result<Vec<_>, BridgeError>>()?;
        Ok(StagingRing { gpu: gpu.clone(), slots, next: 0 })
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false (a ring has at least one buffer).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes in each buffer.
    pub fn buffer_len(&self) -> usize {
        self.slots.first().map_or(0, |s| s.buf.len())
    }

    /// The `Gpu` (and stream) the ring's copies go to.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Index of the buffer the next [`StagingRing::acquire`] returns.
    pub fn next_index(&self) -> usize {
        self.next
    }

    /// Waits until the next buffer's previous copy has completed and hands
    /// it out. The ring advances only when the returned [`StagingSlot`] is
    /// finished with [`StagingSlot::finish`]; dropping it unfinished (after
    /// an error while filling it) leaves the buffer to the next `acquire`.
    pub fn acquire(&mut self) -> Result<StagingSlot<'_>, BridgeError> {
        let index = self.next;
        if let Some(done) = &self.slots[index].done {
            done.synchronize()?;
        }
        self.slots[index].done = None;
        Ok(StagingSlot { ring: self, index, enqueued: false, finished: false })
    }

    /// Blocks until every copy out of the ring has completed.
    pub fn wait_all(&self) -> Result<(), BridgeError> {
        for slot in &self.slots {
            if let Some(done) = &slot.done {
                done.synchronize()?;
            }
        }
        Ok(())
    }
}

impl Drop for StagingRing {
    fn drop(&mut self) {
        // The pinned memory is freed after this; no DMA may still read it.
        // `enqueue_htod_range` copies are not tracked by cudarc, so wait here.
        if self.wait_all().is_err() {
            let _ = self.gpu.synchronize();
        }
    }
}

/// One buffer of a [`StagingRing`], free to fill. Fill it with
/// [`StagingSlot::bytes`], enqueue copies out of it with
/// [`StagingSlot::copy_to_device`], then [`StagingSlot::finish`].
pub struct StagingSlot<'r> {
    ring: &'r mut StagingRing,
    index: usize,
    enqueued: bool,
    finished: bool,
}

impl StagingSlot<'_> {
    /// Position of this buffer in the ring.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The buffer's bytes, to fill. Write-combined memory should be written
    /// sequentially and not read. Nothing copies out of the buffer
    /// while this slot is held: its previous copy completed in `acquire`,
    /// and copies enqueued through this slot must not be followed by more
    /// writes (they would race the DMA engine), which is why this fails
    /// after [`StagingSlot::copy_to_device`].
    pub fn bytes(&mut self) -> Result<&mut [u8], BridgeError> {
        if self.enqueued {
            return Err(BridgeError::InvalidArgument(
                "staging buffer written after a copy out of it was enqueued".into(),
            ));
        }
        self.ring.slots[self.index].buf.as_mut_slice()
    }

    /// Enqueues an asynchronous copy of `self.bytes()[range]` to
    /// `dst[dst_offset..]` on the ring's stream.
    pub fn copy_to_device(
        &mut self,
        range: Range<usize>,
        dst: &mut DeviceBuffer,
        dst_offset: usize,
    ) -> Result<(), BridgeError> {
        // Set first: even a failed call may have enqueued the copy.
        self.enqueued = true;
        // SAFETY: the buffer stays allocated and unmodified until an event
        // recorded after this copy completes: `enqueued` (set above) makes
        // `bytes` refuse further writes through this slot; `finish`, or this
        // slot's `Drop`, records the slot's `done` event (or synchronises the
        // stream); `acquire` waits for that event before the slot is handed
        // out again, and the ring's `Drop` waits for every slot's event
        // before the pinned memory is freed.
        unsafe { self.ring.gpu.enqueue_htod_range(&self.ring.slots[self.index].buf, range, dst, dst_offset) }
    }

    /// Records the event that guards this buffer (completing after every
    /// copy enqueued through this slot), advances the ring and returns the
    /// event. Does not wait.
    pub fn finish(mut self) -> Result<CopyEvent, BridgeError> {
        let event = self.ring.gpu.record_event()?;
        self.ring.slots[self.index].done = Some(event.clone());
        self.ring.next = (self.index + 1) % self.ring.slots.len();
        self.finished = true;
        Ok(event)
    }
}

impl Drop for StagingSlot<'_> {
    fn drop(&mut self) {
        if self.finished || !self.enqueued {
            return;
        }
        // Dropped after enqueuing copies but without `finish` (an error on
        // the way): guard the buffer anyway so that it is not refilled or
        // freed under the DMA engine.
        match self.ring.gpu.record_event() {
            Ok(event) => self.ring.slots[self.index].done = Some(event),
            Err(_) => {
                let _ = self.ring.gpu.synchronize();
            }
        }
    }
}
