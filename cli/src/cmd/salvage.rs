//! `shardpack salvage`: recover every intact sample from damaged shards into a new archive.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::WriterBuilder;

use crate::output::outln;

/// Recover every intact sample from shards whose trailer, index or manifest is damaged or
/// missing (blocks are found by their sync markers), into a new archive; report the byte
/// ranges and samples that are lost. Exit 0 when nothing was lost, 1 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// Shard files or archive folders (searched for shard-*.shp, also in vol-* folders).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The new archive folder (must not exist, or be empty).
    #[arg(short, long)]
    output: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    for input in &args.inputs {
        super::refuse_stream(input, "salvage")?;
    }
    let report = shardpack::salvage(&args.inputs, &args.output, WriterBuilder::new())
        .with_context(|| format!("cannot salvage into {}", args.output.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for l in &report.lost {
            let samples = l
                .ordinals
                .map(|[a, b]| format!("; samples {a}..={b}"))
                .unwrap_or_default();
            outln!(
                "LOST {} bytes {}..{}: {}{samples}",
                l.file.display(),
                l.offset,
                l.offset + l.len,
                l.reason
            );
        }
        outln!(
            "recovered {} sample(s) from {} intact block(s) in {} file(s) ({} duplicate(s) skipped) into {}",
            report.samples,
            report.blocks,
            report.files,
            report.duplicates,
            args.output.display()
        );
        outln!("root {}", report.root);
    }
    let lost_samples = report.lost.iter().any(shardpack::LostRange::loses_samples);
    Ok(if lost_samples {
        crate::EXIT_DEFECTS
    } else {
        crate::EXIT_OK
    })
}
