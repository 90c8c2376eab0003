//! SCONE companion trainer: corpora, memory-bounded exact n-gram counting,
//! f-gram selection, the candle models (baseline LM and SCONE's f-gram model),
//! training with checkpoints, export and evaluation.
//!
//! The tokenizers live in the `scone-tokenizer` crate, which serving code uses
//! without the trainer; they are re-exported here under their old paths
//! (`trainer::bpe`, `trainer::tokenizer`, `trainer::BpeTokenizer`, ...).

#![forbid(unsafe_code)]

pub mod corpus;
pub mod experiment;
pub mod export;
pub mod fgram_list;
pub mod fgram_set;
pub mod model;
pub mod ngram_count;
pub mod nn;
pub mod select;
pub mod train;

pub use corpus::{kjv, parse_verses, read_text_file, CorpusError, Verse};
pub use fgram_list::{read_fgram_list, write_fgram_list, FgramList, FgramListError};
pub use ngram_count::{
    count_ngrams, count_ngrams_with_stats, CountConfig, CountError, CountStats, MergedCounts, NgramCount, NgramCounter,
};
pub use scone_tokenizer::bpe;
/// The word tokenizer (`scone_tokenizer::word`), under its old name.
pub use scone_tokenizer::word as tokenizer;
pub use scone_tokenizer::{BpeError, BpeTokenizer, TokenizerError, WordTokenizer};
pub use select::{select_fgrams, try_select_fgrams};
