//! `shardpack verify`: prove an archive intact, or say where it is not.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::{VerifyMode, VerifyOptions};

use crate::output::progress_bar;

/// Check an archive and report every defect with its place. Exit status 0 when clean,
/// 1 when defects were found, 2 on usage or I/O errors.
///
/// The default reads every byte: shard BLAKE3 digests against the manifest, every block and
/// index checksum, all padding, and the records of uncompressed blocks.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Check structure only: manifest, files and sizes, headers, trailers, index geometry.
    #[arg(long, conflicts_with = "deep")]
    quick: bool,
    /// Also decompress every block and check every record (slower).
    #[arg(long)]
    deep: bool,
    /// The root digest the archive must have, e.g. from its label.
    #[arg(long, value_name = "HEX")]
    expect_root: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let mode = if args.quick {
        VerifyMode::Quick
    } else if args.deep {
        VerifyMode::Deep
    } else {
        VerifyMode::Full
    };
    let options = VerifyOptions {
        mode,
        expect_root: args.expect_root.clone(),
        ..Default::default()
    };
    let bar = progress_bar(0, "verify");
    let report = shardpack::verify_with_progress(&args.archive, &options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot verify {}", args.archive.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for finding in &report.findings {
            println!("DEFECT {finding}");
        }
        let status = if report.is_ok() { "OK" } else { "DAMAGED" };
        println!(
            "{status}: {} finding(s); complete: {}; {} shard(s), {} sample(s), {} bytes checked ({:?} mode)",
            report.findings.len(),
            if report.complete { "yes" } else { "no" },
            report.shards,
            report.samples,
            report.bytes_checked,
            report.mode
        );
        if let Some(root) = &report.root {
            println!("root {root}");
        }
    }
    Ok(if report.is_ok() {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEFECTS
    })
}
