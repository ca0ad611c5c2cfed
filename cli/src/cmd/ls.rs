//! `shardpack ls`: list the samples.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::Archive;

/// List samples in order: one key per line (read from the index, no data is touched), or
/// with --long the ordinal, shard and every field with its size (reads every sample).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or - for a stream on standard input.
    archive: PathBuf,
    /// Also show ordinal, shard and fields with sizes (reads and checks every sample).
    #[arg(short, long)]
    long: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    if super::is_stdin(&args.archive) {
        return run_stream(&args);
    }
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

/// Lists a stream's samples as they pass, in one read of standard input.
fn run_stream(args: &Args) -> Result<u8> {
    let (input, name) = super::open_stream_input(&args.archive)?;
    let reader = shardpack::stream::StreamReader::new(input, name, shardpack::Limits::default())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in reader {
        let shardpack::stream::StreamItem::Sample(sample) = item? else {
            continue;
        };
        let fields: Vec<(&str, usize)> = sample.fields().map(|(n, d)| (n, d.len())).collect();
        match (args.long, args.json) {
            (false, false) => writeln!(out, "{}", sample.key())?,
            (false, true) => writeln!(
                out,
                "{}",
                serde_json::json!({"ordinal": sample.ordinal(), "key": sample.key()})
            )?,
            (true, true) => {
                let fields: Vec<_> = fields
                    .iter()
                    .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
                    .collect();
                let line = serde_json::json!({"ordinal": sample.ordinal(), "shard": sample.shard(), "key": sample.key(), "fields": fields});
                writeln!(out, "{line}")?;
            }
            (true, false) => {
                let fields: Vec<String> = fields.iter().map(|(n, s)| format!("{n}:{s}")).collect();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    sample.ordinal(),
                    sample.shard(),
                    sample.key(),
                    fields.join(" ")
                )?;
            }
        }
    }
    out.flush()?;
    Ok(crate::EXIT_OK)
}
