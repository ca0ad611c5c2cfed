//! `shardpack fetch`: download a remote archive, checked, resumable.

use crate::output::outln;
use std::path::PathBuf;

use anyhow::{Context, Result};
use shardpack::FetchOptions;

use crate::output::progress_bar;

/// Download the archive at URL (http://, https://, s3://) into a folder. Shards are fetched a
/// few at a time, each into NAME.partial and renamed only once its BLAKE3 equals the
/// manifest's; an interrupted fetch run again continues where it stopped. The manifest is
/// written last. Exit status 1 when a shard fails its digest twice or the root is not
/// --expect-root.
#[derive(clap::Args)]
pub struct Args {
    /// The remote archive folder's URL. S3 credentials and endpoint come from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL.
    url: String,
    /// The folder to write (created if need be).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// The root digest the archive must have, e.g. from its label: checked before any shard
    /// is downloaded.
    #[arg(long, value_name = "HEX")]
    expect_root: Option<String>,
    /// Shards downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    parallel: u16,
    /// Bytes asked for by each ranged GET, e.g. 8M (default: the archive's profile's read
    /// size, at least 4M).
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size)]
    request_size: Option<u64>,
}

pub fn run(args: Args) -> Result<u8> {
    let shown = shardpack::without_credentials(&args.url);
    let options = FetchOptions {
        expect_root: args.expect_root.clone(),
        parallel: usize::from(args.parallel),
        request_bytes: args.request_size,
        ..FetchOptions::default()
    };
    let bar = progress_bar(0, "fetch");
    let started = std::time::Instant::now();
    let report = shardpack::fetch(&args.url, &args.output, &options, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot fetch {shown}"))?;
    bar.finish_and_clear();
    for (shard, err) in &report.failed {
        outln!("FAILED shard {shard}: {err}");
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    outln!(
        "{}: {} shard(s), {} bytes; {} bytes fetched in {:.1} s ({:.1} MB/s); {} already there, {} resumed, {} fetched again, {} restarted (changed on the server)",
        if report.is_ok() { "OK" } else { "INCOMPLETE" },
        report.shards,
        report.bytes,
        report.bytes_fetched,
        secs,
        report.bytes_fetched as f64 / secs / 1e6,
        report.already_there,
        report.resumed,
        report.refetched,
        report.restarted
    );
    if report.is_ok() {
        outln!("root {}", report.root);
        Ok(crate::EXIT_OK)
    } else {
        outln!("the manifest was not written: run fetch again to retry what failed");
        Ok(crate::EXIT_DEFECTS)
    }
}
