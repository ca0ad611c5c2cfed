//! Exporting an archive as WebDataset tar shards: deterministic headers, samples in
//! archive order, a new tar when the current one would pass the size asked for.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::check_exportable;
use crate::{Archive, Error, Result, PARTIAL_SUFFIX};

/// The modification time of every exported member: 2006-07-24 01:21:28 UTC, the constant
/// the `tar` crate's deterministic mode uses, because some tools mishandle a time of 0
/// (rust-lang/cargo#9512).
pub const EXPORT_MTIME: u64 = 1_153_704_088;

/// The permissions of every exported member: read-only, as webdataset's `TarWriter`
/// writes them.
const EXPORT_MODE: u32 = 0o444;

/// A tar's header and data blocks.
const TAR_BLOCK_BYTES: u64 = 512;

/// The end-of-archive marker: two zero blocks.
const END_MARKER_BYTES: u64 = 2 * TAR_BLOCK_BYTES;

/// Widest number a placeholder may ask for (`%020d`): a u64 has 20 digits.
const MAX_WIDTH: usize = 20;

/// Options for [`export`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Start a new tar when the current one would grow past this many bytes; a sample is
    /// never split, so a sample larger than this is a tar of its own. `None`: one tar.
    pub shard_size: Option<u64>,
}

impl ExportOptions {
    /// One tar for the whole archive.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest tar, in bytes, or `None` for one tar.
    #[must_use]
    pub fn shard_size(mut self, bytes: Option<u64>) -> Self {
        self.shard_size = bytes;
        self
    }
}

/// One tar written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExportedTar {
    /// Its path.
    pub path: PathBuf,
    /// Samples in it.
    pub samples: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct ExportReport {
    /// The tars, in order.
    pub tars: Vec<ExportedTar>,
    /// Samples written.
    pub samples: u64,
    /// Members written.
    pub members: u64,
    /// Fields with an empty name, written as a member named by the key alone; webdataset
    /// skips members without an extension, so it does not see these.
    pub unnamed_fields: u64,
}

/// An output name pattern with one printf-style number: `out-%06d.tar` (`%d`, `%Nd` or
/// `%0Nd`; `%%` is a literal `%`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarPattern {
    prefix: String,
    suffix: String,
    width: usize,
    zero_pad: bool,
}

impl TarPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a pattern without exactly one number, or with
    /// a `%` that starts something else.
    ///
    /// ```
    /// use shardpack::webdataset::TarPattern;
    /// let p = TarPattern::parse("out-%06d.tar")?;
    /// assert_eq!(p.path(7), std::path::Path::new("out-000007.tar"));
    /// assert!(TarPattern::parse("out.tar").is_err());
    /// assert!(TarPattern::parse("out-%d-%d.tar").is_err());
    /// # Ok::<(), shardpack::Error>(())
    /// ```
    pub fn parse(pattern: &str) -> Result<TarPattern> {
        let refuse = |reason: &str| Error::invalid_input(format!("pattern {pattern:?}"), reason);
        let mut parts = [String::new(), String::new()];
        let mut found: Option<(usize, bool)> = None;
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                parts[usize::from(found.is_some())].push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                parts[usize::from(found.is_some())].push('%');
                continue;
            }
            let zero_pad = chars.next_if_eq(&'0').is_some();
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            if chars.next() != Some('d') {
                return Err(refuse(
                    "only %d, %Nd, %0Nd (a number) and %% (a percent sign) are understood",
                ));
            }
            if found.is_some() {
                return Err(refuse(
                    "the pattern must have exactly one number, like %06d",
                ));
            }
            let width = if digits.is_empty() {
                0
            } else {
                digits
                    .parse::<usize>()
                    .ok()
                    .filter(|&w| w <= MAX_WIDTH)
                    .ok_or_else(|| refuse("a number is at most 20 digits wide"))?
            };
            found = Some((width, zero_pad));
        }
        let Some((width, zero_pad)) = found else {
            return Err(refuse(
                "the pattern must have one number, like out-%06d.tar, to name each tar",
            ));
        };
        let [prefix, suffix] = parts;
        Ok(TarPattern {
            prefix,
            suffix,
            width,
            zero_pad,
        })
    }

    /// The path of tar number `n`.
    #[must_use]
    pub fn path(&self, n: u64) -> PathBuf {
        let width = self.width;
        let number = if self.zero_pad {
            format!("{n:0width$}")
        } else {
            format!("{n:width$}")
        };
        PathBuf::from(format!("{}{number}{}", self.prefix, self.suffix))
    }
}

/// Writes `archive`'s samples, in archive order, as tars named by `pattern` (numbered from
/// 0), each member `key.field` (see [the module](super) for the names and headers). Each
/// tar is written under a temporary name (`.partial` added), flushed to the disk and then
/// renamed; no existing file is overwritten. `progress(samples_done, samples_total)` is
/// called after each sample. An empty archive gives one empty tar.
///
/// On failure every file this call created is removed.
///
/// # Errors
/// A sample whose member names would import back differently, a target or temporary file
/// that exists, damage met reading the archive, or an I/O error writing.
///
/// # Example
/// ```
/// # let tmp = tempfile::tempdir()?;
/// # let path = tmp.path().join("archive");
/// # let mut w = shardpack::Writer::builder().create(&path)?;
/// # w.append("0001", &[("jpg", b"\xff\xd8".as_slice()), ("cls", b"3")])?;
/// # w.finish()?;
/// use shardpack::webdataset::{export, ExportOptions, TarPattern};
/// let archive = shardpack::Archive::open(&path)?;
/// let pattern = TarPattern::parse(&tmp.path().join("out-%06d.tar").to_string_lossy())?;
/// let report = export(&archive, &pattern, &ExportOptions::new(), &mut |_, _| {})?;
/// assert_eq!(report.tars.len(), 1);
/// let mut tar = tar::Archive::new(std::fs::File::open(&report.tars[0].path)?);
/// let names: Vec<String> = tar
///     .entries()?
///     .map(|e| e.unwrap().path().unwrap().display().to_string())
///     .collect();
/// assert_eq!(names, ["0001.cls", "0001.jpg"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export(
    archive: &Archive,
    pattern: &TarPattern,
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport> {
    let mut exporter = Exporter {
        pattern,
        shard_size: options.shard_size,
        current: None,
        report: ExportReport {
            tars: Vec::new(),
            samples: 0,
            members: 0,
            unnamed_fields: 0,
        },
    };
    match exporter.run(archive, progress) {
        Ok(()) => Ok(exporter.report),
        Err(e) => {
            if let Some(open) = exporter.current.take() {
                drop(open.builder);
                let _ = fs::remove_file(&open.partial);
            }
            for tar in &exporter.report.tars {
                let _ = fs::remove_file(&tar.path);
            }
            Err(e)
        }
    }
}

/// A tar being written.
struct OpenTar {
    path: PathBuf,
    partial: PathBuf,
    builder: tar::Builder<BufWriter<File>>,
    samples: u64,
    /// Bytes written so far, without the end-of-archive marker.
    bytes: u64,
}

struct Exporter<'a> {
    pattern: &'a TarPattern,
    shard_size: Option<u64>,
    current: Option<OpenTar>,
    report: ExportReport,
}

impl Exporter<'_> {
    fn run(&mut self, archive: &Archive, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let total = archive.len();
        for sample in archive.iter() {
            let sample = sample?;
            let mut fields: Vec<(&str, &[u8])> = sample.fields().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let mut members = Vec::with_capacity(fields.len());
            let (mut bytes, mut unnamed) = (0u64, 0u64);
            for (field, data) in &fields {
                let name = check_exportable(sample.key(), field).map_err(|reason| {
                    Error::invalid_input(
                        format!("sample {:?} field {field:?}", sample.key()),
                        format!("cannot be exported to a WebDataset tar: {reason}"),
                    )
                })?;
                bytes += member_bytes(&name, data.len() as u64);
                unnamed += u64::from(field.is_empty());
                members.push((name, *data));
            }
            let full = self.current.as_ref().is_some_and(|tar| {
                tar.samples > 0
                    && self.shard_size.is_some_and(|max| {
                        tar.bytes
                            .saturating_add(bytes)
                            .saturating_add(END_MARKER_BYTES)
                            > max
                    })
            });
            if full {
                self.close()?;
            }
            let tar = match &mut self.current {
                Some(tar) => tar,
                None => {
                    let opened = self.open()?;
                    self.current.insert(opened)
                }
            };
            for (name, data) in &members {
                let mut header = tar::Header::new_ustar();
                header.set_size(data.len() as u64);
                header.set_mode(EXPORT_MODE);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(EXPORT_MTIME);
                header.set_entry_type(tar::EntryType::Regular);
                tar.builder
                    .append_data(&mut header, Path::new(name), *data)
                    .map_err(|e| Error::io(&tar.partial, "write", e))?;
            }
            tar.bytes += bytes;
            tar.samples += 1;
            self.report.samples += 1;
            self.report.members += members.len() as u64;
            self.report.unnamed_fields += unnamed;
            progress(self.report.samples, total);
        }
        if self.current.is_none() && self.report.tars.is_empty() {
            let opened = self.open()?;
            self.current = Some(opened);
        }
        self.close()
    }

    /// Starts the next tar, under its temporary name.
    fn open(&mut self) -> Result<OpenTar> {
        let path = self.pattern.path(self.report.tars.len() as u64);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::invalid_input(
                path.display().to_string(),
                "the file exists; export never overwrites: choose another pattern",
            ));
        }
        let mut partial = path.clone().into_os_string();
        partial.push(PARTIAL_SUFFIX);
        let partial = PathBuf::from(partial);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, "create", e))?;
        Ok(OpenTar {
            path,
            partial,
            builder: tar::Builder::new(BufWriter::new(file)),
            samples: 0,
            bytes: 0,
        })
    }

    /// Ends the open tar: the end-of-archive marker, flushed to the disk, then renamed.
    fn close(&mut self) -> Result<()> {
        let Some(tar) = self.current.take() else {
            return Ok(());
        };
        let partial = tar.partial.clone();
        let finished = tar
            .builder
            .into_inner()
            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
            .and_then(|file| file.sync_all());
        if let Err(e) = finished {
            let _ = fs::remove_file(&partial);
            return Err(Error::io(&partial, "write", e));
        }
        if fs::symlink_metadata(&tar.path).is_ok() {
            let _ = fs::remove_file(&partial);
            return Err(Error::invalid_input(
                tar.path.display().to_string(),
                "the file appeared while the export ran; export never overwrites",
            ));
        }
        if let Err(e) = fs::rename(&partial, &tar.path) {
            let _ = fs::remove_file(&partial);
            return Err(Error::io(&tar.path, "rename into place", e));
        }
        self.report.tars.push(ExportedTar {
            path: tar.path,
            samples: tar.samples,
            bytes: tar.bytes + END_MARKER_BYTES,
        });
        Ok(())
    }
}

/// The bytes a member takes in the tar: its header, a GNU long-name record before it when
/// the name does not fit a ustar header (as `tar::Builder` writes it), and its data padded
/// to whole blocks.
fn member_bytes(name: &str, len: u64) -> u64 {
    let blocks = |n: u64| n.div_ceil(TAR_BLOCK_BYTES) * TAR_BLOCK_BYTES;
    let long_name = if tar::Header::new_ustar().set_path(name).is_ok() {
        0
    } else {
        TAR_BLOCK_BYTES + blocks(name.len() as u64 + 1)
    };
    TAR_BLOCK_BYTES + long_name + blocks(len)
}
