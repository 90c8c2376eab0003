//! The small neural networks SCONE trains, on candle's CPU (or CUDA) backend:
//! a decoder-only transformer LM and the f-gram model whose outputs become
//! the engine's rows. Parameters are created from a seeded RNG (candle's own
//! CPU RNG cannot be seeded), and the optimizer is written here so that its
//! state can be checkpointed with the weights.

pub mod adamw;
pub mod layers;
pub mod models;
pub mod params;

pub use adamw::{AdamW, AdamWConfig};
pub use models::{FgramConfig, FgramModel, Lm, LmConfig};
pub use params::Params;
