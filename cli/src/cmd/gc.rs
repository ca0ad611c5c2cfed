//! `shardpack gc`: list, and remove, what interrupted commands left in an archive folder.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::output::outln;

/// List the files of an archive folder that no generation refers to: partial files of an
/// interrupted pack, append or protect, files an interrupted repair was rebuilding, shards
/// no generation lists, manifests of generations after the current one. With --delete,
/// remove them. A file any generation refers to is never touched, nor any file whose name
/// the tools do not write.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Remove the files listed.
    #[arg(long)]
    delete: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    super::refuse_stream(&args.archive, "gc")?;
    let report = shardpack::gc(&args.archive, args.delete)
        .with_context(|| format!("cannot collect {}", args.archive.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(crate::EXIT_OK);
    }
    for leftover in &report.leftovers {
        outln!(
            "{} {} ({})",
            if report.deleted {
                "removed"
            } else {
                "leftover"
            },
            leftover.path.display(),
            leftover.kind.describe()
        );
    }
    if report.leftovers.is_empty() {
        outln!("nothing to collect in {}", args.archive.display());
    } else if !report.deleted {
        outln!(
            "{} file(s), {} bytes; run with --delete to remove them",
            report.leftovers.len(),
            report.bytes
        );
    }
    Ok(crate::EXIT_OK)
}
