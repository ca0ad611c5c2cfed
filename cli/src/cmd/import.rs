//! `shardpack import`: WebDataset tar shards into an archive.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use shardpack::pack::PackOptions;
use shardpack::webdataset::{SkipReason, TarSource};

use super::pack::WriterArgs;
use crate::output::progress_bar;

/// Import WebDataset tar shards into an archive.
///
/// Members are grouped into samples by WebDataset's rule: `train/0001.jpg` and
/// `train/0001.json` become one sample with key `train/0001` and fields `jpg` and `json`
/// (the key ends at the first dot of the last path component; field names are lowercased,
/// as webdataset does). A key's members must be next to each other, and keys unique across
/// the tars. Samples keep the order of the tars and their members. Plain, gzip and zstd
/// tars are recognised by their first bytes. Folders and webdataset's metadata names
/// (`__key__`, `__meta__/...`) are skipped; links, devices and FIFOs are refused (exit 2)
/// unless --skip-special skips them with a warning. A damaged or truncated tar is an error
/// naming the tar, the member and the byte offset, and removes the archive folder the
/// import created.
#[derive(clap::Args)]
pub struct Args {
    /// Tar files, brace patterns as WebDataset writes them (`shards-{000000..000099}.tar`,
    /// `{a,b}.tar`), or - for standard input.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// The archive folder to create (must not exist, or be empty).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    writer: WriterArgs,
    /// Skip links, devices and FIFOs with a warning instead of refusing them.
    #[arg(long)]
    skip_special: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    args.writer.refuse_inapplicable()?;
    if args.output.as_os_str() == "-" {
        anyhow::bail!("import writes an archive folder; to make a stream, import, then pack");
    }
    let mut sources = Vec::new();
    for input in &args.inputs {
        sources.extend(TarSource::from_arg(input)?);
    }
    let builder = args.writer.builder(args.writer.folder_parity())?;
    let options = PackOptions::new()
        .skip_special(args.skip_special)
        .parity_percent(args.writer.parity);
    let bar = progress_bar(0, "import");
    let mut progress = |done, total| {
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    };
    let report =
        shardpack::webdataset::import(sources, &args.output, builder, &options, &mut progress)
            .with_context(|| format!("cannot import into {}", args.output.display()))?;
    bar.finish_and_clear();
    for skipped in &report.skipped {
        let why = match &skipped.reason {
            SkipReason::Special { kind } => kind.clone(),
            SkipReason::Meta => "a webdataset metadata name".to_string(),
            _ => "not importable".to_string(),
        };
        eprintln!(
            "shardpack: warning: skipping {} member {:?} at byte {} ({why})",
            skipped.file.display(),
            skipped.member,
            skipped.offset
        );
    }
    let unlisted = report.skipped_count - report.skipped.len() as u64;
    if unlisted > 0 {
        eprintln!("shardpack: warning: and {unlisted} more member(s) skipped");
    }
    let manifest = &report.manifest;
    let members: u64 = report.tars.iter().map(|t| t.members).sum();
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::json!({
            "archive": args.output,
            "tars": report.tars,
            "samples": manifest.totals.samples,
            "members": members,
            "member_bytes": report.member_bytes,
            "skipped": report.skipped_count,
            "shards": manifest.totals.shards,
            "bytes": manifest.totals.bytes,
            "root": manifest.root,
        });
        writeln!(out, "{summary}")?;
    } else {
        writeln!(
            out,
            "imported {} samples ({members} members, {} bytes) from {} tar(s) into {} shard(s), {} bytes: {}",
            manifest.totals.samples,
            report.member_bytes,
            report.tars.len(),
            manifest.totals.shards,
            manifest.totals.bytes,
            args.output.display()
        )?;
        writeln!(out, "root {}", manifest.root)?;
    }
    Ok(crate::EXIT_OK)
}
