//! `shardpack push`: upload an archive folder to a remote one.

use crate::output::outln;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::output::progress_bar;

/// Upload the archive folder DIR to URL (http(s):// by PUT, s3:// with multipart uploads for
/// large shards): every shard first, the manifest last, so that readers never see a
/// manifest whose shards are not all there.
#[derive(clap::Args)]
pub struct Args {
    /// The local archive folder.
    archive: PathBuf,
    /// The remote folder's URL.
    url: String,
}

pub fn run(args: Args) -> Result<u8> {
    super::refuse_stream(&args.archive, "push")?;
    let shown = shardpack::without_credentials(&args.url);
    let bar = progress_bar(0, "push");
    let bytes = shardpack::push(&args.archive, &args.url, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("cannot push {} to {shown}", args.archive.display()))?;
    bar.finish_and_clear();
    outln!("OK: {bytes} bytes of shards uploaded to {shown}, the manifest last");
    Ok(crate::EXIT_OK)
}
