//! Packing a folder: walk it, group its files into samples by the WebDataset convention,
//! and write them, reading files on several threads ahead of the writer.
//!
//! One module (about 730 lines of code, the rest tests): the walk, the listing and the
//! reading of what was walked are one rule set, since a file must still be the file that
//! was listed (same folder, size, no link) when it is read.
//!
//! `train/0001.jpg` and `train/0001.json` become one sample with key `train/0001` and
//! fields `jpg` and `json` (see [`split_key`]). Samples are written in sorted key order,
//! fields in sorted name order. Empty folders are not recorded. Only regular files are
//! packed: symbolic links, devices, sockets and FIFOs are listed as
//! [`special files`](FolderListing::special_files), and refused unless the caller chooses
//! to skip them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::io::{Dir, EntryKind};
use crate::write::FieldData;
use crate::{Error, InputChange, Manifest, ProtectReport, Result, Writer, WriterBuilder};

/// Splits a '/'-separated relative path into (key, field name) by the WebDataset
/// convention: the key is the path up to the first dot of the file name, the field name is
/// the rest. A leading dot and a final dot do not count, so `d/.hidden` and `a.` are keys
/// with an empty field name, as is a file without an extension.
///
/// # Panics
/// Never.
///
/// ```
/// use shardpack::pack::split_key;
/// assert_eq!(split_key("train/0001.jpg"), ("train/0001", "jpg"));
/// assert_eq!(split_key("a.seg.png"), ("a", "seg.png"));
/// assert_eq!(split_key("dir.x/README"), ("dir.x/README", ""));
/// ```
#[must_use]
pub fn split_key(rel: &str) -> (&str, &str) {
    let base_start = rel.rfind('/').map_or(0, |i| i + 1);
    let base = rel.get(base_start..).unwrap_or_default();
    match base.char_indices().skip(1).find(|&(_, c)| c == '.') {
        Some((dot, _)) if dot + 1 < base.len() => {
            let at = base_start + dot;
            (
                rel.get(..at).unwrap_or_default(),
                rel.get(at + 1..).unwrap_or_default(),
            )
        }
        _ => (rel, ""),
    }
}

/// One file of a sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FolderField {
    /// The field name (the file name after the key; may be empty).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its size when the folder was walked; a file that changes size before it is read
    /// makes the pack fail.
    pub size: u64,
    /// Its path from the folder walked, '/'-separated: opened one component at a time.
    #[serde(skip)]
    rel: String,
}

/// One sample of a folder: a key and its files, sorted by field name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FolderSample {
    /// The sample's key.
    pub key: String,
    /// Its fields, sorted by name.
    pub fields: Vec<FolderField>,
}

/// What a [`SpecialFile`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpecialKind {
    /// A symbolic link (never followed).
    SymbolicLink,
    /// A device, socket or FIFO.
    Other,
}

impl std::fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecialKind::SymbolicLink => "a symbolic link",
            SpecialKind::Other => "a special file",
        })
    }
}

/// An entry of the folder that is not a regular file or folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpecialFile {
    /// The entry.
    pub path: PathBuf,
    /// What it is.
    pub kind: SpecialKind,
}

/// Options for [`pack_folder`] and [`FolderListing::pack`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PackOptions {
    /// Skip symbolic links and special files instead of refusing them.
    pub skip_special: bool,
    /// Reed-Solomon parity to add, as a percentage of the data; `None` takes the profile's
    /// [`default_parity_percent`](crate::MediaProfile::default_parity_percent), 0 adds none.
    pub parity_percent: Option<f64>,
}

impl PackOptions {
    /// Refuse special files; the profile's default parity.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Skip symbolic links and special files instead of refusing them.
    #[must_use]
    pub fn skip_special(mut self, skip: bool) -> Self {
        self.skip_special = skip;
        self
    }

    /// Parity as a percentage of the data (0 for none); `None` for the profile's default.
    #[must_use]
    pub fn parity_percent(mut self, percent: Option<f64>) -> Self {
        self.parity_percent = percent;
        self
    }
}

/// What [`pack_folder`] and [`FolderListing::pack`] wrote.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct PackReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Bytes of the files packed.
    pub file_bytes: u64,
    /// Special files skipped (only with [`PackOptions::skip_special`]).
    pub skipped: Vec<SpecialFile>,
    /// The parity written, when there is parity.
    pub parity: Option<ProtectReport>,
}

/// A folder walked and grouped into samples, ready to be packed.
#[derive(Clone, Debug)]
pub struct FolderListing {
    /// The folder walked.
    root: PathBuf,
    /// Its device and inode when walked: the folder opened to read the files must be it.
    root_id: (u64, u64),
    samples: Vec<FolderSample>,
    special: Vec<SpecialFile>,
}

/// Samples per file-reading thread that may be read ahead of the writer.
const READ_AHEAD: usize = 16;

/// A sample of at most this many bytes of files is read ahead into memory by a reading
/// thread; a larger one is only opened there and read by the writer in pieces, so that the
/// samples held ahead take at most `READ_AHEAD` × this per thread.
const READ_AHEAD_SAMPLE_BYTES: u64 = 1 << 20;

impl FolderListing {
    /// Walks `root` and groups its regular files into samples. Symbolic links and special
    /// files are not followed; they are listed in
    /// [`special_files`](Self::special_files).
    ///
    /// # Errors
    /// `root` is not a readable folder, a folder under it cannot be read, or a file name
    /// is not UTF-8 (keys are UTF-8).
    pub fn scan(root: &Path) -> Result<Self> {
        let meta = fs::metadata(root).map_err(|e| Error::io(root, "read input folder", e))?;
        if !meta.is_dir() {
            return Err(Error::invalid_input(
                root.display().to_string(),
                "the input is not a folder",
            ));
        }
        let root_dir = Dir::open(root).map_err(|e| Error::io(root, "open input folder", e))?;
        let root_meta = root_dir
            .metadata()
            .map_err(|e| Error::io(root, "stat input folder", e))?;
        let mut files = Vec::new();
        let mut special = Vec::new();
        // Folders to read: the open folder they are in (none for the root), name, '/'-path.
        // Each folder is opened relative to its parent, so no path is resolved from its
        // start and none is too long; a parent stays open only while children wait.
        let root_dir = Arc::new(root_dir);
        let mut stack: Vec<(Option<Arc<Dir>>, String, String)> =
            vec![(None, String::new(), String::new())];
        while let Some((parent, name, prefix)) = stack.pop() {
            let dir_path = root.join(&prefix);
            let dir = match parent {
                None => Arc::clone(&root_dir),
                Some(parent) => Arc::new(
                    parent
                        .open_dir(OsStr::new(&name))
                        .map_err(|e| Error::io(&dir_path, "open folder", e))?,
                ),
            };
            let entries = dir
                .entries()
                .map_err(|e| Error::io(&dir_path, "read folder", e))?;
            for (name, kind) in entries {
                let path = dir_path.join(&name);
                let Ok(name) = name.into_string() else {
                    return Err(Error::invalid_input(
                        path.display().to_string(),
                        "the file name is not valid UTF-8; keys must be UTF-8",
                    ));
                };
                let rel = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                // The entry's type needs no system call when the file system gives it; the
                // size of a file does.
                let (kind, size) = match kind {
                    Some(EntryKind::Folder) => (EntryKind::Folder, 0),
                    Some(EntryKind::SymbolicLink) => (EntryKind::SymbolicLink, 0),
                    Some(EntryKind::Other) => (EntryKind::Other, 0),
                    Some(EntryKind::File) | None => dir
                        .stat(OsStr::new(&name))
                        .map_err(|e| Error::io(&path, "stat", e))?,
                };
                match kind {
                    EntryKind::Folder => stack.push((Some(Arc::clone(&dir)), name, rel)),
                    EntryKind::File => files.push((rel, path, size)),
                    EntryKind::SymbolicLink => special.push(SpecialFile {
                        path,
                        kind: SpecialKind::SymbolicLink,
                    }),
                    EntryKind::Other => special.push(SpecialFile {
                        path,
                        kind: SpecialKind::Other,
                    }),
                }
            }
        }
        special.sort_by(|a, b| a.path.cmp(&b.path));
        let mut grouped: BTreeMap<String, Vec<FolderField>> = BTreeMap::new();
        for (rel, path, size) in files {
            let (key, name) = split_key(&rel);
            grouped
                .entry(key.to_string())
                .or_default()
                .push(FolderField {
                    name: name.to_string(),
                    path,
                    size,
                    rel: rel.clone(),
                });
        }
        let samples = grouped
            .into_iter()
            .map(|(key, mut fields)| {
                fields.sort_by(|a, b| a.name.cmp(&b.name));
                FolderSample { key, fields }
            })
            .collect();
        Ok(FolderListing {
            root: root.to_path_buf(),
            root_id: (root_meta.dev(), root_meta.ino()),
            samples,
            special,
        })
    }

    /// The samples, in key order.
    #[must_use]
    pub fn samples(&self) -> &[FolderSample] {
        &self.samples
    }

    /// Symbolic links and special files found, sorted by path; none of them is packed.
    #[must_use]
    pub fn special_files(&self) -> &[SpecialFile] {
        &self.special
    }

    /// Bytes of all the files.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.samples
            .iter()
            .flat_map(|s| &s.fields)
            .map(|f| f.size)
            .sum()
    }

    /// The archive id for packing this listing with `builder`: the id set on `builder`,
    /// else [`WriterBuilder::derive_archive_id`] over every (key, field name, size) in
    /// key and field order, so that the same folder packed with the same options gives the
    /// same bytes and different contents give different ids.
    #[must_use]
    pub fn archive_id(&self, builder: &WriterBuilder) -> [u8; 16] {
        builder.explicit_archive_id().unwrap_or_else(|| {
            builder.derive_archive_id(self.samples.iter().flat_map(|s| {
                s.fields
                    .iter()
                    .map(|f| (s.key.as_str(), f.name.as_str(), f.size))
            }))
        })
    }

    /// Refuses the listing if it has special files.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the first special file.
    pub fn refuse_special_files(&self) -> Result<()> {
        match self.special.first() {
            Some(s) => Err(Error::invalid_input(
                s.path.display().to_string(),
                format!("this is {}; only regular files are packed", s.kind),
            )),
            None => Ok(()),
        }
    }

    /// Refuses an output inside the folder listed, and special files unless skipped.
    fn refuse_unpackable(&self, dir: &Path, options: &PackOptions) -> Result<()> {
        crate::io::refuse_output_inside(&self.root, dir)?;
        if !options.skip_special {
            self.refuse_special_files()?;
        }
        Ok(())
    }

    /// Packs the listing into the archive folder `dir` (new or empty), then adds parity:
    /// [`PackOptions::parity_percent`], or the profile's default. With volumes, give
    /// `builder` the [`crate::volume_data_budget`] of the medium for that parity. Without an
    /// id on `builder`, the archive gets [`archive_id`](Self::archive_id). On failure, a
    /// folder this call created is removed; in a folder that was there (empty) before, no
    /// manifest was written.
    ///
    /// # Errors
    /// A special file (unless skipped), a parity percentage outside 0 to
    /// [`crate::MAX_PARITY_PERCENT`], invalid writer options, a non-empty `dir`, a file
    /// that cannot be read or changed size since the walk, a sample the writer refuses, or
    /// an I/O error writing the archive or its parity.
    pub fn pack(
        &self,
        dir: &Path,
        builder: WriterBuilder,
        options: &PackOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PackReport> {
        self.refuse_unpackable(dir, options)?;
        let parity = options
            .parity_percent
            .unwrap_or_else(|| f64::from(builder.media_profile().default_parity_percent));
        crate::parity::check_percent(parity, true)?;
        let id = self.archive_id(&builder);
        let existed = dir.exists();
        let result = builder.archive_id(id).create(dir).and_then(|writer| {
            let manifest = self.write(writer, progress)?;
            let parity = protect_written(dir, parity)?;
            Ok((manifest, parity))
        });
        match result {
            Ok((manifest, parity)) => Ok(PackReport {
                manifest,
                file_bytes: self.total_bytes(),
                skipped: self.special.clone(),
                parity,
            }),
            Err(e) => {
                if !existed {
                    let _ = fs::remove_dir_all(dir);
                }
                Err(e)
            }
        }
    }

    /// Adds the listing's samples to the archive folder `dir` as a new generation (see
    /// [`WriterBuilder::append`]; the archive's layout replaces the builder's). When the
    /// archive had a parity file, it is protected again with as much parity (or
    /// [`PackOptions::parity_percent`] when given), since the old one is stale. A failed
    /// append leaves the archive as it was and removes the files it wrote.
    ///
    /// # Errors
    /// A special file (unless skipped), a key already in the archive, an archive that
    /// cannot be appended to, or an I/O error.
    pub fn append_to(
        &self,
        dir: &Path,
        builder: WriterBuilder,
        options: &PackOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PackReport> {
        self.refuse_unpackable(dir, options)?;
        // A split archive's finished volumes are never written again (§2.1), their parity
        // files included: they stay valid for the volumes' unchanged files.
        // The new volumes of a split archive get parity as the last volume had it.
        let split = crate::archive::volume::find(dir)
            .filter(|f| f.manifest_dir != dir)
            .map(|f| f.manifest_dir);
        let parity = match (options.parity_percent, &split) {
            (Some(p), _) => p,
            (None, Some(last)) => crate::parity::percent_of(last).unwrap_or(0.0),
            (None, None) => crate::parity::percent_of(dir).unwrap_or(0.0),
        };
        let first_new_volume = match &split {
            Some(last) => {
                let current = Manifest::load(last, &crate::Limits::default())?;
                Some(crate::archive::manifest::volume_count(&current) + 1)
            }
            None => None,
        };
        crate::parity::check_percent(parity, true)?;
        let result = builder
            .append(dir)
            .and_then(|writer| self.write(writer, progress));
        let manifest = match result {
            Ok(manifest) => manifest,
            Err(e) => {
                // Whatever the failed append wrote is a leftover; the archive is unchanged.
                let _ = if split.is_some() {
                    crate::write::discard_unfinished_volumes(dir)
                } else {
                    crate::gc(dir, true).map(|_| ())
                };
                return Err(e);
            }
        };
        let parity = match first_new_volume {
            Some(first) if parity > 0.0 => {
                Some(crate::parity::protect_new_volumes(dir, first, parity)?)
            }
            Some(_) => None,
            None => protect_written(dir, parity)?,
        };
        Ok(PackReport {
            manifest,
            file_bytes: self.total_bytes(),
            skipped: self.special.clone(),
            parity,
        })
    }

    /// Adds the listing's samples to the stream file `path` as a new generation (see
    /// [`WriterBuilder::append_stream_file`]: the stream's layout and record size replace
    /// the builder's). A failed append cuts the file back to the stream it was.
    ///
    /// # Errors
    /// A special file (unless skipped), parity asked for, a key already in the stream, a
    /// stream that cannot be appended to, or an I/O error.
    pub fn append_to_stream(
        &self,
        path: &Path,
        builder: WriterBuilder,
        options: &PackOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Manifest> {
        self.check_stream_inputs(options)?;
        let writer = builder.append_stream_file(path)?;
        self.write(writer, progress)
    }

    /// Packs the listing as one stream of fixed-size records into `sink` (see
    /// [`WriterBuilder::create_stream`]); `name` names the sink in errors. Streams carry
    /// no parity, whatever the profile's default: unstream, then [`crate::protect`].
    /// Without an id on `builder`, the archive gets [`archive_id`](Self::archive_id).
    ///
    /// # Errors
    /// A special file (unless skipped), parity asked for (a [`PackOptions::parity_percent`]
    /// above 0), invalid writer options, a file that cannot be read or changed size since
    /// the walk, a sample the writer refuses, or an I/O error writing the stream.
    pub fn pack_stream(
        &self,
        sink: Box<dyn Write + Send>,
        name: impl Into<PathBuf>,
        builder: WriterBuilder,
        options: &PackOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Manifest> {
        self.check_stream_inputs(options)?;
        let id = self.archive_id(&builder);
        let writer = builder.archive_id(id).create_stream(sink, name)?;
        self.write(writer, progress)
    }

    /// Appends every sample to `writer` in key order and finishes it, calling
    /// `progress(file_bytes_done, file_bytes_total)` after each sample. Opening and
    /// reading many small files costs more system time than packing them, so one thread
    /// per core reads samples ahead and the writer takes them in order: the archive is the
    /// same bytes whatever the number of cores.
    ///
    /// # Errors
    /// A file that cannot be read or changed size since the walk, a sample the writer
    /// refuses, or an I/O error writing.
    pub fn write(
        &self,
        mut writer: Writer,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Manifest> {
        let total = self.total_bytes();
        let list = &self.samples;
        let readers = crate::parallel::cores().min(list.len().max(1));
        let openers = (0..readers)
            .map(|_| self.opener())
            .collect::<Result<Vec<_>>>()?;
        let mut done = 0u64;
        crate::parallel::in_order(
            openers,
            READ_AHEAD * readers,
            list,
            |opener, sample| (sample, opener.open_sample(sample)),
            |(sample, data)| {
                let data = data?;
                let named: Vec<(&str, FieldData<'_>)> = sample
                    .fields
                    .iter()
                    .zip(&data)
                    .map(|(f, d)| {
                        let source = match d {
                            Opened::Read(bytes) => FieldData::Bytes(bytes),
                            Opened::File(file) => FieldData::file(file, f.size, &f.path),
                        };
                        (f.name.as_str(), source)
                    })
                    .collect();
                writer.append_from(&sample.key, &named)?;
                done += sample.fields.iter().map(|f| f.size).sum::<u64>();
                progress(done, total);
                Ok(())
            },
            |e| Error::io(&self.root, "read the files of", e),
        )?;
        writer.finish()
    }

    /// Opens the folder walked for reading its files, checking it is the same folder.
    fn opener(&self) -> Result<Opener> {
        let root =
            Dir::open(&self.root).map_err(|e| Error::io(&self.root, "open input folder", e))?;
        let meta = root
            .metadata()
            .map_err(|e| Error::io(&self.root, "stat input folder", e))?;
        if (meta.dev(), meta.ino()) != self.root_id {
            return Err(Error::invalid_input(
                self.root.display().to_string(),
                "the input folder was replaced since it was walked",
            ));
        }
        Ok(Opener {
            root,
            open: Vec::new(),
        })
    }
}

/// A field's file, opened: read ahead into memory, or open for the writer to read.
enum Opened {
    Read(Vec<u8>),
    File(fs::File),
}

/// Opens a listing's files relative to their folders, one component at a time from the
/// folder walked, keeping the folders of the last file open (files of one folder come
/// together in key order).
struct Opener {
    root: Dir,
    /// The folders open, from the root down: (name, folder).
    open: Vec<(String, Dir)>,
}

impl Opener {
    /// Opens every file of `sample` and checks it is still a regular file of the size
    /// walked; reads a small sample into memory.
    fn open_sample(&mut self, sample: &FolderSample) -> Result<Vec<Opened>> {
        let small = sample.fields.iter().map(|f| f.size).sum::<u64>() <= READ_AHEAD_SAMPLE_BYTES;
        let mut opened = Vec::with_capacity(sample.fields.len());
        for field in &sample.fields {
            let file = self.open_file(field)?;
            opened.push(if small {
                Opened::Read(crate::write::read_whole(&file, field.size, &field.path)?)
            } else {
                Opened::File(file)
            });
        }
        Ok(opened)
    }

    /// Opens `field`'s file: `openat` from its folder with `O_NOFOLLOW | O_NONBLOCK`, then
    /// `fstat`, which must say a regular file of the size walked. A symbolic link, FIFO,
    /// device or socket put in its place is refused at once, never followed or waited on.
    fn open_file(&mut self, field: &FolderField) -> Result<fs::File> {
        let mut parts: Vec<&str> = field.rel.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let keep = self
            .open
            .iter()
            .zip(&parts)
            .take_while(|((open, _), part)| open == *part)
            .count();
        self.open.truncate(keep);
        for part in parts.iter().skip(keep) {
            let parent = self.open.last().map_or(&self.root, |(_, d)| d);
            let dir = parent.open_dir(OsStr::new(part)).map_err(|e| {
                let folder = field.path.parent().unwrap_or(&field.path);
                Error::io(folder, "open folder", e)
            })?;
            self.open.push(((*part).to_string(), dir));
        }
        let dir = self.open.last().map_or(&self.root, |(_, d)| d);
        let file = match dir.open_file(OsStr::new(name)) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::input_changed(
                    &field.path,
                    0,
                    InputChange::NotRegular {
                        now: EntryKind::SymbolicLink.describe(),
                    },
                ))
            }
            Err(e) => return Err(Error::io(&field.path, "open", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io(&field.path, "stat", e))?;
        let kind = EntryKind::of(&meta);
        if kind != EntryKind::File {
            return Err(Error::input_changed(
                &field.path,
                0,
                InputChange::NotRegular {
                    now: kind.describe(),
                },
            ));
        }
        if meta.len() != field.size {
            return Err(Error::input_changed(
                &field.path,
                0,
                InputChange::Size {
                    expected: field.size,
                    found: meta.len(),
                },
            ));
        }
        Ok(file)
    }
}

/// Walks `input`, groups its files into samples and packs them into the archive folder
/// `output` (new or empty): [`FolderListing::scan`] then [`FolderListing::pack`].
/// `progress(file_bytes_done, file_bytes_total)` is called after each sample.
///
/// # Errors
/// As [`FolderListing::scan`] and [`FolderListing::pack`].
///
/// # Example
/// ```
/// # let tmp = tempfile::tempdir()?;
/// # let input = tmp.path().join("in");
/// # std::fs::create_dir_all(input.join("train"))?;
/// std::fs::write(input.join("train/0001.jpg"), b"\xff\xd8")?;
/// std::fs::write(input.join("train/0001.json"), br#"{"label": 1}"#)?;
/// let output = tmp.path().join("archive");
/// let options = shardpack::pack::PackOptions::new();
/// let report = shardpack::pack::pack_folder(
///     &input,
///     &output,
///     shardpack::WriterBuilder::new(),
///     &options,
///     &mut |_done, _total| {},
/// )?;
/// assert_eq!(report.manifest.totals.samples, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pack_folder(
    input: &Path,
    output: &Path,
    builder: WriterBuilder,
    options: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackReport> {
    FolderListing::scan(input)?.pack(output, builder, options, progress)
}

/// Protects with `percent` (0 for none) an archive that was just written and hashed, so
/// without verifying it first.
/// Streams carry no parity (§16.1).
impl FolderListing {
    /// What a stream refuses before a byte is written: special files (unless skipped) and
    /// parity.
    fn check_stream_inputs(&self, options: &PackOptions) -> Result<()> {
        if !options.skip_special {
            self.refuse_special_files()?;
        }
        if options.parity_percent.is_some_and(|p| p != 0.0) {
            return Err(Error::invalid_input(
                "parity",
                "streams carry no parity: unstream, then protect",
            ));
        }
        Ok(())
    }
}

fn protect_written(dir: &Path, percent: f64) -> Result<Option<crate::ProtectReport>> {
    if percent <= 0.0 {
        return Ok(None);
    }
    let options = crate::ProtectOptions::new(percent).as_is(true);
    crate::protect_with(dir, &options).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Archive, ErrorKind};

    #[test]
    fn an_output_inside_the_input_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        tree(&input, &[("a.txt", b"a"), ("sub/b.txt", b"b")]);
        for output in [
            input.join("out"),
            input.join("sub/deeper/out"),
            input.join("sub/../out"),
            input.clone(),
        ] {
            let err = pack_folder(
                &input,
                &output,
                WriterBuilder::default(),
                &PackOptions::new(),
                &mut |_, _| {},
            )
            .err()
            .unwrap_or_else(|| panic!("{} accepted", output.display()));
            assert!(
                matches!(err.kind(), ErrorKind::InvalidInput { .. }),
                "{err}"
            );
        }
        assert!(!input.join("out").exists() && !input.join("sub/deeper").exists());
        let beside = tmp.path().join("beside");
        let _ = pack_folder(
            &input,
            &beside,
            WriterBuilder::default(),
            &PackOptions::new(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(Archive::open(&beside).unwrap().len(), 2);
    }

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

    fn tree(root: &Path, files: &[(&str, &[u8])]) {
        for (rel, data) in files {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
    }

    #[test]
    fn pack_folder_groups_reads_and_reports_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        let many: Vec<(String, Vec<u8>)> = (0..50u8)
            .map(|i| (format!("n/{i:03}.bin"), vec![i; usize::from(i)]))
            .collect();
        let mut files: Vec<(&str, &[u8])> = vec![
            ("train/0001.jpg", b"jpg1"),
            ("train/0001.json", b"{}"),
            ("noext/README", b"r"),
        ];
        files.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        tree(&input, &files);
        let out = tmp.path().join("a");
        let mut calls = Vec::new();
        let report = pack_folder(
            &input,
            &out,
            WriterBuilder::new(),
            &PackOptions::new(),
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        assert_eq!(report.manifest.totals.samples, 52);
        assert!(report.parity.is_none(), "generic has no default parity");
        let total = report.file_bytes;
        assert_eq!(calls.len(), 52);
        assert_eq!(calls.last(), Some(&(total, total)));
        let archive = Archive::open(&out).unwrap();
        let s = archive.get_by_key("train/0001").unwrap().unwrap();
        assert_eq!(s.field("jpg"), Some(&b"jpg1"[..]));
        assert_eq!(s.field("json"), Some(&b"{}"[..]));
        let keys: Vec<String> = archive
            .iter()
            .map(|s| s.unwrap().key().to_string())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "samples in key order");
    }

    #[test]
    fn special_files_are_refused_or_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        tree(&input, &[("a.txt", b"a")]);
        std::os::unix::fs::symlink("/etc/passwd", input.join("link.txt")).unwrap();
        let out = tmp.path().join("a");
        let e = pack_folder(
            &input,
            &out,
            WriterBuilder::new(),
            &PackOptions::new(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!out.exists(), "nothing is created");
        let report = pack_folder(
            &input,
            &out,
            WriterBuilder::new(),
            &PackOptions::new().skip_special(true),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(report.manifest.totals.samples, 1);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].kind, SpecialKind::SymbolicLink);
    }

    #[test]
    fn archive_id_depends_on_contents_and_options() {
        let tmp = tempfile::tempdir().unwrap();
        let id = |files: &[(&str, &[u8])], name: &str, builder: &WriterBuilder| {
            let dir = tmp.path().join(name);
            tree(&dir, files);
            FolderListing::scan(&dir).unwrap().archive_id(builder)
        };
        let b = WriterBuilder::new();
        let one = id(&[("a.txt", b"xy")], "1", &b);
        assert_eq!(
            one,
            id(&[("a.txt", b"zw")], "2", &b),
            "same names and sizes"
        );
        assert_ne!(one, id(&[("a.txt", b"xyz")], "3", &b), "another size");
        assert_ne!(one, id(&[("b.txt", b"xy")], "4", &b), "another key");
        assert_ne!(one, id(&[("a.bin", b"xy")], "5", &b), "another field");
        assert_ne!(
            one,
            id(&[("a.txt", b"xy")], "6", &b.clone().block_size(4096))
        );
        assert_eq!(
            id(&[("a.txt", b"xy")], "7", &b.clone().archive_id([7; 16])),
            [7; 16],
            "an explicit id wins"
        );
        // A writer given samples one by one derives from the options alone.
        assert_eq!(b.derive_archive_id([]), b.derive_archive_id(Vec::new()));
        assert_ne!(b.derive_archive_id([]), one);
    }

    #[test]
    fn streams_carry_no_parity() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        tree(&input, &[("a.txt", b"a")]);
        let listing = FolderListing::scan(&input).unwrap();
        let tape = WriterBuilder::for_profile(crate::MediaProfile::tape());
        let options = PackOptions::new().parity_percent(Some(5.0));
        let e = listing
            .pack_stream(
                Box::new(std::io::sink()),
                "s",
                tape.clone(),
                &options,
                &mut |_, _| {},
            )
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput { .. }), "{e}");
        // The profile's default parity does not apply to a stream.
        let m = listing
            .pack_stream(
                Box::new(std::io::sink()),
                "s",
                tape,
                &PackOptions::new(),
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(m.totals.samples, 1);
    }

    #[test]
    fn parity_out_of_range_is_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        tree(&input, &[("a.txt", b"a")]);
        let out = tmp.path().join("a");
        for bad in [-5.0, f64::NAN, f64::INFINITY, 1000.5] {
            let options = PackOptions::new().parity_percent(Some(bad));
            let e = pack_folder(&input, &out, WriterBuilder::new(), &options, &mut |_, _| {})
                .unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::InvalidInput { .. }),
                "{bad}: {e}"
            );
            assert!(!out.exists());
        }
    }
}
