//! A three-stage pipeline — fetch → analyze → store — written once against a small
//! [`Source`](pipe::Source)/[`Sink`](pipe::Sink) abstraction, so that it runs unchanged in one
//! process on tokio channels or as circuit workers wired by named channels.
//!
//! # Layout
//! - [`corpus`]: documents from a seed, word counts, the summary (pure data).
//! - [`pipe`]: the abstraction: `Source`, `Sink`, `Ack`.
//! - [`stages`]: `fetch`, `analyze`, `store`, each written once.
//! - [`local`]: the abstraction on tokio channels; the in-process run.
//! - [`remote`]: the abstraction on circuit channels; the stage workers.
//! - [`distributed`]: creates the channels, spawns the workers, collects the result.

pub mod corpus;
pub mod distributed;
pub mod local;
pub mod pipe;
pub mod remote;
pub mod stages;

/// What both modes take: the corpus and the shape of the pipeline.
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Documents to generate.
    #[arg(long, default_value_t = 1000)]
    pub docs: u64,
    /// Seed of the generator: the same seed gives the same corpus and the same result.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Analyzer replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub analyzers: u32,
    /// Capacity of the docs and counts channels.
    #[arg(long, default_value_t = 64)]
    pub cap: u64,
}
