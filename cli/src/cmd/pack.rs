//! `shardpack pack`: walk a folder and write an archive.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::os::fd::AsFd;

use shardpack::pack::{FolderListing, PackOptions};
use shardpack::{Compression, MediaProfile, Volume, WriterBuilder};

use crate::output::progress_bar;
use crate::size::{parse_parity, parse_size};

/// Pack a folder into an archive.
///
/// Files are grouped into samples by the WebDataset convention: `train/0001.jpg` and
/// `train/0001.json` become one sample with key `train/0001` and fields `jpg` and `json`.
/// The key is the path up to the first dot of the file name (a leading dot and a final dot
/// do not count); the rest is the field name, empty for files without an extension.
/// Samples are written in sorted key order. Empty folders are not recorded.
///
/// Symbolic links, devices, sockets and FIFOs are refused (exit 2) unless
/// --skip-special is given, which skips them with a warning.
#[derive(clap::Args)]
pub struct Args {
    /// Folder to pack.
    input: PathBuf,
    /// The archive folder to create (must not exist, or be empty), or - to write the
    /// whole archive as one stream of fixed-size records to standard output (for tape:
    /// `| dd of=/dev/nst0 bs=512k`, `| mbuffer`).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    writer: WriterArgs,
    /// Record size of a stream (-o -): every write is one record of this size, a power of
    /// two from 4K to 8M and at least the alignment. Default: 512K (LTFS's).
    #[arg(long, value_parser = parse_size)]
    record_size: Option<u64>,
    /// In a stream, write a manifest checkpoint after every N shards (default 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    checkpoint_every: Option<u32>,
    /// Skip symbolic links and special files with a warning instead of refusing them.
    #[arg(long)]
    skip_special: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The writer options that `pack` and `import` share.
#[derive(clap::Args)]
pub struct WriterArgs {
    /// Media profile: sets alignment, block and shard sizes and record placement for the
    /// medium (see format-spec.md §9). The options below override single parameters.
    #[arg(long, default_value = "generic", value_parser = parse_profile)]
    pub profile: MediaProfile,
    /// Target shard file size (e.g. 256M, 1G). Default: the profile's.
    #[arg(long, value_parser = parse_size)]
    shard_size: Option<u64>,
    /// Target decoded block size; the unit of compression (e.g. 1M). Default: the profile's.
    #[arg(long, value_parser = parse_size)]
    block_size: Option<u64>,
    /// Alignment of blocks, index and file length: a power of two from 64 to 16M.
    /// Default: the profile's.
    #[arg(long, value_parser = parse_size)]
    align: Option<u64>,
    /// Split the archive into volume folders (vol-0001, vol-0002, ...) that each fit this
    /// optical medium with room for its file system; each carries the whole manifest.
    #[arg(long, conflicts_with = "volume_size", value_parser = parse_volume)]
    volume: Option<Volume>,
    /// Split the archive into volume folders for a medium of this capacity (e.g. 4700M).
    #[arg(long, value_parser = parse_size)]
    volume_size: Option<u64>,
    /// Reed-Solomon parity as a percentage of the data, e.g. 10 or 10% (then `repair` can
    /// rebuild damaged bytes), from 0 to 1000. Default: the profile's, 15 for optical
    /// (dvdisaster's normal 14.3%), 5 for tape (par2's default), none for hdd, ssd and
    /// generic; 0 turns it off. Not available for streams (-o -): unstream, then protect.
    #[arg(long, value_parser = parse_parity, allow_hyphen_values = true)]
    pub parity: Option<f64>,
    /// Block compression.
    #[arg(long, value_enum, default_value = "zstd")]
    compression: CompressionArg,
    /// Per-shard zstd dictionary for small samples: the size to train (e.g. 256K), or
    /// "off". A shard whose first samples are small (text, JSON, tokens) gets one, and its
    /// samples are compressed one by one with it, so that a random read decodes one
    /// sample. Default: the profile's (256K for ssd, off for the others).
    #[arg(long, value_parser = parse_dictionary)]
    dictionary: Option<DictionaryArg>,
    /// zstd level, -7 to 22 (default 3).
    #[arg(long, allow_negative_numbers = true)]
    level: Option<i32>,
    /// Archive id (32 hex digits). Default: derived so that the same input and options give
    /// the same bytes (pack: from the file list and options; import: from the options).
    #[arg(long)]
    archive_id: Option<String>,
}

impl WriterArgs {
    /// Options that do nothing with the compression chosen are refused rather than
    /// silently ignored.
    pub fn refuse_inapplicable(&self) -> Result<()> {
        if let CompressionArg::None = self.compression {
            if self.level.is_some() {
                bail!("--level applies to zstd compression only, not --compression none");
            }
            if matches!(self.dictionary, Some(DictionaryArg(Some(_)))) {
                bail!("--dictionary applies to zstd compression only, not --compression none");
            }
        }
        Ok(())
    }

    /// The parity folders get: --parity, else the profile's default.
    pub fn folder_parity(&self) -> f64 {
        self.parity
            .unwrap_or(f64::from(self.profile.default_parity_percent))
    }

    /// The writer options chosen; volumes get the data budget of their medium with
    /// `parity` beside the data.
    pub fn builder(&self, parity: f64) -> Result<WriterBuilder> {
        let compression = match self.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Zstd => Compression::Zstd {
                level: self.level.unwrap_or(3),
            },
        };
        let mut builder = WriterBuilder::for_profile(self.profile).compression(compression);
        if let Some(hex) = &self.archive_id {
            let id = shardpack::manifest::parse_hex::<16>(&hex.to_ascii_lowercase())
                .context("--archive-id must be 32 hex digits")?;
            builder = builder.archive_id(id);
        }
        if let Some(n) = self.shard_size {
            builder = builder.shard_size(n);
        }
        if let Some(n) = self.block_size {
            builder = builder.block_size(n);
        }
        if let Some(n) = self.align {
            let n = u32::try_from(n).map_err(|_| {
                anyhow::anyhow!("--align {n}: must be a power of two from 64 to 16M")
            })?;
            builder = builder.align(n);
        }
        if let Some(DictionaryArg(size)) = self.dictionary {
            let size = size
                .map(|n| {
                    u32::try_from(n).map_err(|_| {
                        anyhow::anyhow!("--dictionary {n}: must be from 1K to 1M bytes, or off")
                    })
                })
                .transpose()?;
            builder = builder.dictionary(size);
        }
        let capacity = self.volume.map(|v| v.capacity()).or(self.volume_size);
        Ok(builder.volume_size(capacity.map(|c| shardpack::volume_data_budget(c, parity))))
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    Zstd,
    None,
}

pub fn run(args: Args) -> Result<u8> {
    let to_stream = args.output.as_os_str() == "-";
    refuse_inapplicable(&args, to_stream)?;
    // Volumes are folders, which get the profile's parity unless told otherwise.
    let builder = builder(&args, args.writer.folder_parity())?;
    // Bad options are refused before the folder is walked.
    builder.validate()?;
    let listing = FolderListing::scan(&args.input)?;
    super::refuse_or_skip_special(&listing, args.skip_special)?;
    let options = PackOptions::new()
        .skip_special(true)
        .parity_percent(args.writer.parity);
    let total = listing.total_bytes();
    let bar = progress_bar(total, "pack");
    let mut progress = |done, _total| bar.set_position(done);
    // With -o -, standard output carries the stream: the summary goes to standard error.
    let (manifest, mut report): (_, Box<dyn std::io::Write>) = if to_stream {
        // Straight to file descriptor 1: Rust's stdout is line-buffered and would split
        // records at newline bytes.
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use standard output")?;
        let sink = Box::new(fs::File::from(fd));
        let manifest = listing
            .pack_stream(sink, "<stdout>", builder, &options, &mut progress)
            .context("cannot write the stream")?;
        (manifest, Box::new(std::io::stderr()))
    } else {
        let packed = listing
            .pack(&args.output, builder, &options, &mut progress)
            .with_context(|| format!("cannot pack into {}", args.output.display()))?;
        (packed.manifest, Box::new(std::io::stdout()))
    };
    bar.finish_and_clear();
    if args.json {
        let summary = serde_json::json!({
            "archive": args.output,
            "samples": manifest.totals.samples,
            "shards": manifest.totals.shards,
            "bytes": manifest.totals.bytes,
            "raw_bytes": manifest.totals.raw_bytes,
            "root": manifest.root,
        });
        writeln!(report, "{summary}")?;
    } else {
        writeln!(
            report,
            "packed {} samples ({} bytes of files) into {} shard(s), {} bytes: {}",
            manifest.totals.samples,
            total,
            manifest.totals.shards,
            manifest.totals.bytes,
            args.output.display()
        )?;
        writeln!(report, "root {}", manifest.root)?;
    }
    Ok(crate::EXIT_OK)
}

/// Options that do nothing in the mode chosen are refused rather than silently ignored.
fn refuse_inapplicable(args: &Args, to_stream: bool) -> Result<()> {
    if to_stream {
        if args.writer.volume.is_some() || args.writer.volume_size.is_some() {
            bail!(
                "--volume and --volume-size apply to archive folders only; a stream has no volumes"
            );
        }
        if args.writer.parity.is_some_and(|p| p != 0.0) {
            bail!("--parity applies to archive folders only; streams carry no parity: unstream, then protect");
        }
    } else {
        if args.record_size.is_some() {
            bail!("--record-size applies to streams only (-o -)");
        }
        if args.checkpoint_every.is_some() {
            bail!("--checkpoint-every applies to streams only (-o -)");
        }
    }
    args.writer.refuse_inapplicable()
}

/// The writer options the arguments choose, with a stream's record size and checkpoints.
fn builder(args: &Args, parity: f64) -> Result<WriterBuilder> {
    let mut builder = args
        .writer
        .builder(parity)?
        .checkpoint_every(args.checkpoint_every.unwrap_or(1));
    if let Some(n) = args.record_size {
        let n = u32::try_from(n).map_err(|_| {
            anyhow::anyhow!("--record-size {n}: must be a power of two from 4K to 8M")
        })?;
        builder = builder.stream_record(n);
    }
    Ok(builder)
}

fn parse_profile(name: &str) -> Result<MediaProfile, String> {
    MediaProfile::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = MediaProfile::ALL.iter().map(|p| p.name).collect();
        format!("no profile {name:?}; possible values: {}", names.join(", "))
    })
}

fn parse_volume(name: &str) -> Result<Volume, String> {
    Volume::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Volume::ALL.iter().map(|v| v.name()).collect();
        format!("no medium {name:?}; possible values: {}", names.join(", "))
    })
}

/// `--dictionary`: a size to train, or none. A type of its own, since clap reads an
/// `Option<Option<_>>` field as a flag whose value may be left out.
#[derive(Clone, Copy, Debug)]
struct DictionaryArg(Option<u64>);

fn parse_dictionary(text: &str) -> std::result::Result<DictionaryArg, String> {
    match text {
        "off" | "none" | "0" => Ok(DictionaryArg(None)),
        _ => parse_size(text).map(|n| DictionaryArg(Some(n))),
    }
}
