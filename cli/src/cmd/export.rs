//! `shardpack export`: an archive as WebDataset tar shards.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use shardpack::webdataset::{ExportOptions, TarPattern};
use shardpack::Archive;

use crate::output::progress_bar;
use crate::size::parse_size;

/// Write an archive as WebDataset tar shards.
///
/// Each field becomes the member KEY.FIELD (the key alone for an empty field name, as
/// extract names its file), the members of a sample in field-name order, the samples in
/// archive order. The tars are deterministic (ustar, GNU long names, mode 0444, uid and gid
/// 0, a fixed mtime), so the same archive always gives the same bytes; the `webdataset`
/// package and GNU tar read them as they are. Each tar is written under a temporary name,
/// then renamed; no file is overwritten, and a failed export removes what it wrote.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Output names, with exactly one printf-style number: out-%06d.tar (%d, %Nd or %0Nd;
    /// %% for a percent sign). Tars are numbered from 0.
    #[arg(short, long)]
    output: String,
    /// Start a new tar when the current one would pass this size (e.g. 1G); a sample is
    /// never split. Default: one tar.
    #[arg(long, value_parser = parse_size)]
    shard_size: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let pattern = TarPattern::parse(&args.output)?;
    let archive = Archive::open(&args.archive)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    let bar = progress_bar(archive.len(), "export");
    let options = ExportOptions::new().shard_size(args.shard_size);
    let report = shardpack::webdataset::export(&archive, &pattern, &options, &mut |done, _| {
        bar.set_position(done)
    })
    .with_context(|| format!("cannot export {}", args.archive.display()))?;
    bar.finish_and_clear();
    if report.unnamed_fields > 0 {
        eprintln!(
            "shardpack: warning: {} field(s) with an empty name were written as members named \
             by the key alone, which webdataset skips (it reads only names with an extension)",
            report.unnamed_fields
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::json!({
            "archive": args.archive,
            "tars": report.tars,
            "samples": report.samples,
            "members": report.members,
            "unnamed_fields": report.unnamed_fields,
        });
        writeln!(out, "{summary}")?;
    } else {
        let bytes: u64 = report.tars.iter().map(|t| t.bytes).sum();
        writeln!(
            out,
            "exported {} samples ({} members) into {} tar(s), {bytes} bytes",
            report.samples,
            report.members,
            report.tars.len()
        )?;
        for tar in &report.tars {
            writeln!(out, "{}", tar.path.display())?;
        }
    }
    Ok(crate::EXIT_OK)
}
