//! scone engine: immutable tables of precomputed f-gram embeddings.
pub mod ingest;
