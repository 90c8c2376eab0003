//! Times single-thread gathers against the memcpy ceiling on a kept synthetic table:
//! `cargo run --release -p scone-bench --example gather_profile -- 4000000 /tmp/gp`
use std::hint::black_box;
use std::time::Instant;

use engine::{gather, Dtype, GatherOptions, Table};
use scone_bench::measure::MemcpyCeiling;
use scone_bench::synth::{self, Spec};
use scone_bench::{Sizes, Workload};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(4_000_000), |s| s.parse())?;
    let dir = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "/tmp/gather-profile".into()));
    std::fs::create_dir_all(&dir)?;
    let spec = Spec::new(n, 256);
    let path = dir.join(format!("t{n}.scone"));
    if !path.exists() {
        let cfg = synth::build_config(&spec, 1 << 30, Some(&dir));
        synth::build_table(&spec, &path, cfg)?;
    }
    let table = Table::open(&path)?;
    table.verify()?; // touch every page once
    let sizes = Sizes { probes: 10, stream_tokens: 10, batch: 4096, batches: 64 };
    let w = Workload::new(&spec, sizes, |g| table.lookup(g).is_some());
    let bytes = 4096 * spec.row_bytes();
    let mut out = vec![0u8; bytes];
    let mut ceil = MemcpyCeiling::new(1 << 30);
    for _ in 0..5 {
        let t = Instant::now();
        for b in &w.batches {
            gather(&table, b, GatherOptions { dtype: Dtype::F16, max_threads: 1 }, &mut out)?;
            black_box(&out);
        }
        let g = (bytes * w.batches.len()) as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in &w.batches {
            ceil.copy(&mut out);
            black_box(&out);
        }
        let c = (bytes * w.batches.len()) as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!("gather {g:.2} GB/s  memcpy {c:.2} GB/s  ratio {:.2}", g / c);
    }
    Ok(())
}
