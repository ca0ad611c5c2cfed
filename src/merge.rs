//! Merging archives (§13.5): one archive from several, without decoding or re-encoding any
//! block. Each input shard is copied byte for byte except for its identity (archive id, shard
//! number, first ordinal) and the CRCs that cover it, in the header, every block header and
//! the trailer; payloads, dictionaries and the index region are copied unchanged.
//!
//! One module, about 830 lines of code, because each step hands the next what it checked:
//! the common layout, the key ranges found in bounded memory, the copy with its identity
//! rewritten and the output removed on any failure.
//!
//! Before it writes anything, a merge opens every input (its latest manifest), requires one
//! layout of them all, and reads every shard's key order, merging them as sorted lists, so
//! that a key found twice anywhere is refused in memory bounded by the number of shards.
//! While it copies a shard it hashes the bytes read and compares them with the input
//! manifest's BLAKE3, so that a damaged input stops the merge, which then removes what it
//! created. Shards go to `NAME.partial`, are synced and renamed; the manifest comes last.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::{
    self, shard_file_name, Layout, Manifest, ShardInfo, Totals, PARTIAL_SUFFIX,
};
use crate::format::block::BLOCK_HEADER_LEN;
use crate::format::header::{self, HEADER_LEN};
use crate::format::identity::{self, Identity};
use crate::format::index::BLOCK_ENTRY_OFFSET_OFFSET;
use crate::format::trailer::TRAILER_LEN;
use crate::format::{hex, Codec, VERSION_1_0, VERSION_1_1};
use crate::io::{AccessPattern, ReadAt};
use crate::{
    Archive, Defect, Error, Limits, Location, MediaProfile, Result, Shard, Structure, WRITER_NAME,
};

/// Context string of the derived archive id of a merge (§13.5): BLAKE3 in derive-key mode.
const ARCHIVE_ID_CONTEXT: &str = "shardpack merge archive id v1";

/// Largest piece of a shard copied at once: the unit of reading, hashing and progress.
const COPY_CHUNK_BYTES: u64 = 4 << 20;

/// Options for [`merge`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MergeOptions {
    archive_id: Option<[u8; 16]>,
    limits: Limits,
}

impl MergeOptions {
    /// Default options: a derived archive id (see [`merge`]), default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The output's archive id. Given the first input's, the first input's shards keep their
    /// identity and are copied unchanged.
    pub fn archive_id(mut self, id: [u8; 16]) -> Self {
        self.archive_id = Some(id);
        self
    }

    /// Caps on what the inputs' bytes may make the merge allocate (default
    /// [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// One input of a merge, and where its samples went.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct MergedInput {
    /// The input archive folder.
    pub path: PathBuf,
    /// Its root digest (of the manifest read).
    pub root: String,
    /// Its number of shards.
    pub shards: u64,
    /// Its number of samples.
    pub samples: u64,
    /// The output's number of its first shard.
    pub first_shard: u64,
    /// The output's ordinal of its first sample.
    pub first_ordinal: u64,
}

/// What [`merge`] wrote.
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct MergeReport {
    /// The inputs, in order.
    pub inputs: Vec<MergedInput>,
    /// The output's archive id (32 hex digits).
    pub archive_id: String,
    /// Shards whose identity changed: their header, block headers and trailer were rewritten.
    pub shards_rewritten: u64,
    /// Shards whose identity did not change, copied byte for byte.
    pub shards_unchanged: u64,
    /// The output's manifest, as written.
    pub manifest: Manifest,
}

/// Merges the archives `inputs`, in order, into a new archive at `output` (which must not
/// exist or be empty), without decompressing or recompressing any block (§13.5).
///
/// The output's samples are the inputs' in order: shard numbers count on from 0 across the
/// inputs and ordinals run on from one input to the next. Its layout is the inputs' (they
/// must all have the same `profile`, `align`, `block_size`, `shard_size`, `compression` and
/// `level`); its archive id is [`MergeOptions::archive_id`], or else derived from the inputs'
/// root digests: the first 16 bytes of BLAKE3 in derive-key mode with context
/// `shardpack merge archive id v1` over the number of inputs (u64, little-endian) and each
/// input's 32-byte root, in order. Parity files of the inputs are not copied (they describe
/// other bytes): protect the output again.
///
/// # Errors
/// - [`crate::ErrorKind::InvalidInput`]: no input; an input split into volumes; layouts that
///   differ (naming the input and the field); a key in more than one place (naming it and
///   both shards); an output inside an input, or one that exists and is not empty; more
///   shards or samples than the format numbers.
/// - [`crate::ErrorKind::Corrupt`]: a damaged input, named with its file and byte offset (a shard
///   whose BLAKE3 differs from its manifest's is checked further to find where); the merge
///   then removes everything it created.
/// - I/O errors, after which the merge likewise removes what it created.
pub fn merge<P: AsRef<Path>>(
    inputs: &[P],
    output: impl AsRef<Path>,
    options: &MergeOptions,
) -> Result<MergeReport> {
    merge_with_progress(inputs, output, options, &mut |_, _| {})
}

/// [`merge`], calling `progress(bytes_copied, bytes_total)` as it copies.
///
/// # Errors
/// As [`merge`].
pub fn merge_with_progress<P: AsRef<Path>>(
    inputs: &[P],
    output: impl AsRef<Path>,
    options: &MergeOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<MergeReport> {
    let output = output.as_ref();
    if inputs.is_empty() {
        return Err(Error::invalid_input(
            "merge",
            "give at least one input archive",
        ));
    }
    let archives = inputs
        .iter()
        .map(|p| Archive::options().limits(options.limits).open(p))
        .collect::<Result<Vec<_>>>()?;
    let layout = common_layout(&archives)?;
    refuse_output_inside_inputs(output, &archives)?;
    let plan = Plan::new(&archives, options)?;
    let shards = open_shards(&archives, &layout)?;
    let keys = key_ranges(&shards)?;

    let mut created = Created::new(output)?;
    let total: u64 = archives.iter().map(|a| a.manifest().totals.bytes).sum();
    let mut done = 0u64;
    let mut entries = Vec::with_capacity(shards.len());
    let (mut rewritten, mut unchanged, mut with_dictionary) = (0u64, 0u64, false);
    for ((input, shard), (min_key, max_key)) in shards.iter().zip(keys) {
        let number = entries.len() as u32;
        let first_ordinal = entries
            .last()
            .map_or(0, |s: &ShardInfo| s.first_ordinal + s.samples);
        let to = Identity {
            archive_id: plan.archive_id,
            shard_number: number,
            first_ordinal,
        };
        let archive = &archives[*input];
        let info = &archive.manifest().shards[shard.number() as usize];
        created.shard(number);
        let copied = copy_shard(
            shard,
            info,
            archive,
            &to,
            &created.dir,
            options.limits,
            &mut |n| {
                done += n;
                progress(done, total);
            },
        )?;
        if to == Identity::of(shard.header()) {
            unchanged += 1;
        } else {
            rewritten += 1;
        }
        with_dictionary |= shard.header().dictionary_len > 0;
        entries.push(ShardInfo {
            file: shard_file_name(number),
            size: info.size,
            samples: info.samples,
            first_ordinal,
            raw_bytes: copied.raw_bytes,
            min_key,
            max_key,
            blake3: copied.blake3,
            volume: None,
        });
    }
    let manifest = manifest_of(&layout, plan.archive_id, with_dictionary, entries);
    crate::write::output::write_manifest_file(&created.dir, &manifest)?;
    created.keep();
    Ok(MergeReport {
        inputs: plan.inputs,
        archive_id: manifest.archive_id.clone(),
        shards_rewritten: rewritten,
        shards_unchanged: unchanged,
        manifest,
    })
}

/// The inputs' one layout, or an error naming the first input and field that differ.
fn common_layout(archives: &[Archive]) -> Result<Layout> {
    let first = archives
        .first()
        .map(|a| a.manifest().layout.clone())
        .ok_or_else(|| Error::invalid_input("merge", "give at least one input archive"))?;
    for a in archives {
        let l = &a.manifest().layout;
        if l.volume_size.is_some() {
            return Err(Error::invalid_input(
                format!("input {}", a.path().display()),
                "is split into volumes; merge reads archive folders (gather the volumes' shards \
                 and manifest into one folder first)",
            ));
        }
        let fields = [
            ("layout.profile", l.profile.clone(), first.profile.clone()),
            ("layout.align", l.align.to_string(), first.align.to_string()),
            (
                "layout.block_size",
                l.block_size.to_string(),
                first.block_size.to_string(),
            ),
            (
                "layout.shard_size",
                l.shard_size.to_string(),
                first.shard_size.to_string(),
            ),
            (
                "layout.compression",
                l.compression.clone(),
                first.compression.clone(),
            ),
            ("layout.level", l.level.to_string(), first.level.to_string()),
        ];
        if let Some((field, got, want)) = fields.into_iter().find(|(_, got, want)| got != want) {
            return Err(Error::invalid_input(
                format!("input {}", a.path().display()),
                format!(
                    "{field} is {got}, the first input's ({}) is {want}: a merged archive has \
                     one layout, so every input needs the same profile, align, block_size, \
                     shard_size, compression and level (re-pack one with the other's options)",
                    archives
                        .first()
                        .map_or_else(String::new, |f| f.path().display().to_string())
                ),
            ));
        }
    }
    Ok(first)
}

/// `path` with its longest existing ancestor resolved (symbolic links, `..`), so that a
/// folder not created yet compares with the inputs' resolved folders.
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (1..=components.len()).rev() {
        let (head, rest) = components.split_at(split);
        if let Ok(mut real) = fs::canonicalize(head.iter().collect::<PathBuf>()) {
            // What follows does not exist yet, so it holds no link: `..` is lexical there.
            for c in rest {
                match c {
                    Component::ParentDir => {
                        real.pop();
                    }
                    Component::CurDir => {}
                    other => real.push(other),
                }
            }
            return real;
        }
    }
    absolute
}

/// Refuses an output folder that is an input or lies inside one: the merge would write into
/// an archive it reads, and leave a foreign folder in it.
fn refuse_output_inside_inputs(output: &Path, archives: &[Archive]) -> Result<()> {
    let out = resolved(output);
    for a in archives {
        let input = resolved(a.path());
        if out.starts_with(&input) {
            return Err(Error::invalid_input(
                output.display().to_string(),
                format!(
                    "is inside the input {}; choose an output folder outside every input",
                    a.path().display()
                ),
            ));
        }
    }
    Ok(())
}

/// The output's archive id and where each input goes.
struct Plan {
    archive_id: [u8; 16],
    inputs: Vec<MergedInput>,
}

impl Plan {
    fn new(archives: &[Archive], options: &MergeOptions) -> Result<Plan> {
        let mut inputs = Vec::with_capacity(archives.len());
        let (mut shards, mut samples) = (0u64, Some(0u64));
        for a in archives {
            let m = a.manifest();
            inputs.push(MergedInput {
                path: a.path().to_path_buf(),
                root: m.root.clone(),
                shards: m.totals.shards,
                samples: m.totals.samples,
                first_shard: shards,
                first_ordinal: samples.unwrap_or(u64::MAX),
            });
            shards += m.totals.shards;
            samples = samples.and_then(|s| s.checked_add(m.totals.samples));
        }
        // Shard numbers are u32 (§3); the last ordinal fits a u64 (§8.1 rule 8).
        if shards > u64::from(u32::MAX) + 1 || samples.is_none() {
            return Err(Error::invalid_input(
                "merge",
                format!(
                    "the inputs hold {shards} shards and {} samples; an archive numbers at most \
                     2^32 shards and 2^64 - 1 samples",
                    samples.map_or_else(|| "more than 2^64 - 1".to_string(), |s| s.to_string())
                ),
            ));
        }
        let archive_id = options
            .archive_id
            .unwrap_or_else(|| derive_archive_id(archives));
        Ok(Plan { archive_id, inputs })
    }
}

/// The derived archive id of a merge of `archives` (§13.5): different inputs, or the same
/// inputs in another order, give another id.
fn derive_archive_id(archives: &[Archive]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key(ARCHIVE_ID_CONTEXT);
    h.update(&(archives.len() as u64).to_le_bytes());
    for a in archives {
        h.update(&manifest::parse_hex::<32>(&a.manifest().root).unwrap_or([0; 32]));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// Every shard of every input, in output order, each with its input's index; each shard's
/// header is checked against the layout the output manifest will state for it (§11.1: every
/// header's `align`, `block_bytes`, `shard_bytes`, codec, `level` and profile).
fn open_shards<'a>(archives: &'a [Archive], layout: &Layout) -> Result<Vec<(usize, &'a Shard)>> {
    let mut shards = Vec::new();
    for (input, a) in archives.iter().enumerate() {
        for number in 0..a.shard_count() {
            let shard = a.shard(number)?;
            check_header_layout(shard, layout)?;
            shards.push((input, shard));
        }
    }
    Ok(shards)
}

fn check_header_layout(shard: &Shard, layout: &Layout) -> Result<()> {
    let h = shard.header();
    let codec = match h.codec {
        Codec::Stored => "none",
        _ => "zstd",
    };
    let profile = MediaProfile::from_code(h.profile).map_or("an undefined profile", |p| p.name);
    let fields = [
        (
            "alignment",
            header::ALIGN_OFFSET,
            layout.align.to_string(),
            h.align.to_string(),
        ),
        (
            "block size",
            header::BLOCK_BYTES_OFFSET,
            layout.block_size.to_string(),
            h.block_bytes.to_string(),
        ),
        (
            "shard size",
            header::SHARD_BYTES_OFFSET,
            layout.shard_size.to_string(),
            h.shard_bytes.to_string(),
        ),
        (
            "codec",
            header::CODEC_OFFSET,
            layout.compression.clone(),
            codec.to_string(),
        ),
        (
            "level",
            header::LEVEL_OFFSET,
            layout.level.to_string(),
            h.level.to_string(),
        ),
        (
            "profile",
            header::PROFILE_OFFSET,
            layout.profile.clone(),
            profile.to_string(),
        ),
    ];
    match fields.into_iter().find(|(_, _, want, got)| want != got) {
        Some((what, offset, want, got)) => Err(Error::corrupt(
            Location::shard(shard.path(), shard.number(), offset as u64),
            Defect::mismatch(
                Structure::ShardHeader,
                what,
                format!("{want} (the manifest's layout)"),
                got,
            ),
        )),
        None => Ok(()),
    }
}

/// The next key of one shard in a merge of the shards' key orders.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head<'a> {
    key: Cow<'a, [u8]>,
    /// Index of the shard in output order.
    shard: usize,
    rank: u32,
}

/// Each shard's smallest and largest key, after checking that no key appears twice in the
/// output: the shards' key orders are merged as sorted lists (one key of each shard held at a
/// time), and each shard's keys must strictly ascend, so that a key repeated within a shard
/// (a damaged key order) is caught as well as one repeated across shards or inputs.
fn key_ranges(shards: &[(usize, &Shard)]) -> Result<Vec<(String, String)>> {
    let mut heap = BinaryHeap::with_capacity(shards.len());
    for (i, (_, shard)) in shards.iter().enumerate() {
        let (_, key) = shard.key_in_order(0)?;
        heap.push(Reverse(Head {
            key,
            shard: i,
            rank: 0,
        }));
    }
    let mut last: Option<Head<'_>> = None;
    while let Some(Reverse(head)) = heap.pop() {
        let (_, shard) = shards[head.shard];
        if let Some(prev) = &last {
            if prev.key == head.key {
                let (_, other) = shards[prev.shard];
                return Err(Error::invalid_input(
                    format!("key {:?}", String::from_utf8_lossy(&head.key)),
                    format!(
                        "is in {} (shard {}) and in {} (shard {}); a key may appear once in an \
                         archive",
                        other.path().display(),
                        other.number(),
                        shard.path().display(),
                        shard.number(),
                    ),
                ));
            }
        }
        let next = head.rank + 1;
        if next < shard.len() {
            let (_, key) = shard.key_in_order(next)?;
            if key <= head.key {
                let offset = shard.layout().key_order_entry_offset(next);
                return Err(Error::corrupt(
                    Location::shard(shard.path(), shard.number(), offset),
                    Defect::invalid(
                        Structure::KeyOrderEntry { rank: next },
                        "key",
                        format!(
                            "a key after {:?} (keys strictly ascend)",
                            String::from_utf8_lossy(&head.key)
                        ),
                        format!("{:?}", String::from_utf8_lossy(&key)),
                    ),
                ));
            }
            heap.push(Reverse(Head {
                key,
                shard: head.shard,
                rank: next,
            }));
        }
        last = Some(head);
    }
    shards
        .iter()
        .map(|(_, shard)| {
            let text = |rank| -> Result<String> {
                let (_, key) = shard.key_in_order(rank)?;
                // `key_in_order` checked that the key is UTF-8.
                Ok(String::from_utf8_lossy(&key).into_owned())
            };
            Ok((text(0)?, text(shard.len() - 1)?))
        })
        .collect()
}

/// What the merge creates in the output folder, removed on drop unless kept: every shard it
/// started (under its final and its `.partial` name), and the folder if it made it.
struct Created {
    dir: PathBuf,
    made_dir: bool,
    shards: Vec<u32>,
    kept: bool,
}

impl Created {
    /// Creates the output folder, or takes an existing empty one (§13.2 rule 1); a folder
    /// holding only the `_staging` folder of a distributed write counts as empty (§11.4),
    /// so that a write's commit can merge its staged archives into their target.
    fn new(dir: &Path) -> Result<Created> {
        let made_dir = match fs::read_dir(dir) {
            Ok(entries) => {
                let staging = std::ffi::OsStr::new(crate::archive::leftover::STAGING_DIR);
                let mut others =
                    entries.filter(|e| e.as_ref().map_or(true, |e| e.file_name() != staging));
                if others.next().is_some() {
                    return Err(Error::invalid_input(
                        dir.display().to_string(),
                        "output folder exists and is not empty; choose a new path",
                    ));
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create folder", e))?;
                true
            }
            Err(e) => return Err(Error::io(dir, "read folder", e)),
        };
        Ok(Created {
            dir: dir.to_path_buf(),
            made_dir,
            shards: Vec::new(),
            kept: false,
        })
    }

    fn shard(&mut self, number: u32) {
        self.shards.push(number);
    }

    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for &number in &self.shards {
            let name = shard_file_name(number);
            let _ = fs::remove_file(self.dir.join(format!("{name}{PARTIAL_SUFFIX}")));
            let _ = fs::remove_file(self.dir.join(name));
        }
        if self.made_dir {
            // Fails, and keeps the folder, if anything else appeared in it meanwhile.
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// What copying one shard established.
struct Copied {
    /// BLAKE3 of the bytes written (64 hex digits).
    blake3: String,
    /// The trailer's `raw_bytes`.
    raw_bytes: u64,
}

/// Copies `shard` into `dir` under the identity `to`: its header, every block header (found
/// through the block table, each checked against its entry) and its trailer rewritten, every
/// other byte as read, the bytes read hashed and compared with the input manifest's
/// `blake3`. Writes `NAME.partial`, syncs it and renames it.
fn copy_shard(
    shard: &Shard,
    info: &ShardInfo,
    archive: &Archive,
    to: &Identity,
    dir: &Path,
    limits: Limits,
    progress: &mut dyn FnMut(u64),
) -> Result<Copied> {
    let name = shard_file_name(to.shard_number);
    let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
    let file = crate::io::create_new(&partial)?;
    let path = shard.path();
    let number = shard.number();
    let mut out = Sink {
        file: BufWriter::with_capacity(COPY_CHUNK_BYTES as usize, file),
        output: &partial,
        input: path,
        number,
        read: blake3::Hasher::new(),
        written: blake3::Hasher::new(),
        at: 0,
        progress,
    };
    let source = shard.source();
    source.advise(AccessPattern::Sequential);
    let at = |offset: u64| move |d: crate::format::DecodeError| d.at(path, Some(number), offset);
    let from = Identity::of(shard.header());

    let mut header_bytes = [0u8; HEADER_LEN];
    read_at(&**source, path, 0, &mut header_bytes)?;
    out.read.update(&header_bytes);
    let (_, header_crc) = identity::rewrite_header(&mut header_bytes, to).map_err(at(0))?;
    out.write(&header_bytes)?;

    let layout = shard.layout();
    // The end of the previous block's payload: the next block starts at or after it.
    let mut payload_end = layout.data_offset;
    for b in 0..layout.block_count {
        let entry = shard.block_entry(b)?;
        if entry.offset < payload_end {
            return Err(Error::corrupt(
                Location::shard(
                    path,
                    number,
                    layout.block_entry_offset(b) + BLOCK_ENTRY_OFFSET_OFFSET as u64,
                ),
                Defect::invalid(
                    Structure::BlockEntry { block: b },
                    "offset",
                    format!("at least {payload_end}, after the block before it"),
                    entry.offset,
                ),
            ));
        }
        out.copy(&**source, entry.offset)?;
        // Its sync marker, CRC, number, ordinal, counts, lengths and codec, against the
        // entry and the shard's identity as it was (§12.3).
        shard.block_header(b, &entry)?;
        let mut block_bytes = [0u8; BLOCK_HEADER_LEN];
        read_at(&**source, path, entry.offset, &mut block_bytes)?;
        out.read.update(&block_bytes);
        let first = to
            .first_ordinal
            .checked_add(u64::from(entry.first_record))
            .ok_or_else(|| {
                Error::invalid_input("merge", "ordinals beyond 2^64 - 1 (too many samples)")
            })?;
        identity::rewrite_block_header(&mut block_bytes, to.shard_number, first)
            .map_err(at(entry.offset))?;
        out.write(&block_bytes)?;
        payload_end = entry.offset + BLOCK_HEADER_LEN as u64 + entry.stored_len;
    }
    out.copy(&**source, layout.trailer_offset)?;
    let mut trailer_bytes = [0u8; TRAILER_LEN];
    read_at(&**source, path, layout.trailer_offset, &mut trailer_bytes)?;
    out.read.update(&trailer_bytes);
    let trailer = identity::rewrite_trailer(&mut trailer_bytes, to, header_crc)
        .map_err(at(layout.trailer_offset))?;
    out.write(&trailer_bytes)?;
    debug_assert_eq!(out.at, source.len());
    debug_assert!(from != *to || out.read.finalize() == out.written.finalize());

    let found = out.read.finalize().to_hex().to_string();
    if found != info.blake3 {
        drop(out);
        let _ = fs::remove_file(&partial);
        return Err(damage(shard, info, archive, &found, limits));
    }
    let blake3 = out.written.finalize().to_hex().to_string();
    let mut file = out
        .file
        .into_inner()
        .map_err(|e| Error::io(&partial, "write", e.into_error()))?;
    file.flush().map_err(|e| Error::io(&partial, "write", e))?;
    file.sync_all()
        .map_err(|e| Error::io(&partial, "sync", e))?;
    drop(file);
    let done = dir.join(&name);
    fs::rename(&partial, &done).map_err(|e| Error::io(&done, "rename into place", e))?;
    Ok(Copied {
        blake3,
        raw_bytes: trailer.raw_bytes,
    })
}

/// The error for a shard whose bytes did not hash to its manifest's digest: the first defect
/// a Deep check finds in it, with its place, or the digest mismatch itself.
fn damage(
    shard: &Shard,
    info: &ShardInfo,
    archive: &Archive,
    found: &str,
    limits: Limits,
) -> Error {
    let findings = crate::verify::shard_defects(
        shard.path(),
        shard.number(),
        info,
        archive.manifest(),
        limits,
    );
    let located = findings.into_iter().find_map(|f| match &f.defect {
        Some(Defect::Digest {
            structure: Structure::ShardFile,
            ..
        })
        | None => None,
        Some(d) => Some((f.location(), d.clone())),
    });
    match located {
        Some((location, defect)) => Error::corrupt(location, defect),
        None => Error::corrupt(
            Location::shard(shard.path(), shard.number(), 0).len(info.size),
            Defect::digest(Structure::ShardFile, &info.blake3, found),
        ),
    }
}

fn read_at(source: &dyn ReadAt, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    source
        .read_exact_at(offset, buf)
        .map_err(|e| Error::io_at(path, "read", offset, e))
}

/// The output shard being written, with the digests of what was read and what was written.
struct Sink<'p> {
    file: BufWriter<File>,
    /// The `.partial` file written.
    output: &'p Path,
    /// The input shard read, and its number there.
    input: &'p Path,
    number: u32,
    read: blake3::Hasher,
    written: blake3::Hasher,
    /// Bytes written so far: the offset of the next one, in the input and in the output.
    at: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.written.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io_at(self.output, "write", self.at, e))?;
        self.at += bytes.len() as u64;
        (self.progress)(bytes.len() as u64);
        Ok(())
    }

    /// Copies the input's bytes from where the output is up to `end`, unchanged.
    fn copy(&mut self, source: &(dyn ReadAt + 'static), end: u64) -> Result<()> {
        while self.at < end {
            let len = (end - self.at).min(COPY_CHUNK_BYTES);
            let bytes = source
                .bytes(self.at, len)
                .ok_or_else(|| {
                    Error::corrupt(
                        Location::shard(self.input, self.number, self.at),
                        Defect::truncated(Structure::ShardFile, end, Some(source.len())),
                    )
                })?
                .map_err(|e| Error::io_at(self.input, "read", self.at, e))?;
            self.read.update(&bytes);
            self.write(&bytes)?;
        }
        Ok(())
    }
}

/// The output's manifest (§11.1, §13.2 rule 4).
fn manifest_of(
    layout: &Layout,
    archive_id: [u8; 16],
    with_dictionary: bool,
    shards: Vec<ShardInfo>,
) -> Manifest {
    let (major, minor) = if with_dictionary {
        VERSION_1_1
    } else {
        VERSION_1_0
    };
    let mut manifest = Manifest {
        format: manifest::MANIFEST_FORMAT.into(),
        format_version: format!("{major}.{minor}"),
        writer: WRITER_NAME.into(),
        archive_id: hex(&archive_id),
        layout: Layout {
            volume_size: None,
            ..layout.clone()
        },
        totals: Totals {
            shards: shards.len() as u64,
            samples: shards.last().map_or(0, |s| s.first_ordinal + s.samples),
            bytes: shards.iter().map(|s| s.size).sum(),
            raw_bytes: shards.iter().map(|s| s.raw_bytes).sum(),
        },
        shards,
        generation: None,
        root: String::new(),
    };
    manifest.root = manifest.compute_root();
    manifest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_not_created_yet_resolves_through_its_existing_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(tmp.path()).unwrap();
        let dotted = tmp.path().join("a").join("..").join("b").join("c");
        assert_eq!(resolved(&dotted), real.join("b").join("c"));
        fs::create_dir(tmp.path().join("x")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("x"), tmp.path().join("link")).unwrap();
        assert_eq!(
            resolved(&tmp.path().join("link").join("new")),
            real.join("x").join("new")
        );
    }
}
