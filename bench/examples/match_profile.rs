//! Times the matcher alone on a kept synthetic table, for tuning:
//! `cargo run --release -p scone-bench --example match_profile -- 10000000 /tmp/mp`
use std::hint::black_box;
use std::time::Instant;

use engine::{OpenOptions, SuffixMatcher, Table};
use scone_bench::synth::{self, Spec};
use scone_bench::{Sizes, Workload};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = std::path::PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "/tmp/match-profile".into()));
    std::fs::create_dir_all(&dir)?;
    let spec = Spec::new(n, 16);
    let path = dir.join(format!("t{n}.scone"));
    if !path.exists() {
        let cfg = synth::build_config(&spec, 1 << 30, Some(&dir));
        synth::build_table(&spec, &path, cfg)?;
    }
    for resident in [true, false] {
        let table = Table::open_with(
            &path,
            OpenOptions { verify_rows: false, resident_index: resident, resident_rows: false },
        )?;
        let sizes = Sizes { probes: 1000, stream_tokens: 4_000_000, batch: 4096, batches: 1 };
        let w = Workload::new(&spec, sizes, |g| table.lookup(g).is_some());
        let m = SuffixMatcher::new(&table);
        let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        let huge = smaps.lines().find(|l| l.starts_with("AnonHugePages")).unwrap_or("AnonHugePages: ?");
        println!("resident {resident}: {huge}");
        let mut out = Vec::with_capacity(w.stream.len());
        for _ in 0..3 {
            out.clear();
            let t = Instant::now();
            m.match_into(black_box(&w.stream), 0, &mut out);
            let s = t.elapsed().as_secs_f64();
            println!("resident {resident}: {:.2} M tokens/s", w.stream.len() as f64 / s / 1e6);
        }
        let refs: Vec<&[u32]> = w.absent.iter().map(|g| g.as_slice()).collect();
        black_box(refs);
    }
    Ok(())
}
