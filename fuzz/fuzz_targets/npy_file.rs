//! Arbitrary bytes as an embeddings file (.npy or .safetensors by magic): open and
//! read every row without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.npy", "e.safetensors"] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        if let Ok(src) = engine::ingest::open_embeddings(&path, None) {
            let mut row = vec![0f32; src.dim()];
            for r in 0..src.rows().min(1024) {
                let _ = src.read_row_f32(r, &mut row);
            }
        }
    }
});
