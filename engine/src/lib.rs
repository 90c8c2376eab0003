//! scone engine: immutable tables of precomputed f-gram embeddings.
//!
//! - [`TableBuilder`] streams (n-gram, row, count) records into a table file.
//! - [`Table`] opens one (memory-mapped, checksummed) and looks n-grams up.
//! - [`SuffixMatcher`] finds, for every token, the longest f-gram ending there.
//! - [`gather()`] copies the rows of a batch of slots into a caller's buffer.
//! - [`read::RowReader`] reads the rows of a batch in one of three modes
//!   (mapped, resident, direct I/O through io_uring or a pread pool).
//! - [`Catalog`] keeps named tables with numbered versions in a directory and
//!   swaps a new version in atomically while readers keep their snapshot.
//!
//! The file format is described in docs/FORMAT.md, the read path in docs/READ_PATH.md,
//! the catalog in docs/CATALOG.md.

pub mod builder;
pub mod catalog;
pub mod dtype;
pub mod error;
mod extsort;
mod flock;
pub mod format;
pub mod gather;
pub mod index;
pub mod ingest;
pub mod key;
pub mod matcher;
pub mod narrow;
pub mod prefetch;
mod publish;
pub mod read;
pub mod table;
#[doc(hidden)]
pub mod untrusted;
pub mod verify_rows;

pub use builder::{BuildConfig, BuildPhase, BuildSummary, TableBuilder};
pub use catalog::{Catalog, CatalogError, GcReport, TableListing, TableSnapshot, VersionRecord};
pub use dtype::Dtype;
pub use error::{BuildError, Error, GatherError, OpenError};
pub use gather::{gather, gather_with_token_rows, GatherOptions, MISS_SLOT};
pub use matcher::{Hit, SuffixMatcher};
pub use read::{BackendKind, ReadError, ReadMode, ReadStats, RowReader};
pub use table::{OpenOptions, Table};
