//! `scone catalog`: named tables with numbered versions in a folder
//! (engine::Catalog, docs/CATALOG.md).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use engine::catalog::GcReport;
use engine::Catalog;
use serde_json::json;

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Create an empty catalog in DIR (created if missing).
    Init { dir: PathBuf },
    /// Add table NAME; its first version is the table file TABLE, moved into the catalog.
    Add { dir: PathBuf, name: String, table: PathBuf },
    /// Make the table file TABLE (moved into the catalog) the current version of NAME,
    /// then remove the replaced versions no reader holds.
    Swap {
        dir: PathBuf,
        name: String,
        table: PathBuf,
        /// Leave replaced versions for a later `scone catalog gc`.
        #[arg(long)]
        no_gc: bool,
    },
    /// The tables: current version, rows, bytes, creation time, replaced versions not yet removed.
    List {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Remove replaced versions no reader holds (in any process), and the
    /// leftovers of interrupted builds, copies and swaps.
    Gc { dir: PathBuf },
}

pub fn run(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Init { dir } => {
            Catalog::create(&dir)?;
            outln!("created catalog {} (build new versions in {})", dir.display(), dir.join("incoming").display());
        }
        CatalogCmd::Add { dir, name, table } => {
            let v = Catalog::open(&dir)?.add(&name, &table)?;
            outln!(
                "{name}: version {} added ({} rows, {} bytes) from {}",
                v.version,
                v.rows,
                v.file_len,
                table.display()
            );
        }
        CatalogCmd::Swap { dir, name, table, no_gc } => {
            let cat = Catalog::open(&dir)?;
            let v = cat.swap(&name, &table)?;
            outln!(
                "{name}: version {} is current ({} rows, {} bytes) from {}",
                v.version,
                v.rows,
                v.file_len,
                table.display()
            );
            if !no_gc {
                report_gc(&cat.gc()?, cat.dir())?;
            }
        }
        CatalogCmd::List { dir, json } => list(&dir, json)?,
        CatalogCmd::Gc { dir } => {
            let cat = Catalog::open(&dir)?;
            report_gc(&cat.gc()?, cat.dir())?;
        }
    }
    Ok(())
}

fn list(dir: &Path, as_json: bool) -> Result<()> {
    let tables = Catalog::open(dir)?.list()?;
    if as_json {
        let v: Vec<_> = tables
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "version": t.current.version,
                    "file": t.current.file,
                    "rows": t.current.rows,
                    "bytes": t.current.file_len,
                    "header_xxh3": format!("{:016x}", t.current.header_xxh3),
                    "created_unix": t.current.created_unix,
                    "retired_versions": t.retired.iter().map(|r| r.version).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("{:<24} {:>8} {:>12} {:>14} {:>12}  retired", "name", "version", "rows", "bytes", "created");
    for t in &tables {
        let retired: Vec<String> = t.retired.iter().map(|r| r.version.to_string()).collect();
        outln!(
            "{:<24} {:>8} {:>12} {:>14} {:>12}  {}",
            t.name,
            t.current.version,
            t.current.rows,
            t.current.file_len,
            t.current.created_unix,
            if retired.is_empty() { "-".into() } else { retired.join(",") }
        );
    }
    Ok(())
}

fn report_gc(r: &GcReport, dir: &Path) -> Result<()> {
    let rel = |p: &PathBuf| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    outln!(
        "gc: removed {} replaced versions, kept {} still held by readers, removed {} leftover files",
        r.removed_versions.len(),
        r.held_versions.len(),
        r.removed_litter.len()
    );
    for p in &r.held_versions {
        outln!("  held: {}", rel(p));
    }
    for p in &r.removed_litter {
        outln!("  removed leftover: {}", rel(p));
    }
    Ok(())
}
