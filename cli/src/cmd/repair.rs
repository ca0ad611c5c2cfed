//! `shardpack repair`: rebuild damaged or missing data from parity.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::output::outln;

/// Rebuild damaged or missing bytes of an archive from its parity, byte-identically
/// (damaged files are replaced atomically). Says what it fixed; when the damage exceeds
/// the parity, repairs what it can and says precisely what is lost and how many more
/// parity layers would have been needed. A file is written only when its rebuilt bytes match
/// the digest that binds it, and a parity file of other contents (another root) is refused.
/// Exit 0 when everything is whole, 1 when something is lost or the parity file is refused,
/// 2 on errors (no parity, I/O).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let report = shardpack::repair(&args.archive)
        .with_context(|| format!("cannot repair {}", args.archive.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in &report.repaired {
            outln!(
                "REPAIRED {} bytes {}..{}",
                r.file.display(),
                r.offset,
                r.offset + r.len
            );
        }
        for r in &report.lost {
            let samples = r
                .ordinals
                .map(|[a, b]| format!("; samples {a}..={b}"))
                .unwrap_or_default();
            outln!(
                "LOST {} bytes {}..{}{samples}",
                r.file.display(),
                r.offset,
                r.offset + r.len
            );
        }
        for r in &report.refused {
            outln!("NOT WRITTEN {}: {}", r.file.display(), r.reason);
        }
        for s in &report.status {
            if let shardpack::ParityFileState::Unusable { error } = &s.parity_file {
                outln!(
                    "{}: parity file unusable, folder left as it is: {error}",
                    s.folder.display()
                );
            } else if s.parity_file == shardpack::ParityFileState::NoParity {
                outln!("{}: no parity file, nothing repaired", s.folder.display());
            } else if s.damaged_chunks == 0 {
                outln!("{}: no damaged chunk", s.folder.display());
            } else if s.recoverable {
                outln!(
                    "{}: {} damaged chunk(s), all rebuilt",
                    s.folder.display(),
                    s.damaged_chunks
                );
            } else {
                outln!(
                    "{}: {} damaged chunk(s); {} stripe(s) beyond the {} parity layers: {} more layer(s) would have been needed",
                    s.folder.display(),
                    s.damaged_chunks,
                    s.unrecoverable_stripes,
                    s.parity_layers,
                    s.more_layers_needed
                );
            }
        }
        let status = if report.complete() {
            "OK"
        } else {
            "INCOMPLETE"
        };
        outln!(
            "{status}: {} range(s) repaired, {} lost, {} file(s) rewritten",
            report.repaired.len(),
            report.lost.len(),
            report.files_rewritten.len()
        );
    }
    Ok(if report.complete() {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEFECTS
    })
}
