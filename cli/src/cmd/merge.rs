//! `shardpack merge`: one archive from several, without recompressing anything.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::MergeOptions;

use crate::output::{outln, progress_bar};

/// Merge archives into a new one, in the order given, without decompressing or recompressing
/// any block: each shard is copied with its identity (archive id, shard number, first ordinal)
/// rewritten in its header, block headers and trailer, and checked against its manifest's
/// BLAKE3 on the way.
///
/// The inputs must have the same layout (profile, alignment, block and shard sizes,
/// compression and level) and no key in common. A damaged input stops the merge (exit 1)
/// and a refused one (exit 2) leaves nothing; the output gets its manifest last. Parity files
/// are not carried over: run `protect` on the output.
#[derive(clap::Args)]
pub struct Args {
    /// The archives to merge, in order.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The new archive folder (must not exist, or be empty; not inside an input).
    #[arg(short, long)]
    output: PathBuf,
    /// Archive id of the output (32 hex digits). Default: derived from the inputs' root
    /// digests; give the first input's id to copy its shards unchanged.
    #[arg(long, value_name = "HEX")]
    archive_id: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let mut options = MergeOptions::new();
    if let Some(hex) = &args.archive_id {
        let id = shardpack::manifest::parse_hex::<16>(&hex.to_ascii_lowercase())
            .context("--archive-id must be 32 hex digits")?;
        options = options.archive_id(id);
    }
    let bar = progress_bar(0, "merge");
    let report =
        shardpack::merge_with_progress(&args.inputs, &args.output, &options, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .with_context(|| format!("cannot merge into {}", args.output.display()))?;
    bar.finish_and_clear();
    let m = &report.manifest;
    if args.json {
        let summary = serde_json::json!({
            "archive": args.output,
            "inputs": report.inputs,
            "archive_id": report.archive_id,
            "samples": m.totals.samples,
            "shards": m.totals.shards,
            "bytes": m.totals.bytes,
            "raw_bytes": m.totals.raw_bytes,
            "shards_rewritten": report.shards_rewritten,
            "shards_unchanged": report.shards_unchanged,
            "root": m.root,
        });
        outln!("{summary}");
    } else {
        outln!(
            "merged {} archive(s): {} samples in {} shard(s), {} bytes ({} rewritten, {} unchanged): {}",
            report.inputs.len(),
            m.totals.samples,
            m.totals.shards,
            m.totals.bytes,
            report.shards_rewritten,
            report.shards_unchanged,
            args.output.display()
        );
        outln!("root {}", m.root);
    }
    Ok(crate::EXIT_OK)
}
