//! `shardpack info`: what an archive holds and its root digest.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::Archive;

/// Show the archive's format, layout, totals and root digest (write the root on the label
/// and check it after transport with `verify --expect-root`).
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let archive = Archive::open(&args.archive)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    let m = archive.manifest();
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(crate::EXIT_OK);
    }
    let t = &m.totals;
    let l = &m.layout;
    let ratio = if t.raw_bytes > 0 {
        t.bytes as f64 / t.raw_bytes as f64
    } else {
        1.0
    };
    println!("archive      {}", args.archive.display());
    println!("format       {} {}", m.format, m.format_version);
    println!("writer       {}", m.writer);
    println!("archive id   {}", m.archive_id);
    println!("profile      {}", l.profile);
    println!(
        "layout       align {} B, block {} B, shard {} B",
        l.align, l.block_size, l.shard_size
    );
    println!("compression  {} (level {})", l.compression, l.level);
    println!("samples      {}", t.samples);
    println!("shards       {}", t.shards);
    println!(
        "size         {} bytes ({} bytes of records, ratio {ratio:.3})",
        t.bytes, t.raw_bytes
    );
    println!("root         {}", m.root);
    Ok(crate::EXIT_OK)
}
