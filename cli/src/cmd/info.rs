//! `shardpack info`: what an archive holds and its root digest.

use crate::output::outln;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Show the archive's format, layout, totals and root digest (write the root on the label
/// and check it after transport with `verify --expect-root`).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or its URL (http://, https://, s3://).
    archive: PathBuf,
    /// Read generation N of an appended archive (1 is the archive as first written)
    /// instead of the current one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    generation: Option<u64>,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    super::refuse_stream(&args.archive, "info")?;
    let archive = super::open_archive(&args.archive, args.generation)
        .with_context(|| format!("cannot open archive {}", super::shown(&args.archive)))?;
    let m = archive.manifest();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(m)?);
        return Ok(crate::EXIT_OK);
    }
    let t = &m.totals;
    let l = &m.layout;
    let ratio = if t.raw_bytes > 0 {
        t.bytes as f64 / t.raw_bytes as f64
    } else {
        1.0
    };
    outln!("archive      {}", super::shown(&args.archive));
    outln!("format       {} {}", m.format, m.format_version);
    outln!("writer       {}", m.writer);
    outln!("archive id   {}", m.archive_id);
    outln!("profile      {}", l.profile);
    outln!(
        "layout       align {} B, block {} B, shard {} B",
        l.align,
        l.block_size,
        l.shard_size
    );
    outln!("compression  {} (level {})", l.compression, l.level);
    if m.version() > (1, 0) {
        // Only 1.1 archives have dictionaries; reading the headers maps the shards.
        let sizes: Vec<u32> = (0..archive.shard_count())
            .filter_map(|i| archive.shard(i).ok())
            .map(|shard| shard.header().dictionary_len)
            .filter(|&len| len > 0)
            .collect();
        outln!(
            "dictionaries {} of {} shards, {} bytes in all (per-sample zstd, format §5.5)",
            sizes.len(),
            t.shards,
            sizes.iter().map(|&n| u64::from(n)).sum::<u64>()
        );
    }
    outln!("samples      {}", t.samples);
    outln!("shards       {}", t.shards);
    outln!(
        "size         {} bytes ({} bytes of records, ratio {ratio:.3})",
        t.bytes,
        t.raw_bytes
    );
    outln!("root         {}", m.root);
    Ok(crate::EXIT_OK)
}
