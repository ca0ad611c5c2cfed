//! The verifier (§13): reports every defect of an archive with its place, never stopping at
//! the first one, and tells "complete" (every file present, right size) from "valid" (every
//! check holds).

mod archive;
mod generations;
mod index;
mod remote;
mod report;
mod shard;
pub(crate) mod stream;
mod walk;

use crate::codec::dictionary::DecodingDictionary;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

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

use index::{block_entry, copy_array, IndexView};
pub use report::{Finding, VerifyMode, VerifyOptions, VerifyReport};

/// Checks the archive folder at `path` and reports every defect. `path` may be the URL of
/// a remote archive (`http://`, `https://`, `s3://`): each shard is then read whole through
/// ranged GETs and checked as a local one is, BLAKE3 included; parity and leftovers are not
/// looked for remotely.
///
/// # Errors
/// Only when `path` is not a readable folder; defects in its contents are findings.
pub fn verify(path: impl AsRef<Path>, options: &VerifyOptions) -> Result<VerifyReport> {
    verify_with_progress(path, options, &mut |_, _| {})
}

/// The defects of shard `number` of the archive `manifest` describes, found as a Deep
/// verification finds them (every CRC recomputed, §13.1): for an operation that has found the
/// shard's digest wrong while it copied it (merge) and must say where the damage is.
pub(crate) fn shard_defects(
    path: &Path,
    number: u32,
    info: &ShardInfo,
    manifest: &Manifest,
    limits: Limits,
) -> Vec<Finding> {
    let mut v = Verifier {
        findings: Vec::new(),
        leftovers: Vec::new(),
        complete: true,
        mode: VerifyMode::Deep,
        limits,
        bytes_checked: 0,
        trace: None,
        raw_total: Some(0),
        dictionary: None,
        proven: false,
        headers: (0, 0),
    };
    v.check_shard(path, number, Some(info), Some(manifest));
    v.findings
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
    if let Some(url) = path
        .as_ref()
        .to_str()
        .filter(|s| crate::io::remote::is_remote(s))
    {
        return remote::verify_remote(url, options, progress);
    }
    let dir = path.as_ref();
    options.check()?;
    fs::read_dir(dir).map_err(|e| Error::io(dir, "read archive folder", e))?;
    let mut v = Verifier {
        findings: Vec::new(),
        leftovers: Vec::new(),
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
    if let Some(m) = &manifest {
        v.check_generations(manifest_dir, m);
    }
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
        for raw in raw_listing(folder) {
            // What interrupted commands leave changes nothing the archive holds (§11.3):
            // listed apart from the findings; `gc` removes it.
            let listed_here = |name: &str| {
                shard_number_of(name).is_some_and(|n| {
                    shards
                        .iter()
                        .any(|(i, p, _)| *i == n && *p == folder.join(name))
                        || (volumes.is_some()
                            && manifest
                                .as_ref()
                                .and_then(|m| m.shards.get(n as usize))
                                .is_some_and(|s| s.file == name))
                })
            };
            if let Some(kind) =
                crate::archive::leftover::classify(&raw, manifest.as_ref(), listed_here)
            {
                if manifest.is_none() && kind == crate::archive::leftover::LeftoverKind::Partial {
                    v.complete = false;
                }
                v.leftovers.push(crate::archive::leftover::Leftover {
                    path: folder.join(&raw),
                    kind,
                });
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
                }
            }
        }
    }
    if volumes.is_none() {
        // What distributed writes staged and no running one holds (§11.4).
        if let Ok(staged) =
            crate::archive::leftover::staging(manifest_dir, crate::io::ArchiveLock::held_elsewhere)
        {
            v.leftovers.extend(staged);
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
        // The version is the lowest that describes the archive: 1.1 only with a dictionary
        // (a later generation is 1.3 whatever its shards, §10).
        let (decoded, with_dictionary) = v.headers;
        if m.version() == crate::format::VERSION_1_1
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
        leftovers: v.leftovers,
        generations: manifest.as_ref().map_or(0, |m| m.generation_number()),
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
    leftovers: Vec<crate::archive::leftover::Leftover>,
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

/// A shard's BLAKE3, computed while its checks go through it front to back: §13.1 lets a
/// random-access medium be hashed in any order, and this one leaves each stretch in the
/// caches for the checks that read it next.
pub(super) struct HashAlong<'a> {
    hasher: blake3::Hasher,
    bytes: &'a [u8],
    done: usize,
}

impl<'a> HashAlong<'a> {
    /// The least hashed at a time: splitting a piece over the cores costs a few
    /// microseconds, and what the checks read beside it should still fit in the caches.
    const MIN_PIECE: usize = 1 << 20;

    pub(super) fn new(bytes: &'a [u8]) -> Self {
        HashAlong {
            hasher: blake3::Hasher::new(),
            bytes,
            done: 0,
        }
    }

    /// How far the bytes are hashed.
    pub(super) fn hashed(&self) -> u64 {
        self.done as u64
    }

    /// How many bytes there are to hash.
    pub(super) fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Hashes on every core, while `beside` runs, the bytes up to `to` and at least
    /// [`Self::MIN_PIECE`] of them (all that are left at the end).
    pub(super) fn hash_to_beside(&mut self, to: u64, beside: impl FnOnce() + Send) {
        let to = usize::try_from(to)
            .unwrap_or(usize::MAX)
            .max(self.done.saturating_add(Self::MIN_PIECE))
            .min(self.bytes.len());
        let piece = self.bytes.get(self.done..to).unwrap_or_default();
        checksum::blake3_update_beside(&mut self.hasher, piece, beside);
        self.done = to;
    }

    /// The digest of all the bytes, in lowercase hex.
    pub(super) fn finish(mut self) -> String {
        self.hash_to_beside(u64::MAX, || ());
        self.hasher.finalize().to_hex().to_string()
    }
}

impl Verifier {
    /// An empty verifier with the same settings, for one shard.
    fn fresh(&self) -> Verifier {
        Verifier {
            findings: Vec::new(),
            leftovers: Vec::new(),
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
        let template = self.fresh();
        let (mut done, mut merged) = (0, 0);
        let checked = crate::parallel::in_order(
            vec![(); workers],
            2 * workers,
            shards,
            |(), (number, path, info)| {
                let mut one = template.fresh();
                one.check_shard(path, *number, *info, manifest);
                (one, info.map_or_else(|| file_len(path), |i| i.size))
            },
            |(one, size)| {
                done += size;
                progress(done, total);
                self.merge(one);
                merged += 1;
                Ok(())
            },
            |e| e,
        );
        if checked.is_err() {
            // No worker started, or one panicked: the shards not merged are checked here.
            for (number, path, info) in shards.get(merged..).unwrap_or_default() {
                self.check_shard(path, *number, *info, manifest);
                done += info.map_or_else(|| file_len(path), |i| i.size);
                progress(done, total);
            }
        }
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
        if let Some(i) = crate::format::le::first_nonzero(region) {
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

    /// Takes the results of one shard's checks that ran on `guess`, a fresh verifier given
    /// the running raw total: its total replaces ours, which the shard's checks had taken.
    fn adopt(&mut self, guess: Verifier) {
        let raw_total = guess.raw_total;
        self.merge(guess);
        self.raw_total = raw_total;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_along_gives_the_digest_of_the_whole_whatever_the_pieces() {
        let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let want = blake3::hash(&bytes).to_hex().to_string();
        // Forward, backward, inside one piece, past the end: every byte once, in order.
        for schedule in [
            vec![],
            vec![10, 5, 1 << 20, 3_000_000, u64::MAX],
            vec![4_999_999, 4_000_000, 6_000_000],
        ] {
            let mut along = HashAlong::new(&bytes);
            let mut ran = 0;
            for to in &schedule {
                along.hash_to_beside(*to, || ran += 1);
                assert!(along.hashed() <= along.len());
            }
            assert_eq!(ran, schedule.len(), "what runs beside runs once a call");
            assert_eq!(along.finish(), want);
        }
    }

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
