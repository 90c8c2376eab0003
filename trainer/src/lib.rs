//! SCONE companion trainer: corpora, a word tokenizer, memory-bounded exact
//! n-gram counting, f-gram selection, the candle models (baseline LM and
//! SCONE's f-gram model), training with checkpoints, export and evaluation.

#![forbid(unsafe_code)]

pub mod bpe;
pub mod corpus;
pub mod experiment;
pub mod export;
pub mod fgram_list;
pub mod fgram_set;
pub mod model;
pub mod ngram_count;
pub mod nn;
pub mod select;
pub mod tokenizer;
pub mod train;

pub use bpe::{BpeError, BpeTokenizer};
pub use corpus::{kjv, parse_verses, read_text_file, CorpusError, Verse};
pub use fgram_list::{read_fgram_list, write_fgram_list, FgramList, FgramListError};
pub use ngram_count::{
    count_ngrams, count_ngrams_with_stats, CountConfig, CountError, CountStats, MergedCounts, NgramCount, NgramCounter,
};
pub use select::{select_fgrams, try_select_fgrams};
pub use tokenizer::{TokenizerError, WordTokenizer};
