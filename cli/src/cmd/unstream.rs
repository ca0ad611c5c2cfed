//! `shardpack unstream`: turn a stream (from `pack -o -`, a tape) into an archive folder.

use crate::output::outln;
use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::Limits;

/// Read a stream from standard input (or a file) in one pass and write it out as an
/// archive folder for the memory-mapped reader. A stream torn at any point gives the
/// archive as of its last manifest checkpoint (exit 1, with what was lost).
#[derive(clap::Args)]
pub struct Args {
    /// The stream: - for standard input, or a file or tape device.
    input: PathBuf,
    /// The archive folder to create (must not exist, or be empty).
    #[arg(short, long)]
    output: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let (input, name) = super::open_stream_input(&args.input)?;
    let report = shardpack::stream::unstream(input, name, &args.output, Limits::default())
        .with_context(|| format!("cannot unstream into {}", args.output.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "wrote {} shard(s), {} sample(s) to {}",
            report.shards,
            report.samples,
            args.output.display()
        );
        if let Some(damage) = &report.damage {
            outln!("DAMAGED stream: {damage}");
            outln!(
                "kept everything up to the last manifest checkpoint; dropped {} later shard(s)",
                report.dropped_shards
            );
        }
    }
    Ok(if report.complete {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEFECTS
    })
}
