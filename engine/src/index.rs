//! The static key index: one flat array of u64 entries, linear probing, built in
//! key order.
//!
//! Entry = `(key & !slot_mask) | slot`: the key's high bits as a fingerprint, the
//! row slot in the low `slot_bits`. A key's home position is
//! `(key * capacity) >> 64`, which is monotone in the key, so inserting keys in
//! ascending order at `max(home, previous + 1)` leaves the array sorted by key:
//! a probe scans from home and stops at the first entry whose fingerprint is
//! larger than its own (or at an empty entry). With capacity = n / 0.85 a probe
//! touches about four entries, one cache line, for hits and misses alike, and the
//! index costs 8 / 0.85 = 9.4 bytes per key. A fingerprint match is a candidate
//! only: the caller verifies it against the stored n-gram, and the probe goes on
//! past candidates that fail, which is also how two n-grams whose keys collide
//! both stay retrievable. docs/FORMAT.md and docs/ARCHITECTURE.md say why this
//! was chosen over a minimal perfect hash.

use std::io::Write;

use crate::format::IndexParams;

/// An entry no key can produce: rows <= 2^slot_bits - 2, so a real slot is never all ones.
pub const EMPTY: u64 = u64::MAX;
/// Target fill of the home range.
pub const LOAD_FACTOR: f64 = 0.85;

/// Slot bits for a table of `rows` rows: rows <= 2^bits - 2, so every real slot
/// (< rows) is below both the marker slot (2^bits - 2) and all ones (empty).
pub fn slot_bits_for(rows: u64) -> u32 {
    (64 - (rows + 1).leading_zeros()).max(2)
}

/// The slot field of a marker entry.
pub fn marker_slot(slot_bits: u32) -> u32 {
    ((1u64 << slot_bits) - 2) as u32
}

/// What a scan of one key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Some entry (an f-gram or a marker) carries the key's fingerprint: longer
    /// suffixes may be in the table. False means no f-gram has this suffix.
    pub present: bool,
    /// The first f-gram slot with the key's fingerprint, still to be verified.
    pub first: Option<u32>,
}

pub fn capacity_for(keys: u64) -> u64 {
    ((keys as f64 / LOAD_FACTOR).ceil() as u64).max(1)
}

#[inline]
pub fn home(key: u64, capacity: u64) -> usize {
    ((key as u128 * capacity as u128) >> 64) as usize
}

/// A read-only view of an index section.
#[derive(Clone, Copy)]
pub struct IndexView<'a> {
    entries: &'a [u64],
    capacity: u64,
    hi_mask: u64,
    key_mask: u64,
    marker: u32,
    /// Most entries one probe reads (see [`IndexCheck::probe_limit`]).
    limit: usize,
}

impl<'a> IndexView<'a> {
    /// A view whose probes stop only at an empty entry, a larger key or the
    /// end of `entries`; tables use [`with_probe_limit`](Self::with_probe_limit).
    pub fn new(entries: &'a [u64], params: &IndexParams) -> Self {
        let slot_mask = 1u64.checked_shl(params.slot_bits).map_or(u64::MAX, |b| b - 1);
        let marker = (slot_mask.wrapping_sub(1) & u32::MAX as u64) as u32;
        IndexView {
            entries,
            capacity: params.capacity,
            hi_mask: !slot_mask,
            key_mask: params.key_mask(),
            marker,
            limit: usize::MAX,
        }
    }

    /// Probes read at most `limit` entries from a key's home position: the
    /// bound [`check_entries`] proved for this array, so that no array, however
    /// crafted, makes a lookup scan far.
    pub fn with_probe_limit(mut self, limit: u64) -> Self {
        self.limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self
    }

    #[inline]
    pub fn home(&self, key: u64) -> usize {
        home(key & self.key_mask, self.capacity)
    }

    /// Hints the CPU to load the cache lines a probe of `key` reads: the home
    /// entry's line, and the next one when home sits in the last three entries of
    /// its line (a probe scans about four entries). The section is 4096-aligned,
    /// so entry i is at byte 8i of its line group.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        let h = self.home(key);
        if let Some(e) = self.entries.get(h) {
            crate::prefetch::prefetch_read(e);
        }
        if h % 8 >= 5 {
            if let Some(e) = self.entries.get(h + 3) {
                crate::prefetch::prefetch_read(e);
            }
        }
    }

    /// Calls `verify(slot)` for each f-gram candidate slot of `key` (markers
    /// skipped), in index order, and returns the first slot it accepts. Never
    /// reads out of bounds, even for a damaged array without a terminating empty entry.
    #[inline]
    pub fn probe(&self, key: u64, mut verify: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut found = None;
        self.walk(key, |slot| {
            if slot != self.marker && verify(slot) {
                found = Some(slot);
                return true;
            }
            false
        });
        found
    }

    /// Visits the slot field of every entry with `key`'s fingerprint until `visit`
    /// returns true.
    #[inline]
    fn walk(&self, key: u64, mut visit: impl FnMut(u32) -> bool) {
        let key = key & self.key_mask;
        let fp = key & self.hi_mask;
        let mut i = self.home(key);
        let end = i.saturating_add(self.limit);
        while let Some(&e) = self.entries.get(i).filter(|_| i < end) {
            if e == EMPTY {
                return;
            }
            let efp = e & self.hi_mask;
            if efp == fp {
                if visit((e & !self.hi_mask) as u32) {
                    return;
                }
            } else if efp > fp {
                return;
            }
            i += 1;
        }
    }

    /// Whether any entry carries `key`'s fingerprint, and the first f-gram
    /// candidate among them (unverified), for the batched matcher.
    #[inline]
    pub fn scan(&self, key: u64) -> Scan {
        let mut scan = Scan { present: false, first: None };
        self.walk(key, |slot| {
            scan.present = true;
            if slot != self.marker {
                scan.first = Some(slot);
                return true;
            }
            false
        });
        scan
    }

    /// The first f-gram candidate slot of `key` (no verification).
    #[inline]
    pub fn first_candidate(&self, key: u64) -> Option<u32> {
        self.scan(key).first
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What [`check_entries`] established about an index array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexCheck {
    /// Entries that point at rows (one per row).
    pub fgrams: u64,
    /// Marker entries.
    pub markers: u64,
    /// Entries a probe must read at most to see every entry of its key: one
    /// more than the largest distance of an entry from its home position.
    pub probe_limit: u64,
}

/// Checks an index array against the invariants the writer keeps, so that a
/// damaged or crafted array (even one whose checksum matches) cannot make
/// lookups wrong or slow: it ends with an empty entry; every non-empty entry
/// points at a row below `rows` (each row exactly once) or is a marker (as many
/// as `params.markers`); no entry carries key bits beyond `params.key_bits`;
/// fingerprints never decrease; and no entry sits before its home position.
/// The distances from home bound every probe ([`IndexView::with_probe_limit`]).
/// One pass over the array, plus a bitmap of `rows` bits.
pub fn check_entries(entries: &[u64], params: &IndexParams, rows: u64) -> Result<IndexCheck, String> {
    if entries.last() != Some(&EMPTY) {
        return Err("does not end with an empty entry".into());
    }
    let slot_mask = 1u64.checked_shl(params.slot_bits).map_or(u64::MAX, |b| b - 1);
    let (hi_mask, key_mask) = (!slot_mask, params.key_mask());
    let marker = marker_slot(params.slot_bits) as u64;
    let mut seen = vec![0u64; (rows as usize).div_ceil(64)];
    let (mut fgrams, mut markers, mut max_dist, mut prev_fp) = (0u64, 0u64, 0u64, 0u64);
    for (i, &e) in entries.iter().enumerate() {
        if e == EMPTY {
            continue;
        }
        let (fp, slot) = (e & hi_mask, e & slot_mask);
        if fp & !key_mask != 0 {
            return Err(format!("entry {i} has key bits beyond the header's {} key bits", params.key_bits));
        }
        if fp < prev_fp {
            return Err(format!("entry {i} is out of key order"));
        }
        prev_fp = fp;
        let h = home(fp, params.capacity) as u64;
        let dist = (i as u64).checked_sub(h).ok_or_else(|| format!("entry {i} sits before its home position {h}"))?;
        max_dist = max_dist.max(dist);
        if slot == marker {
            markers += 1;
        } else if slot >= rows {
            return Err(format!("entry {i} points at slot {slot}; the table has {rows} rows"));
        } else {
            let (w, b) = ((slot / 64) as usize, slot % 64);
            if seen[w] & (1 << b) != 0 {
                return Err(format!("slot {slot} is indexed twice (again at entry {i})"));
            }
            seen[w] |= 1 << b;
            fgrams += 1;
        }
    }
    if fgrams != rows {
        return Err(format!("indexes {fgrams} rows; the table has {rows}"));
    }
    if markers != params.markers {
        return Err(format!("holds {markers} marker entries; the header says {}", params.markers));
    }
    Ok(IndexCheck { fgrams, markers, probe_limit: max_dist + 1 })
}

/// Writes an index section from (key, slot) pairs given in ascending key order.
pub struct IndexWriter {
    capacity: u64,
    slot_bits: u32,
    key_bits: u32,
    hi_mask: u64,
    cursor: u64,
    last_key: Option<u64>,
}

impl IndexWriter {
    /// `key_bits` < 64 only in tests (see [`IndexParams::key_bits`]); keys given to
    /// `push` must already be masked with [`IndexParams::key_mask`].
    pub fn new(keys: u64, rows: u64, key_bits: u32) -> Self {
        let slot_bits = slot_bits_for(rows);
        IndexWriter {
            capacity: capacity_for(keys),
            slot_bits,
            key_bits,
            hi_mask: !((1u64 << slot_bits) - 1),
            cursor: 0,
            last_key: None,
        }
    }

    /// Appends one key. Keys must come in ascending order; equal keys (collisions
    /// of distinct n-grams) are allowed and are stored side by side.
    pub fn push(&mut self, key: u64, slot: u32, out: &mut impl Write) -> std::io::Result<()> {
        debug_assert!(self.last_key.is_none_or(|k| k <= key), "keys must be sorted");
        debug_assert!((slot as u64) < (1u64 << self.slot_bits) - 1);
        self.last_key = Some(key);
        let pos = home(key, self.capacity) as u64;
        while self.cursor < pos {
            out.write_all(&EMPTY.to_le_bytes())?;
            self.cursor += 1;
        }
        out.write_all(&((key & self.hi_mask) | slot as u64).to_le_bytes())?;
        self.cursor += 1;
        Ok(())
    }

    /// Appends a marker entry (see [`IndexParams::markers`]), in key order like `push`.
    pub fn push_marker(&mut self, key: u64, out: &mut impl Write) -> std::io::Result<()> {
        self.push(key, marker_slot(self.slot_bits), out)
    }

    /// Pads the home range and writes the terminating empty entry.
    pub fn finish(mut self, out: &mut impl Write) -> std::io::Result<IndexParams> {
        while self.cursor < self.capacity {
            out.write_all(&EMPTY.to_le_bytes())?;
            self.cursor += 1;
        }
        out.write_all(&EMPTY.to_le_bytes())?;
        self.cursor += 1;
        Ok(IndexParams {
            capacity: self.capacity,
            slot_bits: self.slot_bits,
            len: self.cursor,
            key_bits: self.key_bits,
            markers: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn build(keys: &mut [(u64, u32)]) -> (Vec<u64>, IndexParams) {
        keys.sort();
        let mut w = IndexWriter::new(keys.len() as u64, keys.len() as u64, 64);
        let mut bytes = Vec::new();
        for &(k, s) in keys.iter() {
            w.push(k, s, &mut bytes).unwrap();
        }
        let p = w.finish(&mut bytes).unwrap();
        let entries: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(entries.len() as u64, p.len);
        (entries, p)
    }

    #[test]
    fn finds_every_key_and_rejects_others() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut keys: Vec<(u64, u32)> = (0..20_000u32).map(|s| (rng.gen(), s)).collect();
        let truth: std::collections::HashMap<u64, u32> = keys.iter().copied().collect();
        let (entries, p) = build(&mut keys);
        let ix = IndexView::new(&entries, &p);
        for (&k, &s) in &truth {
            assert_eq!(ix.probe(k, |c| c == s), Some(s));
        }
        for _ in 0..20_000 {
            let k: u64 = rng.gen();
            if !truth.contains_key(&k) {
                assert_eq!(ix.probe(k, |c| truth.get(&k) == Some(&c)), None);
            }
        }
        // a few bytes per key
        assert!((entries.len() * 8) as f64 / truth.len() as f64 <= 10.0);
    }

    #[test]
    fn colliding_keys_stay_retrievable() {
        let mut keys = vec![(42u64, 0u32), (42, 1), (42, 2), (7, 3)];
        let (entries, p) = build(&mut keys);
        let ix = IndexView::new(&entries, &p);
        for want in 0..3u32 {
            assert_eq!(ix.probe(42, |c| c == want), Some(want));
        }
        assert_eq!(ix.probe(42, |_| false), None);
    }

    #[test]
    fn damaged_array_without_terminator_does_not_panic() {
        let p = IndexParams { capacity: 4, slot_bits: 2, len: 4, key_bits: 64, markers: 0 };
        let entries = [0u64, 0, 0, 0];
        let ix = IndexView::new(&entries, &p);
        assert_eq!(ix.probe(u64::MAX, |_| false), None);
        let ix = IndexView::new(&[], &p);
        assert_eq!(ix.probe(123, |_| true), None);
    }
}
