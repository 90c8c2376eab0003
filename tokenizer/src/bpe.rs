//! A byte-level BPE tokenizer (GPT-2 style), trained and run with the
//! Hugging Face `tokenizers` crate.
//!
//! # Configuration (`scone-bpe-bytelevel v1`)
//! * no normalizer: text is tokenized exactly as given (no lowercasing, no
//!   Unicode normalization), so decoding gives back the very same string;
//! * pre-tokenizer `ByteLevel` with the GPT-2 split regex and
//!   `add_prefix_space = false`: nothing is added to the text, so
//!   `decode(encode(s)) == s` for every UTF-8 string. The price is that the
//!   first word of a text has no leading space and so tokenizes differently
//!   from the same word in mid-sentence (`In` versus `Ġin`), as in GPT-2;
//! * model `BPE` without dropout, unknown token or byte fallback;
//! * decoder `ByteLevel`.
//!
//! The trainer's initial alphabet is all 256 byte symbols, so any byte
//! sequence (hence any text) encodes and there is no unknown token. Ids
//! `0..256` are the byte symbols in code-point order of their printable
//! stand-ins; ids `256..` are merges in the order they were learned.
//!
//! # Determinism
//! Training is deterministic: the byte alphabet is sorted, merges are chosen by
//! count with ties broken by the lower pair of ids, and pair counts are sums,
//! which do not depend on the order in which the `tokenizers` crate's worker
//! threads add them. Training twice on the same documents gives the same bytes
//! (tested in `tokenizer/tests/bpe.rs`), so parallelism is left on.
//!
//! # Serialized form
//! [`BpeTokenizer::to_bytes`] is the `tokenizers` JSON (`tokenizer.json`, as
//! the Python library reads it). [`BpeTokenizer::fingerprint`] is xxh3-64 of
//! those bytes: the value a table stores in its header when built with this
//! tokenizer in its tokenizer section (see `engine::Table::check_tokenizer`).

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Tokenizer;

/// The tokenizer kind recorded in a table's header when it embeds a [`BpeTokenizer`].
pub const KIND: &str = "scone-bpe-bytelevel v1";

/// Errors from training, loading, saving and decoding.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BpeError {
    #[error("invalid BPE configuration: {0}")]
    Config(String),
    #[error("BPE training failed: {0}")]
    Train(String),
    #[error("{what}: not a valid tokenizer JSON: {reason}")]
    Parse { what: String, reason: String },
    #[error("{what}: not a `{KIND}` tokenizer: {reason}")]
    WrongKind { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token id {id} at position {position} is out of range (vocabulary size {vocab_size})")]
    IdOutOfRange { position: usize, id: u32, vocab_size: u32 },
    #[error("decoded bytes are not valid UTF-8 (at byte {valid_up_to}); the ids split a character")]
    NotUtf8 { valid_up_to: usize },
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// A trained byte-level BPE tokenizer; see the module docs.
#[derive(Clone)]
pub struct BpeTokenizer {
    inner: Tokenizer,
    /// The serialized form this tokenizer was trained into or loaded from.
    bytes: Vec<u8>,
    /// The bytes each id stands for, indexed by id.
    id_bytes: Vec<Vec<u8>>,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.id_bytes.len())
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint()))
            .finish()
    }
}

impl PartialEq for BpeTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for BpeTokenizer {}

impl BpeTokenizer {
    /// The kind string, [`KIND`].
    pub const KIND: &'static str = KIND;

    /// Trains a vocabulary of at most `vocab_size` ids (at least 256: the byte
    /// alphabet) from `docs`, learning merges while the best pair occurs at
    /// least `min_frequency` times.
    pub fn train<'a>(
        docs: impl IntoIterator<Item = &'a str>,
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<Self, BpeError> {
        if vocab_size < 256 {
            return Err(BpeError::Config(format!("vocab_size {vocab_size} is below the 256-byte alphabet")));
        }
        if vocab_size > u32::MAX as usize {
            return Err(BpeError::Config(format!("vocab_size {vocab_size} exceeds u32 ids")));
        }
        let mut trainer = TrainerWrapper::BpeTrainer(
            BpeTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(min_frequency)
                .show_progress(false)
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .build(),
        );
        let mut tk = Tokenizer::new(BPE::default());
        tk.with_pre_tokenizer(Some(byte_level()));
        tk.with_decoder(Some(byte_level()));
        // `Tokenizer::train` wants a `Send` iterator; the caller's need not be.
        let docs: Vec<&str> = docs.into_iter().collect();
        tk.train(&mut trainer, docs.into_iter()).map_err(|e| BpeError::Train(e.to_string()))?;
        let json = tk.to_string(false).map_err(|e| BpeError::Train(format!("serializing: {e}")))?;
        Self::from_bytes(json.as_bytes())
    }

    /// Loads a tokenizer from its serialized form ([`Self::to_bytes`]),
    /// checking that it is a `scone-bpe-bytelevel v1` tokenizer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BpeError> {
        Self::parse(bytes, "tokenizer bytes")
    }

    fn parse(bytes: &[u8], what: &str) -> Result<Self, BpeError> {
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| BpeError::Parse { what: what.to_owned(), reason: e.to_string() })?;
        let wrong = |reason: String| BpeError::WrongKind { what: what.to_owned(), reason };
        match inner.get_model() {
            ModelWrapper::BPE(bpe) => {
                if bpe.dropout.is_some() {
                    return Err(wrong("BPE dropout is set (encoding would be random)".into()));
                }
                if bpe.continuing_subword_prefix.is_some() || bpe.end_of_word_suffix.is_some() {
                    return Err(wrong("BPE has a subword prefix or suffix".into()));
                }
            }
            _ => return Err(wrong("the model is not BPE".into())),
        }
        if inner.get_normalizer().is_some() {
            return Err(wrong("it has a normalizer".into()));
        }
        match inner.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(b)) if !b.add_prefix_space && b.use_regex => {}
            _ => {
                return Err(wrong("the pre-tokenizer is not ByteLevel(add_prefix_space=false, use_regex=true)".into()))
            }
        }
        if !matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return Err(wrong("the decoder is not ByteLevel".into()));
        }
        if inner.get_post_processor().is_some() {
            return Err(wrong("it has a post-processor".into()));
        }
        let n = inner.get_vocab_size(true);
        if n != inner.get_vocab_size(false) {
            return Err(wrong("it has added tokens".into()));
        }
        if n > u32::MAX as usize {
            return Err(wrong(format!("vocabulary of {n} exceeds u32 ids")));
        }
        let char_bytes = char_to_byte();
        let mut id_bytes = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let tok = inner.id_to_token(id).ok_or_else(|| wrong(format!("ids are not contiguous: no id {id}")))?;
            let b: Option<Vec<u8>> = tok.chars().map(|c| char_bytes.get(&c).copied()).collect();
            id_bytes.push(b.ok_or_else(|| wrong(format!("token {id} ({tok:?}) is not made of byte symbols")))?);
        }
        for byte in 0..=255u8 {
            let sym: String = byte_to_char()[byte as usize].to_string();
            if inner.token_to_id(&sym).is_none() {
                return Err(wrong(format!("byte {byte:#04x} has no token, so some text would not encode")));
            }
        }
        Ok(BpeTokenizer { inner, bytes: bytes.to_vec(), id_bytes })
    }

    /// Reads a tokenizer saved with [`Self::save`]. Errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BpeError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| BpeError::Io { path: path.to_owned(), source })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Writes [`Self::to_bytes`] to `path` (through a temporary file renamed
    /// into place). Errors name the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), BpeError> {
        let path = path.as_ref();
        let io = |source| BpeError::Io { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &self.bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Token ids for `text`. Every UTF-8 string encodes (no unknown token).
    ///
    /// # Panics
    /// If the `tokenizers` crate reports an error, which its byte-level
    /// pipeline does not do for valid UTF-8; see [`Self::try_encode`].
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.try_encode(text).unwrap_or_else(|e| panic!("BPE encoding failed: {e}"))
    }

    /// [`Self::encode`], returning the `tokenizers` crate's errors instead of panicking.
    pub fn try_encode(&self, text: &str) -> Result<Vec<u32>, BpeError> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| BpeError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text `ids` stand for. Errors on an id outside the vocabulary and on
    /// ids whose bytes are not valid UTF-8 (e.g. a cut through a character),
    /// rather than substituting replacement characters.
    pub fn decode(&self, ids: &[u32]) -> Result<String, BpeError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (position, &id) in ids.iter().enumerate() {
            let b = self.id_bytes.get(id as usize).ok_or(BpeError::IdOutOfRange {
                position,
                id,
                vocab_size: self.vocab_size(),
            })?;
            out.extend_from_slice(b);
        }
        String::from_utf8(out).map_err(|e| BpeError::NotUtf8 { valid_up_to: e.utf8_error().valid_up_to() })
    }

    /// The bytes id `id` stands for, if it is in the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.id_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Number of ids; every id is below it.
    pub fn vocab_size(&self) -> u32 {
        self.id_bytes.len() as u32
    }

    /// The serialized form (the `tokenizers` JSON), as trained or loaded.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// xxh3-64 of [`Self::to_bytes`]: what a table embedding this tokenizer
    /// records as its tokenizer fingerprint.
    pub fn fingerprint(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.bytes)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

fn byte_level() -> ByteLevel {
    ByteLevel::new(false, true, true)
}

/// GPT-2's map from bytes to printable characters (as in the `tokenizers`
/// crate's byte-level pre-tokenizer): printable Latin-1 bytes stand for
/// themselves, the others are shifted to U+0100 and up.
fn byte_to_char() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).expect("U+0100..U+0143 are valid chars")
        };
    }
    out
}

fn char_to_byte() -> std::collections::HashMap<char, u8> {
    byte_to_char().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_matches_the_tokenizers_alphabet() {
        let ours: std::collections::HashSet<char> = byte_to_char().into_iter().collect();
        let theirs: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(ours.len(), 256);
        assert_eq!(ours, theirs);
        assert_eq!(byte_to_char()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_char()[b'\n' as usize], 'Ċ');
    }
}
