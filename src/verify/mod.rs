//! The verifier (§13): reports every defect of an archive with its place, never stopping at
//! the first one, and tells "complete" (every file present, right size) from "valid" (every
//! check holds).

pub(crate) mod stream;

use crate::codec::dictionary::DecodingDictionary;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::PARTIAL_SUFFIX;
use crate::archive::manifest::{self, Manifest, ShardInfo, MANIFEST_FILE};
use crate::codec;
use crate::format::block::{self, BlockHeader, BLOCK_HEADER_LEN, BLOCK_SYNC};
use crate::format::header::{self, ShardHeader, HEADER_LEN};
use crate::format::index::{
    BlockEntry, IndexLayout, RecordEntry, BLOCK_ENTRY_LEN, KEY_ORDER_ENTRY_LEN, RECORD_ENTRY_LEN,
};
use crate::format::record::{PayloadItem, RecordView};
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{self, align_up, checksum, hex, Codec, DecodeError};
use crate::io::{AccessPattern, ShardBytes};
use crate::{Defect, Error, ErrorKind, Limits, Location, Result, Structure};

/// How much `verify` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VerifyMode {
    /// Structure only: manifest, file presence and sizes, headers, trailers, index geometry.
    /// Reads a few hundred bytes per shard.
    Quick,
    /// Every byte: shard BLAKE3 digests, every block header and payload CRC, the index CRC
    /// and consistency, all padding, and the record CRCs of stored blocks.
    #[default]
    Full,
    /// `Full`, plus decompressing every compressed block and checking each record in it.
    Deep,
}

/// Options for [`verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// How much to read.
    pub mode: VerifyMode,
    /// The root digest the archive must have (from the label), 64 hex digits.
    pub expect_root: Option<String>,
    /// Caps on what hostile input can make the verifier allocate.
    pub limits: Limits,
    /// Records every read of the sequential pass.
    pub trace: Option<crate::IoTrace>,
}

impl VerifyOptions {
    /// Refuses options that cannot be meant: an expected root that is not 64 hex digits
    /// is a mistyped argument, not damage to report.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(want) = &self.expect_root {
            let want = want.trim().to_ascii_lowercase();
            if crate::archive::manifest::parse_hex::<32>(&want).is_none() {
                return Err(Error::invalid_input(
                    format!("expected root {want:?}"),
                    "must be 64 hex digits, the root digest `info` prints",
                ));
            }
        }
        Ok(())
    }
}

/// One defect, with its place.
///
/// `what`, `expected` and `found` are the defect's sentence for people (and the JSON of
/// `verify --json`); match on [`Finding::defect`] instead of on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The file concerned.
    pub file: PathBuf,
    /// The shard number, when the file is a shard.
    pub shard: Option<u32>,
    /// First byte of the damaged range.
    pub offset: u64,
    /// Length of the damaged range (0 when unknown or not a range).
    pub len: u64,
    /// What is damaged.
    pub what: String,
    /// What the format requires there.
    pub expected: String,
    /// What was found.
    pub found: String,
    /// The typed defect; `None` for a finding that is an error rather than a defect in the
    /// data (an I/O error, an unsupported version, a limit). Serialized as its kind name
    /// ("crc", "digest", "not_zero", ...), with the structure as `structure`.
    #[serde(
        serialize_with = "serialize_defect_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub defect: Option<Defect>,
    /// The structure the defect is in, by its machine-readable name ("block_payload", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<&'static str>,
    /// First and last ordinal of the samples affected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<[u64; 2]>,
    /// Keys of the samples affected (at most a few), when the index is intact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

fn serialize_defect_name<S: serde::Serializer>(
    defect: &Option<Defect>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match defect {
        Some(d) => s.serialize_str(d.name()),
        None => s.serialize_none(),
    }
}

impl Finding {
    /// A finding of `defect` about `len` bytes at `offset` of `file`.
    pub(crate) fn new(
        file: PathBuf,
        shard: Option<u32>,
        offset: u64,
        len: u64,
        defect: Defect,
    ) -> Finding {
        Finding {
            file,
            shard,
            offset,
            len,
            what: defect.what(),
            expected: defect.expected(),
            found: defect.found(),
            structure: Some(defect.structure().name()),
            defect: Some(defect),
            ordinals: None,
            keys: Vec::new(),
        }
    }

    /// A finding from an error that is not a typed defect.
    fn untyped(
        file: PathBuf,
        shard: Option<u32>,
        offset: u64,
        len: u64,
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Finding {
        Finding {
            file,
            shard,
            offset,
            len,
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
            defect: None,
            structure: None,
            ordinals: None,
            keys: Vec::new(),
        }
    }

    /// The place the finding is about.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            shard: self.shard,
            offset: self.offset,
            len: self.len,
        }
    }

    /// The finding an error describes: its place, and its defect when it is one.
    pub(crate) fn from_error(err: &Error, shard: Option<u32>, len: u64) -> Finding {
        match err.kind() {
            ErrorKind::Corrupt { location, defect } => {
                let len = if len > 0 { len } else { location.len };
                Finding::new(
                    location.file.clone(),
                    shard.or(location.shard),
                    location.offset,
                    len,
                    defect.clone(),
                )
            }
            ErrorKind::UnsupportedVersion {
                location,
                expected,
                got,
            } => Finding::untyped(
                location.file.clone(),
                shard.or(location.shard),
                location.offset,
                len,
                "format version",
                format!("{}.{}", expected.0, expected.1),
                format!("{}.{}", got.0, got.1),
            ),
            ErrorKind::LimitExceeded {
                location,
                limit,
                max,
                got,
            } => Finding::untyped(
                location.file.clone(),
                shard.or(location.shard),
                location.offset,
                len,
                *limit,
                format!("at most {max}"),
                got.to_string(),
            ),
            ErrorKind::Io {
                path,
                op,
                offset,
                source,
            } => Finding::untyped(
                path.clone(),
                shard,
                offset.unwrap_or(0),
                len,
                format!("file ({op})"),
                "readable",
                source.to_string(),
            ),
            _ => Finding::untyped(
                PathBuf::new(),
                shard,
                0,
                len,
                "archive",
                "no error",
                err.to_string(),
            ),
        }
    }
}

impl From<&Error> for Finding {
    fn from(err: &Error) -> Finding {
        Finding::from_error(err, None, 0)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(shard) = self.shard {
            write!(f, " (shard {shard})")?;
        }
        write!(f, " at byte {}", self.offset)?;
        if self.len > 0 {
            write!(f, "..{}", self.offset.saturating_add(self.len))?;
        }
        write!(
            f,
            ": {}: expected {}, found {}",
            self.what, self.expected, self.found
        )?;
        if let Some([a, b]) = self.ordinals {
            write!(f, "; samples {a}..={b}")?;
        }
        if !self.keys.is_empty() {
            write!(f, " ({})", self.keys.join(", "))?;
        }
        Ok(())
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct VerifyReport {
    /// The archive folder.
    pub archive: PathBuf,
    /// The mode used.
    pub mode: VerifyMode,
    /// The root digest from the manifest, if it could be read.
    pub root: Option<String>,
    /// Manifest present and intact, and every shard file present with its manifest size.
    pub complete: bool,
    /// No finding at all.
    pub valid: bool,
    /// Number of shards checked.
    pub shards: u64,
    /// Number of samples according to the manifest.
    pub samples: u64,
    /// Bytes read and checked.
    pub bytes_checked: u64,
    /// Every defect found.
    pub findings: Vec<Finding>,
    /// With parity: whether `repair` can rebuild every damaged byte (BagIt's
    /// complete/valid, plus recoverable): no volume is missing, every folder holding
    /// protected files has a parity file that loads, and every status is recoverable.
    /// `None` without any parity file or in quick mode.
    pub recoverable: Option<bool>,
    /// With parity: the damage each parity file sees, and the parity repair would need; one
    /// status per folder holding protected files (every present volume of a split archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parity: Option<Vec<crate::ParityStatus>>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks the archive folder at `path` and reports every defect.
///
/// # Errors
/// Only when `path` is not a readable folder; defects in its contents are findings.
pub fn verify(path: impl AsRef<Path>, options: &VerifyOptions) -> Result<VerifyReport> {
    verify_with_progress(path, options, &mut |_, _| {})
}

/// [`verify`], calling `progress(bytes_done, bytes_total)` as it goes.
///
/// # Errors
/// As [`verify`].
pub fn verify_with_progress(
    path: impl AsRef<Path>,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let dir = path.as_ref();
    options.check()?;
    fs::read_dir(dir).map_err(|e| Error::io(dir, "read archive folder", e))?;
    let mut v = Verifier {
        findings: Vec::new(),
        complete: true,
        mode: options.mode,
        limits: options.limits,
        bytes_checked: 0,
        trace: options.trace.clone(),
        raw_total: Some(0),
        dictionary: None,
        proven: false,
        headers: (0, 0),
    };
    // An archive split into volumes keeps its manifest in every volume folder.
    let found = crate::archive::volume::find(dir).filter(|f| f.manifest_dir != dir);
    let manifest_dir = found.as_ref().map_or(dir, |f| f.manifest_dir.as_path());
    let manifest = v.check_manifest(manifest_dir, options);
    let volumes = match (&manifest, &found) {
        (Some(m), Some(f)) if m.layout.volume_size.is_some() => {
            Some(crate::archive::volume::VolumeSet::new(m, &f.volume_dirs))
        }
        (Some(m), None) if m.layout.volume_size.is_some() => {
            Some(crate::archive::volume::VolumeSet::new(
                m,
                &crate::archive::volume::find(dir)
                    .map(|f| f.volume_dirs)
                    .unwrap_or_default(),
            ))
        }
        _ => None,
    };
    let folders: Vec<PathBuf> = match (&volumes, &manifest) {
        (Some(set), Some(m)) => {
            v.check_volumes(set, m, manifest_dir);
            set.present().into_iter().map(|(_, d)| d).collect()
        }
        _ => vec![dir.to_path_buf()],
    };
    let shards: Vec<(u32, PathBuf, Option<&ShardInfo>)> = match &manifest {
        Some(m) => m
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &volumes {
                Some(set) => set.shard_path(m, i).ok().map(|p| (i as u32, p, Some(s))),
                None => Some((i as u32, dir.join(&s.file), Some(s))),
            })
            .collect(),
        None => folders
            .iter()
            .flat_map(|f| {
                listing(f)
                    .into_iter()
                    .filter_map(move |n| shard_number_of(&n).map(|i| (i, f.join(&n), None)))
            })
            .collect(),
    };
    for folder in &folders {
        // Suffixes are tested on the raw bytes: a name that is not UTF-8 is still a leftover.
        for raw in raw_listing(folder) {
            let bytes = raw.as_bytes();
            if bytes.ends_with(PARTIAL_SUFFIX.as_bytes()) {
                if raw == std::ffi::OsStr::new(&format!("{}{PARTIAL_SUFFIX}", crate::PARITY_FILE)) {
                    // An interrupted protect: the archive's own files are unaffected (§2).
                    v.push(
                        folder.join(&raw),
                        None,
                        0,
                        0,
                        Defect::invalid(
                            Structure::LeftoverFile,
                            "partial parity file",
                            "none (protect finishes or removes it)",
                            "present (interrupted protect?)",
                        ),
                    );
                    continue;
                }
                v.complete = false;
                v.push(
                    folder.join(&raw),
                    None,
                    0,
                    0,
                    Defect::invalid(
                        Structure::LeftoverFile,
                        "partial file",
                        "none (pack finishes or removes it)",
                        "present (interrupted pack?)",
                    ),
                );
                continue;
            }
            if bytes.ends_with(crate::parity::REPAIR_SUFFIX.as_bytes()) {
                v.push(
                    folder.join(&raw),
                    None,
                    0,
                    0,
                    Defect::invalid(
                        Structure::LeftoverFile,
                        "repair file",
                        "none (repair renames it over the file it replaces)",
                        "present (interrupted repair?)",
                    ),
                );
                continue;
            }
            let Some(name) = raw.to_str() else {
                continue;
            };
            if let (Some(n), Some(m)) = (shard_number_of(name), &manifest) {
                let listed = shards
                    .iter()
                    .any(|(i, p, _)| *i == n && *p == folder.join(name));
                let entry = m.shards.get(n as usize).filter(|s| s.file == name);
                if let (false, Some(s), Some(_)) = (listed, entry, &volumes) {
                    // A listed shard MUST NOT appear in another volume's folder (§2.1).
                    v.push(
                        folder.join(name),
                        Some(n),
                        0,
                        0,
                        Defect::invalid(
                            Structure::ShardFile,
                            "in another volume",
                            format!("only in the folder of volume {}", s.volume.unwrap_or(0)),
                            "a copy in this volume folder",
                        ),
                    );
                } else if !listed && entry.is_none_or(|_| volumes.is_none()) {
                    v.push(
                        folder.join(name),
                        Some(n),
                        0,
                        0,
                        Defect::invalid(
                            Structure::ShardFile,
                            "",
                            "only shards listed in the manifest",
                            "a shard file the manifest does not list",
                        ),
                    );
                }
            }
        }
    }
    let total: u64 = shards
        .iter()
        .map(|(_, p, info)| info.map_or_else(|| file_len(p), |i| i.size))
        .sum();
    // Shards are checked in parallel, one worker per core, and their findings merged in
    // shard order; on spinning disks one at a time, in physical order (§13.1).
    let spinning = reads_in_physical_order(manifest.as_ref());
    let workers = if spinning {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(shards.len().max(1))
    };
    if workers <= 1 {
        let mut done = 0;
        for (number, path, info) in &shards {
            v.check_shard(path, *number, *info, manifest.as_ref());
            done += info.map_or_else(|| file_len(path), |i| i.size);
            progress(done, total);
        }
    } else {
        v.check_in_parallel(&shards, manifest.as_ref(), workers, total, progress);
    }
    if let (Some(m), Some(raw)) = (&manifest, v.raw_total) {
        if raw != m.totals.raw_bytes
            && !shards.is_empty()
            && volumes.as_ref().is_none_or(|s| s.missing().is_empty())
        {
            v.push(
                manifest_dir.join(MANIFEST_FILE),
                None,
                0,
                0,
                Defect::mismatch(
                    Structure::Manifest,
                    "totals.raw_bytes",
                    format!("{raw} (sum over the shard trailers)"),
                    m.totals.raw_bytes,
                ),
            );
        }
    }
    if let Some(m) = &manifest {
        // The version is the lowest that describes the archive: 1.1 only with a dictionary.
        let (decoded, with_dictionary) = v.headers;
        if m.version() > crate::format::VERSION_1_0
            && !shards.is_empty()
            && decoded == shards.len() as u64
            && with_dictionary == 0
        {
            v.push(
                manifest_dir.join(MANIFEST_FILE),
                None,
                0,
                0,
                Defect::invalid(
                    Structure::Manifest,
                    "format_version",
                    "\"1.0\" (no shard has a dictionary, §10)",
                    format!("{:?}", m.format_version),
                ),
            );
        }
    }
    // Parity (§13.1): every folder that holds protected files gets a status once any of
    // them has a parity file; one that does not load is a finding and the pass goes on.
    let parity = if options.mode == VerifyMode::Quick {
        None
    } else {
        let candidates = match &volumes {
            Some(_) => folders.clone(),
            None => crate::parity::parity_folders(dir),
        };
        let any = candidates
            .iter()
            .any(|f| f.join(crate::PARITY_FILE).exists());
        any.then(|| {
            let mut statuses = Vec::new();
            for (status, err) in crate::parity::folder_statuses(&candidates) {
                if let Some(e) = err {
                    v.push_error(&e, None, 0);
                } else if status.parity_file == crate::ParityFileState::NoParity {
                    v.push(
                        status.folder.join(crate::PARITY_FILE),
                        None,
                        0,
                        0,
                        Defect::missing_because(
                            Structure::ParityFile,
                            "present (another volume of the archive has one)",
                            "this volume cannot be repaired",
                        ),
                    );
                }
                statuses.push(status);
            }
            statuses
        })
    };
    if let Some(p) = &parity {
        for s in p.iter().filter(|s| s.damaged_parity_chunks > 0) {
            v.push(
                s.folder.join(crate::PARITY_FILE),
                None,
                0,
                0,
                Defect::invalid(
                    Structure::ParityChunks,
                    "",
                    "every chunk matching its BLAKE3-64 digest (§17.3)",
                    format!(
                        "{} damaged (repair still uses the others)",
                        s.damaged_parity_chunks
                    ),
                ),
            );
        }
        // A damaged redundant copy leaves the parity usable; repair rewrites it (§17.5).
        for s in p {
            for d in &s.damaged_parts {
                v.push(
                    s.folder.join(crate::PARITY_FILE),
                    None,
                    d.offset,
                    d.len,
                    Defect::invalid(
                        d.part.structure(),
                        "",
                        d.part.expected(),
                        "damaged (the other copy is used; repair rewrites the parity file)",
                    ),
                );
            }
        }
    }
    // A missing volume takes its parity with it: nothing can rebuild it.
    let volumes_present = volumes.as_ref().is_none_or(|s| s.missing().is_empty());
    let recoverable = parity
        .as_ref()
        .map(|p| volumes_present && p.iter().all(|s| s.recoverable));
    let valid = v.findings.is_empty();
    Ok(VerifyReport {
        recoverable,
        parity,
        archive: dir.to_path_buf(),
        mode: options.mode,
        root: manifest.as_ref().map(|m| m.root.clone()),
        complete: v.complete && manifest.is_some(),
        valid,
        shards: shards.len() as u64,
        samples: manifest.as_ref().map_or(0, |m| m.totals.samples),
        bytes_checked: v.bytes_checked,
        findings: v.findings,
    })
}

/// Whether the archive's medium must be read in physical order, one shard at a time
/// (§13.1): the profile named in its manifest says so. An unknown profile does not.
fn reads_in_physical_order(manifest: Option<&Manifest>) -> bool {
    manifest
        .and_then(|m| crate::MediaProfile::from_name(&m.layout.profile))
        .is_some_and(|p| p.sequential)
}

/// Every name in `dir`, sorted, as the file system gives it.
fn raw_listing(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The bytes a volume folder uses of its budget (§2.1): the lengths of its regular files
/// (after following symbolic links) other than `parity.spp`, whatever their names; parity
/// comes on top of the budget, and subfolders are not files of the volume.
fn volume_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != crate::PARITY_FILE)
        .filter_map(|e| fs::metadata(e.path()).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// `shard-NNNNNN.shp` → NNNNNN.
fn shard_number_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("shard-")?.strip_suffix(".shp")?;
    let n: u32 = digits.parse().ok()?;
    (manifest::shard_file_name(n) == name).then_some(n)
}

struct Verifier {
    findings: Vec<Finding>,
    complete: bool,
    mode: VerifyMode,
    limits: Limits,
    bytes_checked: u64,
    trace: Option<crate::IoTrace>,
    /// Sum of the trailers' raw byte counts, while every trailer could be read.
    raw_total: Option<u64>,
    /// The dictionary of the shard being checked, prepared for Deep mode when intact.
    dictionary: Option<DecodingDictionary>,
    /// The shard being checked hashed to its manifest digest (Full mode): every byte is the
    /// writer's, so its block and record CRCs need not be recomputed (§13.1).
    proven: bool,
    /// Shard headers decoded, and how many of them have a dictionary: a 1.1 manifest needs
    /// at least one (§10).
    headers: (u64, u64),
}

/// What the index tells about a shard, for naming the samples a finding affects.
struct IndexView<'a> {
    bytes: &'a [u8],
    layout: IndexLayout,
    first_ordinal: u64,
    trusted: bool,
    /// The trailer's sum of record lengths.
    raw_bytes: u64,
}

impl IndexView<'_> {
    fn keys(&self, first: u32, count: u32) -> Vec<String> {
        if !self.trusted {
            return Vec::new();
        }
        let mut keys = Vec::new();
        let end = first.saturating_add(count).min(self.layout.record_count);
        for local in first..end {
            if keys.len() == 3 {
                keys.push(format!("... {} more", end - local));
                break;
            }
            if let Some(k) = self.key(local) {
                keys.push(String::from_utf8_lossy(k).into_owned());
            }
        }
        keys
    }

    fn record(&self, local: u32) -> Option<RecordEntry> {
        let at = usize::try_from(self.layout.record_entry_offset(local)).ok()?;
        Some(RecordEntry::decode(
            self.bytes.get(at..at + 32)?.try_into().ok()?,
        ))
    }

    fn key(&self, local: u32) -> Option<&[u8]> {
        let start = self.record(local)?.key_offset;
        let end = if local + 1 < self.layout.record_count {
            self.record(local + 1)?.key_offset
        } else {
            self.layout.key_heap_len
        };
        if start >= end || end > self.layout.key_heap_len {
            return None;
        }
        let base = self.layout.key_heap_offset;
        self.bytes
            .get(usize::try_from(base + start).ok()?..usize::try_from(base + end).ok()?)
    }
}

impl Verifier {
    /// An empty verifier with the same settings, for one shard.
    fn fresh(&self) -> Verifier {
        Verifier {
            findings: Vec::new(),
            complete: true,
            mode: self.mode,
            limits: self.limits,
            bytes_checked: 0,
            trace: self.trace.clone(),
            raw_total: Some(0),
            dictionary: None,
            proven: false,
            headers: (0, 0),
        }
    }

    /// Checks `shards` on `workers` threads, merging the findings in shard order.
    fn check_in_parallel(
        &mut self,
        shards: &[(u32, PathBuf, Option<&ShardInfo>)],
        manifest: Option<&Manifest>,
        workers: usize,
        total: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Verifier)>();
        let mut checked: Vec<Option<Verifier>> = shards.iter().map(|_| None).collect();
        let template = self.fresh();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = done_tx.clone();
                let (next, template) = (&next, &template);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((number, path, info)) = shards.get(i) else {
                        return;
                    };
                    let mut one = template.fresh();
                    one.check_shard(path, *number, *info, manifest);
                    if tx.send((i, one)).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            let mut done = 0;
            for (i, one) in done_rx {
                done += shards.get(i).map_or(0, |(_, path, info)| {
                    info.map_or_else(|| file_len(path), |i| i.size)
                });
                progress(done, total);
                checked[i] = Some(one);
            }
        });
        for one in checked.into_iter().flatten() {
            self.merge(one);
        }
    }

    /// Adds a shard's results to the archive's.
    fn merge(&mut self, one: Verifier) {
        self.findings.extend(one.findings);
        self.complete &= one.complete;
        self.bytes_checked += one.bytes_checked;
        self.headers = (
            self.headers.0 + one.headers.0,
            self.headers.1 + one.headers.1,
        );
        self.raw_total = match (self.raw_total, one.raw_total) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }

    fn push(&mut self, file: PathBuf, shard: Option<u32>, offset: u64, len: u64, defect: Defect) {
        self.findings
            .push(Finding::new(file, shard, offset, len, defect));
    }

    fn push_error(&mut self, err: &Error, shard: Option<u32>, len: u64) {
        self.findings.push(Finding::from_error(err, shard, len));
    }

    /// Reports a structure that failed to decode. With a known extent (`len > 0`) the
    /// finding covers the whole structure, and names the offending field's byte in `what`.
    fn push_defect(&mut self, d: DecodeError, file: &Path, shard: u32, base: u64, len: u64) {
        let err = d.at(file, Some(shard), base);
        self.push_error(&err, Some(shard), len);
        if len > 0 {
            if let Some(f) = self.findings.last_mut() {
                if f.offset != base {
                    f.what = format!("{} (field at byte {})", f.what, f.offset);
                    f.offset = base;
                }
            }
        }
    }

    /// Tags the last finding with the samples it affects.
    fn affects(&mut self, ordinals: Option<[u64; 2]>, keys: Vec<String>) {
        if let Some(f) = self.findings.last_mut() {
            f.ordinals = ordinals;
            f.keys = keys;
        }
    }

    /// A split archive: every volume present, each within its budget and holding the same
    /// manifest.
    fn check_volumes(
        &mut self,
        set: &crate::archive::volume::VolumeSet,
        m: &Manifest,
        manifest_dir: &Path,
    ) {
        let count = crate::archive::manifest::volume_count(m);
        for missing in set.missing() {
            self.complete = false;
            let on: Vec<&ShardInfo> = m
                .shards
                .iter()
                .filter(|s| s.volume == Some(missing))
                .collect();
            let (first, last) = (
                on.first().map(|s| s.first_ordinal),
                on.last().map(|s| s.first_ordinal + s.samples - 1),
            );
            let files: Vec<&str> = on.iter().map(|s| s.file.as_str()).collect();
            self.push(
                PathBuf::from(crate::archive::manifest::volume_folder_name(missing)),
                None,
                0,
                on.iter().map(|s| s.size).sum(),
                Defect::missing_because(
                    Structure::Volume {
                        volume: missing,
                        of: count,
                    },
                    "present",
                    format!("it holds {}", files.join(", ")),
                ),
            );
            if let (Some(a), Some(b)) = (first, last) {
                self.affects(Some([a, b]), Vec::new());
            }
        }
        let max = self.limits.max_manifest_bytes;
        let reference =
            manifest::read_capped(&manifest_dir.join(MANIFEST_FILE), max).unwrap_or_default();
        let budget = m.layout.volume_size.unwrap_or(u64::MAX);
        for (number, dir) in set.present() {
            let path = dir.join(MANIFEST_FILE);
            match manifest::read_capped(&path, max) {
                Ok(bytes) if bytes == reference => {}
                Ok(_) => self.push(
                    path,
                    None,
                    0,
                    0,
                    Defect::mismatch(
                        Structure::VolumeManifest { volume: number },
                        "",
                        "the same manifest as every volume",
                        "a different manifest",
                    ),
                ),
                Err(e) => {
                    // Every present volume carries the manifest (§13.1 complete).
                    if !path.exists() {
                        self.complete = false;
                    }
                    self.push(
                        path,
                        None,
                        0,
                        0,
                        Defect::missing_because(
                            Structure::VolumeManifest { volume: number },
                            "present",
                            e,
                        ),
                    )
                }
            }
            let used = volume_bytes(&dir);
            if used > budget {
                self.push(
                    dir.clone(),
                    None,
                    0,
                    used,
                    Defect::invalid(
                        Structure::Volume {
                            volume: number,
                            of: count,
                        },
                        "size",
                        format!("at most {budget} bytes (layout.volume_size)"),
                        format!("{used} bytes"),
                    ),
                );
            }
        }
    }

    fn check_manifest(&mut self, dir: &Path, options: &VerifyOptions) -> Option<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            self.complete = false;
            self.push(
                path,
                None,
                0,
                0,
                Defect::missing_because(
                    Structure::Manifest,
                    "manifest.json (written last by pack)",
                    "the archive is incomplete: interrupted pack?",
                ),
            );
            return None;
        }
        let manifest = manifest::read_capped(&path, self.limits.max_manifest_bytes)
            .and_then(|bytes| Manifest::parse(&bytes, &path).map(|m| (m, bytes)));
        let (manifest, bytes) = match manifest {
            Ok(ok) => ok,
            Err(e) => {
                self.complete = false;
                self.push_error(&e, None, 0);
                return None;
            }
        };
        self.bytes_checked += bytes.len() as u64;
        let canonical = manifest.to_canonical_bytes();
        if canonical != bytes {
            let at = canonical
                .iter()
                .zip(&bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(canonical.len().min(bytes.len()));
            self.push(
                path.clone(),
                None,
                at as u64,
                1,
                Defect::invalid(
                    Structure::Manifest,
                    "canonical form",
                    format!("byte {:?}", canonical.get(at).map(|&b| b as char)),
                    format!("byte {:?}", bytes.get(at).map(|&b| b as char)),
                ),
            );
        }
        if let Some(want) = &options.expect_root {
            let want = want.trim().to_ascii_lowercase();
            if want != manifest.root {
                self.push(
                    path,
                    None,
                    0,
                    0,
                    Defect::digest(
                        Structure::Manifest,
                        format!("{want} (expected by the caller)"),
                        &manifest.root,
                    ),
                );
            }
        }
        Some(manifest)
    }

    fn check_shard(
        &mut self,
        path: &Path,
        number: u32,
        info: Option<&ShardInfo>,
        manifest: Option<&Manifest>,
    ) {
        // Stays None unless this shard's trailer is read.
        let running_raw_total = self.raw_total.take();
        let shard = Some(number);
        let ordinals = info.map(|i| {
            [
                i.first_ordinal,
                i.first_ordinal.saturating_add(i.samples).saturating_sub(1),
            ]
        });
        // Follows symbolic links, as the reader does: a shard may live on another volume.
        let len = match fs::metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    0,
                    0,
                    Defect::invalid(
                        Structure::ShardFile,
                        "",
                        "a regular file",
                        "not a regular file",
                    ),
                );
                return;
            }
            Err(e) => {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    0,
                    info.map_or(0, |i| i.size),
                    Defect::missing_because(Structure::ShardFile, "present", e),
                );
                self.affects(ordinals, Vec::new());
                return;
            }
        };
        if let Some(info) = info {
            if len != info.size {
                self.complete = false;
                self.push(
                    path.to_path_buf(),
                    shard,
                    len.min(info.size),
                    info.size.abs_diff(len),
                    crate::error::shard_length(info.size, len),
                );
            }
        }
        let bytes = match ShardBytes::map(path) {
            Ok(b) => b,
            Err(e) => return self.push_error(&e, shard, 0),
        };
        bytes.advise(AccessPattern::Sequential);
        if self.mode != VerifyMode::Quick {
            self.bytes_checked += len;
            // The pass that reads every byte goes front to back in the profile's large
            // reads (physical order, §13.1); the structural checks after it find the
            // bytes in the page cache.
            let chunk = manifest
                .and_then(|m| crate::MediaProfile::from_name(&m.layout.profile))
                .unwrap_or_default()
                .read_chunk;
            let spinning = reads_in_physical_order(manifest);
            let digest = if self.trace.is_some() {
                match crate::read::scan::hash_file(path, number, chunk, self.trace.clone()) {
                    Ok(d) => d,
                    Err(e) => return self.push_error(&e, shard, 0),
                }
            } else {
                // Hash the map in place, on every core, without copying it through read().
                // A disk that must be read in physical order gets it one read chunk at a
                // time, each asked for whole before it is hashed.
                let mut hasher = blake3::Hasher::new();
                if spinning {
                    let mut at = 0usize;
                    while at < bytes.len() {
                        let end = bytes.len().min(at + chunk as usize);
                        bytes.will_need(at as u64, (end - at) as u64);
                        checksum::blake3_update(
                            &mut hasher,
                            bytes.get(at..end).unwrap_or_default(),
                        );
                        at = end;
                    }
                } else {
                    checksum::blake3_update(&mut hasher, &bytes);
                }
                hasher.finalize().to_hex().to_string()
            };
            self.proven = false;
            if let Some(info) = info {
                if digest != info.blake3 {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        0,
                        len,
                        Defect::digest(Structure::ShardFile, &info.blake3, digest),
                    );
                } else {
                    // Deep recomputes everything anyway; Full trusts a proven shard's CRCs.
                    self.proven = self.mode == VerifyMode::Full;
                }
            }
        }
        let header = self.check_header(path, number, &bytes, info, manifest);
        let default_align = manifest.map_or(4096, |m| m.layout.align);
        let align = u64::from(header.as_ref().map_or(default_align, |h| h.align));
        let data_offset = header.as_ref().map_or_else(
            || align_up(HEADER_LEN as u64, align).unwrap_or(HEADER_LEN as u64),
            |h| h.data_offset(),
        );
        let dictionary_end =
            HEADER_LEN as u64 + header.as_ref().map_or(0, |h| u64::from(h.dictionary_len));
        self.dictionary = None;
        if self.mode != VerifyMode::Quick {
            if let Some(h) = header.as_ref().filter(|h| h.dictionary_len > 0) {
                self.check_dictionary(path, number, &bytes, h);
            }
            self.check_zero(
                path,
                number,
                &bytes,
                dictionary_end,
                data_offset,
                Structure::HeaderPadding,
            );
        }
        let Some(trailer_offset) = len
            .checked_sub(TRAILER_LEN as u64)
            .filter(|&t| t >= HEADER_LEN as u64)
        else {
            self.push(
                path.to_path_buf(),
                shard,
                len,
                0,
                Defect::truncated(
                    Structure::ShardFile,
                    (HEADER_LEN + TRAILER_LEN) as u64,
                    Some(len),
                ),
            );
            self.affects(ordinals, Vec::new());
            return;
        };
        let trailer = match Trailer::decode(&copy_array(&bytes, trailer_offset)) {
            Ok(t) => Some(t),
            Err(d) => {
                self.push_defect(d, path, number, trailer_offset, TRAILER_LEN as u64);
                None
            }
        };
        self.raw_total = match (&trailer, running_raw_total) {
            (Some(t), Some(total)) => Some(total.saturating_add(t.raw_bytes)),
            _ => None,
        };
        let layout = match (&header, &trailer) {
            (Some(h), Some(t)) => match IndexLayout::new(h, t, len) {
                Ok(l) => Some(l),
                Err(d) => {
                    self.push_defect(d, path, number, trailer_offset, 0);
                    None
                }
            },
            _ => None,
        };
        if let (Some(t), Some(i)) = (&trailer, info) {
            if t.raw_bytes != i.raw_bytes {
                self.push(
                    path.to_path_buf(),
                    shard,
                    trailer_offset + Trailer::RAW_BYTES_FIELD as u64,
                    8,
                    Defect::mismatch(
                        Structure::Trailer,
                        "raw byte count",
                        format!("{} (manifest)", i.raw_bytes),
                        t.raw_bytes,
                    ),
                );
            }
            if t.record_count != i.samples {
                self.push(
                    path.to_path_buf(),
                    shard,
                    trailer_offset + Trailer::RECORD_COUNT_FIELD as u64,
                    8,
                    Defect::mismatch(
                        Structure::Trailer,
                        "record count",
                        format!("{} (manifest)", i.samples),
                        t.record_count,
                    ),
                );
            }
        }
        if self.mode == VerifyMode::Quick {
            return;
        }
        let index_ok = match (&layout, &trailer) {
            (Some(l), Some(t)) => self.check_index_crc(path, number, &bytes, l, t),
            _ => false,
        };
        let view = layout.map(|layout| IndexView {
            bytes: &bytes,
            layout,
            first_ordinal: header.as_ref().map_or(0, |h| h.first_ordinal),
            trusted: index_ok,
            raw_bytes: trailer.as_ref().map_or(0, |t| t.raw_bytes),
        });
        let walk_end = layout.map_or(trailer_offset, |l| l.index_offset);
        let blocks = self.walk_blocks(
            path,
            number,
            &bytes,
            data_offset,
            walk_end,
            align,
            header.as_ref(),
            view.as_ref(),
        );
        if let Some(view) = &view {
            self.check_tables(path, number, view, &blocks);
            self.check_key_order(path, number, view, info);
        }
    }

    /// Checks the shard's dictionary against its CRC, and prepares it for Deep mode.
    fn check_dictionary(&mut self, path: &Path, number: u32, bytes: &[u8], h: &ShardHeader) {
        let start = h.dictionary_offset();
        let len = u64::from(h.dictionary_len);
        let dictionary = bytes
            .get(start as usize..(start + len) as usize)
            .unwrap_or_default();
        let crc = checksum::crc32(dictionary);
        if crc != h.dictionary_crc {
            self.push(
                path.to_path_buf(),
                Some(number),
                start,
                len,
                Defect::crc(Structure::Dictionary, h.dictionary_crc, crc),
            );
            return;
        }
        if self.mode == VerifyMode::Deep {
            self.dictionary = DecodingDictionary::new(dictionary);
            if self.dictionary.is_none() {
                self.push(
                    path.to_path_buf(),
                    Some(number),
                    start,
                    len,
                    Defect::undecodable(
                        Structure::Dictionary,
                        "a zstd dictionary",
                        "bytes zstd cannot load",
                    ),
                );
            }
        }
    }

    fn check_header(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        info: Option<&ShardInfo>,
        manifest: Option<&Manifest>,
    ) -> Option<ShardHeader> {
        let shard = Some(number);
        let header = match ShardHeader::decode(&copy_array(bytes, 0)) {
            Ok(h) => h,
            Err(d) => {
                self.push_defect(d, path, number, 0, HEADER_LEN as u64);
                return None;
            }
        };
        self.headers.0 += 1;
        self.headers.1 += u64::from(header.dictionary_len > 0);
        let mut mismatch = |offset: usize, field: &'static str, want: String, got: String| {
            if want != got {
                self.push(
                    path.to_path_buf(),
                    shard,
                    offset as u64,
                    0,
                    Defect::mismatch(Structure::ShardHeader, field, want, got),
                );
            }
        };
        mismatch(
            header::SHARD_NUMBER_OFFSET,
            "shard number",
            number.to_string(),
            header.shard_number.to_string(),
        );
        if let (Some(info), Some(m)) = (info, manifest) {
            if header.version() > m.version() {
                // A 1.1 shard (one with a dictionary) needs a 1.1 manifest (§10).
                mismatch(
                    crate::format::sealed::VERSION_MAJOR_OFFSET,
                    "version",
                    format!("at most {}, the manifest's", m.format_version),
                    format!("{}.{}", header.version().0, header.version().1),
                );
            }
            mismatch(
                header::ARCHIVE_ID_OFFSET,
                "archive id (a shard from another archive?)",
                m.archive_id.clone(),
                hex(&header.archive_id),
            );
            mismatch(
                header::FIRST_ORDINAL_OFFSET,
                "first ordinal",
                info.first_ordinal.to_string(),
                header.first_ordinal.to_string(),
            );
            mismatch(
                header::ALIGN_OFFSET,
                "alignment",
                m.layout.align.to_string(),
                header.align.to_string(),
            );
            mismatch(
                header::BLOCK_BYTES_OFFSET,
                "block size",
                m.layout.block_size.to_string(),
                header.block_bytes.to_string(),
            );
            mismatch(
                header::SHARD_BYTES_OFFSET,
                "shard size",
                m.layout.shard_size.to_string(),
                header.shard_bytes.to_string(),
            );
            mismatch(
                header::CODEC_OFFSET,
                "codec",
                m.layout.compression.clone(),
                header.codec.name().to_string(),
            );
            mismatch(
                header::LEVEL_OFFSET,
                "zstd level",
                m.layout.level.to_string(),
                header.level.to_string(),
            );
            mismatch(
                header::PROFILE_OFFSET,
                "profile",
                m.layout.profile.clone(),
                manifest::profile_name(header.profile).to_string(),
            );
        }
        Some(header)
    }

    fn check_zero(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        from: u64,
        to: u64,
        structure: Structure,
    ) {
        let (Ok(a), Ok(b)) = (usize::try_from(from), usize::try_from(to)) else {
            return;
        };
        let Some(region) = bytes.get(a..b.min(bytes.len())) else {
            return;
        };
        if let Some(i) = region.iter().position(|&x| x != 0) {
            let last = region.iter().rposition(|&x| x != 0).unwrap_or(i);
            self.push(
                path.to_path_buf(),
                Some(number),
                from + i as u64,
                (last - i + 1) as u64,
                Defect::not_zero(structure),
            );
        }
    }

    fn check_index_crc(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        l: &IndexLayout,
        t: &Trailer,
    ) -> bool {
        let index_end = l.index_offset + l.index_len;
        let region = bytes
            .get(l.index_offset as usize..index_end as usize)
            .unwrap_or_default();
        let crc = checksum::crc32(region);
        let ok = crc == t.index_crc;
        if !ok {
            self.push(
                path.to_path_buf(),
                Some(number),
                l.index_offset,
                l.index_len,
                Defect::crc(Structure::Index, t.index_crc, crc),
            );
        }
        self.check_zero(
            path,
            number,
            bytes,
            index_end,
            l.trailer_offset,
            Structure::IndexPadding,
        );
        ok
    }

    /// Walks the data region block by block through the block headers alone, as a reader
    /// without an index would, resynchronising on sync markers after damage.
    #[allow(clippy::too_many_arguments)]
    fn walk_blocks(
        &mut self,
        path: &Path,
        number: u32,
        bytes: &[u8],
        data_offset: u64,
        end: u64,
        align: u64,
        header: Option<&ShardHeader>,
        view: Option<&IndexView<'_>>,
    ) -> Vec<(u64, BlockHeader)> {
        let shard = Some(number);
        let mut blocks = Vec::new();
        let mut pos = data_offset;
        let mut next_number = 0u32;
        let mut damaged_ranges = 0u32;
        let mut next_ordinal = header.map(|h| h.first_ordinal);
        while pos < end {
            let decoded = if pos + BLOCK_HEADER_LEN as u64 <= end {
                BlockHeader::decode(&copy_array(bytes, pos))
            } else {
                Err(DecodeError::new(
                    0,
                    Defect::truncated(
                        Structure::BlockHeader,
                        BLOCK_HEADER_LEN as u64,
                        Some(end - pos),
                    ),
                ))
            };
            let h = match decoded {
                Ok(h) => h,
                Err(d) => {
                    let resync = find_sync(bytes, pos + align, end, align);
                    self.push_defect(d, path, number, pos, resync - pos);
                    // Naming the samples costs a pass over the block table: done for the first
                    // damaged ranges only, so a hostile shard cannot make it quadratic.
                    damaged_ranges += 1;
                    if let Some(view) = view.filter(|_| damaged_ranges <= 64) {
                        // The damaged blocks are the ones the index places in this range.
                        let lost: Vec<BlockEntry> = (0..view.layout.block_count)
                            .filter_map(|b| {
                                block_entry(view, b).filter(|e| {
                                    view.layout.check_block(b, e).is_ok()
                                        && e.offset >= pos
                                        && e.offset < resync
                                })
                            })
                            .collect();
                        if let (Some(ea), Some(eb)) = (lost.first(), lost.last()) {
                            // check_block bounds both ends by the record count.
                            let first = ea.first_record;
                            let last = eb.first_record + eb.record_count - 1;
                            if last >= first {
                                self.affects(
                                    Some([
                                        view.first_ordinal + u64::from(first),
                                        view.first_ordinal + u64::from(last),
                                    ]),
                                    view.keys(first, last - first + 1),
                                );
                            }
                        }
                    }
                    pos = resync;
                    next_number = u32::MAX;
                    continue;
                }
            };
            let payload = pos + BLOCK_HEADER_LEN as u64;
            let Some(payload_end) = payload.checked_add(h.stored_len).filter(|&e| e <= end) else {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos,
                    0,
                    Defect::invalid(
                        Structure::Block {
                            block: h.block_number,
                        },
                        "length",
                        format!("a payload ending before byte {end}"),
                        format!("{} bytes", h.stored_len),
                    ),
                );
                pos = find_sync(bytes, pos + align, end, align);
                next_number = u32::MAX;
                continue;
            };
            let ordinals = Some([
                h.first_ordinal,
                h.first_ordinal + u64::from(h.record_count) - 1,
            ]);
            if next_number != u32::MAX && h.block_number != next_number {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos + block::BLOCK_NUMBER_OFFSET as u64,
                    4,
                    Defect::mismatch(
                        Structure::BlockHeader,
                        "block number",
                        next_number,
                        h.block_number,
                    ),
                );
            }
            if h.shard_number != number {
                self.push(
                    path.to_path_buf(),
                    shard,
                    pos + block::SHARD_NUMBER_OFFSET as u64,
                    4,
                    Defect::mismatch(
                        Structure::BlockHeader,
                        "shard number",
                        number,
                        h.shard_number,
                    ),
                );
            }
            if let Some(sh) = header {
                // A dictionary shard's compressed blocks are all codec 2, no other's are.
                let compressed = sh.compressed_codec();
                if h.codec != Codec::Stored && h.codec != compressed {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        pos + block::CODEC_OFFSET as u64,
                        1,
                        Defect::invalid(
                            Structure::Block {
                                block: h.block_number,
                            },
                            "codec",
                            format!("0 or {} ({})", compressed.to_byte(), compressed.name()),
                            h.codec.to_byte(),
                        ),
                    );
                }
            }
            if let Some(want) = next_ordinal.filter(|_| next_number != u32::MAX) {
                if h.first_ordinal != want {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        pos + block::FIRST_ORDINAL_OFFSET as u64,
                        8,
                        Defect::mismatch(
                            Structure::BlockHeader,
                            "first ordinal",
                            want,
                            h.first_ordinal,
                        ),
                    );
                }
            }
            let stored = bytes
                .get(payload as usize..payload_end as usize)
                .unwrap_or_default();
            // A proven shard's bytes are the writer's: its CRCs only locate damage, and there
            // is none (§13.1).
            let crc = if self.proven {
                h.payload_crc
            } else {
                checksum::crc32(stored)
            };
            if crc != h.payload_crc {
                self.push(
                    path.to_path_buf(),
                    shard,
                    payload,
                    h.stored_len,
                    Defect::crc(
                        Structure::BlockPayload {
                            block: h.block_number,
                        },
                        h.payload_crc,
                        crc,
                    ),
                );
                let keys = view
                    .and_then(|v| {
                        block_entry(v, h.block_number)
                            .map(|e| v.keys(e.first_record, e.record_count))
                    })
                    .unwrap_or_default();
                self.affects(ordinals, keys);
            }
            let next = align_up(payload_end, align).unwrap_or(end).min(end);
            self.check_zero(
                path,
                number,
                bytes,
                payload_end,
                next,
                Structure::BlockPadding,
            );
            blocks.push((pos, h));
            next_number = h.block_number.wrapping_add(1);
            next_ordinal = Some(h.first_ordinal + u64::from(h.record_count));
            pos = next;
        }
        blocks
    }

    /// Checks the block table against the blocks found by walking, and every record entry,
    /// record and key-order entry.
    fn check_tables(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        walked: &[(u64, BlockHeader)],
    ) {
        let shard = Some(number);
        let l = view.layout;
        if walked.len() != l.block_count as usize {
            self.push(
                path.to_path_buf(),
                shard,
                l.index_offset,
                0,
                Defect::mismatch(
                    Structure::Trailer,
                    "block count",
                    format!("{} (trailer)", l.block_count),
                    format!("{} blocks found by walking the data", walked.len()),
                ),
            );
        }
        for b in 0..l.block_count {
            let at = l.block_entry_offset(b);
            let Some(entry) = block_entry(view, b) else {
                continue;
            };
            if let Err(d) = l.check_block(b, &entry) {
                self.push_defect(d, path, number, at, BLOCK_ENTRY_LEN as u64);
                continue;
            }
            // The walk found blocks in ascending offset order.
            let walked_block = walked
                .binary_search_by_key(&entry.offset, |(o, _)| *o)
                .ok()
                .and_then(|i| walked.get(i));
            match walked_block {
                Some((_, h)) => {
                    let agrees = h.block_number == b
                        && h.stored_len == entry.stored_len
                        && h.raw_len == entry.raw_len
                        && h.record_count == entry.record_count
                        && h.first_ordinal == view.first_ordinal + u64::from(entry.first_record);
                    if !agrees {
                        self.push(
                            path.to_path_buf(),
                            shard,
                            at,
                            32,
                            Defect::mismatch(
                                Structure::BlockEntry { block: b },
                                "",
                                "the values in the block's header",
                                "different values",
                            ),
                        );
                    } else {
                        self.check_block_records(path, number, view, b, &entry, h);
                    }
                }
                None => self.push(
                    path.to_path_buf(),
                    shard,
                    at,
                    32,
                    Defect::invalid(
                        Structure::BlockEntry { block: b },
                        "offset",
                        "the offset of a block header",
                        entry.offset,
                    ),
                ),
            }
        }
        let raw: u64 = (0..l.record_count)
            .filter_map(|r| view.record(r))
            .map(|r| r.len)
            .fold(0, u64::saturating_add);
        if raw != view.raw_bytes {
            self.push(
                path.to_path_buf(),
                shard,
                l.trailer_offset + Trailer::RAW_BYTES_FIELD as u64,
                8,
                Defect::mismatch(
                    Structure::Trailer,
                    "raw byte count",
                    format!("{raw} (sum of record lengths)"),
                    view.raw_bytes,
                ),
            );
        }
    }

    fn check_block_records(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        b: u32,
        entry: &BlockEntry,
        h: &BlockHeader,
    ) {
        let shard = Some(number);
        let l = view.layout;
        let payload_offset = entry.offset + BLOCK_HEADER_LEN as u64;
        let stored = view
            .bytes
            .get(payload_offset as usize..(payload_offset + h.stored_len) as usize)
            .unwrap_or_default();
        let payload_ok = self.proven || checksum::crc32(stored) == h.payload_crc;
        let decoded;
        let raw: Option<&[u8]> = match h.codec {
            Codec::Stored => Some(stored),
            Codec::Zstd | Codec::ZstdDictionary if self.mode == VerifyMode::Deep && payload_ok => {
                if h.raw_len > self.limits.max_block_bytes {
                    self.push(
                        path.to_path_buf(),
                        shard,
                        entry.offset,
                        0,
                        Defect::invalid(
                            Structure::Block { block: b },
                            "decoded size",
                            format!("at most {} (the limit)", self.limits.max_block_bytes),
                            h.raw_len,
                        ),
                    );
                    None
                } else {
                    let decoded_block = codec::decode_block(
                        h.codec,
                        stored,
                        h.record_count,
                        h.raw_len,
                        self.dictionary.as_ref(),
                    );
                    match decoded_block {
                        Ok(d) => {
                            decoded = d;
                            Some(decoded.as_slice())
                        }
                        Err(e) => {
                            self.push(
                                path.to_path_buf(),
                                shard,
                                payload_offset,
                                h.stored_len,
                                Defect::undecodable(
                                    Structure::BlockFrame { block: b },
                                    format!("{} decoded bytes", h.raw_len),
                                    e,
                                ),
                            );
                            None
                        }
                    }
                }
            }
            Codec::Zstd | Codec::ZstdDictionary => None,
        };
        let mut prev_end = 0u64;
        for local in entry.first_record..entry.first_record + entry.record_count {
            let entry_at = l.record_entry_offset(local);
            let Some(r) = view.record(local) else {
                continue;
            };
            let next_key = if local + 1 < l.record_count {
                view.record(local + 1).map(|n| n.key_offset)
            } else {
                None
            };
            let ordinal = view.first_ordinal + u64::from(local);
            let key = view
                .key(local)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .filter(|_| view.trusted);
            let affects = |v: &mut Verifier| {
                v.affects(Some([ordinal, ordinal]), key.clone().into_iter().collect())
            };
            if let Err(d) = l.check_record(local, &r, entry, next_key) {
                self.push_defect(d, path, number, entry_at, RECORD_ENTRY_LEN as u64);
                affects(self);
                continue;
            }
            if r.offset < prev_end {
                self.push(
                    path.to_path_buf(),
                    shard,
                    entry_at,
                    8,
                    Defect::invalid(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        "offset",
                        format!("at least {prev_end} (after the previous record)"),
                        r.offset,
                    ),
                );
                affects(self);
            }
            let Some(raw) = raw else {
                prev_end = r.offset + r.len;
                continue;
            };
            // Where a defect in this record shows in the file: the record itself when stored,
            // the block payload when compressed.
            let place = if h.codec == Codec::Stored {
                payload_offset + r.offset
            } else {
                payload_offset
            };
            let place_len = if h.codec == Codec::Stored {
                r.len
            } else {
                h.stored_len
            };
            if r.offset > prev_end {
                self.check_filler(
                    path,
                    number,
                    raw,
                    prev_end,
                    r.offset,
                    (payload_offset, h),
                    format!("before record {local}"),
                );
            }
            let record = raw
                .get(r.offset as usize..(r.offset + r.len) as usize)
                .unwrap_or_default();
            let crc = if self.proven {
                r.crc
            } else {
                checksum::crc32(record)
            };
            if crc != r.crc {
                self.push(
                    path.to_path_buf(),
                    shard,
                    place,
                    place_len,
                    Defect::crc(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        r.crc,
                        crc,
                    ),
                );
                affects(self);
            } else {
                match RecordView::parse(record) {
                    Ok(v) if view.key(local) != Some(v.key_bytes()) => {
                        self.push(
                            path.to_path_buf(),
                            shard,
                            place,
                            place_len,
                            Defect::mismatch(
                                Structure::Record {
                                    record: Some(u64::from(local)),
                                },
                                "key",
                                "the key in the index",
                                format!("{:?}", v.key()),
                            ),
                        );
                        affects(self);
                    }
                    Ok(_) => {}
                    Err(d) => {
                        let d = d.of(Structure::Record {
                            record: Some(u64::from(local)),
                        });
                        self.push_defect(d, path, number, place, place_len);
                        affects(self);
                    }
                }
            }
            prev_end = r.offset + r.len;
        }
        if let Some(raw) = raw {
            if prev_end < raw.len() as u64 {
                self.check_filler(
                    path,
                    number,
                    raw,
                    prev_end,
                    raw.len() as u64,
                    (payload_offset, h),
                    format!("after the last record of block {b}"),
                );
            }
        }
    }

    /// Bytes of a decoded payload between records (or after the last) must be one filler
    /// (§6.4). Located in the file for stored blocks, at the payload for compressed ones.
    #[allow(clippy::too_many_arguments)]
    fn check_filler(
        &mut self,
        path: &Path,
        number: u32,
        raw: &[u8],
        from: u64,
        to: u64,
        block: (u64, &BlockHeader),
        place: String,
    ) {
        let (payload_offset, h) = block;
        let ok = matches!(format::record::item_at(raw, from as usize), Ok(PayloadItem::Filler(n)) if n == to - from);
        if !ok {
            let (offset, len, place) = if h.codec == Codec::Stored {
                (payload_offset + from, to - from, place)
            } else {
                (
                    payload_offset,
                    h.stored_len,
                    format!("{place}, at decoded offset {from}"),
                )
            };
            self.push(
                path.to_path_buf(),
                Some(number),
                offset,
                len,
                Defect::invalid(
                    Structure::Filler,
                    "",
                    format!("a filler of {} bytes {place}", to - from),
                    "other bytes",
                ),
            );
        }
    }

    fn check_key_order(
        &mut self,
        path: &Path,
        number: u32,
        view: &IndexView<'_>,
        info: Option<&ShardInfo>,
    ) {
        let l = view.layout;
        let n = l.record_count as usize;
        let mut seen = vec![false; n];
        let mut prev: Option<&[u8]> = None;
        for rank in 0..l.record_count {
            let at = l.key_order_entry_offset(rank);
            let local = copy_array::<4>(view.bytes, at);
            let local = u32::from_le_bytes(local);
            let Some(slot) = seen.get_mut(local as usize).filter(|s| !**s) else {
                self.push(
                    path.to_path_buf(),
                    Some(number),
                    at,
                    4,
                    Defect::invalid(
                        Structure::KeyOrderEntry { rank },
                        "",
                        format!("a record below {n} listed once"),
                        local,
                    ),
                );
                continue;
            };
            *slot = true;
            let key = view.key(local);
            if let (Some(p), Some(k)) = (prev, key) {
                if p >= k {
                    self.push(
                        path.to_path_buf(),
                        Some(number),
                        at,
                        4,
                        Defect::invalid(
                            Structure::KeyOrderEntry { rank },
                            "",
                            "keys in strictly ascending order",
                            format!(
                                "{:?} after {:?}",
                                String::from_utf8_lossy(k),
                                String::from_utf8_lossy(p)
                            ),
                        ),
                    );
                }
            }
            prev = key.or(prev);
        }
        let Some(info) = info.filter(|_| view.trusted) else {
            return;
        };
        let key_at_rank = |rank: u32| {
            let at = usize::try_from(l.key_order_entry_offset(rank)).ok()?;
            let local = u32::from_le_bytes(
                view.bytes
                    .get(at..at + KEY_ORDER_ENTRY_LEN)?
                    .try_into()
                    .ok()?,
            );
            view.key(local)
                .map(|k| String::from_utf8_lossy(k).into_owned())
        };
        for (what, want, rank) in [
            ("min_key", &info.min_key, 0),
            ("max_key", &info.max_key, l.record_count - 1),
        ] {
            if let Some(got) = key_at_rank(rank) {
                if &got != want {
                    self.push(
                        path.to_path_buf(),
                        Some(number),
                        l.key_order_entry_offset(rank),
                        4,
                        Defect::mismatch(
                            Structure::ManifestShard { shard: number },
                            what,
                            format!("{got:?} (shard key index)"),
                            format!("{want:?}"),
                        ),
                    );
                }
            }
        }
    }
}

fn block_entry(view: &IndexView<'_>, b: u32) -> Option<BlockEntry> {
    if b >= view.layout.block_count {
        return None;
    }
    let at = usize::try_from(view.layout.block_entry_offset(b)).ok()?;
    Some(BlockEntry::decode(
        view.bytes.get(at..at + BLOCK_ENTRY_LEN)?.try_into().ok()?,
    ))
}

/// The next aligned offset at or after `from` (and before `end`) holding a valid block
/// header, or `end`.
fn find_sync(bytes: &[u8], from: u64, end: u64, align: u64) -> u64 {
    let mut pos = from;
    while pos + BLOCK_HEADER_LEN as u64 <= end {
        let at = pos as usize;
        if bytes.get(at..at + 8) == Some(&BLOCK_SYNC[..])
            && BlockHeader::decode(&copy_array(bytes, pos)).is_ok()
        {
            return pos;
        }
        pos += align;
    }
    end
}

/// The `N` bytes at `offset`, or zeros (which no structure decodes from) past the end.
fn copy_array<const N: usize>(bytes: &[u8], offset: u64) -> [u8; N] {
    crate::format::le::array_at_offset(bytes, offset).unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_carries_the_typed_defect_and_its_sentence() {
        let err = Error::corrupt(
            Location::shard(Path::new("a/shard-000000.shp"), 0, 4096).len(100),
            Defect::crc(Structure::BlockPayload { block: 3 }, 0x1234, 0xabcd),
        );
        assert_eq!(
            err.to_string(),
            "corrupt block 3 payload in a/shard-000000.shp (shard 0) at byte 4096..4196: \
             expected crc32 0x00001234, found 0x0000abcd"
        );
        let f = Finding::from(&err);
        assert_eq!((f.offset, f.len, f.shard), (4096, 100, Some(0)));
        assert!(matches!(
            f.defect,
            Some(Defect::Crc {
                structure: Structure::BlockPayload { block: 3 },
                expected: 0x1234,
                found: 0xabcd,
            })
        ));
        assert_eq!(f.location(), err.location().unwrap().clone());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["defect"], "crc");
        assert_eq!(json["structure"], "block_payload");
        assert_eq!(json["what"], "block 3 payload");
        assert_eq!(json["expected"], "crc32 0x00001234");
        assert_eq!(json["found"], "0x0000abcd");
        assert_eq!(json["file"], "a/shard-000000.shp");
        assert_eq!(
            (json["offset"].as_u64(), json["len"].as_u64()),
            (Some(4096), Some(100))
        );
    }

    #[test]
    fn volume_bytes_counts_regular_files_other_than_parity() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("shard-000000.shp"), vec![1u8; 1000]).unwrap();
        fs::write(dir.join("manifest.json"), vec![2u8; 300]).unwrap();
        fs::write(dir.join(crate::PARITY_FILE), vec![3u8; 5000]).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub").join("inner"), vec![4u8; 7000]).unwrap();
        assert!(fs::metadata(dir.join("sub")).unwrap().len() > 0 || cfg!(not(unix)));
        assert_eq!(volume_bytes(dir), 1300);
    }
}
