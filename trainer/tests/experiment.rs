//! The experiment driver's run selection: `run_selected` trains and evaluates
//! only the named runs and keeps the others' rows from results.json; an
//! f-gram model of another width than the LM's is refused.

use trainer::experiment::{run, run_names, run_selected, ExperimentConfig, Report};

struct Quiet;

impl Report for Quiet {
    fn line(&self, _: &str) {}
    fn bar(&self, _: u64, _: &str) -> indicatif::ProgressBar {
        indicatif::ProgressBar::hidden()
    }
}

fn tiny() -> ExperimentConfig {
    let mut cfg = ExperimentConfig::quick();
    cfg.steps = 2;
    cfg.warmup = 1;
    cfg.top_k = vec![500];
    cfg.eval_tokens = 300;
    cfg
}

#[test]
fn selected_runs_merge_into_the_existing_results() {
    let cfg = tiny();
    assert_eq!(run_names(&cfg), ["baseline", "baseline-tied", "scone-k500-f0"]);
    let dir = tempfile::tempdir().unwrap();
    let all = run(&cfg, dir.path(), &Quiet).unwrap().results;
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["baseline", "baseline-tied", "scone-k500-f0"]);
    let (base, tied, scone) = (&all[0], &all[1], &all[2]);
    assert_eq!(tied.accelerator_params, scone.accelerator_params);
    assert_eq!(tied.accelerator_params, base.accelerator_params - 2048 * cfg.lm.d_model);
    assert_eq!(tied.inference_flops_per_token, base.inference_flops_per_token);
    assert_eq!(tied.inference_flops_per_token, scone.inference_flops_per_token);
    // The f-gram model's own parameters: positions and blocks, without the
    // stack's final norm (2d); it reads the LM's T.
    let d = cfg.lm.d_model;
    assert_eq!(scone.fgram_params, cfg.n_max * d + cfg.fgram_models[0].block_params() - 2 * d);

    // Only the tied baseline: resumed from its finished checkpoint and
    // evaluated again; the other rows come back from results.json as written.
    let only = vec!["baseline-tied".to_string()];
    let merged = run_selected(&cfg, dir.path(), Some(&only), &Quiet).unwrap().results;
    assert_eq!(merged.len(), 3);
    for (a, b) in all.iter().zip(&merged) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.ppl_model, b.ppl_model, "{}", a.name);
        if a.name != "baseline-tied" {
            assert_eq!(a.train_seconds, b.train_seconds, "{} kept", a.name);
        }
    }
    let (_, written): (serde_json::Value, Vec<serde_json::Value>) =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(written.len(), 3);

    let e = run_selected(&cfg, dir.path(), Some(&["nope".to_string()]), &Quiet).err().expect("unknown run");
    assert!(e.to_string().contains("no run `nope`"), "{e}");
    let mut other = cfg.clone();
    other.seed += 1;
    let e = run_selected(&other, dir.path(), Some(&only), &Quiet).err().expect("another configuration");
    assert!(e.to_string().contains("another configuration"), "{e}");
}

#[test]
fn an_fgram_model_of_another_width_is_refused() {
    let mut cfg = tiny();
    cfg.fgram_models[0].d_model = 2 * cfg.lm.d_model;
    let dir = tempfile::tempdir().unwrap();
    let e = run(&cfg, dir.path(), &Quiet).err().expect("a wider f-gram model");
    assert!(e.to_string().contains("f-gram model f0 has width 128, the LM's d_model is 64"), "{e}");
    // Refused before any work: nothing written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
