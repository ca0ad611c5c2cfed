//! `shardpack cat`: one field's raw bytes to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Write one field of one sample to stdout, byte for byte. Choose the sample by KEY or by
/// --ordinal; a sample with several fields needs --field.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or its URL (http://, https://, s3://).
    archive: PathBuf,
    /// Read generation N of an appended archive (1 is the archive as first written)
    /// instead of the current one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    generation: Option<u64>,
    /// The sample's key.
    #[arg(required_unless_present = "ordinal", conflicts_with = "ordinal")]
    key: Option<String>,
    /// The sample's ordinal instead of its key.
    #[arg(long)]
    ordinal: Option<u64>,
    /// The field to write (e.g. jpg).
    #[arg(short, long)]
    field: Option<String>,
}

pub fn run(args: Args) -> Result<u8> {
    super::refuse_stream(&args.archive, "cat")?;
    let archive = super::open_archive(&args.archive, args.generation)
        .with_context(|| format!("cannot open archive {}", super::shown(&args.archive)))?;
    let sample = match (&args.key, args.ordinal) {
        (Some(key), _) => match archive.get_by_key(key)? {
            Some(s) => s,
            None => bail!(
                "no sample has the key {key:?} in {}",
                super::shown(&args.archive)
            ),
        },
        (None, Some(ordinal)) => archive.get(ordinal)?,
        (None, None) => bail!("give a KEY or --ordinal"),
    };
    let data = match &args.field {
        Some(name) => match sample.field(name) {
            Some(d) => d,
            None => bail!(
                "sample {:?} has no field {name:?}; it has: {}",
                sample.key(),
                field_list(&sample)
            ),
        },
        None if sample.field_count() == 1 => {
            sample.fields().next().map(|(_, d)| d).unwrap_or_default()
        }
        None => bail!(
            "sample {:?} has {} fields; choose one with --field: {}",
            sample.key(),
            sample.field_count(),
            field_list(&sample)
        ),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(data)?;
    out.flush()?;
    Ok(crate::EXIT_OK)
}

fn field_list(sample: &shardpack::Sample) -> String {
    sample
        .fields()
        .map(|(n, _)| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
