//! The corruption matrix: every kind of damage a table file can suffer, at
//! every section, must be caught (at open, at open with row checksums, or by
//! `verify`), and the error must name the file. Damage that changes no byte
//! is not counted. The counts tried and caught are printed (docs/RELIABILITY.md).

mod common;

use std::path::Path;

use common::*;
use engine::format::{decode_header_block, encode_header_block, Header, SectionKind, HEADER_BLOCK};
use engine::{Dtype, OpenOptions, Table, TableBuilder};
use rand::{Rng, SeedableRng};

const VOCAB: u32 = 40;

/// A table with every section: rows, counts, ngrams, index, token rows, tokenizer.
fn full_table(path: &Path) -> Vec<u8> {
    let spec = random_spec(5, 300, VOCAB, 4, 24, true);
    let mut cfg = config(24, Dtype::F16, 4, VOCAB);
    cfg.tokenizer = Some(("test-tokenizer v1".into(), b"a tokenizer's bytes".repeat(50)));
    let mut b = TableBuilder::create(path, cfg).unwrap();
    for (i, (g, r)) in spec.ngrams.iter().zip(&spec.rows).enumerate() {
        b.push(g, r, spec.counts.as_ref().map(|c| c[i])).unwrap();
    }
    for t in 0..VOCAB {
        b.push_token_row(&[t as f32 / 4.0; 24]).unwrap();
    }
    b.finish().unwrap();
    std::fs::read(path).unwrap()
}

/// Whether damage was caught: open fails, or open with row checksums fails,
/// or `verify` fails. Every error names the file.
fn caught(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let check = |e: engine::OpenError| {
        let msg = e.to_string();
        assert!(msg.contains(&name), "error does not name the file: {msg}");
        true
    };
    match Table::open(path) {
        Err(e) => return check(e),
        Ok(t) => {
            if let Err(e) = t.verify() {
                return check(e);
            }
        }
    }
    match Table::open_with(path, OpenOptions { verify_rows: true, ..OpenOptions::default() }) {
        Err(e) => check(e),
        Ok(_) => false,
    }
}

struct Tally {
    tried: u64,
    caught: u64,
    missed: Vec<String>,
}

impl Tally {
    fn run(&mut self, path: &Path, good: &[u8], bytes: &[u8], what: String) {
        if bytes == good {
            return; // changed nothing
        }
        std::fs::write(path, bytes).unwrap();
        self.tried += 1;
        if caught(path) {
            self.caught += 1;
        } else {
            self.missed.push(what);
        }
    }
}

fn with_header(good: &[u8], h: &Header) -> Vec<u8> {
    let mut b = good.to_vec();
    b[..HEADER_BLOCK as usize].copy_from_slice(&encode_header_block(h).unwrap());
    b
}

#[test]
fn every_damage_at_every_section_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let good = full_table(&dir.path().join("good.scone"));
    let header = decode_header_block(&good[..HEADER_BLOCK as usize]).unwrap();
    assert_eq!(header.sections.len(), 6, "the fixture must hold every section");
    let path = dir.path().join("damaged.scone");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut report = Vec::new();

    // 1. Bit flips: first, last and 14 random bytes of every section and of
    //    the header's used bytes, each at a random bit.
    let mut t = Tally { tried: 0, caught: 0, missed: vec![] };
    let body_len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as u64;
    let mut ranges: Vec<(String, u64, u64)> = vec![("header".into(), 0, 24 + body_len)];
    ranges.extend(header.sections.iter().map(|s| (s.kind.to_string(), s.offset, s.len)));
    for (name, off, len) in &ranges {
        let mut at = vec![*off, off + len - 1];
        at.extend((0..14).map(|_| off + rng.gen_range(0..*len)));
        for i in at {
            let mut b = good.clone();
            b[i as usize] ^= 1 << rng.gen_range(0..8);
            t.run(&path, &good, &b, format!("bit flip in {name} at byte {i}"));
        }
    }
    report.push(("bit flips", t));

    // 2. A zeroed page, at every page of the file.
    let mut t = Tally { tried: 0, caught: 0, missed: vec![] };
    for p in 0..good.len() / 4096 {
        let mut b = good.clone();
        b[p * 4096..(p + 1) * 4096].fill(0);
        t.run(&path, &good, &b, format!("zeroed page {p}"));
    }
    report.push(("zeroed pages", t));

    // 3. Truncation at and around every section boundary.
    let mut t = Tally { tried: 0, caught: 0, missed: vec![] };
    let mut cuts: Vec<u64> = vec![0, 1, 23, 24, HEADER_BLOCK - 1, HEADER_BLOCK];
    for s in &header.sections {
        for c in [s.offset, s.offset + s.len] {
            cuts.extend([c.saturating_sub(1), c, c + 1]);
        }
    }
    for c in cuts.into_iter().filter(|&c| (c as usize) < good.len()) {
        t.run(&path, &good, &good[..c as usize], format!("truncated to {c} bytes"));
    }
    report.push(("truncations", t));

    // 4. Swapped sections: two sections' places exchanged in a re-checksummed header.
    let mut t = Tally { tried: 0, caught: 0, missed: vec![] };
    for i in 0..header.sections.len() {
        for j in i + 1..header.sections.len() {
            let mut h = header.clone();
            let (a, b) = (h.sections[i], h.sections[j]);
            (h.sections[i].offset, h.sections[j].offset) = (b.offset, a.offset);
            (h.sections[i].len, h.sections[j].len) = (b.len, a.len);
            (h.sections[i].checksum, h.sections[j].checksum) = (b.checksum, a.checksum);
            t.run(&path, &good, &with_header(&good, &h), format!("sections {} and {} swapped", a.kind, b.kind));
        }
    }
    report.push(("swapped sections", t));

    // 5. Inflated or deflated counts and crafted values in a re-checksummed
    //    header: the impossible headers reliability testing found opening.
    let mut t = Tally { tried: 0, caught: 0, missed: vec![] };
    type Edit = (&'static str, fn(&mut Header));
    let edits: &[Edit] = &[
        ("rows + 1", |h| h.rows += 1),
        ("rows - 1", |h| h.rows -= 1),
        ("dim 2^29", |h| h.dim = 1 << 29),
        ("dim + 100", |h| h.dim += 100),
        ("n_max + 1", |h| h.n_max += 1),
        ("n_max 17", |h| h.n_max = 17),
        ("vocab size 0", |h| h.vocab_size = 0),
        ("vocab size 2 with larger ids stored", |h| h.vocab_size = 2),
        ("markers + 1", |h| h.index.markers += 1),
        ("index len + 1", |h| h.index.len += 1),
        ("index len 2^28", |h| h.index.len = 1 << 28),
        ("capacity 0", |h| h.index.capacity = 0),
        ("capacity 1", |h| h.index.capacity = 1),
        ("capacity + 1", |h| h.index.capacity += 1),
        ("slot bits 32", |h| h.index.slot_bits = 32),
        ("slot bits + 1", |h| h.index.slot_bits += 1),
        ("key bits 1", |h| h.index.key_bits = 1),
        ("key bits 40", |h| h.index.key_bits = 40),
        ("key seed + 1", |h| h.key_seed += 1),
        ("row stride + 64", |h| h.row_stride += 64),
        ("dtype f32", |h| h.dtype = Dtype::F32),
        ("hottest first without counts", |h| h.sections.retain(|s| s.kind != SectionKind::Counts)),
        ("tokenizer info without its section", |h| h.sections.retain(|s| s.kind != SectionKind::Tokenizer)),
        ("overlapping sections", |h| {
            let ngrams = *h.section(SectionKind::Ngrams).unwrap();
            let c = h.sections.iter_mut().find(|s| s.kind == SectionKind::Counts).unwrap();
            c.offset = ngrams.offset;
        }),
        ("a section listed twice", |h| {
            let s = *h.section(SectionKind::Counts).unwrap();
            h.sections.push(s);
        }),
    ];
    for (what, edit) in edits {
        let mut h = header.clone();
        edit(&mut h);
        t.run(&path, &good, &with_header(&good, &h), format!("crafted header: {what}"));
    }
    report.push(("crafted headers", t));

    let mut all_caught = true;
    for (kind, t) in &report {
        eprintln!("{kind}: {} tried, {} caught", t.tried, t.caught);
        for m in &t.missed {
            eprintln!("  missed: {m}");
        }
        all_caught &= t.missed.is_empty() && t.tried > 0;
    }
    assert!(all_caught, "some damage was not caught (see above)");
}

/// Crafted sections with their checksums recomputed: an index whose entries
/// are out of order, point past the rows, or carry a row twice; n-gram
/// records with ids outside the vocabulary. Each is refused at open.
#[test]
fn crafted_but_checksummed_sections_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let good = full_table(&dir.path().join("good.scone"));
    let header = decode_header_block(&good[..HEADER_BLOCK as usize]).unwrap();
    let path = dir.path().join("crafted.scone");
    let ix = *header.section(SectionKind::Index).unwrap();
    let ng = *header.section(SectionKind::Ngrams).unwrap();
    let entries: Vec<u64> = good[ix.offset as usize..(ix.offset + ix.len) as usize]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let slot_mask = (1u64 << header.index.slot_bits) - 1;
    let marker = slot_mask - 1;
    // Entries that point at rows (not empty, not markers).
    let full: Vec<usize> =
        (0..entries.len()).filter(|&i| entries[i] != u64::MAX && entries[i] & slot_mask != marker).collect();

    let write = |kind: SectionKind, section: &[u8]| {
        let s = *header.section(kind).unwrap();
        let mut b = good.clone();
        b[s.offset as usize..(s.offset + s.len) as usize].copy_from_slice(section);
        let mut h = header.clone();
        h.sections.iter_mut().find(|x| x.kind == kind).unwrap().checksum = xxhash_rust::xxh3::xxh3_64(section);
        b[..HEADER_BLOCK as usize].copy_from_slice(&encode_header_block(&h).unwrap());
        std::fs::write(&path, b).unwrap();
        Table::open(&path).map(|_| ()).unwrap_err().to_string()
    };
    let as_bytes = |e: &[u64]| e.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();

    let mut e = entries.clone();
    e.swap(full[3], full[40]);
    assert!(write(SectionKind::Index, &as_bytes(&e)).contains("index"));
    let mut e = entries.clone();
    e[full[5]] = (e[full[5]] & !slot_mask) | (header.rows + 3);
    assert!(write(SectionKind::Index, &as_bytes(&e)).contains("points at slot"));
    let mut e = entries.clone();
    let other = e[full[7]] & slot_mask;
    e[full[8]] = (e[full[8]] & !slot_mask) | other;
    let msg = write(SectionKind::Index, &as_bytes(&e));
    assert!(msg.contains("twice") || msg.contains("out of key order"), "{msg}");
    // Every entry emptied but the terminator: nothing indexes the rows.
    let e = vec![u64::MAX; entries.len()];
    assert!(write(SectionKind::Index, &as_bytes(&e)).contains("indexes 0 rows"));

    let mut words: Vec<u32> = good[ng.offset as usize..(ng.offset + ng.len) as usize]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    words[0] = VOCAB + 5;
    let bytes: Vec<u8> = words.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert!(write(SectionKind::Ngrams, &bytes).contains("vocabulary size"));
}

#[test]
fn a_probe_never_reads_past_the_bound_the_index_proved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let spec = random_spec(3, 2000, 1000, 4, 8, false);
    build(&path, &spec, config(8, Dtype::F16, 4, 1000));
    let t = Table::open(&path).unwrap();
    // Every stored n-gram is still found under the bound, and absent ones are not.
    for (i, g) in spec.ngrams.iter().enumerate() {
        assert_eq!(t.lookup(g).and_then(|s| t.ngram(s)), Some(g.as_slice()), "record {i}");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let known = naive_map(&spec);
    for _ in 0..5000 {
        let g: Vec<u32> = (0..rng.gen_range(2..=4)).map(|_| rng.gen_range(0..1000)).collect();
        assert_eq!(t.lookup(&g).is_some(), known.contains_key(&g));
    }
    t.verify().unwrap();
}
