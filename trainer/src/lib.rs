//! SCONE companion trainer: corpora, a word tokenizer, memory-bounded exact
//! n-gram counting and f-gram selection. Model training lands later.

pub mod corpus;
pub mod ngram_count;
pub mod select;
pub mod tokenizer;

pub use corpus::{kjv, parse_verses, read_text_file, CorpusError, Verse};
pub use ngram_count::{
    count_ngrams, count_ngrams_with_stats, CountConfig, CountError, CountStats, MergedCounts, NgramCount, NgramCounter,
};
pub use select::{select_fgrams, try_select_fgrams};
pub use tokenizer::{TokenizerError, WordTokenizer};
