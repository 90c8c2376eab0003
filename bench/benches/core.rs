//! Criterion benches of probe, match and gather on a small synthetic table
//! (1 M f-grams by default; SCONE_BENCH_FGRAMS overrides), each beside the naive
//! baseline and a ceiling. `scone-bench core` is the full-size, one-shot report.

#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{gather, Dtype, GatherOptions, SuffixMatcher, Table};
use scone_bench::measure::{MemcpyCeiling, RandomReadCeiling};
use scone_bench::synth::{self, Spec, N_MAX};
use scone_bench::{Baseline, Sizes, Workload};

struct Fixture {
    _dir: tempfile::TempDir,
    table: Table,
    base: Baseline,
    w: Workload,
    reads: RandomReadCeiling,
    dim: usize,
}

fn fixture() -> Fixture {
    let fgrams = std::env::var("SCONE_BENCH_FGRAMS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let spec = Spec::new(fgrams, 256);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("core.scone");
    let cfg = synth::build_config(&spec, 1 << 30, Some(dir.path()));
    synth::build_table(&spec, &path, cfg).expect("build");
    let table = Table::open(&path).expect("open");
    table.verify().expect("verify"); // maps every page before timing
    let base = Baseline::build(&spec);
    let sizes = Sizes { probes: 100_000, stream_tokens: 200_000, batch: 4096, batches: 8 };
    let w = Workload::new(&spec, sizes, |g| base.lookup(g).is_some());
    let reads = RandomReadCeiling::new(table.index_bytes() as usize, 100_000, spec.seed);
    Fixture { _dir: dir, table, base, w, reads, dim: spec.dim }
}

fn benches(c: &mut Criterion) {
    let f = fixture();

    let mut g = c.benchmark_group("probe");
    g.throughput(Throughput::Elements(f.w.present.len() as u64));
    g.bench_function("scone", |b| b.iter(|| f.w.present.iter().filter_map(|q| f.table.lookup(q.as_slice())).count()));
    g.bench_function("baseline", |b| b.iter(|| f.w.present.iter().filter_map(|q| f.base.lookup(q.as_slice())).count()));
    g.bench_function("ceiling", |b| b.iter(|| f.reads.run()));
    g.finish();

    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(f.w.stream.len() as u64));
    let matcher = SuffixMatcher::new(&f.table);
    let mut out = Vec::with_capacity(f.w.stream.len());
    g.bench_function("scone", |b| {
        b.iter(|| {
            out.clear();
            matcher.match_into(black_box(&f.w.stream), 0, &mut out);
            out.len()
        })
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            out.clear();
            f.base.match_into(black_box(&f.w.stream), &mut out);
            out.len()
        })
    });
    // n_max - 1 random index reads per token, as in `scone-bench core`.
    g.throughput(Throughput::Elements((f.reads.reads() / (N_MAX - 1)) as u64));
    g.bench_function("ceiling", |b| b.iter(|| f.reads.run()));
    g.finish();

    let mut g = c.benchmark_group("gather");
    let batch = &f.w.batches[0];
    let bytes = batch.len() * f.dim * 2;
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut buf = vec![0u8; bytes];
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % f.w.batches.len();
        &f.w.batches[i]
    };
    for (name, threads) in [("scone_1thread", 1), ("scone_all_threads", 0)] {
        let opts = GatherOptions { dtype: Dtype::F16, max_threads: threads };
        g.bench_function(name, |b| b.iter(|| gather(&f.table, next(), opts, &mut buf).expect("gather")));
    }
    let mut base_out = Vec::with_capacity(batch.len() * f.dim);
    g.bench_function("baseline", |b| b.iter(|| f.base.gather(next(), &mut base_out)));
    let mut ceil = MemcpyCeiling::new(1 << 30);
    g.bench_function("ceiling_memcpy_1thread", |b| b.iter(|| ceil.copy(&mut buf)));
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
