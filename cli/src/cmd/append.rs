//! `shardpack append`: add a folder's samples to an archive as a new generation.

use std::path::PathBuf;

use anyhow::{Context, Result};

use shardpack::pack::{FolderListing, PackOptions};
use shardpack::WriterBuilder;

use crate::output::{outln, progress_bar};
use crate::size::parse_parity;

/// Add samples to an archive as a new generation.
///
/// INPUT is walked and grouped into samples as `pack` does; the samples go into new shards
/// after the last one, with the archive's layout, and a new manifest names the previous
/// generation's root (format-spec.md §11.3). Earlier generations stay readable
/// (`--generation N` on ls, info, cat, extract and verify). A key already in the archive is
/// refused. An interrupted append leaves the previous generation current and valid; what
/// it wrote is removed by the next append or by `gc --delete`. An archive with a parity
/// file is protected again, with as much parity unless --parity says otherwise.
///
/// ARCHIVE may also be a stream file (from `pack -o -`): the stream is read whole and
/// checked, then the new shards, their checkpoints and a final manifest are written after
/// its end (format-spec.md §16.5); nothing before it is rewritten. Bytes an interrupted
/// append left after the last final manifest are cut off first.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or the stream file, to add to.
    archive: PathBuf,
    /// Folder whose files to add.
    input: PathBuf,
    /// Reed-Solomon parity as a percentage of the data after appending (0 for none).
    /// Default: as much as the archive had, none if it had none.
    #[arg(long, value_parser = parse_parity, allow_hyphen_values = true)]
    parity: Option<f64>,
    /// For a stream: a manifest checkpoint after every N shards (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    checkpoint_every: Option<u32>,
    /// Skip symbolic links and special files with a warning instead of refusing them.
    #[arg(long)]
    skip_special: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    if super::is_stdin(&args.archive) {
        // The old stream must be read whole before the first new byte is written after
        // it, into the same file: standard input and output are two (docs/design.md §7b).
        anyhow::bail!(
            "append reads a stream whole, then writes after its end in the same file: give              the stream file, not -"
        );
    }
    let stream = args.archive.is_file();
    if !stream && args.checkpoint_every.is_some() {
        anyhow::bail!(
            "--checkpoint-every applies to streams; {} is a folder",
            args.archive.display()
        );
    }
    if stream && args.parity.is_some_and(|p| p != 0.0) {
        anyhow::bail!("--parity: streams carry no parity; unstream, then protect");
    }
    let listing = FolderListing::scan(&args.input)?;
    super::refuse_or_skip_special(&listing, args.skip_special)?;
    let options = PackOptions::new()
        .skip_special(true)
        .parity_percent(args.parity);
    let bar = progress_bar(listing.total_bytes(), "append");
    let mut progress = |done, _total| bar.set_position(done);
    let builder = WriterBuilder::new().checkpoint_every(args.checkpoint_every.unwrap_or(1));
    let manifest = if stream {
        listing.append_to_stream(&args.archive, builder, &options, &mut progress)
    } else {
        listing
            .append_to(&args.archive, builder, &options, &mut progress)
            .map(|report| report.manifest)
    }
    .with_context(|| format!("cannot append to {}", args.archive.display()))?;
    bar.finish_and_clear();
    let m = &manifest;
    let generation = m.generation_number();
    if args.json {
        let summary = serde_json::json!({
            "archive": args.archive,
            "generation": generation,
            "samples": m.totals.samples,
            "shards": m.totals.shards,
            "bytes": m.totals.bytes,
            "root": m.root,
            "parent": m.generation.as_ref().map(|g| &g.parent),
        });
        outln!("{summary}");
    } else {
        outln!(
            "appended generation {generation}: {} samples in {} shard(s) now, {} bytes: {}",
            m.totals.samples,
            m.totals.shards,
            m.totals.bytes,
            args.archive.display()
        );
        outln!("root {}", m.root);
    }
    Ok(crate::EXIT_OK)
}
