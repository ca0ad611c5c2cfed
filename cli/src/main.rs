//! The `shardpack` command: a thin layer over the `shardpack` library.

mod cmd;
mod output;
mod size;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when the command did its job and found nothing wrong.
const EXIT_OK: u8 = 0;
/// Exit status when the archive is damaged: `verify` found defects, or `cat`/`extract` met
/// damaged data (everything else was still done), or `merge` met a damaged input.
const EXIT_DEFECTS: u8 = 1;
/// Exit status for usage errors, unreadable or unwritable files, and bad input.
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "shardpack",
    version,
    about = "Sharded, checksummed archives for ML datasets: pack, read, verify, import and export WebDataset tars",
    after_help = "Exit status: 0 success; 1 the archive is damaged (verify found defects, cat/extract met damaged data, merge met a damaged input, protect refused a damaged archive, repair could not recover everything or refused a parity file of other contents); 2 usage error, I/O error or bad input."
)]
struct Cli {
    /// The endpoint of an S3-compatible store (MinIO, Ceph, a local test server) for s3://
    /// URLs, e.g. http://127.0.0.1:9000; the same as setting AWS_ENDPOINT_URL, which it
    /// overrides. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Keep the bytes read from remote archives (http(s):// and s3:// URLs) in this folder,
    /// so that reading them again makes no request; for ls, info, cat, extract, verify and
    /// bench. Several processes may share it. Entries are checked before use.
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    /// The most bytes --cache-dir holds; the least recently used go first.
    #[arg(long, global = true, value_name = "SIZE", default_value = "10G",
          value_parser = size::parse_size, requires = "cache_dir")]
    cache_size: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Pack(cmd::pack::Args),
    Append(cmd::append::Args),
    Ls(cmd::ls::Args),
    Info(cmd::info::Args),
    Cat(cmd::cat::Args),
    Extract(cmd::extract::Args),
    Import(cmd::import::Args),
    Export(cmd::export::Args),
    Verify(cmd::verify::Args),
    Merge(cmd::merge::Args),
    Fetch(cmd::fetch::Args),
    Push(cmd::push::Args),
    Unstream(cmd::unstream::Args),
    Salvage(cmd::salvage::Args),
    Protect(cmd::protect::Args),
    Repair(cmd::repair::Args),
    Gc(cmd::gc::Args),
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(endpoint) = &cli.endpoint {
        // The library reads the endpoint where every AWS tool does; set here, before any
        // thread starts, so that no other thread reads the environment as it changes.
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
    }
    if let Some(dir) = cli.cache_dir {
        cmd::use_remote_cache(shardpack::RemoteCache::new(dir, cli.cache_size));
    }
    let result = match cli.command {
        Command::Pack(args) => cmd::pack::run(args),
        Command::Append(args) => cmd::append::run(args),
        Command::Ls(args) => cmd::ls::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Cat(args) => cmd::cat::run(args),
        Command::Extract(args) => cmd::extract::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Fetch(args) => cmd::fetch::run(args),
        Command::Push(args) => cmd::push::run(args),
        Command::Unstream(args) => cmd::unstream::run(args),
        Command::Salvage(args) => cmd::salvage::run(args),
        Command::Protect(args) => cmd::protect::run(args),
        Command::Repair(args) => cmd::repair::run(args),
        Command::Gc(args) => cmd::gc::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if output::is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) => {
            eprintln!("shardpack: error: {}", output::error_chain(&err));
            let damaged = err.chain().any(|c| {
                c.downcast_ref::<shardpack::Error>()
                    .is_some_and(|e| e.is_corruption())
            });
            ExitCode::from(if damaged { EXIT_DEFECTS } else { EXIT_ERROR })
        }
    }
}
