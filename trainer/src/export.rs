//! From a trained SCONE model to an engine table, and back into the model:
//! the f-gram model is run once over every f-gram and its outputs are
//! bulk-loaded hottest-first; the per-token block holds the LM's token
//! embedding T, the input of positions where no f-gram ends. At inference
//! the LM's inputs are read from that table (T also stays on the
//! accelerator as the tied output head).

use std::path::Path;

use candle_core::Tensor;
use engine::{
    gather_with_token_rows, BuildConfig, BuildSummary, Dtype, GatherOptions, SuffixMatcher, Table, TableBuilder,
};

use crate::model::Model;
use crate::ngram_count::NgramCount;
use crate::train::TrainError;

/// How to write the table.
pub struct ExportConfig {
    pub dtype: Dtype,
    /// N-grams per f-gram-model forward.
    pub batch: usize,
    /// Builder sort memory.
    pub memory_budget: usize,
    /// (kind, bytes) of the tokenizer, embedded so the table is never served with another.
    pub tokenizer: Option<(String, Vec<u8>)>,
    pub source: String,
}

/// Runs the f-gram model over `fgrams` (hottest first, with their counts),
/// adds T's rows as the per-token block, and writes the table at `path`.
pub fn export_table(
    model: &Model,
    fgrams: &[NgramCount],
    path: &Path,
    cfg: ExportConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<BuildSummary, TrainError> {
    let (Some(fm), Some(set)) = (&model.fgram, &model.fgrams) else {
        return Err(TrainError::Data("only a SCONE model has f-gram embeddings to export".into()));
    };
    let lm = &model.cfg.lm;
    let mut bc = BuildConfig::new(lm.stack.d_model as u32, cfg.dtype, set.n_max().max(2) as u32, lm.vocab as u32);
    bc.overwrite = true;
    bc.memory_budget = cfg.memory_budget;
    bc.tokenizer = cfg.tokenizer;
    bc.source = cfg.source;
    let engine_err = |e: engine::BuildError| TrainError::Engine(e.into());
    let mut b = TableBuilder::create(path, bc).map_err(engine_err)?;
    let total = (fgrams.len() + lm.vocab) as u64;
    let mut done = 0u64;
    let batch = cfg.batch.max(1);
    for chunk in fgrams.chunks(batch) {
        let refs: Vec<&[u32]> = chunk.iter().map(|f| f.tokens.as_slice()).collect();
        let rows = fm.forward(&refs, model.device())?.to_vec2::<f32>()?;
        for (f, row) in chunk.iter().zip(&rows) {
            b.push(&f.tokens, row, Some(f.count)).map_err(engine_err)?;
        }
        done += chunk.len() as u64;
        progress(done, total);
    }
    let token_rows = model.lm.token_embedding().to_vec2::<f32>()?;
    for chunk in token_rows.chunks(batch) {
        for row in chunk {
            b.push_token_row(row).map_err(engine_err)?;
        }
        done += chunk.len() as u64;
        progress(done, total);
    }
    b.finish().map_err(engine_err)
}

/// The LM's input embeddings [B, T, d] for `windows`, read from an engine
/// table: the longest f-gram's row at each position, the token's row (T)
/// from the per-token block where none matches. Matching sees only the window, as training did.
pub fn table_inputs(table: &Table, model: &Model, windows: &[&[u32]]) -> Result<Tensor, TrainError> {
    let d = table.dim();
    if d != model.cfg.lm.stack.d_model {
        return Err(TrainError::Data(format!(
            "{}: rows of {d} values, the model takes {}",
            table.path().display(),
            model.cfg.lm.stack.d_model
        )));
    }
    let m = SuffixMatcher::new(table);
    let t = windows.first().map_or(0, |w| w.len());
    let mut values = vec![0f32; windows.len() * t * d];
    let opts = GatherOptions { dtype: Dtype::F32, max_threads: 1 };
    for (w, out) in windows.iter().zip(values.chunks_exact_mut(t * d)) {
        let slots: Vec<u32> = m.match_tokens(w).iter().map(|h| h.slot).collect();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
        gather_with_token_rows(table, &slots, w, opts, bytes).map_err(|e| TrainError::Engine(e.into()))?;
    }
    Ok(Tensor::from_vec(values, (windows.len(), t, d), model.device())?)
}
