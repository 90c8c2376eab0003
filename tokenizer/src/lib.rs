//! The tokenizers a scone table may embed, apart from the trainer so that
//! serving code (the `scone` CLI's query commands, the Python package) can turn
//! text into token ids without linking candle.
//!
//! * [`word`]: the word-level tokenizer of hand-built tables (`scone build --tokenizer`);
//! * [`bpe`]: the byte-level BPE that trained tables embed (the Hugging Face
//!   `tokenizers` crate underneath);
//! * [`embedded`]: the tokenizer a table holds, whichever kind it is.
//!
//! docs/TOKENIZER.md describes both tokenizers and their serialized forms.

// Unsafe code belongs in the engine's I/O modules and gpu-bridge's FFI only.
#![forbid(unsafe_code)]

pub mod bpe;
pub mod embedded;
pub mod word;

pub use bpe::{BpeError, BpeTokenizer};
pub use embedded::{EmbeddedError, TextTokenizer};
pub use word::{TokenizerError, WordTokenizer};
