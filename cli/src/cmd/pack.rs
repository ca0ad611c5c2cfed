//! `shardpack pack`: walk a folder and write an archive.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::os::fd::AsFd;

use shardpack::{Compression, MediaProfile, Volume, Writer, WriterBuilder};

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
    /// Media profile: sets alignment, block and shard sizes and record placement for the
    /// medium (see format-spec.md §9). The options below override single parameters.
    #[arg(long, default_value = "generic", value_parser = parse_profile)]
    profile: MediaProfile,
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
    /// Record size of a stream (-o -): every write is one record of this size, a power of
    /// two from 4K to 8M and at least the alignment. Default: 512K (LTFS's).
    #[arg(long, value_parser = parse_size)]
    record_size: Option<u64>,
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
    parity: Option<f64>,
    /// In a stream, write a manifest checkpoint after every N shards.
    #[arg(long, default_value_t = 1)]
    checkpoint_every: u32,
    /// Block compression.
    #[arg(long, value_enum, default_value = "zstd")]
    compression: CompressionArg,
    /// Per-shard zstd dictionary for small samples: the size to train (e.g. 256K), or
    /// "off". A shard whose first samples are small (text, JSON, tokens) gets one, and its
    /// samples are compressed one by one with it, so that a random read decodes one
    /// sample. Default: the profile's (256K for ssd, off for the others).
    #[arg(long, value_parser = parse_dictionary)]
    dictionary: Option<Option<u64>>,
    /// zstd level, -7 to 22.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
    /// Archive id (32 hex digits). Default: derived from the file list and options, so the
    /// same input gives the same bytes.
    #[arg(long)]
    archive_id: Option<String>,
    /// Skip symbolic links and special files with a warning instead of refusing them.
    #[arg(long)]
    skip_special: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    Zstd,
    None,
}

struct InputFile {
    path: PathBuf,
    size: u64,
}

pub fn run(args: Args) -> Result<u8> {
    let files = walk(&args.input, args.skip_special)?;
    let samples = group(files)?;
    let total: u64 = samples.values().flatten().map(|(_, f)| f.size).sum();
    let compression = match args.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Zstd => Compression::Zstd { level: args.level },
    };
    let archive_id = match &args.archive_id {
        Some(hex) => shardpack::manifest::parse_hex::<16>(&hex.to_ascii_lowercase())
            .context("--archive-id must be 32 hex digits")?,
        None => derive_id(&samples, &args),
    };
    let profile = args.profile;
    let mut builder = WriterBuilder::for_profile(profile)
        .compression(compression)
        .archive_id(archive_id)
        .checkpoint_every(args.checkpoint_every);
    if let Some(n) = args.shard_size {
        builder = builder.shard_size(n);
    }
    if let Some(n) = args.block_size {
        builder = builder.block_size(n);
    }
    if let Some(n) = args.align {
        builder = builder.align(u32::try_from(n).context("--align is too large")?);
    }
    if let Some(size) = args.dictionary {
        let size = size
            .map(|n| u32::try_from(n).context("--dictionary is too large"))
            .transpose()?;
        builder = builder.dictionary(size);
    }
    if let Some(n) = args.record_size {
        builder = builder.stream_record(u32::try_from(n).context("--record-size is too large")?);
    }
    let to_stream = args.output.as_os_str() == "-";
    let default_parity = f64::from(args.profile.default_parity_percent);
    let parity = args
        .parity
        .unwrap_or(if to_stream { 0.0 } else { default_parity });
    if parity > 0.0 && to_stream {
        anyhow::bail!("--parity is not available for streams (-o -): unstream, then protect");
    }
    let capacity = args.volume.map(|v| v.capacity()).or(args.volume_size);
    // A volume holds its data and its parity: the data gets its share of the budget.
    builder = builder.volume_size(capacity.map(|c| shardpack::volume_data_budget(c, parity)));
    let existed = args.output.exists();
    let writer = if to_stream {
        // Straight to file descriptor 1: Rust's stdout is line-buffered and would split
        // records at newline bytes.
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use standard output")?;
        builder
            .create_stream(Box::new(fs::File::from(fd)), "<stdout>")
            .context("cannot start the stream")?
    } else {
        builder
            .create(&args.output)
            .with_context(|| format!("cannot create archive {}", args.output.display()))?
    };
    let result = write_samples(writer, &samples, total).and_then(|m| {
        if parity > 0.0 {
            shardpack::protect(&args.output, parity).context("cannot add parity")?;
        }
        Ok(m)
    });
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            // Leave nothing that looks like an archive: a folder we created goes entirely;
            // in a folder that was there (empty) before, the writer wrote no manifest.
            if !existed && !to_stream {
                let _ = fs::remove_dir_all(&args.output);
            }
            return Err(e);
        }
    };
    // With -o -, standard output carries the stream: the summary goes to standard error.
    let mut report: Box<dyn std::io::Write> = if to_stream {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
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

/// Samples each file-reading thread may hold ready ahead of the writer.
const READ_AHEAD: usize = 16;

fn write_samples(
    mut writer: Writer,
    samples: &BTreeMap<String, Vec<(String, InputFile)>>,
    total: u64,
) -> Result<shardpack::Manifest> {
    let bar = progress_bar(total, "pack");
    let list: Vec<(&String, &Vec<(String, InputFile)>)> = samples.iter().collect();
    // Opening and reading many small files costs more system time than packing them:
    // threads read the samples ahead (sample i on thread i mod n), and the writer takes
    // them in order.
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let mut ready = Vec::with_capacity(readers);
        for first in 0..readers {
            let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
            ready.push(rx);
            let list = &list;
            scope.spawn(move || {
                for (_, fields) in list.iter().skip(first).step_by(readers) {
                    if tx.send(read_fields(fields)).is_err() {
                        return;
                    }
                }
            });
        }
        for (i, (key, fields)) in list.iter().enumerate() {
            let data = ready[i % readers]
                .recv()
                .map_err(|_| anyhow::anyhow!("a file-reading thread stopped"))??;
            let named: Vec<(&str, &[u8])> = fields
                .iter()
                .zip(&data)
                .map(|((name, _), d)| (name.as_str(), d.as_slice()))
                .collect();
            writer
                .append(key, &named)
                .with_context(|| format!("cannot pack sample {key:?}"))?;
            bar.inc(data.iter().map(|d| d.len() as u64).sum());
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let manifest = writer.finish()?;
    bar.finish_and_clear();
    Ok(manifest)
}

/// Reads a sample's files, checking each still has the size the walk saw.
fn read_fields(fields: &[(String, InputFile)]) -> Result<Vec<Vec<u8>>> {
    use std::io::Read as _;
    let mut data = Vec::with_capacity(fields.len());
    for (_, file) in fields {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut bytes = Vec::with_capacity(file.size as usize + 1);
            fs::File::open(&file.path)?.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let bytes = read().with_context(|| format!("cannot read {}", file.path.display()))?;
        if bytes.len() as u64 != file.size {
            bail!("{} changed size while being packed", file.path.display());
        }
        data.push(bytes);
    }
    Ok(data)
}

/// Every regular file under `root`, as ('/'-joined relative path, file), sorted.
fn walk(root: &Path, skip_special: bool) -> Result<Vec<(String, InputFile)>> {
    let meta = fs::metadata(root)
        .with_context(|| format!("cannot read input folder {}", root.display()))?;
    if !meta.is_dir() {
        bail!("input {} is not a folder", root.display());
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read folder {}", dir.display()))?;
            let path = entry.path();
            let Ok(name) = entry.file_name().into_string() else {
                bail!(
                    "file name {} is not valid UTF-8; keys must be UTF-8",
                    path.display()
                );
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // The directory entry's type needs no system call; the size of a file does.
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if kind.is_dir() {
                stack.push((path, rel));
            } else if kind.is_file() {
                let meta = entry
                    .metadata()
                    .with_context(|| format!("cannot stat {}", path.display()))?;
                out.push((
                    rel,
                    InputFile {
                        path,
                        size: meta.len(),
                    },
                ));
            } else {
                let what = if kind.is_symlink() {
                    "a symbolic link"
                } else {
                    "a special file"
                };
                if skip_special {
                    eprintln!("shardpack: warning: skipping {} ({what})", path.display());
                } else {
                    bail!("{} is {what}; shardpack packs regular files only (use --skip-special to skip it)", path.display());
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Splits a relative path into (key, field) by the WebDataset convention; see `Args`.
pub fn split_key(rel: &str) -> (&str, &str) {
    let base_start = rel.rfind('/').map_or(0, |i| i + 1);
    let base = &rel[base_start..];
    match base.char_indices().skip(1).find(|&(_, c)| c == '.') {
        Some((dot, _)) if dot + 1 < base.len() => {
            (&rel[..base_start + dot], &rel[base_start + dot + 1..])
        }
        _ => (rel, ""),
    }
}

fn group(files: Vec<(String, InputFile)>) -> Result<BTreeMap<String, Vec<(String, InputFile)>>> {
    let mut samples: BTreeMap<String, Vec<(String, InputFile)>> = BTreeMap::new();
    for (rel, file) in files {
        let (key, field) = split_key(&rel);
        samples
            .entry(key.to_string())
            .or_default()
            .push((field.to_string(), file));
    }
    for fields in samples.values_mut() {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(samples)
}

fn derive_id(samples: &BTreeMap<String, Vec<(String, InputFile)>>, args: &Args) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("shardpack pack archive id v1");
    for (key, fields) in samples {
        for (field, file) in fields {
            h.update(&(key.len() as u64).to_le_bytes())
                .update(key.as_bytes());
            h.update(&(field.len() as u64).to_le_bytes())
                .update(field.as_bytes());
            h.update(&file.size.to_le_bytes());
        }
    }
    let options = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {} {}",
        args.volume.map(|v| v.capacity()).or(args.volume_size),
        args.profile.code,
        args.shard_size,
        args.block_size,
        args.align,
        args.record_size,
        args.compression as u8,
        args.level
    );
    h.update(options.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
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

fn parse_dictionary(text: &str) -> std::result::Result<Option<u64>, String> {
    match text {
        "off" | "none" | "0" => Ok(None),
        _ => parse_size(text).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn webdataset_convention() {
        assert_eq!(split_key("train/0001.jpg"), ("train/0001", "jpg"));
        assert_eq!(split_key("a.seg.png"), ("a", "seg.png"));
        assert_eq!(split_key("dir.x/README"), ("dir.x/README", ""));
        assert_eq!(split_key("d/.hidden"), ("d/.hidden", ""));
        assert_eq!(split_key("d/.hidden.txt"), ("d/.hidden", "txt"));
        assert_eq!(split_key("a."), ("a.", ""));
        assert_eq!(split_key("..x"), (".", "x"));
        assert_eq!(split_key("héllo wörld.tar.gz"), ("héllo wörld", "tar.gz"));
    }
}
