//! `shardpack ls`: list the samples.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::{Limits, Sample, Samples};

/// List samples in order: one key per line (read from the index, no data is touched), or
/// with --long the ordinal, shard and every field with its size (reads every sample).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, its URL (http://, https://, s3://), or - for a stream on
    /// standard input.
    archive: PathBuf,
    /// Read generation N of an appended archive (1 is the archive as first written)
    /// instead of the current one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    generation: Option<u64>,
    /// Also show ordinal, shard and fields with sizes (reads and checks every sample).
    #[arg(short, long)]
    long: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    if super::is_stdin(&args.archive) {
        // A stream has no index to list keys from: every sample is read as it passes.
        let (input, name) = super::open_stream_input(&args.archive)?;
        let reader = shardpack::stream::StreamReader::new(input, name, Limits::default())?;
        for sample in Samples::of_stream(reader) {
            list(&mut out, &sample?, &args)?;
        }
    } else {
        let archive = super::open_archive(&args.archive, args.generation)
            .with_context(|| format!("cannot open archive {}", super::shown(&args.archive)))?;
        if args.long {
            for sample in Samples::of_archive(&archive) {
                list(&mut out, &sample?, &args)?;
            }
        } else {
            // Keys come from the index: no sample data is read.
            for ordinal in 0..archive.len() {
                key_line(&mut out, ordinal, &archive.key(ordinal)?, args.json)?;
            }
        }
    }
    out.flush()?;
    Ok(crate::EXIT_OK)
}

/// One sample's line: its key, or with `--long` its ordinal, shard and fields.
fn list(out: &mut impl Write, sample: &Sample, args: &Args) -> Result<()> {
    if !args.long {
        return key_line(out, sample.ordinal(), sample.key(), args.json);
    }
    let fields: Vec<(&str, usize)> = sample.fields().map(|(n, d)| (n, d.len())).collect();
    if args.json {
        let fields: Vec<_> = fields
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
            .collect();
        let line = serde_json::json!({"ordinal": sample.ordinal(), "shard": sample.shard(), "key": sample.key(), "fields": fields});
        writeln!(out, "{line}")?;
    } else {
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
    Ok(())
}

fn key_line(out: &mut impl Write, ordinal: u64, key: &str, json: bool) -> Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"ordinal": ordinal, "key": key})
        )?;
    } else {
        writeln!(out, "{key}")?;
    }
    Ok(())
}
