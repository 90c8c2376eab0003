//! Committed fixture files: tables written by earlier versions of scone, and
//! damaged ones. Every later version must open the valid ones with the same
//! answers and reject the damaged ones with the same error. Regenerate only
//! when a new format version is added (never overwrite an old version's
//! files): `cargo test -p scone-engine --test format_fixtures -- --ignored`.

use std::path::{Path, PathBuf};

use engine::format::{decode_header_block, encode_header_block, FormatVersion, HEADER_BLOCK};
use engine::{BuildConfig, Dtype, GatherOptions, OpenError, Table, TableBuilder};

/// A generator that never changes (the fixtures' contents depend on it).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Fixture {
    file: &'static str,
    seed: u64,
    rows: usize,
    dim: usize,
    dtype: Dtype,
    n_max: usize,
    vocab: u32,
    counts: bool,
    extras: bool,
    key_bits: u32,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "v1-f16-basic.scone",
        seed: 1,
        rows: 40,
        dim: 8,
        dtype: Dtype::F16,
        n_max: 3,
        vocab: 30,
        counts: false,
        extras: false,
        key_bits: 64,
    },
    Fixture {
        file: "v1-bf16-counts-tokenizer-token-rows.scone",
        seed: 2,
        rows: 60,
        dim: 5,
        dtype: Dtype::BF16,
        n_max: 4,
        vocab: 25,
        counts: true,
        extras: true,
        key_bits: 64,
    },
    Fixture {
        file: "v1-f32-key-collisions.scone",
        seed: 3,
        rows: 50,
        dim: 3,
        dtype: Dtype::F32,
        n_max: 4,
        vocab: 40,
        counts: false,
        extras: false,
        key_bits: 5,
    },
];

type Records = (Vec<Vec<u32>>, Vec<Vec<f32>>, Vec<u64>);

/// The fixture's records: distinct n-grams, rows of multiples of 1/8, counts.
fn records(f: &Fixture) -> Records {
    let mut g = XorShift(0x9E37_79B9_7F4A_7C15 ^ f.seed);
    let mut ngrams: Vec<Vec<u32>> = Vec::new();
    while ngrams.len() < f.rows {
        let len = 2 + g.below(f.n_max as u64 - 1) as usize;
        let n: Vec<u32> = (0..len).map(|_| g.below(f.vocab as u64) as u32).collect();
        if !ngrams.contains(&n) {
            ngrams.push(n);
        }
    }
    let rows = (0..f.rows).map(|_| (0..f.dim).map(|_| (g.below(128) as f32 - 64.0) / 8.0).collect()).collect();
    let counts = (0..f.rows).map(|_| 1 + g.below(1000)).collect();
    (ngrams, rows, counts)
}

fn token_row(f: &Fixture, t: u32) -> Vec<f32> {
    (0..f.dim).map(|j| (t as f32 - j as f32) / 4.0).collect()
}

/// Values stored as `dtype` (exact here: multiples of 1/4 in a small range).
fn encode(row: &[f32], dtype: Dtype) -> Vec<u8> {
    row.iter()
        .flat_map(|&v| match dtype {
            Dtype::F32 => v.to_le_bytes().to_vec(),
            Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
            Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        })
        .collect()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn build_fixture(f: &Fixture, path: &Path) {
    let (ngrams, rows, counts) = records(f);
    let mut cfg = BuildConfig::new(f.dim as u32, f.dtype, f.n_max as u32, f.vocab);
    cfg.key_bits = f.key_bits;
    cfg.overwrite = true;
    cfg.source = format!("fixture {}", f.file);
    if f.extras {
        cfg.tokenizer = Some(("fixture-tokenizer v1".into(), b"fixture tokenizer bytes".to_vec()));
    }
    let mut b = TableBuilder::create(path, cfg).unwrap();
    for i in 0..f.rows {
        b.push(&ngrams[i], &rows[i], f.counts.then_some(counts[i])).unwrap();
    }
    if f.extras {
        for t in 0..f.vocab {
            b.push_token_row(&token_row(f, t)).unwrap();
        }
    }
    b.finish().unwrap();
}

/// Damaged variants of the first fixture and the error each must give.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

fn damaged() -> Vec<(&'static str, Damage)> {
    let body = |b: &Vec<u8>| u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    vec![
        ("damaged-magic.scone", Box::new(|b: &mut Vec<u8>| b[0] = b'X')),
        ("damaged-version-99.scone", Box::new(|b: &mut Vec<u8>| b[8..12].copy_from_slice(&99u32.to_le_bytes()))),
        (
            "damaged-header-checksum.scone",
            Box::new(move |b: &mut Vec<u8>| {
                let at = 24 + body(b) / 2;
                b[at] ^= 0x10;
            }),
        ),
        (
            "damaged-index-bit-flip.scone",
            Box::new(|b: &mut Vec<u8>| {
                let h = decode_header_block(&b[..HEADER_BLOCK as usize]).unwrap();
                let s = h.section(engine::format::SectionKind::Index).unwrap();
                b[s.offset as usize + 9] ^= 4;
            }),
        ),
        ("damaged-rows-bit-flip.scone", Box::new(|b: &mut Vec<u8>| b[HEADER_BLOCK as usize + 3] ^= 1)),
        ("damaged-truncated.scone", Box::new(|b: &mut Vec<u8>| b.truncate(HEADER_BLOCK as usize + 100))),
    ]
}

#[test]
#[ignore = "writes the committed fixtures; run only when adding a format version"]
fn regenerate_fixtures() {
    std::fs::create_dir_all(dir()).unwrap();
    for f in FIXTURES {
        build_fixture(f, &dir().join(f.file));
    }
    let good = std::fs::read(dir().join(FIXTURES[0].file)).unwrap();
    for (name, damage) in damaged() {
        let mut b = good.clone();
        damage(&mut b);
        std::fs::write(dir().join(name), b).unwrap();
    }
}

#[test]
fn every_valid_fixture_opens_with_the_answers_it_was_built_with() {
    for f in FIXTURES {
        let path = dir().join(f.file);
        let t = Table::open(&path).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        t.verify().unwrap();
        let version = u32::from_le_bytes(std::fs::read(&path).unwrap()[8..12].try_into().unwrap());
        assert_eq!(FormatVersion::from_u32(version), Some(FormatVersion::V1), "{}", f.file);
        assert_eq!((t.rows() as usize, t.dim(), t.dtype(), t.n_max()), (f.rows, f.dim, f.dtype, f.n_max), "{}", f.file);
        assert_eq!(t.header().index.key_bits, f.key_bits);
        assert_eq!(t.header().hottest_first, f.counts);
        let (ngrams, rows, counts) = records(f);
        for i in 0..f.rows {
            let slot = t.lookup(&ngrams[i]).unwrap_or_else(|| panic!("{}: record {i} not found", f.file));
            let mut out = vec![0u8; f.dim * 4];
            engine::gather(&t, &[slot], GatherOptions { dtype: Dtype::F32, max_threads: 1 }, &mut out).unwrap();
            let got: Vec<f32> = out.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(got, rows[i], "{}: record {i}", f.file);
            if f.counts {
                assert_eq!(t.count(slot), Some(counts[i]));
            }
        }
        if f.extras {
            assert_eq!(t.tokenizer(), Some(("fixture-tokenizer v1", &b"fixture tokenizer bytes"[..])));
            for tok in 0..f.vocab {
                let want: Vec<u8> = encode(&token_row(f, tok), f.dtype);
                assert_eq!(t.token_row_bytes(tok), Some(&want[..]), "{}: token row {tok}", f.file);
            }
        }
    }
}

#[test]
fn header_blocks_reencode_to_the_committed_bytes() {
    for f in FIXTURES {
        let bytes = std::fs::read(dir().join(f.file)).unwrap();
        let block = &bytes[..HEADER_BLOCK as usize];
        let h = decode_header_block(block).unwrap();
        assert_eq!(encode_header_block(&h).unwrap(), block, "{}: the header's byte layout changed", f.file);
    }
}

#[test]
fn every_damaged_fixture_is_rejected_with_its_error() {
    let open = |name: &str| Table::open(dir().join(name)).map(|_| ()).unwrap_err();
    assert!(matches!(open("damaged-magic.scone"), OpenError::BadMagic { .. }));
    assert!(matches!(open("damaged-version-99.scone"), OpenError::UnsupportedVersion { found: 99, supported: 1, .. }));
    assert!(
        matches!(open("damaged-header-checksum.scone"), OpenError::BadHeader { reason, .. } if reason.contains("checksum"))
    );
    assert!(matches!(
        open("damaged-index-bit-flip.scone"),
        OpenError::Checksum { section: engine::format::SectionKind::Index, .. }
    ));
    assert!(
        matches!(open("damaged-truncated.scone"), OpenError::BadSection { reason, .. } if reason.contains("truncated"))
    );
    // Rows are checksummed on demand: the table opens, verify finds the damage.
    let t = Table::open(dir().join("damaged-rows-bit-flip.scone")).unwrap();
    assert!(matches!(t.verify(), Err(OpenError::Checksum { section: engine::format::SectionKind::Rows, .. })));
    // Every file named in the fixture list exists (none silently skipped).
    let n = std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "scone"))
        .count();
    assert_eq!(n, FIXTURES.len() + damaged().len());
}
