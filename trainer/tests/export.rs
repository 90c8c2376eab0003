//! Export → build → lookup gives the f-gram model's own outputs for the
//! f-grams and the LM's token embedding T in the per-token block, and
//! perplexity read from the table equals perplexity computed on the fly to
//! the storage dtype's precision.

use std::sync::Arc;

use candle_core::Device;
use engine::{Dtype, SuffixMatcher, Table};
use trainer::export::{export_table, table_inputs, ExportConfig};
use trainer::fgram_set::FgramSet;
use trainer::model::{perplexity, Model, ModelConfig};
use trainer::nn::layers::StackConfig;
use trainer::nn::{AdamWConfig, FgramConfig, LmConfig};
use trainer::train::{TrainConfig, Trainer};
use trainer::{count_ngrams, select_fgrams, CountConfig, NgramCount, WordTokenizer};

struct Setup {
    trainer: Trainer,
    fgrams: Vec<NgramCount>,
    held_out: Vec<u32>,
    tokenizer: WordTokenizer,
}

fn setup() -> Setup {
    let v = trainer::kjv().unwrap();
    let texts: Vec<&str> = v.iter().take(600).map(|v| v.text.as_str()).collect();
    let tok = WordTokenizer::train(texts.iter().copied(), 4096, 1);
    let docs: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    let (train, held) = docs.split_at(500);
    let counts =
        count_ngrams(train.iter().map(|d| d.as_slice()), &CountConfig { n_max: 3, ..Default::default() }).unwrap();
    let fgrams = select_fgrams(counts, 1500, 2);
    let vocab = tok.vocab_size() as usize;
    let stack = StackConfig { d_model: 24, n_layers: 1, n_heads: 2, d_ff: 48 };
    let cfg = ModelConfig {
        lm: LmConfig { vocab, context: 16, stack, tie_embeddings: true },
        fgram: Some(FgramConfig { n_max: 3, stack }),
    };
    let set = Arc::new(FgramSet::new(&fgrams, 3));
    let model = Model::new(cfg, Some(set), 5, &Device::Cpu).unwrap();
    let tc = TrainConfig {
        steps: 10,
        batch_size: 4,
        lr: 3e-3,
        warmup: 2,
        seed: 1,
        checkpoint_every: 0,
        adamw: AdamWConfig::default(),
    };
    let mut trainer = Trainer::new(model, tc).unwrap();
    trainer.run(&train.concat(), 10, None, None).unwrap();
    Setup { trainer, fgrams, held_out: held.concat(), tokenizer: tok }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn export(s: &Setup, dtype: Dtype, dir: &std::path::Path) -> Table {
    let path = dir.join(format!("t-{dtype}.scone"));
    let cfg = ExportConfig {
        dtype,
        batch: 97,
        memory_budget: 1 << 24,
        tokenizer: Some((trainer::tokenizer::KIND.to_string(), s.tokenizer.to_bytes())),
        source: "test".into(),
    };
    let summary = export_table(&s.trainer.model, &s.fgrams, &path, cfg, |_, _| {}).unwrap();
    assert_eq!(summary.rows, s.fgrams.len() as u64);
    Table::open(&path).unwrap()
}

#[test]
fn exported_rows_are_the_fgram_models_outputs_and_the_token_embedding() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let table = export(&s, Dtype::F32, dir.path());
    let model = &s.trainer.model;
    let fm = model.fgram.as_ref().unwrap();
    assert!(table.has_token_rows());
    assert_eq!(table.tokenizer().unwrap().1, s.tokenizer.to_bytes().as_slice());
    // Every 7th f-gram; then the per-token block, which is T.
    let picks: Vec<&NgramCount> = s.fgrams.iter().step_by(7).collect();
    let refs: Vec<&[u32]> = picks.iter().map(|f| f.tokens.as_slice()).collect();
    let want = fm.forward(&refs, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
    for (f, want) in picks.iter().zip(&want) {
        let slot = table.lookup(&f.tokens).expect("every f-gram is in the table");
        assert_eq!(table.count(slot), Some(f.count));
        let got: Vec<f32> = f32s(table.row_bytes(slot).unwrap());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{:?}: {a} vs {b}", f.tokens);
        }
    }
    let t_rows = model.lm.token_embedding().to_vec2::<f32>().unwrap();
    assert_eq!(t_rows.len(), s.tokenizer.vocab_size() as usize);
    for (t, want) in t_rows.iter().enumerate() {
        let got: Vec<f32> = f32s(table.token_row_bytes(t as u32).unwrap());
        assert_eq!(&got, want, "token {t}");
    }
    // Hottest first: counts never increase along the slots.
    let counts: Vec<u64> = (0..table.rows() as u32).map(|s| table.count(s).unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    // The engine's matcher picks the same n-gram per position as training did.
    let set = model.fgrams.as_ref().unwrap();
    let w = &s.held_out[..200];
    for (t, hit) in SuffixMatcher::new(&table).match_tokens(w).iter().enumerate() {
        let n = set.longest(w, t);
        assert_eq!(if hit.is_hit() { hit.len as usize } else { 1 }, n, "position {t}");
    }
}

#[test]
fn perplexity_from_the_table_equals_on_the_fly_to_storage_precision() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let model = &s.trainer.model;
    let ctx = model.cfg.lm.context;
    let on_the_fly = perplexity(model, &s.held_out, ctx, 8, |w| model.embed(w)).unwrap();
    for (dtype, tol) in [(Dtype::F32, 1e-5), (Dtype::F16, 2e-3), (Dtype::BF16, 2e-2)] {
        let table = export(&s, dtype, dir.path());
        let from_table = perplexity(model, &s.held_out, ctx, 8, |w| {
            table_inputs(&table, model, w).map_err(|e| candle_core::Error::Msg(e.to_string()))
        })
        .unwrap();
        let rel = (from_table - on_the_fly).abs() / on_the_fly;
        assert!(rel <= tol, "{dtype}: table {from_table} vs on the fly {on_the_fly} (rel {rel:e})");
    }
    assert!(on_the_fly.is_finite() && on_the_fly > 1.0);
}
