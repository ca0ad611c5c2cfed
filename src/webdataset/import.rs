//! Importing WebDataset tars: one forward pass over each tar, members grouped into samples
//! and appended to a [`Writer`] as each sample ends.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::input::{self, CountState, TarSource};
use super::{split_member, TarCompression};
use crate::pack::PackOptions;
use crate::{
    Error, ErrorKind, Manifest, ProtectReport, Result, TarLocation, TarProblem, Writer,
    WriterBuilder,
};

/// Tar blocks are 512 bytes: headers, and member data padded to a whole block.
const TAR_BLOCK_BYTES: u64 = 512;

/// Skipped members listed one by one in [`ImportReport::skipped`]; more are only counted,
/// so that a tar of a million links costs no more memory than a tar of one.
pub const MAX_SKIPPED_LISTED: usize = 1000;

/// Why a member was not imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// A name webdataset reserves for metadata (`__key__`, `__meta__/…`).
    Meta,
    /// A link, device, FIFO or member of another type (only with
    /// [`PackOptions::skip_special`]).
    Special {
        /// What it is.
        kind: String,
    },
}

/// A member that was not imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SkippedMember {
    /// The tar file.
    pub file: PathBuf,
    /// The member's name.
    pub member: String,
    /// The offset of its header in the tar stream.
    pub offset: u64,
    /// Why.
    pub reason: SkipReason,
}

/// What one tar held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImportedTar {
    /// The tar file.
    pub file: PathBuf,
    /// Its compression.
    pub compression: TarCompression,
    /// Samples it gave.
    pub samples: u64,
    /// Members imported as fields.
    pub members: u64,
}

/// What [`import`] wrote.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct ImportReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Each tar, in the order read.
    pub tars: Vec<ImportedTar>,
    /// Bytes of member data imported.
    pub member_bytes: u64,
    /// Members skipped, the first [`MAX_SKIPPED_LISTED`] of them.
    pub skipped: Vec<SkippedMember>,
    /// Members skipped in all (directories and pax global headers are not counted).
    pub skipped_count: u64,
    /// The parity written, when there is parity.
    pub parity: Option<ProtectReport>,
}

/// Imports WebDataset tars into the archive folder `output` (new or empty): members are
/// grouped into samples by WebDataset's rules (see [the module](super)), samples are
/// written in the order of the tars and of their members, and parity is added as
/// [`crate::pack::FolderListing::pack`] adds it. Each tar is read once, front to back, and
/// never copied; memory holds one sample at a time (the writer has no streaming API for a
/// field yet, so a sample's members are read into memory, up to the 4 GiB the writer
/// accepts for a sample). `progress(input_bytes_read, input_bytes_total)` is called after
/// each sample; the total is 0 when an input's size is unknown (standard input).
///
/// On failure, a folder this call created is removed; in a folder that was there (empty)
/// before, no manifest was written.
///
/// # Errors
/// No input, a parity percentage out of range, invalid writer options, a non-empty
/// `output`; [`ErrorKind::Tar`] for a damaged or truncated tar, an unsupported
/// compression, a link or special member (unless skipped), a name that cannot become a
/// key, two members of a sample with one field name, a key that comes back, or a sample
/// the writer refuses; an I/O error reading a tar or writing the archive.
///
/// # Example
/// ```
/// # let tmp = tempfile::tempdir()?;
/// # let tar_path = tmp.path().join("shard-000000.tar");
/// # let mut tar = tar::Builder::new(std::fs::File::create(&tar_path)?);
/// # for (name, data) in [("0001.jpg", &b"\xff\xd8"[..]), ("0001.json", br#"{"y": 1}"#)] {
/// #     let mut header = tar::Header::new_ustar();
/// #     header.set_size(data.len() as u64);
/// #     header.set_cksum();
/// #     tar.append_data(&mut header, name, data)?;
/// # }
/// # tar.finish()?;
/// use shardpack::webdataset::{import, TarSource};
/// let sources = TarSource::from_arg(&tmp.path().join("shard-{000000..000000}.tar").to_string_lossy())?;
/// let output = tmp.path().join("archive");
/// let options = shardpack::pack::PackOptions::new();
/// let report = import(sources, &output, shardpack::WriterBuilder::new(), &options, &mut |_, _| {})?;
/// assert_eq!(report.manifest.totals.samples, 1);
/// let archive = shardpack::Archive::open(&output)?;
/// assert_eq!(archive.get_by_key("0001")?.unwrap().field("json"), Some(&br#"{"y": 1}"#[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(
    sources: Vec<TarSource>,
    output: &Path,
    builder: WriterBuilder,
    options: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ImportReport> {
    if sources.is_empty() {
        return Err(Error::invalid_input("inputs", "no tar file to import"));
    }
    let parity = options
        .parity_percent
        .unwrap_or_else(|| f64::from(builder.media_profile().default_parity_percent));
    crate::parity::check_percent(parity, true)?;
    let total = sources
        .iter()
        .map(TarSource::size)
        .sum::<Option<u64>>()
        .unwrap_or(0);
    let existed = output.exists();
    let result = builder.create(output).and_then(|writer| {
        let mut importer = Importer {
            writer,
            skip_special: options.skip_special,
            tars: Vec::new(),
            member_bytes: 0,
            skipped: Vec::new(),
            skipped_count: 0,
            input_done: 0,
            input_total: total,
            progress,
        };
        for source in sources {
            importer.import_tar(source)?;
        }
        let Importer {
            writer,
            tars,
            member_bytes,
            skipped,
            skipped_count,
            ..
        } = importer;
        let manifest = writer.finish()?;
        let parity = if parity > 0.0 {
            Some(crate::protect(output, parity)?)
        } else {
            None
        };
        Ok(ImportReport {
            manifest,
            tars,
            member_bytes,
            skipped,
            skipped_count,
            parity,
        })
    });
    if result.is_err() && !existed {
        let _ = fs::remove_dir_all(output);
    }
    result
}

/// The state of one import across its tars.
struct Importer<'p> {
    writer: Writer,
    skip_special: bool,
    tars: Vec<ImportedTar>,
    member_bytes: u64,
    skipped: Vec<SkippedMember>,
    skipped_count: u64,
    /// Compressed bytes of the finished tars, for progress.
    input_done: u64,
    input_total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
}

/// The sample being gathered: consecutive members with one key.
struct Pending {
    key: String,
    fields: Vec<(String, Vec<u8>)>,
    bytes: u64,
    /// Its first member, to name the sample in errors.
    first: TarLocation,
}

impl Importer<'_> {
    fn import_tar(&mut self, source: TarSource) -> Result<()> {
        let file = source.name().to_path_buf();
        let opened = input::open(source)?;
        let (tar_state, raw_state) = (opened.tar, opened.raw);
        let mut imported = ImportedTar {
            file: file.clone(),
            compression: opened.compression,
            samples: 0,
            members: 0,
        };
        let mut archive = tar::Archive::new(opened.reader);
        let mut entries = archive
            .entries()
            .map_err(|e| read_error(&file, TarLocation::new(&file, 0), &tar_state, e))?;
        let mut pending: Option<Pending> = None;
        // Where the next header starts: after the last member's data, padded to a block.
        let mut next_header = 0u64;
        let mut previous: Option<String> = None;
        loop {
            let entry = match entries.next() {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    let at = TarLocation::new(&file, next_header).after(previous.as_deref());
                    return Err(read_error(&file, at, &tar_state, e));
                }
            };
            let mut entry = entry;
            let header_pos = entry.raw_header_position();
            let size = entry.size();
            next_header = entry
                .raw_file_position()
                .saturating_add(size.div_ceil(TAR_BLOCK_BYTES) * TAR_BLOCK_BYTES);
            let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let at = TarLocation::new(&file, header_pos).member(shown.clone());
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() {
                previous = Some(shown);
                continue;
            }
            if !(kind.is_file() || kind.is_contiguous()) {
                let kind = special_kind(kind);
                if !self.skip_special {
                    return Err(Error::tar(at, TarProblem::Special { kind }));
                }
                self.skip(&at, SkipReason::Special { kind });
                previous = Some(shown);
                continue;
            }
            let name = std::str::from_utf8(&entry.path_bytes())
                .map(str::to_owned)
                .map_err(|_| {
                    Error::tar(
                        at.clone(),
                        TarProblem::BadName {
                            reason: "the name is not valid UTF-8; keys must be UTF-8".into(),
                        },
                    )
                })?;
            let (key, field) = match split_member(&name) {
                Ok(Some((key, field))) => (key.to_owned(), field.to_lowercase()),
                Ok(None) => {
                    self.skip(&at, SkipReason::Meta);
                    previous = Some(shown);
                    continue;
                }
                Err(reason) => return Err(Error::tar(at, TarProblem::BadName { reason })),
            };
            if pending.as_ref().is_some_and(|p| p.key != key) {
                if let Some(done) = pending.take() {
                    self.flush(done, &mut imported)?;
                }
            }
            let sample = match &mut pending {
                Some(sample) => sample,
                None => {
                    if self.writer.has_key(&key) {
                        return Err(Error::tar(at, TarProblem::KeyReused { key }));
                    }
                    pending.insert(Pending {
                        key,
                        fields: Vec::new(),
                        bytes: 0,
                        first: at.clone(),
                    })
                }
            };
            if sample.fields.iter().any(|(f, _)| *f == field) {
                return Err(Error::tar(
                    at,
                    TarProblem::DuplicateField {
                        key: sample.key.clone(),
                        field,
                    },
                ));
            }
            let max = crate::Limits::DEFAULT.max_block_bytes;
            if sample.bytes.saturating_add(size) > max {
                return Err(Error::tar(
                    at,
                    TarProblem::Refused {
                        reason: format!(
                            "the sample's members hold more than the {max} bytes a sample may have"
                        ),
                    },
                ));
            }
            if sample.fields.len() >= usize::from(u16::MAX) {
                return Err(Error::tar(
                    at,
                    TarProblem::Refused {
                        reason: format!("a sample has at most {} fields", u16::MAX),
                    },
                ));
            }
            let data = read_member(&mut entry, size, &file, &at, &tar_state)?;
            sample.bytes += size;
            sample.fields.push((field, data));
            imported.members += 1;
            self.member_bytes += size;
            previous = Some(shown);
        }
        // The reader stops at the first zero block, or at the end of the data: only the
        // first is a whole tar (GNU tar and Python's tarfile write two zero blocks).
        if tar_state.bytes() < next_header.saturating_add(TAR_BLOCK_BYTES) {
            let reason = if next_header == 0 && tar_state.bytes() == 0 {
                "the file is empty".to_string()
            } else {
                "it ends without its end-of-archive marker (zero blocks)".to_string()
            };
            return Err(Error::tar(
                TarLocation::new(&file, tar_state.bytes()).after(previous.as_deref()),
                TarProblem::Truncated { reason },
            ));
        }
        if let Some(done) = pending.take() {
            self.flush(done, &mut imported)?;
        }
        // Read to the end, so that a compressed tar's checksums are checked and a pipe's
        // writer is not cut off; what follows the marker is padding.
        let mut rest = archive.into_inner();
        let at = tar_state.bytes();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| {
            read_error(
                &file,
                TarLocation::new(&file, at).after(previous.as_deref()),
                &tar_state,
                e,
            )
        })?;
        self.input_done += raw_state.bytes();
        self.tars.push(imported);
        (self.progress)(self.input_done, self.input_total);
        Ok(())
    }

    fn skip(&mut self, at: &TarLocation, reason: SkipReason) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_SKIPPED_LISTED {
            self.skipped.push(SkippedMember {
                file: at.file.clone(),
                member: at.member.clone().unwrap_or_default(),
                offset: at.offset,
                reason,
            });
        }
    }

    /// Appends a finished sample, its fields in name order.
    fn flush(&mut self, mut sample: Pending, imported: &mut ImportedTar) -> Result<()> {
        sample.fields.sort_by(|a, b| a.0.cmp(&b.0));
        let named: Vec<(&str, &[u8])> = sample
            .fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        match self.writer.append(&sample.key, &named) {
            Ok(_) => {}
            Err(e) => {
                return Err(match e.into_kind() {
                    ErrorKind::InvalidInput { subject, reason } => Error::tar(
                        sample.first,
                        TarProblem::Refused {
                            reason: format!("{subject}: {reason}"),
                        },
                    ),
                    other => other.into(),
                })
            }
        }
        imported.samples += 1;
        (self.progress)(self.input_done, self.input_total);
        Ok(())
    }
}

/// Reads a member's `size` bytes, which must all be there.
fn read_member(
    entry: &mut impl Read,
    size: u64,
    file: &Path,
    at: &TarLocation,
    state: &CountState,
) -> Result<Vec<u8>> {
    // Grown as bytes arrive: a header that claims more than the tar holds costs nothing.
    let mut data = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| read_error(file, at.clone(), state, e))?;
    if (data.len() as u64) < size {
        return Err(Error::tar(
            at.clone(),
            TarProblem::Truncated {
                reason: format!(
                    "the member's data ends after {} of its {size} bytes",
                    data.len()
                ),
            },
        ));
    }
    Ok(data)
}

/// An error reading the tar: the operating system's (an I/O error), the data ending
/// early (truncated), or the tar reader or decompressor refusing the bytes (damaged).
fn read_error(file: &Path, at: TarLocation, state: &CountState, e: io::Error) -> Error {
    if e.raw_os_error().is_some() {
        return Error::io_at(file, "read", at.offset, e);
    }
    let reason = e.to_string();
    if state.ended() || e.kind() == io::ErrorKind::UnexpectedEof {
        Error::tar(at, TarProblem::Truncated { reason })
    } else {
        Error::tar(at, TarProblem::Damaged { reason })
    }
}

/// What a member that is not a regular file or folder is, for messages.
fn special_kind(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "a symbolic link".into(),
        tar::EntryType::Link => "a hard link".into(),
        tar::EntryType::Char => "a character device".into(),
        tar::EntryType::Block => "a block device".into(),
        tar::EntryType::Fifo => "a FIFO".into(),
        tar::EntryType::GNUSparse => "a GNU sparse file".into(),
        other => format!(
            "a member of type {:?}",
            char::from(other.as_byte()).escape_default().to_string()
        ),
    }
}
