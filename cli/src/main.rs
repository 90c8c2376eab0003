//! `scone`: build, inspect, query and demo f-gram embedding tables.

#![forbid(unsafe_code)]

/// `println!` that returns an error instead of panicking when stdout is gone
/// (`scone info t.scone | head`); `main` ends quietly on a broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod build_cmd;
mod catalog_cmd;
#[cfg(feature = "train")]
mod demo;
mod inspect;
mod json_num;
mod match_cmd;
mod progress;
mod text;
#[cfg(feature = "train")]
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "scone", version, about = "Storage engine for precomputed n-gram (f-gram) embeddings")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a table from an embeddings file (.npy or .safetensors, [rows, dim]) and
    /// an n-gram file (one `t1 t2 ... tn[<TAB>count]` line per row, same order).
    Build(build_cmd::BuildArgs),
    /// Show a table's header: shape, dtype, index, sections, build metadata.
    Info(inspect::InfoArgs),
    /// Look one n-gram up and summarise its row.
    Get(inspect::GetArgs),
    /// Show the longest f-gram that ends at each position of a token sequence.
    Match(match_cmd::MatchArgs),
    /// Check every section's checksum, the rows included.
    Verify { table: PathBuf },
    /// The whole SCONE flow on the bundled King James Bible, quickly: tokenize, count,
    /// select, train, export a table, print perplexities, query the table.
    #[cfg(feature = "train")]
    Demo(demo::DemoArgs),
    /// Named tables with numbered versions in a folder, swapped atomically while
    /// readers keep the version they opened (docs/CATALOG.md).
    #[command(subcommand)]
    Catalog(catalog_cmd::CatalogCmd),
    /// Train the baseline and SCONE models from a preset and export their tables
    /// (the scaling curves of docs/TRAINING.md); resumes from checkpoints.
    #[cfg(feature = "train")]
    Train(train_cmd::TrainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => build_cmd::run(a),
        Command::Info(a) => inspect::info(a),
        Command::Get(a) => inspect::get(a),
        Command::Match(a) => match_cmd::run(a),
        Command::Verify { table } => inspect::verify(&table),
        #[cfg(feature = "train")]
        Command::Demo(a) => demo::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => train_cmd::run(a),
        Command::Catalog(c) => catalog_cmd::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
