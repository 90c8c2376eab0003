//! Replays the fuzz targets' committed inputs on stable, as ordinary tests:
//! the seeds (`fuzz/seeds/<target>`) and the minimized corpora of the
//! recorded fuzz runs (`fuzz/corpus-min/<target>`). Each target's function
//! lives in `engine::untrusted`, so what runs here is what the fuzzer ran.

use std::path::Path;

use engine::untrusted;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [root.join("seeds").join(target), root.join("corpus-min").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            // A panic names the input that caused it.
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} fails", f.display());
            n += 1;
        }
    }
    eprintln!("{target}: {n} inputs replayed");
    n
}

#[test]
fn table_file_inputs() {
    assert!(replay("table_file", untrusted::exercise_table_bytes) > 0);
}

#[test]
fn ngram_lines_inputs() {
    assert!(replay("ngram_lines", untrusted::exercise_ngram_lines) > 0);
}

#[test]
fn npy_file_inputs() {
    assert!(replay("npy_file", untrusted::exercise_embeddings) > 0);
}

#[test]
fn match_tokens_inputs() {
    assert!(replay("match_tokens", untrusted::exercise_match_tokens) > 0);
}

#[test]
fn model_table_inputs() {
    assert!(replay("model_table", untrusted::model_check) > 0);
}

#[test]
fn the_table_seed_is_a_valid_table() {
    // Mutations should start from a file that passes every check.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/table_file/small.scone");
    let t = engine::Table::open(&seed).unwrap();
    t.verify().unwrap();
}
