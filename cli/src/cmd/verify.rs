//! `shardpack verify`: prove an archive intact, or say where it is not.

use crate::output::outln;
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
    /// The archive folder; its URL (http://, https://, s3://: every shard read through
    /// ranged GETs and checked, BLAKE3 included); or - for a stream on standard input (read
    /// once, front to back: every block, index and trailer checked, every shard's digest
    /// against the manifests).
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
    if super::is_stdin(&args.archive) {
        return run_stream(&args);
    }
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
        remote_cache: super::remote_cache(),
        ..Default::default()
    };
    let bar = progress_bar(0, "verify");
    let report = shardpack::verify_with_progress(&args.archive, &options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot verify {}", super::shown(&args.archive)))?;
    bar.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for finding in &report.findings {
            outln!("DEFECT {finding}");
        }
        let status = if report.is_ok() { "OK" } else { "DAMAGED" };
        outln!(
            "{status}: {} finding(s); complete: {}; {} shard(s), {} sample(s), {} bytes checked ({:?} mode)",
            report.findings.len(),
            if report.complete { "yes" } else { "no" },
            report.shards,
            report.samples,
            report.bytes_checked,
            report.mode
        );
        if let Some(root) = &report.root {
            outln!("root {root}");
        }
        if report.generations > 1 {
            outln!(
                "generations: {} (every earlier one kept and chained)",
                report.generations
            );
        }
        for leftover in &report.leftovers {
            outln!(
                "leftover {} ({}; `shardpack gc --delete` removes it)",
                leftover.path.display(),
                leftover.kind.describe()
            );
        }
        for s in report.parity.iter().flatten() {
            if let shardpack::ParityFileState::Unusable { error } = &s.parity_file {
                outln!("parity {}: unusable: {error}", s.folder.display());
                continue;
            }
            if s.parity_file == shardpack::ParityFileState::NoParity {
                outln!("parity {}: no parity file", s.folder.display());
                continue;
            }
            outln!(
                "parity {}: {} damaged chunk(s), {} damaged parity chunk(s), {} parity layer(s){}",
                s.folder.display(),
                s.damaged_chunks,
                s.damaged_parity_chunks,
                s.parity_layers,
                if s.recoverable {
                    String::new()
                } else {
                    format!("; {} more layer(s) needed", s.more_layers_needed)
                }
            );
        }
        match report.recoverable {
            Some(true) if !report.is_ok() => outln!("recoverable: yes (run shardpack repair)"),
            Some(false) => outln!("recoverable: no"),
            _ => {}
        }
    }
    Ok(if report.is_ok() {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEFECTS
    })
}

/// Verifies a stream from standard input in one pass.
fn run_stream(args: &Args) -> Result<u8> {
    // A stream is read once, front to back, with every check: no mode to choose.
    if args.quick || args.deep {
        anyhow::bail!(
            "--{} applies to archive folders only; a stream (-) is always read in full",
            if args.quick { "quick" } else { "deep" }
        );
    }
    let (input, name) = super::open_stream_input(&args.archive)?;
    let options = VerifyOptions {
        expect_root: args.expect_root.clone(),
        ..Default::default()
    };
    let report = shardpack::verify_stream(input, name, &options)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for finding in &report.findings {
            outln!("DEFECT {finding}");
        }
        let status = if report.findings.is_empty() {
            "OK"
        } else {
            "DAMAGED"
        };
        outln!(
            "{status}: {} finding(s); complete: {}; {} shard(s), {} sample(s) in the stream",
            report.findings.len(),
            if report.complete { "yes" } else { "no" },
            report.shards,
            report.samples
        );
        if let Some(root) = &report.root {
            outln!("root {root}");
        }
        if report.generation > 1 {
            outln!("generation {}", report.generation);
        }
    }
    Ok(if report.is_ok() {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEFECTS
    })
}
