//! `shardpack extract`: recreate the packed files, never writing outside the target folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::extract::ExtractReport;

use crate::output::progress_bar;

/// Recreate every file byte for byte under DIR: sample key + "." + field name (the key
/// alone for an empty field name).
///
/// DIR must not exist or be empty. Paths are checked before anything is written: absolute
/// paths, "..", "." and empty components are refused; no symbolic link is created or
/// followed, and no existing file is overwritten. A refused or damaged sample is reported,
/// the rest is extracted, and the exit status is 1.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, its URL (http://, https://, s3://), or - for a stream on
    /// standard input.
    archive: PathBuf,
    /// Read generation N of an appended archive (1 is the archive as first written)
    /// instead of the current one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    generation: Option<u64>,
    /// The folder to create.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: Args) -> Result<u8> {
    if super::is_stdin(&args.archive) {
        return run_stream(&args);
    }
    let archive = super::open_archive(&args.archive, args.generation)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    let bar = progress_bar(archive.manifest().totals.raw_bytes, "extract");
    let report = shardpack::extract::extract(&archive, &args.output, &mut |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    Ok(print_report(&report))
}

/// Prints what could not be extracted; returns the exit status.
fn print_report(report: &ExtractReport) -> u8 {
    for e in &report.damaged {
        eprintln!("shardpack: error: {e}");
    }
    for f in &report.failures {
        eprintln!(
            "shardpack: error: sample {} ({:?}): {}",
            f.ordinal, f.key, f.error
        );
    }
    let failures = report.failures.len() + report.damaged.len();
    if failures > 0 {
        eprintln!("shardpack: {failures} file(s) not extracted");
        return crate::EXIT_DEFECTS;
    }
    crate::EXIT_OK
}

/// Extracts a stream from standard input as it passes; stops at the first damage (a
/// stream cannot be resynchronised in one pass) with everything before it written.
fn run_stream(args: &Args) -> Result<u8> {
    let (input, name) = super::open_stream_input(&args.archive)?;
    let reader = shardpack::stream::StreamReader::new(input, name, shardpack::Limits::default())?;
    let report = shardpack::extract::extract_stream(reader, &args.output)?;
    Ok(print_report(&report))
}
