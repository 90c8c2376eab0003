//! The header's byte layout, written and read field by field (docs/FORMAT.md
//! has the table). Version 1's layout is what bincode 1 wrote with fixed-width
//! little-endian integers; it is spelled out here so that the bytes never
//! depend on a serializer's field order or a crate's version. Decoding never
//! panics and never allocates more than the bytes it was given.

use crate::dtype::Dtype;
use crate::format::{BuildInfo, Header, IndexParams, Section, SectionKind, TokenizerInfo};

/// Most sections a header may list (one of each kind).
const MAX_SECTIONS: u64 = 6;

fn dtype_code(d: Dtype) -> u32 {
    match d {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::BF16 => 2,
    }
}

fn section_code(k: SectionKind) -> u32 {
    match k {
        SectionKind::Rows => 0,
        SectionKind::Counts => 1,
        SectionKind::Ngrams => 2,
        SectionKind::Index => 3,
        SectionKind::Tokenizer => 4,
        SectionKind::TokenRows => 5,
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// The header's bytes (without the preamble).
pub fn encode(h: &Header) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(512));
    w.u32(h.dim);
    w.u32(dtype_code(h.dtype));
    w.u32(h.n_max);
    w.u32(h.vocab_size);
    w.u64(h.rows);
    w.u64(h.row_stride);
    w.u64(h.key_seed);
    w.u8(h.hottest_first as u8);
    w.u64(h.index.capacity);
    w.u32(h.index.slot_bits);
    w.u64(h.index.len);
    w.u32(h.index.key_bits);
    w.u64(h.index.markers);
    w.u64(h.build.created_unix);
    w.str(&h.build.tool);
    w.str(&h.build.source);
    w.u64(h.build.key_collisions);
    match &h.tokenizer {
        None => w.u8(0),
        Some(t) => {
            w.u8(1);
            w.str(&t.kind);
            w.u64(t.fingerprint);
        }
    }
    w.u64(h.sections.len() as u64);
    for s in &h.sections {
        w.u32(section_code(s.kind));
        w.u64(s.offset);
        w.u64(s.len);
        w.u64(s.checksum);
    }
    w.0
}

/// A cursor over the header's bytes; every read names the field it failed at.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("header ends inside field {field} (at byte {} of {})", self.at, self.bytes.len()));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bool(&mut self, field: &str) -> Result<bool, String> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("field {field} is {v}, not a boolean")),
        }
    }
    fn str(&mut self, field: &str) -> Result<String, String> {
        let len = self.u64(field)?;
        let len = usize::try_from(len).map_err(|_| format!("field {field} claims {len} bytes"))?;
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("field {field} is not UTF-8"))
    }
}

/// Parses the header's bytes; all of them must be used.
pub fn decode(bytes: &[u8]) -> Result<Header, String> {
    let mut r = Reader { bytes, at: 0 };
    let dim = r.u32("dim")?;
    let dtype = match r.u32("dtype")? {
        0 => Dtype::F32,
        1 => Dtype::F16,
        2 => Dtype::BF16,
        v => return Err(format!("dtype code {v} is unknown")),
    };
    let n_max = r.u32("n_max")?;
    let vocab_size = r.u32("vocab_size")?;
    let rows = r.u64("rows")?;
    let row_stride = r.u64("row_stride")?;
    let key_seed = r.u64("key_seed")?;
    let hottest_first = r.bool("hottest_first")?;
    let index = IndexParams {
        capacity: r.u64("index.capacity")?,
        slot_bits: r.u32("index.slot_bits")?,
        len: r.u64("index.len")?,
        key_bits: r.u32("index.key_bits")?,
        markers: r.u64("index.markers")?,
    };
    let build = BuildInfo {
        created_unix: r.u64("build.created_unix")?,
        tool: r.str("build.tool")?,
        source: r.str("build.source")?,
        key_collisions: r.u64("build.key_collisions")?,
    };
    let tokenizer = match r.u8("tokenizer")? {
        0 => None,
        1 => Some(TokenizerInfo { kind: r.str("tokenizer.kind")?, fingerprint: r.u64("tokenizer.fingerprint")? }),
        v => return Err(format!("tokenizer tag {v} is neither 0 nor 1")),
    };
    let count = r.u64("sections")?;
    if count > MAX_SECTIONS {
        return Err(format!("{count} sections listed; a table has at most {MAX_SECTIONS}"));
    }
    let mut sections = Vec::with_capacity(count as usize);
    for i in 0..count {
        let kind = match r.u32("section kind")? {
            0 => SectionKind::Rows,
            1 => SectionKind::Counts,
            2 => SectionKind::Ngrams,
            3 => SectionKind::Index,
            4 => SectionKind::Tokenizer,
            5 => SectionKind::TokenRows,
            v => return Err(format!("section {i} has unknown kind {v}")),
        };
        sections.push(Section {
            kind,
            offset: r.u64("section offset")?,
            len: r.u64("section length")?,
            checksum: r.u64("section checksum")?,
        });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the header's last field", bytes.len() - r.at));
    }
    Ok(Header {
        dim,
        dtype,
        n_max,
        vocab_size,
        rows,
        row_stride,
        key_seed,
        hottest_first,
        index,
        build,
        tokenizer,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncation_of_a_header_is_an_error_not_a_panic() {
        let h = Header {
            dim: 8,
            dtype: Dtype::BF16,
            n_max: 4,
            vocab_size: 100,
            rows: 3,
            row_stride: 64,
            key_seed: 7,
            hottest_first: true,
            index: IndexParams { capacity: 4, slot_bits: 3, len: 6, key_bits: 64, markers: 1 },
            build: BuildInfo { created_unix: 1, tool: "t".into(), source: "s".into(), key_collisions: 0 },
            tokenizer: Some(TokenizerInfo { kind: "k".into(), fingerprint: 9 }),
            sections: vec![Section { kind: SectionKind::Rows, offset: 4096, len: 192, checksum: 5 }],
        };
        let bytes = encode(&h);
        assert_eq!(decode(&bytes).unwrap(), h);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().contains("after the header's last field"));
    }
}
