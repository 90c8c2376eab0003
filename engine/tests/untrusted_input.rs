//! Damaged and crafted table files never panic the reader and never yield
//! wrong data: random byte flips anywhere, including flips whose checksums were
//! recomputed (what a crafted file looks like).

mod common;

use common::*;
use engine::format::{decode_header_block, encode_header_block, HEADER_BLOCK};
use engine::untrusted::open_and_exercise;
use engine::Dtype;
use rand::{Rng, SeedableRng};

fn base_table(dir: &std::path::Path) -> Vec<u8> {
    let spec = random_spec(9, 120, 16, 4, 5, true);
    let path = dir.join("base.scone");
    build(&path, &spec, config(5, Dtype::BF16, 4, 16));
    std::fs::read(&path).unwrap()
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = base_table(dir.path());
    let path = dir.path().join("fuzz.scone");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let mut opened = 0;
    for _ in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..rng.gen_range(1..8) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
        if rng.gen_bool(0.2) {
            bytes.truncate(rng.gen_range(0..bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap();
        opened += open_and_exercise(&path) as usize;
    }
    // Flips in padding or rows still open; the rest are rejected.
    assert!(opened < 300);
}

#[test]
fn crafted_headers_and_sections_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = base_table(dir.path());
    let header = decode_header_block(&good[..HEADER_BLOCK as usize]).ok().unwrap();
    let path = dir.path().join("crafted.scone");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(78);
    let mut opened = 0;
    for round in 0..400 {
        let mut h = header.clone();
        match round % 8 {
            0 => h.rows = rng.gen_range(0..1000),
            1 => h.dim = rng.gen_range(0..64),
            2 => h.n_max = rng.gen_range(0..20),
            3 => {
                h.index.capacity = rng.gen_range(0..300);
                if rng.gen_bool(0.3) {
                    h.index.len = rng.gen();
                }
            }
            4 => h.index.slot_bits = rng.gen_range(0..40),
            5 => h.row_stride = if rng.gen_bool(0.5) { rng.gen_range(0..256) } else { rng.gen() },
            6 => {
                let s = rng.gen_range(0..h.sections.len());
                h.sections[s].offset = rng.gen_range(0..good.len() as u64 + 10_000) & !4095;
            }
            _ => h.index.key_bits = rng.gen_range(0..70),
        }
        let mut bytes = good.clone();
        bytes[..HEADER_BLOCK as usize].copy_from_slice(&encode_header_block(&h).unwrap());
        // Sometimes also scribble on a section and fix its checksum, as an attacker would.
        if rng.gen_bool(0.5) {
            let s = header.sections[rng.gen_range(0..header.sections.len())];
            for _ in 0..4 {
                let i = s.offset as usize + rng.gen_range(0..s.len as usize);
                bytes[i] = rng.gen();
            }
            let mut h2 = h.clone();
            for sec in h2.sections.iter_mut().filter(|x| x.kind == s.kind) {
                sec.checksum = xxhash_rust::xxh3::xxh3_64(&bytes[s.offset as usize..(s.offset + s.len) as usize]);
            }
            bytes[..HEADER_BLOCK as usize].copy_from_slice(&encode_header_block(&h2).unwrap());
        }
        std::fs::write(&path, &bytes).unwrap();
        opened += open_and_exercise(&path) as usize;
    }
    // Some crafted files pass every check; their read paths ran too.
    assert!(opened > 20, "only {opened} crafted files opened");
}
