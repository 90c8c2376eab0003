//! GPU tests of the staging ring and the lookup pipeline. Each one skips
//! (passes, with a note on stderr) when there is no CUDA driver or device;
//! `SCONE_REQUIRE_GPU=1` turns a skip into a failure.

mod common;

use common::*;
use engine::{Dtype, OpenOptions};
use gpu_bridge::{BridgeError, LookupPipeline, PipelineConfig, StagingRing};

/// What the device must hold for `tokens[start..]`: the CPU gather and mask.

#[test]
fn pipeline_matches_cpu_gather_with_batches_in_flight() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases =
        [(64usize, Dtype::F32, 3usize, 40u32, 600usize), (200, Dtype::F16, 4, 30, 900), (96, Dtype::BF16, 2, 50, 700)];
    for (case, &(dim, dtype, n_max, vocab, records)) in cases.iter().enumerate() {
        let table = build_table(
            &dir.path().join(format!("t{case}.scone")),
            dim,
            dtype,
            n_max,
            vocab,
            records,
            77 + case as u64,
            OpenOptions::default(),
        );
        let max_positions = 1000;
        let mut pipe = LookupPipeline::new(&table, &gpu, PipelineConfig::new(max_positions)).unwrap();
        assert_eq!(pipe.row_bytes(), dim * dtype.size());
        let mut rng = Rng(1234 + case as u64);
        let mut inputs = Vec::new();
        let mut handles = Vec::new();
        let mut total_hits = 0;
        let mut total_misses = 0;
        // Eight batches submitted before any is checked: the ring of 3 must
        // hold back, not overwrite, staging buffers still being copied.
        for i in 0..8 {
            let len = match i {
                0 => max_positions,
                1 => 0,
                2 => 1,
                _ => 1 + rng.below(max_positions as u64) as usize,
            };
            let tokens = random_tokens(&mut rng, len, vocab);
            let start = if i == 5 { (n_max - 1).min(len) } else { 0 };
            let h = pipe.submit_with_context(&tokens, start).unwrap();
            assert_eq!(h.positions(), len - start);
            inputs.push((tokens, start));
            handles.push(h);
        }
        for ((tokens, start), h) in inputs.iter().zip(&handles) {
            let (rows, mask) = h.copy_back_for_tests().unwrap();
            let (want_rows, want_mask) = expected(&table, tokens, *start);
            assert!(
                rows == want_rows,
                "case {case}: device rows differ from engine::gather ({} positions)",
                h.positions()
            );
            assert_eq!(mask, want_mask, "case {case}: mask differs from the matcher's hits");
            let hits = mask.iter().filter(|&&m| m == 1).count();
            assert_eq!(h.hit_count(), hits);
            total_hits += hits;
            total_misses += mask.len() - hits;
        }
        assert!(total_hits > 100 && total_misses > 100, "case {case}: {total_hits} hits, {total_misses} misses");

        // Recycled device buffers and errors: the pipeline stays usable.
        for h in handles {
            pipe.recycle(h);
        }
        let too_many = vec![1u32; max_positions + 1];
        assert!(matches!(pipe.submit(&too_many), Err(BridgeError::InvalidArgument(_))));
        assert!(matches!(pipe.submit_with_context(&[1, 2], 3), Err(BridgeError::InvalidArgument(_))));
        for _ in 0..5 {
            let len = 1 + rng.below(max_positions as u64) as usize;
            let tokens = random_tokens(&mut rng, len, vocab);
            let h = pipe.submit(&tokens).unwrap();
            let (rows, mask) = h.copy_back_for_tests().unwrap();
            assert!((rows, mask) == expected(&table, &tokens, 0), "case {case}: after an error");
            pipe.recycle(h);
        }
        // Dropping unfinished handles and the pipeline must not crash.
        let tokens = random_tokens(&mut rng, max_positions, vocab);
        let _unwaited = pipe.submit(&tokens).unwrap();
        let _unwaited2 = pipe.submit(&tokens).unwrap();
        pipe.wait_all().unwrap();
        eprintln!("case {case}: dim {dim} {dtype:?}: {total_hits} hits, {total_misses} misses checked");
    }
}

#[test]
fn staging_ring_applies_back_pressure() {
    let Some(gpu) = gpu_or_skip() else { return };
    let len = 1 << 20;
    let rounds = 10;
    let mut ring = StagingRing::new(&gpu, 3, len, true).unwrap();
    assert_eq!((ring.len(), ring.buffer_len()), (3, len));
    let mut dev = gpu.alloc_device(rounds * len).unwrap();
    for r in 0..rounds {
        let mut slot = ring.acquire().unwrap();
        assert_eq!(slot.index(), r % 3);
        // Refilling the buffer is only allowed once its last copy is done.
        slot.bytes().unwrap().fill(r as u8 + 1);
        slot.copy_to_device(0..len, &mut dev, r * len).unwrap();
        assert!(slot.bytes().is_err(), "writing after enqueuing a copy must be refused");
        let _ = slot.finish().unwrap();
    }
    // An abandoned slot does not advance the ring.
    let next = ring.next_index();
    drop(ring.acquire().unwrap());
    assert_eq!(ring.next_index(), next);
    let mut slot = ring.acquire().unwrap();
    assert!(slot.copy_to_device(0..len + 1, &mut dev, 0).is_err());
    assert!(slot.copy_to_device(0..len, &mut dev, rounds * len - 1).is_err());
    drop(slot);
    ring.wait_all().unwrap();
    let back = gpu.read_device(&dev).unwrap();
    for r in 0..rounds {
        assert!(back[r * len..(r + 1) * len].iter().all(|&b| b == r as u8 + 1), "round {r}");
    }
    assert!(matches!(StagingRing::new(&gpu, 0, 8, false), Err(BridgeError::InvalidArgument(_))));
}

/// A consumer on its own stream orders itself after a batch with
/// `BatchHandle::order_on` (no host wait): once the consumer's stream has
/// drained, the batch must be complete, and rows read on the consumer's
/// stream equal the CPU gather.
#[test]
fn consumer_stream_waits_for_the_batch_event() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let table = build_table(&dir.path().join("c.scone"), 1024, Dtype::F16, 3, 60, 3000, 91, OpenOptions::default());
    let consumer = gpu.with_new_stream().unwrap();
    let mut pipe = LookupPipeline::new(&table, &gpu, PipelineConfig::new(16384)).unwrap();
    let mut rng = Rng(4321);
    for round in 0..5 {
        let tokens = random_tokens(&mut rng, 16384, 60);
        let h = pipe.submit(&tokens).unwrap();
        h.order_on(&consumer).unwrap();
        consumer.synchronize().unwrap();
        assert!(h.is_complete().unwrap(), "round {round}: consumer stream ran ahead of the batch");
        let rows = consumer.read_device(h.rows()).unwrap();
        let (want_rows, _) = expected(&table, &tokens, 0);
        assert!(rows[..h.rows_len()] == want_rows[..], "round {round}");
        pipe.recycle(h);
    }
}
