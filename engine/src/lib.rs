//! scone engine: immutable tables of precomputed f-gram embeddings.
//!
//! - [`TableBuilder`] streams (n-gram, row, count) records into a table file.
//! - [`Table`] opens one (memory-mapped, checksummed) and looks n-grams up.
//! - [`SuffixMatcher`] finds, for every token, the longest f-gram ending there.
//! - [`gather`] copies the rows of a batch of slots into a caller's buffer.
//!
//! The file format is described in docs/FORMAT.md.

pub mod builder;
pub mod dtype;
pub mod error;
mod extsort;
pub mod format;
pub mod gather;
pub mod index;
pub mod ingest;
pub mod key;
pub mod matcher;
pub mod prefetch;
pub mod table;
#[doc(hidden)]
pub mod untrusted;

pub use builder::{BuildConfig, BuildPhase, BuildSummary, TableBuilder};
pub use dtype::Dtype;
pub use error::{BuildError, Error, GatherError, OpenError};
pub use gather::{gather, GatherOptions, MISS_SLOT};
pub use matcher::{Hit, SuffixMatcher};
pub use table::{OpenOptions, Table};
