//! Reading a tape stream (§16) in one pass: samples, shard ends and manifest entries, in
//! stream order, never seeking; and `unstream`, which turns a stream into an archive folder.
//!
//! Long because it is one state machine: a stream cannot be re-read, so the entry walk,
//! the checks of each shard as it passes and of each generation's manifest against the
//! shards before it all happen in the one loop of [`StreamReader`], sharing its state.

use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::archive::manifest::PARTIAL_SUFFIX;
use crate::archive::manifest::{shard_file_name, Generation, Manifest};
use crate::format::header::{
    ShardHeader, ALIGN_OFFSET, ARCHIVE_ID_OFFSET as HEADER_ARCHIVE_ID_OFFSET, FIRST_ORDINAL_OFFSET,
    HEADER_LEN, SHARD_MAGIC,
};
use crate::format::hex;
use crate::format::stream::{self as entry, EntryHeader, EntryKind, ENTRY_HEADER_LEN, ENTRY_MAGIC};
use crate::read::block::BlockCursor;
use crate::read::sequential::{ShardScanner, WalkLog};
use crate::read::window::{StreamSource, Window};
use crate::{Defect, Error, IoTrace, Limits, Location, Result, Sample, Structure};

/// One thing found in a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamItem {
    /// A sample, its block's CRC checked.
    Sample(Sample),
    /// A shard read whole: its trailer and index were checked against its blocks.
    ShardEnd {
        /// The shard's number.
        number: u32,
        /// Its length in bytes.
        size: u64,
        /// BLAKE3 of its bytes (hex).
        blake3: String,
        /// The archive id in its header.
        archive_id: [u8; 16],
    },
    /// A manifest entry: a checkpoint or the final manifest.
    Manifest {
        /// Checkpoint or final.
        kind: EntryKind,
        /// The manifest, its digest and root checked.
        manifest: Box<Manifest>,
    },
}

/// A stream's current generation while it is read: its final manifest, and where it is.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Committed {
    /// The final manifest, checked as every manifest entry is (§16.4 step 3).
    pub manifest: Manifest,
    /// The stream offset of its entry (the next generation's first entry names it as
    /// `previous`).
    pub entry_offset: u64,
    /// Its entry's `generation` counter (§16.2), which the next entry continues.
    pub entry_generation: u64,
    /// The stream offset just after its entry's last record: where a later generation
    /// starts.
    pub end: u64,
}

/// A shard as a stream held it, to be matched with the manifests after it.
#[derive(Clone, Debug)]
pub(crate) struct StreamShard {
    pub(crate) number: u32,
    pub(crate) size: u64,
    pub(crate) blake3: String,
    pub(crate) archive_id: [u8; 16],
}

/// One way a stream's manifest fails to describe the shards before it.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub(crate) file: PathBuf,
    pub(crate) shard: Option<u32>,
    pub(crate) len: u64,
    pub(crate) defect: Defect,
}

/// Every way `manifest` (a checkpoint or the final manifest of the stream `name`) fails
/// to list exactly `shards`, the shards the stream held before it: their number, and each
/// one's size, BLAKE3 digest and archive id. Empty when they agree (§16.4).
pub(crate) fn manifest_mismatches(
    name: &Path,
    kind: EntryKind,
    manifest: &Manifest,
    shards: &[StreamShard],
) -> Vec<Mismatch> {
    let mut findings = Vec::new();
    if manifest.shards.len() != shards.len() {
        findings.push(Mismatch {
            file: name.to_path_buf(),
            shard: None,
            len: 0,
            defect: Defect::mismatch(
                Structure::Manifest,
                "shard count",
                format!(
                    "{}, the shards the stream held before the {kind:?} manifest",
                    shards.len()
                ),
                manifest.shards.len(),
            ),
        });
    }
    let id = manifest.archive_id_bytes();
    for (info, shard) in manifest.shards.iter().zip(shards) {
        let file = name.join(shard_file_name(shard.number));
        if info.size != shard.size || info.blake3 != shard.blake3 {
            findings.push(Mismatch {
                file: file.clone(),
                shard: Some(shard.number),
                len: shard.size,
                defect: Defect::mismatch(
                    Structure::ManifestShard {
                        shard: shard.number,
                    },
                    "size and digest",
                    format!(
                        "{} bytes with BLAKE3 {} ({kind:?} manifest)",
                        info.size, info.blake3
                    ),
                    format!("{} bytes with BLAKE3 {}", shard.size, shard.blake3),
                ),
            });
        }
        if shard.archive_id != id {
            findings.push(Mismatch {
                file,
                shard: Some(shard.number),
                len: 0,
                defect: Defect::mismatch(
                    Structure::ShardHeader,
                    "archive id",
                    format!("{} ({kind:?} manifest)", manifest.archive_id),
                    hex(&shard.archive_id),
                ),
            });
        }
    }
    findings
}

/// An entry header field to check: its offset in the header, its name, what it must be and
/// what it is.
type FieldCheck = (usize, &'static str, String, String);

/// The first of `checks` that fails, as an error at that field of the entry at `at` of the
/// stream `name` (§16.4 steps 2 and 3).
fn check_fields(name: &Path, at: u64, structure: Structure, checks: &[FieldCheck]) -> Result<()> {
    match checks.iter().find(|c| c.2 != c.3) {
        Some((offset, field, expected, found)) => Err(Error::corrupt(
            Location::file(name, at + *offset as u64),
            Defect::invalid(structure, field, expected, found),
        )),
        None => Ok(()),
    }
}

/// Reads a stream written by [`crate::WriterBuilder::create_stream`] from any `Read`
/// (standard input, a pipe, a tape device), front to back.
pub struct StreamReader<R> {
    win: Window<StreamSource<R>>,
    name: PathBuf,
    record_size: u64,
    /// The archive id of the start entry: every entry and shard must repeat it.
    archive_id: [u8; 16],
    /// Stream offset and generation of the last entry read (§16.2 `previous`, `generation`).
    last_entry: (u64, u64),
    limits: Limits,
    shard: Option<(ShardScanner, u32)>,
    block: Option<BlockCursor>,
    /// The records taken from the shard being read, checked against its index at its end.
    walked: WalkLog,
    next_shard: u32,
    /// Samples read so far: the next shard's `first_ordinal`.
    samples_read: u64,
    finished: bool,
    failed: bool,
    /// The last final manifest read: the stream's current generation, which the next
    /// generation's manifests must name as their parent (§16.5).
    committed: Option<Committed>,
    /// When set, each shard is also written to this folder (`unstream`).
    copy_to: Option<PathBuf>,
}

impl<R: Read> StreamReader<R> {
    /// Also writes each shard, as it is read, to `dir` (under a partial name, renamed once
    /// the shard is whole and checked).
    pub(crate) fn copy_shards_to(&mut self, dir: &Path) {
        self.copy_to = Some(dir.to_path_buf());
    }

    /// The name the stream was given.
    pub(crate) fn name(&self) -> &Path {
        &self.name
    }

    /// A reader over `inner`; `name` names the stream in errors (e.g. `<stdin>`).
    ///
    /// # Errors
    /// The stream does not start with a stream start entry.
    pub fn new(inner: R, name: impl Into<PathBuf>, limits: Limits) -> Result<Self> {
        Self::with_trace(inner, name, limits, None)
    }

    /// [`StreamReader::new`], recording every read in `trace`.
    ///
    /// # Errors
    /// As [`StreamReader::new`].
    pub fn with_trace(
        inner: R,
        name: impl Into<PathBuf>,
        limits: Limits,
        trace: Option<IoTrace>,
    ) -> Result<Self> {
        let name = name.into();
        // Every read asks for whole records (a tape drive fails a read shorter than its
        // block); before the record size is known, for the largest one allowed.
        let mut win = Window::new(
            StreamSource::new(inner, trace),
            crate::format::MAX_ALIGN_BYTES as usize,
            name.clone(),
        );
        let at = |o| Location::file(&name, o);
        let first: [u8; ENTRY_HEADER_LEN] = match win.peek(ENTRY_HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; ENTRY_HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    at(0),
                    Defect::truncated(Structure::Stream, ENTRY_HEADER_LEN as u64, None),
                ))
            }
        };
        let header = EntryHeader::decode(&first).map_err(|d| d.at(&name, None, 0))?;
        let empty = crate::format::hex(blake3::hash(b"").as_bytes());
        let start: [FieldCheck; 6] = [
            (
                entry::KIND_OFFSET,
                "kind",
                "Start".into(),
                format!("{:?}", header.kind),
            ),
            (
                entry::SELF_OFFSET,
                "self_offset",
                "0".into(),
                header.self_offset.to_string(),
            ),
            (
                entry::GENERATION_OFFSET,
                "generation",
                "0".into(),
                header.generation.to_string(),
            ),
            (
                entry::PREVIOUS_OFFSET,
                "previous",
                u64::MAX.to_string(),
                header.previous.to_string(),
            ),
            (
                entry::MANIFEST_LEN_OFFSET,
                "manifest_len",
                "0".into(),
                header.manifest_len.to_string(),
            ),
            (
                entry::DIGEST_OFFSET,
                "digest",
                empty,
                crate::format::hex(&header.digest),
            ),
        ];
        check_fields(&name, 0, Structure::Stream, &start)?;
        let record_size = u64::from(header.record_size);
        win.set_chunk(((16 << 20) / record_size.max(1) * record_size).max(record_size) as usize);
        let mut reader = StreamReader {
            win,
            name,
            record_size,
            archive_id: header.archive_id,
            last_entry: (0, 0),
            limits,
            shard: None,
            block: None,
            walked: WalkLog::default(),
            next_shard: 0,
            samples_read: 0,
            finished: false,
            failed: false,
            committed: None,
            copy_to: None,
        };
        reader.take_entry_record(Structure::Stream)?;
        Ok(reader)
    }

    /// The stream's record size.
    pub fn record_size(&self) -> u64 {
        self.record_size
    }

    /// The stream's current generation so far: the last final manifest read, with where
    /// its entry is and where the stream ends after it (§16.5). `None` until a final
    /// manifest has been read.
    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_ref()
    }

    fn at(&self, offset: u64) -> Location {
        Location::file(&self.name, offset)
    }

    /// Takes `len` bytes (a whole number of records) that must be there.
    /// Takes the record holding an entry header: the bytes after the header are zeros.
    fn take_entry_record(&mut self, structure: Structure) -> Result<()> {
        let at = self.win.offset();
        match self.win.take(self.record_size as usize)? {
            Some(r) if r.iter().skip(ENTRY_HEADER_LEN).all(|&b| b == 0) => Ok(()),
            Some(_) => Err(Error::corrupt(
                self.at(at + ENTRY_HEADER_LEN as u64),
                Defect::not_zero(Structure::StreamPadding),
            )),
            None => Err(self.torn(at, structure)),
        }
    }

    /// A shard that fails because the stream ended is a torn stream, and says so.
    fn scan_error(&mut self, e: Error) -> Error {
        // Only data that ran out tears a stream; an I/O error (a full disk while copying, a
        // drive error) or a defect in bytes that are there is reported as it is.
        let ran_out = matches!(e.defect(), Some(Defect::Truncated { .. }));
        if self.win.ended() && ran_out {
            let at = self.win.offset();
            let structure = e.defect().map_or(Structure::ShardFile, Defect::structure);
            let torn = self.torn(at, structure);
            return match (e.location().cloned(), torn.into_kind()) {
                (Some(location), crate::ErrorKind::Corrupt { defect, .. }) => {
                    Error::corrupt(location, defect)
                }
                (_, kind) => kind.into(),
            };
        }
        e
    }

    fn torn(&mut self, at: u64, structure: Structure) -> Error {
        let end = at + self.win.buffered() as u64;
        Error::corrupt(
            self.at(at),
            Defect::StreamEnds {
                structure,
                end,
                mid_record: end % self.record_size != 0,
            },
        )
    }

    /// Skips the zero padding after a shard to the next record boundary.
    fn skip_padding(&mut self) -> Result<()> {
        let at = self.win.offset();
        let pad = (self.record_size - at % self.record_size) % self.record_size;
        match self.win.take(pad as usize)? {
            Some(p) if p.iter().all(|&b| b == 0) => Ok(()),
            Some(_) => Err(Error::corrupt(
                self.at(at),
                Defect::not_zero(Structure::StreamPadding),
            )),
            None => Err(self.torn(at, Structure::StreamPadding)),
        }
    }

    fn read_manifest_entry(&mut self) -> Result<StreamItem> {
        let at = self.win.offset();
        let bytes: [u8; ENTRY_HEADER_LEN] = match self.win.peek(ENTRY_HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; ENTRY_HEADER_LEN]),
            None => return Err(self.torn(at, Structure::StreamEntry)),
        };
        let h = EntryHeader::decode(&bytes).map_err(|d| d.at(&self.name, None, at))?;
        let (previous, generation) = self.last_entry;
        let kind = if h.kind == EntryKind::Start {
            "Start"
        } else {
            "Checkpoint or Final"
        };
        let checks: [FieldCheck; 6] = [
            (
                entry::RECORD_SIZE_OFFSET,
                "record_size",
                self.record_size.to_string(),
                h.record_size.to_string(),
            ),
            (
                entry::SELF_OFFSET,
                "self_offset",
                at.to_string(),
                h.self_offset.to_string(),
            ),
            (
                entry::PREVIOUS_OFFSET,
                "previous",
                previous.to_string(),
                h.previous.to_string(),
            ),
            (
                entry::GENERATION_OFFSET,
                "generation",
                (generation + 1).to_string(),
                h.generation.to_string(),
            ),
            (
                entry::ARCHIVE_ID_OFFSET,
                "archive_id",
                hex(&self.archive_id),
                hex(&h.archive_id),
            ),
            (
                entry::KIND_OFFSET,
                "kind",
                "Checkpoint or Final".into(),
                kind.into(),
            ),
        ];
        check_fields(&self.name, at, Structure::StreamEntry, &checks)?;
        if h.manifest_len > self.limits.max_manifest_bytes {
            return Err(crate::ErrorKind::LimitExceeded {
                location: self.at(at),
                limit: "manifest size",
                max: self.limits.max_manifest_bytes,
                got: h.manifest_len,
            }
            .into());
        }
        self.take_entry_record(Structure::StreamEntry)?;
        let body_at = self.win.offset();
        let padded = h.manifest_len.div_ceil(self.record_size) * self.record_size;
        let body = match self.win.take(padded as usize)? {
            Some(b) => b.to_vec(),
            None => return Err(self.torn(body_at, Structure::Manifest)),
        };
        let (json, pad) = body.split_at(h.manifest_len as usize);
        let digest = blake3::hash(json);
        if *digest.as_bytes() != h.digest {
            return Err(Error::corrupt(
                self.at(body_at).len(h.manifest_len),
                Defect::digest(
                    Structure::Manifest,
                    crate::format::hex(&h.digest),
                    digest.to_hex(),
                ),
            ));
        }
        if let Some(i) = crate::format::le::first_nonzero(pad) {
            return Err(Error::corrupt(
                self.at(body_at + h.manifest_len + i as u64),
                Defect::not_zero(Structure::StreamPadding),
            ));
        }
        let manifest = Manifest::parse(json, &self.name.join(format!("manifest@{body_at}")))?;
        if manifest.archive_id_bytes() != h.archive_id {
            return Err(Error::corrupt(
                self.at(at + crate::format::stream::ARCHIVE_ID_OFFSET as u64),
                Defect::mismatch(
                    Structure::Manifest,
                    "archive id",
                    crate::format::hex(&h.archive_id),
                    manifest.archive_id.clone(),
                ),
            ));
        }
        self.check_generation(&manifest, body_at)?;
        self.last_entry = (at, h.generation);
        if h.kind == EntryKind::Final {
            self.finished = true;
            self.committed = Some(Committed {
                manifest: manifest.clone(),
                entry_offset: at,
                entry_generation: h.generation,
                end: self.win.offset(),
            });
        }
        Ok(StreamItem::Manifest {
            kind: h.kind,
            manifest: Box::new(manifest),
        })
    }

    /// §16.5: a manifest of the first generation has no `generation` member; one after
    /// the final manifest of generation *G* names *G* + 1 and that manifest's root, and
    /// keeps its layout (its shards are matched with the stream's by the caller).
    fn check_generation(&self, manifest: &Manifest, body_at: u64) -> Result<()> {
        let expected = self.committed.as_ref().map(|c| Generation {
            number: c.manifest.generation_number() + 1,
            parent: c.manifest.root.clone(),
        });
        let describe = |g: &Option<Generation>| match g {
            Some(g) => format!("generation {} with parent {}", g.number, g.parent),
            None => "generation 1 (no generation member)".to_owned(),
        };
        let at = self.at(body_at);
        if manifest.generation != expected {
            let after = match &self.committed {
                Some(c) => format!(
                    "{}, the one after the final manifest at stream offset {}",
                    describe(&expected),
                    c.entry_offset
                ),
                None => format!(
                    "{}, as no final manifest comes before it",
                    describe(&expected)
                ),
            };
            return Err(Error::corrupt(
                at,
                Defect::mismatch(
                    Structure::Manifest,
                    "generation",
                    after,
                    describe(&manifest.generation),
                ),
            ));
        }
        if let Some(c) = &self.committed {
            if manifest.layout != c.manifest.layout {
                return Err(Error::corrupt(
                    at,
                    Defect::mismatch(
                        Structure::Manifest,
                        "layout",
                        format!("{:?} (the parent generation's)", c.manifest.layout),
                        format!("{:?}", manifest.layout),
                    ),
                ));
            }
        }
        Ok(())
    }

    fn start_shard(&mut self) -> Result<()> {
        let number = self.next_shard;
        let path = self.name.join(shard_file_name(number));
        // §16.1: a shard whose `align` is greater than R does not line up with the records.
        let header = self.win.peek(HEADER_LEN)?.and_then(|b| b.try_into().ok());
        if let Some(Ok(h)) = header.map(|b: [u8; HEADER_LEN]| ShardHeader::decode(&b)) {
            if u64::from(h.align) > self.record_size {
                return Err(Error::corrupt(
                    Location::shard(&path, number, ALIGN_OFFSET as u64),
                    Defect::invalid(
                        Structure::ShardHeader,
                        "align",
                        format!("at most the stream's record size {}", self.record_size),
                        h.align,
                    ),
                ));
            }
        }
        let copy: Option<Box<dyn std::io::Write>> = match &self.copy_to {
            Some(dir) => {
                let partial = dir.join(format!("{}{PARTIAL_SUFFIX}", shard_file_name(number)));
                let file = crate::io::create_new(&partial)?;
                Some(Box::new(BufWriter::with_capacity(1 << 20, file)))
            }
            None => None,
        };
        let scanner = ShardScanner::start(&mut self.win, path.clone(), None, copy)?;
        if scanner.header().shard_number != number {
            return Err(Error::corrupt(
                Location::shard(
                    &path,
                    number,
                    crate::format::header::SHARD_NUMBER_OFFSET as u64,
                ),
                Defect::mismatch(
                    Structure::ShardHeader,
                    "shard number",
                    format!("{number} (the next in the stream)"),
                    scanner.header().shard_number,
                ),
            ));
        }
        if scanner.header().first_ordinal != self.samples_read {
            return Err(Error::corrupt(
                Location::shard(&path, number, FIRST_ORDINAL_OFFSET as u64),
                Defect::mismatch(
                    Structure::ShardHeader,
                    "first ordinal",
                    format!(
                        "{} (the samples before it in the stream)",
                        self.samples_read
                    ),
                    scanner.header().first_ordinal,
                ),
            ));
        }
        if scanner.header().archive_id != self.archive_id {
            return Err(Error::corrupt(
                Location::shard(&path, number, HEADER_ARCHIVE_ID_OFFSET as u64),
                Defect::mismatch(
                    Structure::ShardHeader,
                    "archive id",
                    format!("{} (the stream's)", hex(&self.archive_id)),
                    hex(&scanner.header().archive_id),
                ),
            ));
        }
        self.shard = Some((scanner, number));
        Ok(())
    }

    fn next_item(&mut self) -> Result<Option<StreamItem>> {
        loop {
            if let Some(cursor) = self.block.as_mut() {
                let path = self.name.join(shard_file_name(self.next_shard));
                if let Some(s) = cursor.next_sample(&path)? {
                    self.walked.push(cursor, &s);
                    self.samples_read += 1;
                    return Ok(Some(StreamItem::Sample(s)));
                }
                self.block = None;
            }
            if let Some((scanner, number)) = self.shard.as_mut() {
                let number = *number;
                let path = self.name.join(shard_file_name(number));
                let next = scanner.next_block(&mut self.win);
                let next = match next {
                    Ok(n) => n,
                    Err(e) => return Err(self.scan_error(e)),
                };
                if let Some((rel, h, payload)) = next {
                    let dictionary = scanner.dictionary().map(|d| &**d);
                    self.block = Some(BlockCursor::decode(
                        &path,
                        number,
                        rel,
                        &h,
                        payload,
                        dictionary,
                        self.limits.max_block_bytes,
                    )?);
                    continue;
                }
                let Some((scanner, _)) = self.shard.take() else {
                    continue;
                };
                let path = self.name.join(shard_file_name(number));
                let archive_id = scanner.header().archive_id;
                let scanned = match scanner.finish(&mut self.win).and_then(|scanned| {
                    self.walked
                        .check(number, &scanned.index, &scanned.layout, &path)
                        .map(|()| scanned)
                }) {
                    Ok(s) => s,
                    Err(e) => return Err(self.scan_error(e)),
                };
                self.skip_padding()?;
                if let Some(dir) = &self.copy_to {
                    let name = shard_file_name(number);
                    let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
                    // Durable before the manifest that lists it is written.
                    File::open(&partial)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| Error::io(&partial, "sync", e))?;
                    fs::rename(&partial, dir.join(&name))
                        .map_err(|e| Error::io(&partial, "rename", e))?;
                }
                self.next_shard += 1;
                return Ok(Some(StreamItem::ShardEnd {
                    number,
                    size: scanned.file_len,
                    blake3: scanned.blake3,
                    archive_id,
                }));
            }
            let at = self.win.offset();
            let magic: Option<[u8; 8]> = self.win.peek(8)?.and_then(|m| m.try_into().ok());
            if self.finished {
                // §16.5: after a final entry the stream ends, or the next generation
                // begins with a shard or a manifest entry of its own.
                let more = self.win.peek(1)?.is_some();
                let rest = more.then(|| self.win.buffered());
                let begins_item =
                    |b: &[u8]| SHARD_MAGIC.starts_with(b) || ENTRY_MAGIC.starts_with(b);
                match (rest, magic) {
                    (None, _) => return Ok(None),
                    (_, Some(m)) if m == SHARD_MAGIC || m == ENTRY_MAGIC => {
                        self.finished = false;
                    }
                    // The first bytes of an item, and then the end: a torn append.
                    (Some(n), None) if self.win.peek(n)?.is_some_and(begins_item) => {
                        return Err(self.torn(at, Structure::Stream));
                    }
                    (Some(_), _) => {
                        return Err(Error::corrupt(
                            self.at(at),
                            Defect::invalid(
                                Structure::Stream,
                                "end",
                                "nothing after the final manifest, or the next generation",
                                "other bytes",
                            ),
                        ))
                    }
                }
            }
            match magic {
                None => return Err(self.torn(at, Structure::Stream)),
                Some(m) if m == SHARD_MAGIC => {
                    if let Err(e) = self.start_shard() {
                        return Err(self.scan_error(e));
                    }
                }
                Some(m) if m == ENTRY_MAGIC => return self.read_manifest_entry().map(Some),
                Some(m) => {
                    return Err(Error::corrupt(
                        self.at(at),
                        Defect::Magic {
                            structure: Structure::Stream,
                            expected: "a shard header or a manifest entry".into(),
                            found: crate::format::hex(&m),
                        },
                    ))
                }
            }
        }
    }
}

impl<R: Read> Iterator for StreamReader<R> {
    type Item = Result<StreamItem>;

    /// After the first error the stream cannot be resynchronised in one pass: it ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_item() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
