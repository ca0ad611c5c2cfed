//! `shardpack protect`: add Reed-Solomon parity to a finished archive.

use std::path::PathBuf;

use anyhow::Result;

use crate::output::outln;

/// Add (or replace) Reed-Solomon parity so that `repair` can rebuild damaged bytes, even
/// whole lost shards when the parity allows. Shards and manifest are not changed: the root
/// digest stays the same. The parity goes to parity.spp in the archive folder (in each
/// volume folder of a split archive).
///
/// The archive is verified first, reading every byte, and a damaged archive is refused
/// (exit 1, naming the first defect): repair it, or pass --as-is to protect it as it is.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder.
    archive: PathBuf,
    /// Parity as a percentage of the data, e.g. 15 or 15% (dvdisaster's "normal" is 14.3%;
    /// 20-30% when the parity shares the medium with the data).
    #[arg(
        long,
        default_value = "15",
        value_parser = crate::size::parse_parity,
        allow_hyphen_values = true
    )]
    parity: f64,
    /// Protect the archive as it is, without verifying it first: the parity then preserves
    /// any damage already there.
    #[arg(long)]
    as_is: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let options = shardpack::ProtectOptions::new(args.parity).as_is(args.as_is);
    let report = shardpack::protect_with(&args.archive, &options).map_err(|e| {
        let hint = if e.is_corruption() {
            " (it is damaged: repair it first, or protect it as it is with --as-is)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("cannot protect {}{hint}", args.archive.display()))
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(crate::EXIT_OK);
    }
    if let Some(note) = &report.note {
        outln!("nothing protected: {note}");
    }
    for f in &report.folders {
        outln!(
            "protected {} bytes in {} with {} bytes of parity: {} data + {} parity layers of {}-byte chunks; survives a burst of {} bytes per layer lost",
            f.data_bytes,
            f.folder.display(),
            f.parity_bytes,
            f.layers.0,
            f.layers.1,
            f.chunk_bytes,
            f.burst_bytes
        );
    }
    Ok(crate::EXIT_OK)
}
