//! Training behaviour on a small slice of the bundled corpus: loss goes down
//! for every model (baseline, tied baseline, SCONE), an interrupted run
//! resumes to the same weights, and the tied baseline is SCONE's LM (the same
//! parameters, one token embedding shared with the output head), with the
//! f-gram model owning only its positions and blocks.

use std::sync::Arc;

use candle_core::Device;
use trainer::fgram_set::FgramSet;
use trainer::model::{Model, ModelConfig};
use trainer::nn::layers::StackConfig;
use trainer::nn::{AdamWConfig, FgramConfig, LmConfig};
use trainer::train::{TrainConfig, Trainer};
use trainer::{count_ngrams, select_fgrams, CountConfig, WordTokenizer};

struct Data {
    stream: Vec<u32>,
    vocab: usize,
    fgrams: Arc<FgramSet>,
}

fn data(verses: usize) -> Data {
    let v = trainer::kjv().unwrap();
    let texts: Vec<&str> = v.iter().take(verses).map(|v| v.text.as_str()).collect();
    let tok = WordTokenizer::train(texts.iter().copied(), 4096, 1);
    let docs: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    let counts =
        count_ngrams(docs.iter().map(|d| d.as_slice()), &CountConfig { n_max: 3, ..Default::default() }).unwrap();
    let fgrams = select_fgrams(counts, 2000, 2);
    Data { stream: docs.concat(), vocab: tok.vocab_size() as usize, fgrams: Arc::new(FgramSet::new(&fgrams, 3)) }
}

fn stack(d: usize, layers: usize) -> StackConfig {
    StackConfig { d_model: d, n_layers: layers, n_heads: 2, d_ff: 2 * d }
}

/// SCONE runs on the tied LM, as in the experiments.
fn config(vocab: usize, scone: bool) -> ModelConfig {
    let lm = LmConfig { vocab, context: 16, stack: stack(32, 1), tie_embeddings: scone };
    let fgram = scone.then_some(FgramConfig { n_max: 3, stack: stack(32, 1) });
    ModelConfig { lm, fgram }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Baseline,
    Tied,
    Scone,
}

fn config_of(vocab: usize, kind: Kind) -> ModelConfig {
    let mut c = config(vocab, kind == Kind::Scone);
    c.lm.tie_embeddings |= kind == Kind::Tied;
    c
}

fn model_of(d: &Data, kind: Kind, seed: u64) -> Model {
    let fgrams = (kind == Kind::Scone).then(|| d.fgrams.clone());
    Model::new(config_of(d.vocab, kind), fgrams, seed, &Device::Cpu).unwrap()
}

fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        lr: 3e-3,
        warmup: 2,
        seed: 7,
        checkpoint_every: 0,
        adamw: AdamWConfig::default(),
    }
}

fn mean(xs: &[f32]) -> f32 {
    xs.iter().sum::<f32>() / xs.len() as f32
}

#[test]
fn a_few_steps_lower_the_loss() {
    let d = data(400);
    for kind in [Kind::Baseline, Kind::Tied, Kind::Scone] {
        let mut t = Trainer::new(model_of(&d, kind, 1), train_config(40)).unwrap();
        t.run(&d.stream, 40, None, None).unwrap();
        let losses: Vec<f32> = t.history.iter().map(|p| p.loss).collect();
        let (first, last) = (mean(&losses[..5]), mean(&losses[35..]));
        assert!(last < first - 0.5, "{kind:?}: loss {first} -> {last}");
    }
}

#[test]
fn tied_baseline_has_the_scone_lms_accelerator_params() {
    let d = data(200);
    let (untied, tied, scone) =
        (model_of(&d, Kind::Baseline, 1), model_of(&d, Kind::Tied, 1), model_of(&d, Kind::Scone, 1));
    // The formula agrees with the parameters the models actually own.
    for m in [&untied, &tied, &scone] {
        assert_eq!(m.cfg.lm.accelerator_params(), m.params.count("lm."), "{:?}", m.cfg.lm);
    }
    let f = scone.cfg.fgram.unwrap();
    assert_eq!(f.params(), scone.params.count("fgram."));
    // The f-gram model owns its positions and blocks: no token embedding, no
    // projection, no final norm (the stack's last 2d).
    assert_eq!(f.params(), 3 * 32 + f.stack.block_params() - 2 * 32);
    let emb = d.vocab * 32;
    assert_eq!(tied.params.count("lm."), untied.params.count("lm.") - emb);
    // SCONE's LM is the tied baseline: the same parameters, names and shapes.
    let shapes = |m: &Model, prefix: &str| -> Vec<(String, Vec<usize>)> {
        m.params.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.dims().to_vec())).collect()
    };
    assert_eq!(shapes(&scone, "lm."), shapes(&tied, "lm."));
    assert_eq!(shapes(&scone, "").len(), shapes(&tied, "").len() + shapes(&scone, "fgram.").len());
    assert_eq!(scone.cfg.lm, tied.cfg.lm);
    assert!(tied.params.get("lm.head.weight").is_none() && tied.params.get("lm.head.bias").is_some());
    assert_eq!(tied.cfg.lm.flops_per_token(), untied.cfg.lm.flops_per_token());
    assert_eq!(tied.cfg.lm.flops_per_token(), scone.cfg.lm.flops_per_token());
    // An f-gram model of another width than the LM's is refused.
    let mut bad = config_of(d.vocab, Kind::Scone);
    bad.fgram.as_mut().unwrap().stack = stack(48, 1);
    let e = Model::new(bad, Some(d.fgrams.clone()), 1, &Device::Cpu).err().expect("width 48 against 32");
    assert!(e.to_string().contains("differs from the LM's d_model 32"), "{e}");
}

#[test]
fn the_tied_matrix_gets_the_gradients_of_both_its_uses() {
    // An untied baseline whose head weight is set to the embedding's
    // transpose computes the same function; the tied gradient must be the
    // sum of its embedding and (transposed) head gradients.
    let d = data(200);
    let tied = model_of(&d, Kind::Tied, 5);
    let untied = model_of(&d, Kind::Baseline, 5);
    let mut w = tied.params.tensors();
    w.insert("lm.head.weight".into(), w["lm.tok_emb"].t().unwrap().contiguous().unwrap());
    untied.params.load(&w).unwrap();

    let windows: Vec<&[u32]> = d.stream.chunks(17).take(4).collect();
    let (lt, lu) = (tied.loss(&windows).unwrap(), untied.loss(&windows).unwrap());
    let (vt, vu) = (lt.to_scalar::<f32>().unwrap(), lu.to_scalar::<f32>().unwrap());
    assert!((vt - vu).abs() < 1e-5, "{vt} vs {vu}");
    let (gt, gu) = (lt.backward().unwrap(), lu.backward().unwrap());
    let grad =
        |m: &Model, g: &candle_core::backprop::GradStore, n: &str| g.get(m.params.get(n).unwrap()).unwrap().clone();
    let g_tied = grad(&tied, &gt, "lm.tok_emb");
    let g_sum = (grad(&untied, &gu, "lm.tok_emb") + grad(&untied, &gu, "lm.head.weight").t().unwrap()).unwrap();
    let diff = (g_tied - &g_sum).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = g_sum.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(scale > 0.0 && diff <= 1e-4 * scale, "max |tied - (emb + head^T)| = {diff}, max |grad| = {scale}");
}

#[test]
fn same_seed_same_weights_and_resume_matches_uninterrupted_run() {
    let d = data(200);
    for kind in [Kind::Scone, Kind::Tied] {
        resume_matches_uninterrupted(&d, kind);
    }
}

fn resume_matches_uninterrupted(d: &Data, kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let fgrams = (kind == Kind::Scone).then(|| d.fgrams.clone());
    let weights = |t: &Trainer| -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> = t
            .model
            .params
            .tensors()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let fresh = || Trainer::new(model_of(d, kind, 3), train_config(12)).unwrap();
    let mut whole = fresh();
    whole.run(&d.stream, 12, None, None).unwrap();

    let mut first = fresh();
    first.run(&d.stream, 5, Some(dir.path()), None).unwrap();
    drop(first); // the "interruption"
    let mut resumed = Trainer::resume(dir.path(), fgrams, &Device::Cpu).unwrap();
    assert_eq!(resumed.step(), 5);
    assert_eq!(resumed.model.cfg, config_of(d.vocab, kind));
    resumed.run(&d.stream, 12, Some(dir.path()), None).unwrap();

    assert_eq!(whole.history, resumed.history, "{kind:?}");
    assert_eq!(weights(&whole), weights(&resumed), "{kind:?}");
    // And the weights did move: a fresh model differs.
    assert_ne!(weights(&fresh()), weights(&whole));
}

#[test]
fn resume_rejects_another_fgram_list_and_a_damaged_checkpoint() {
    let d = data(200);
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(config(d.vocab, true), Some(d.fgrams.clone()), 3, &Device::Cpu).unwrap();
    let mut t = Trainer::new(model, train_config(4)).unwrap();
    t.run(&d.stream, 2, Some(dir.path()), None).unwrap();

    let other = Arc::new(FgramSet::new(&[], 3));
    let e = Trainer::resume(dir.path(), Some(other), &Device::Cpu).err().expect("other f-grams rejected");
    assert!(e.to_string().contains("different f-gram list"), "{e}");

    // A longer run keeps exactly one state file, and its metadata reads back.
    t.run(&d.stream, 4, Some(dir.path()), None).unwrap();
    let states: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert_eq!(states, vec!["state-4.safetensors".to_string()]);
    let meta_path = dir.path().join("checkpoint.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(&meta_path, meta.replacen("\"step\":4", "\"step\":3", 1)).unwrap();
    let e = Trainer::resume(dir.path(), Some(d.fgrams.clone()), &Device::Cpu).err().expect("edited meta detected");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    std::fs::write(&meta_path, meta).unwrap();

    let state = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&state, bytes).unwrap();
    let e = Trainer::resume(dir.path(), Some(d.fgrams.clone()), &Device::Cpu).err().expect("damage detected");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn the_fgram_learning_rate_scale_acts_on_the_fgram_model_alone() {
    // AdamW's first step moves every parameter by lr * (g / |g| + decay *
    // theta), so with the f-gram model's rate scaled by s its parameters move
    // s times as far, while the LM's (T among them) move exactly as at s = 1.
    let d = data(200);
    let step_with = |scale: f64| {
        let mut cfg = train_config(1);
        cfg.adamw.fgram_lr_scale = scale;
        let mut t = Trainer::new(model_of(&d, Kind::Scone, 3), cfg).unwrap();
        // Copies: a parameter's update writes into its storage in place.
        let before: std::collections::HashMap<String, candle_core::Tensor> =
            t.model.params.tensors().into_iter().map(|(k, v)| (k, v.copy().unwrap())).collect();
        t.run(&d.stream, 1, None, None).unwrap();
        let after = t.model.params.tensors();
        before
            .into_iter()
            .map(|(k, b)| {
                let delta = (&after[&k] - &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (k, delta)
            })
            .collect::<std::collections::HashMap<String, Vec<f32>>>()
    };
    let (full, quarter, frozen) = (step_with(1.0), step_with(0.25), step_with(0.0));
    let mut fgram_moved = 0;
    for (name, d1) in &full {
        let (dq, d0) = (&quarter[name], &frozen[name]);
        if name.starts_with("fgram.") {
            assert!(d0.iter().all(|&x| x == 0.0), "{name} moved with scale 0");
            for (a, b) in d1.iter().zip(dq) {
                assert!((0.25 * a - b).abs() <= 1e-6 + 1e-3 * a.abs(), "{name}: {b} is not a quarter of {a}");
            }
            fgram_moved += d1.iter().filter(|&&x| x != 0.0).count();
        } else {
            assert_eq!(d1, dq, "{name}: the LM's step depends on the f-gram scale");
            assert_eq!(d1, d0, "{name}: the LM's step depends on the f-gram scale");
        }
    }
    assert!(fgram_moved > 0, "the f-gram model did not move at scale 1");
    assert!(full["lm.tok_emb"].iter().any(|&x| x != 0.0), "T did not move");
}
