//! `shardpack ls`: list the samples.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::Archive;

/// List samples in order: one key per line (read from the index, no data is touched), or
/// with --long the ordinal, shard and every field with its size (reads every sample).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Also show ordinal, shard and fields with sizes (reads and checks every sample).
    #[arg(short, long)]
    long: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let archive = Archive::open(&args.archive)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for ordinal in 0..archive.len() {
        if args.long {
            let sample = archive.get(ordinal)?;
            let fields: Vec<(&str, usize)> = sample.fields().map(|(n, d)| (n, d.len())).collect();
            if args.json {
                let fields: Vec<_> = fields
                    .iter()
                    .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
                    .collect();
                let line = serde_json::json!({"ordinal": ordinal, "shard": sample.shard(), "key": sample.key(), "fields": fields});
                writeln!(out, "{line}")?;
            } else {
                let fields: Vec<String> = fields.iter().map(|(n, s)| format!("{n}:{s}")).collect();
                writeln!(
                    out,
                    "{ordinal}\t{}\t{}\t{}",
                    sample.shard(),
                    sample.key(),
                    fields.join(" ")
                )?;
            }
        } else {
            let key = archive.key(ordinal)?;
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"ordinal": ordinal, "key": key})
                )?;
            } else {
                writeln!(out, "{key}")?;
            }
        }
    }
    out.flush()?;
    Ok(crate::EXIT_OK)
}
