//! Benchmarks of the scone engine against the baseline a user would write and
//! against a hardware ceiling, on deterministic synthetic tables (see
//! `scone-bench core` and `benches/core.rs`).

#![forbid(unsafe_code)]

pub mod baseline;
pub mod measure;
pub mod nvme;
pub mod report;
pub mod synth;
pub mod workload;
pub mod zipf;

pub use baseline::Baseline;
pub use synth::{Gram, Spec};
pub use workload::{Sizes, Workload};
