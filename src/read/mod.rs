//! The memory-mapped reader (§12): `Archive` opens the manifest only; shards are mapped on
//! first use; every read checks the CRCs on its path and returns an error, never other bytes.

pub mod scan;
pub mod stream;

use std::cmp::Ordering;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::archive::manifest::{Manifest, ShardInfo, MANIFEST_FILE};
use crate::codec;
use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN};
use crate::format::header::{ShardHeader, HEADER_LEN};
use crate::format::index::{BlockEntry, IndexLayout, RecordEntry};
use crate::format::record::RecordView;
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{checksum, hex, Codec, Defect};
use crate::io::{AccessPattern, ShardBytes};
use crate::{Error, ErrorKind, Limits, Location, Result};

/// An archive opened for reading. Opening reads and checks the manifest only, so it costs the
/// same whatever the number of samples; shards are mapped read-only on first use.
///
/// `Archive` is `Send + Sync`: share one between reader threads.
pub struct Archive {
    path: PathBuf,
    manifest: Manifest,
    shards: Vec<OnceLock<Shard>>,
    limits: Limits,
    trace: Option<crate::IoTrace>,
    /// For an archive split into volumes: where each volume is.
    volumes: Option<crate::archive::volume::VolumeSet>,
}

impl Archive {
    /// Opens the archive folder at `path` with default [`Limits`].
    ///
    /// # Errors
    /// A missing manifest ([`ErrorKind::Incomplete`]), a manifest that fails its checks
    /// (including its root digest), or an I/O error.
    pub fn open(path: impl AsRef<Path>) -> Result<Archive> {
        Archive::open_with_limits(path, Limits::default())
    }

    /// Opens the archive folder at `path` with the given limits.
    ///
    /// # Errors
    /// As [`Archive::open`].
    pub fn open_with_limits(path: impl AsRef<Path>, limits: Limits) -> Result<Archive> {
        let path = path.as_ref().to_path_buf();
        if let Some(found) = crate::archive::volume::find(&path).filter(|f| f.manifest_dir != path)
        {
            return Archive::open_found(path, found, limits);
        }
        let manifest_path = path.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            let reason = if path.is_dir() {
                format!("{MANIFEST_FILE} is missing (was `pack` interrupted?)")
            } else {
                "no such archive folder".to_string()
            };
            return Err(ErrorKind::Incomplete { path, reason }.into());
        }
        let found = crate::archive::volume::Found {
            manifest_dir: path.clone(),
            volume_dirs: crate::archive::volume::find(&path)
                .map(|f| f.volume_dirs)
                .unwrap_or_default(),
        };
        Archive::open_found(path, found, limits)
    }

    /// Opens an archive split into volumes from the volume folders given (discs mounted
    /// anywhere): each folder's volume is found from the shards it holds. Missing volumes
    /// are named by the reads that need them, and by `verify`.
    ///
    /// # Errors
    /// No folder holds a manifest, or it fails its checks.
    pub fn open_volumes(folders: &[PathBuf]) -> Result<Archive> {
        let Some(manifest_dir) = folders
            .iter()
            .find(|d| d.join(MANIFEST_FILE).exists())
            .cloned()
        else {
            return Err(ErrorKind::Incomplete {
                path: folders.first().cloned().unwrap_or_default(),
                reason: format!("no folder given holds a {MANIFEST_FILE}"),
            }
            .into());
        };
        let volume_dirs = folders.iter().map(|d| (None, d.clone())).collect();
        let path = manifest_dir.clone();
        Archive::open_found(
            path,
            crate::archive::volume::Found {
                manifest_dir,
                volume_dirs,
            },
            Limits::default(),
        )
    }

    fn open_found(
        path: PathBuf,
        found: crate::archive::volume::Found,
        limits: Limits,
    ) -> Result<Archive> {
        let manifest = Manifest::load(&found.manifest_dir, &limits)?;
        let volumes = manifest
            .layout
            .volume_size
            .map(|_| crate::archive::volume::VolumeSet::new(&manifest, &found.volume_dirs));
        let shards = manifest.shards.iter().map(|_| OnceLock::new()).collect();
        Ok(Archive {
            path,
            manifest,
            shards,
            limits,
            trace: None,
            volumes,
        })
    }

    /// The path of shard `index`'s file.
    ///
    /// # Errors
    /// `index` out of range, or the shard's volume is missing.
    pub fn shard_path(&self, index: usize) -> Result<PathBuf> {
        match &self.volumes {
            Some(v) => v.shard_path(&self.manifest, index),
            None => {
                let info = self.manifest.shards.get(index).ok_or_else(|| {
                    Error::invalid_input(format!("shard {index}"), "not in the manifest")
                })?;
                Ok(self.path.join(&info.file))
            }
        }
    }

    /// Volumes (1-based) of a split archive that are not present.
    pub fn missing_volumes(&self) -> Vec<u32> {
        self.volumes
            .as_ref()
            .map(|v| v.missing())
            .unwrap_or_default()
    }

    /// [`Archive::open`], recording every access to the mapped shards (offset and length,
    /// as [`crate::IoKind::MapAccess`]) and every prefetch hint in `trace`.
    ///
    /// # Errors
    /// As [`Archive::open`].
    pub fn open_traced(path: impl AsRef<Path>, trace: crate::IoTrace) -> Result<Archive> {
        let mut archive = Archive::open(path)?;
        archive.trace = Some(trace);
        Ok(archive)
    }

    /// The archive folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The root digest (64 hex digits) to write on the label and check after transport.
    pub fn root_digest(&self) -> &str {
        &self.manifest.root
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.manifest.totals.samples
    }

    /// True when the archive has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `index`, mapped and checked on first use.
    ///
    /// # Errors
    /// `index` out of range, or the shard's file is missing or fails its structural checks.
    pub fn shard(&self, index: usize) -> Result<&Shard> {
        let (Some(cell), Some(info)) = (self.shards.get(index), self.manifest.shards.get(index))
        else {
            return Err(Error::invalid_input(
                format!("shard {index}"),
                format!("the archive has {} shards", self.shards.len()),
            ));
        };
        if let Some(shard) = cell.get() {
            return Ok(shard);
        }
        let mut shard = Shard::open_expected(
            &self.shard_path(index)?,
            index as u32,
            Some((info, self.manifest.archive_id_bytes())),
            self.limits,
        )?;
        shard.trace = self.trace.clone();
        // Another thread may have won the race; either shard is equally valid.
        let _ = cell.set(shard);
        cell.get()
            .ok_or_else(|| Error::invalid_input("shard cache", "lost"))
    }

    /// The shard and shard-local record number of `ordinal`.
    ///
    /// # Errors
    /// [`ErrorKind::OrdinalOutOfRange`].
    pub fn locate(&self, ordinal: u64) -> Result<(usize, u32)> {
        if ordinal >= self.len() {
            return Err(ErrorKind::OrdinalOutOfRange {
                ordinal,
                len: self.len(),
            }
            .into());
        }
        let shards = &self.manifest.shards;
        let index = shards
            .partition_point(|s| s.first_ordinal <= ordinal)
            .saturating_sub(1);
        let first = shards.get(index).map_or(0, |s| s.first_ordinal);
        Ok((index, (ordinal - first) as u32))
    }

    /// The sample at `ordinal`, its checksum verified.
    ///
    /// # Errors
    /// [`ErrorKind::OrdinalOutOfRange`], or an error naming the damaged place.
    pub fn get(&self, ordinal: u64) -> Result<Sample<'_>> {
        let (shard, local) = self.locate(ordinal)?;
        self.shard(shard)?.get(local)
    }

    /// The key of the sample at `ordinal`, read from the index without touching the data.
    ///
    /// # Errors
    /// As [`Archive::get`].
    pub fn key(&self, ordinal: u64) -> Result<&str> {
        let (shard, local) = self.locate(ordinal)?;
        self.shard(shard)?.key(local)
    }

    /// The sample with `key`, found through the shards' on-disk key index.
    ///
    /// # Errors
    /// An error naming the damaged place; a missing key is `Ok(None)`.
    pub fn get_by_key(&self, key: &str) -> Result<Option<Sample<'_>>> {
        for (index, info) in self.manifest.shards.iter().enumerate() {
            if info.min_key.as_str() <= key && key <= info.max_key.as_str() {
                let shard = self.shard(index)?;
                if let Some(local) = shard.find(key.as_bytes())? {
                    return shard.get(local).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Reads many samples at once, in the order asked: the reads are made in file order,
    /// and the byte ranges they need are merged (gaps under 64 KiB) and handed to the
    /// kernel as one prefetch each before any is read, so that a batch costs few device
    /// requests instead of one per sample.
    pub fn get_many(&self, ordinals: &[u64]) -> Vec<Result<Sample<'_>>> {
        const MERGE_GAP: u64 = 64 << 10;
        let mut order: Vec<usize> = (0..ordinals.len()).collect();
        order.sort_by_key(|&i| ordinals[i]);
        // Plan: the file range of each record, merged per shard.
        let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
        for &i in &order {
            let Ok((shard, local)) = self.locate(ordinals[i]) else {
                continue;
            };
            let Ok(s) = self.shard(shard) else { continue };
            let Some((start, end)) = s.record_range(local) else {
                continue;
            };
            match ranges.last_mut() {
                Some((sh, _, e)) if *sh == shard && start <= e.saturating_add(MERGE_GAP) => {
                    *e = (*e).max(end)
                }
                _ => ranges.push((shard, start, end)),
            }
        }
        for (shard, start, end) in ranges {
            if let Ok(s) = self.shard(shard) {
                s.prefetch(start, end - start);
            }
        }
        let mut out: Vec<Option<Result<Sample<'_>>>> = ordinals.iter().map(|_| None).collect();
        for &i in &order {
            out[i] = Some(self.get(ordinals[i]));
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::invalid_input("get_many", "lost a result"))))
            .collect()
    }

    /// Iterates over every sample in ordinal (= file) order through the memory map.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            archive: self,
            shard: 0,
            local: 0,
            ordinal: 0,
        }
    }

    /// Iterates over every sample in file order, each shard read front to back through its
    /// map with sequential read-ahead advised, on a reader thread that checks and decodes
    /// blocks ahead of the caller (compressed ones on every core). Every byte is checked by
    /// a CRC or as zero padding before the samples it holds are returned, so damage is an
    /// error, never other bytes; the shards' BLAKE3 digests are [`crate::verify`]'s. After an
    /// error in a shard, the scan goes on with the next shard.
    pub fn scan(&self) -> crate::read::scan::Scan<'_> {
        crate::read::scan::Scan::new(self, None)
    }

    /// [`Archive::scan`] for modelling media: each shard read front to back in the
    /// profile's large ascending reads (16 MiB for hdd) with `pread`, every read recorded in
    /// `trace`, and each shard's BLAKE3 compared with the manifest once it is read whole (a
    /// mismatch is an error after its last sample).
    pub fn scan_traced(&self, trace: crate::IoTrace) -> crate::read::scan::Scan<'_> {
        crate::read::scan::Scan::new(self, Some(trace))
    }

    /// The caps this archive was opened with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Iterator over an archive's samples in file order. A damaged sample yields an error and
/// iteration goes on with the next one; a shard that cannot be opened yields one error and
/// is skipped.
pub struct Iter<'a> {
    archive: &'a Archive,
    shard: usize,
    local: u32,
    ordinal: u64,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Sample<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let info = self.archive.manifest.shards.get(self.shard)?;
        let item = match self.archive.shard(self.shard) {
            Ok(shard) => {
                if self.local == 0 {
                    shard.bytes.advise(AccessPattern::Sequential);
                }
                let item = shard.get(self.local);
                self.local += 1;
                self.ordinal += 1;
                item
            }
            Err(e) => {
                self.ordinal = info.first_ordinal.saturating_add(info.samples);
                self.local = u32::MAX;
                Err(e)
            }
        };
        if u64::from(self.local) >= info.samples {
            self.shard += 1;
            self.local = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.archive.len().saturating_sub(self.ordinal) as usize;
        (left, Some(left))
    }
}

/// One shard file, mapped read-only, with its header, trailer and index geometry checked.
pub struct Shard {
    path: PathBuf,
    number: u32,
    bytes: Arc<ShardBytes>,
    header: ShardHeader,
    layout: IndexLayout,
    limits: Limits,
    /// The last decoded block, so that reading a compressed block's records in order
    /// decodes it once.
    decoded: Mutex<Option<(u32, Arc<Vec<u8>>)>>,
    trace: Option<crate::IoTrace>,
    /// The trailer's CRC of the index region.
    index_crc: u32,
    /// The index region's actual CRC, computed on the first key read.
    index_checked: OnceLock<u32>,
    /// The shard's dictionary, checked and prepared on the first read that needs it.
    dictionary: OnceLock<std::result::Result<DecodingDictionary, String>>,
}

impl Shard {
    /// Maps and checks a shard file on its own, without a manifest.
    ///
    /// # Errors
    /// An I/O error or a structural defect, located.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Shard> {
        let path = path.as_ref();
        let bytes = ShardBytes::map(path)?;
        let number = claimed_number(&bytes);
        Shard::from_bytes(path, number, bytes, None, limits)
    }

    /// Checks a shard held in memory (read from a pipe, a tape, or a fuzzer). `path` only
    /// names it in errors.
    ///
    /// # Errors
    /// A structural defect, located.
    pub fn from_vec(path: impl AsRef<Path>, bytes: Vec<u8>, limits: Limits) -> Result<Shard> {
        let path = path.as_ref();
        let number = claimed_number(&bytes);
        Shard::from_bytes(path, number, ShardBytes::Owned(bytes), None, limits)
    }

    pub(crate) fn open_expected(
        path: &Path,
        number: u32,
        expected: Option<(&ShardInfo, [u8; 16])>,
        limits: Limits,
    ) -> Result<Shard> {
        let bytes = ShardBytes::map(path)?;
        Shard::from_bytes(path, number, bytes, expected, limits)
    }

    fn from_bytes(
        path: &Path,
        number: u32,
        bytes: ShardBytes,
        expected: Option<(&ShardInfo, [u8; 16])>,
        limits: Limits,
    ) -> Result<Shard> {
        let file_len = bytes.len() as u64;
        let at = |offset: u64| Location::shard(path, number, offset);
        if let Some((info, _)) = expected {
            if file_len != info.size {
                return Err(Error::corrupt(
                    at(file_len.min(info.size)),
                    "shard length",
                    format!("{} bytes (manifest)", info.size),
                    format!("{file_len} bytes"),
                ));
            }
        }
        if file_len < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(Error::corrupt(
                at(file_len),
                "shard length",
                format!("at least {} bytes", HEADER_LEN + TRAILER_LEN),
                file_len,
            ));
        }
        let header_bytes: [u8; HEADER_LEN] =
            crate::format::le::array_at_offset(&bytes, 0).unwrap_or([0; HEADER_LEN]);
        let header = ShardHeader::decode(&header_bytes).map_err(|d| d.at(path, Some(number), 0))?;
        if header.shard_number != number {
            return Err(Error::corrupt(
                at(32),
                "shard number",
                number,
                header.shard_number,
            ));
        }
        if let Some((info, id)) = expected {
            if header.archive_id != id {
                return Err(Error::corrupt(
                    at(16),
                    "archive id (shard from another archive?)",
                    hex(&id),
                    hex(&header.archive_id),
                ));
            }
            if header.first_ordinal != info.first_ordinal {
                return Err(Error::corrupt(
                    at(40),
                    "first ordinal",
                    info.first_ordinal,
                    header.first_ordinal,
                ));
            }
        }
        let trailer_offset = file_len - TRAILER_LEN as u64;
        let trailer_bytes: [u8; TRAILER_LEN] =
            crate::format::le::array_at_offset(&bytes, trailer_offset).unwrap_or([0; TRAILER_LEN]);
        let trailer = Trailer::decode(&trailer_bytes)
            .map_err(|d| d.at(path, Some(number), trailer_offset))?;
        let layout = IndexLayout::new(&header, &trailer, file_len)
            .map_err(|d| d.at(path, Some(number), trailer_offset))?;
        if let Some((info, _)) = expected {
            if trailer.record_count != info.samples {
                return Err(Error::corrupt(
                    at(trailer_offset + 40),
                    "record count",
                    info.samples,
                    trailer.record_count,
                ));
            }
        }
        bytes.advise(AccessPattern::Random);
        Ok(Shard {
            path: path.to_path_buf(),
            number,
            bytes: Arc::new(bytes),
            header,
            layout,
            limits,
            decoded: Mutex::new(None),
            trace: None,
            index_crc: trailer.index_crc,
            index_checked: OnceLock::new(),
            dictionary: OnceLock::new(),
        })
    }

    /// The shard file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shard's number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The decoded header.
    pub fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// The index geometry.
    pub fn layout(&self) -> &IndexLayout {
        &self.layout
    }

    /// Number of samples in the shard.
    pub fn len(&self) -> u32 {
        self.layout.record_count
    }

    /// Always false: a shard holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.layout.record_count == 0
    }

    fn location(&self, offset: u64) -> Location {
        Location::shard(&self.path, self.number, offset)
    }

    fn corrupt(
        &self,
        offset: u64,
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Error {
        Error::corrupt(self.location(offset), what, expected, found)
    }

    fn slice(&self, offset: u64, len: u64, what: &str) -> Result<&[u8]> {
        if let Some(t) = &self.trace {
            t.record(crate::IoKind::MapAccess, self.number, offset, len);
        }
        offset
            .checked_add(len)
            .and_then(|end| {
                self.bytes
                    .get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
            })
            .ok_or_else(|| {
                self.corrupt(
                    offset,
                    what.to_string(),
                    format!("{len} bytes within the file"),
                    format!("a file of {} bytes", self.bytes.len()),
                )
            })
    }

    fn array<const N: usize>(&self, offset: u64, what: &str) -> Result<[u8; N]> {
        let s = self.slice(offset, N as u64, what)?;
        Ok(s.try_into().unwrap_or([0; N]))
    }

    fn record_entry(&self, local: u32) -> Result<RecordEntry> {
        let offset = self.layout.record_entry_offset(local);
        Ok(RecordEntry::decode(&self.array(offset, "record entry")?))
    }

    /// Block-table entry `block`, validated.
    pub fn block_entry(&self, block: u32) -> Result<BlockEntry> {
        if block >= self.layout.block_count {
            return Err(self.corrupt(
                self.layout.index_offset,
                "block number",
                format!("below {}", self.layout.block_count),
                block,
            ));
        }
        let offset = self.layout.block_entry_offset(block);
        let entry = BlockEntry::decode(&self.array(offset, "block entry")?);
        self.layout
            .check_block(block, &entry)
            .map_err(|d| d.at(&self.path, Some(self.number), offset))?;
        Ok(entry)
    }

    /// The header of block `block`, checked against its index entry.
    pub fn block_header(&self, block: u32, entry: &BlockEntry) -> Result<BlockHeader> {
        let h = BlockHeader::decode(&self.array(entry.offset, "block header")?)
            .map_err(|d| d.at(&self.path, Some(self.number), entry.offset))?;
        let first_ordinal = self.header.first_ordinal + u64::from(entry.first_record);
        let mismatch = [
            (
                "block shard number",
                u64::from(self.number),
                u64::from(h.shard_number),
            ),
            ("block number", u64::from(block), u64::from(h.block_number)),
            ("block first ordinal", first_ordinal, h.first_ordinal),
            (
                "block record count",
                u64::from(entry.record_count),
                u64::from(h.record_count),
            ),
            ("block stored length", entry.stored_len, h.stored_len),
            ("block decoded length", entry.raw_len, h.raw_len),
        ]
        .into_iter()
        .find(|(_, want, got)| want != got);
        if let Some((what, want, got)) = mismatch {
            return Err(self.corrupt(entry.offset, what, format!("{want} (index)"), got));
        }
        let codec = self.block_codec(entry);
        if h.codec != codec {
            // A dictionary shard's compressed blocks are all codec 2, no other's are (§5.5).
            return Err(self.corrupt(
                entry.offset + 28,
                "block codec",
                format!("{} ({})", codec.to_byte(), codec.name()),
                h.codec.to_byte(),
            ));
        }
        if h.raw_len > self.limits.max_block_bytes {
            return Err(ErrorKind::LimitExceeded {
                location: self.location(entry.offset),
                limit: "decoded block size",
                max: self.limits.max_block_bytes,
                got: h.raw_len,
            }
            .into());
        }
        Ok(h)
    }

    /// File bytes `range`, or none past the end.
    pub(crate) fn bytes_at(&self, range: Range<usize>) -> &[u8] {
        self.bytes.get(range).unwrap_or_default()
    }

    /// The shard's bytes, shared: samples of a scan borrow from them without a copy.
    pub(crate) fn shared_bytes(&self) -> Arc<ShardBytes> {
        Arc::clone(&self.bytes)
    }

    /// Opens a shard for reading front to back (advised sequential), checked against its
    /// manifest entry as [`Archive::shard`] does.
    pub(crate) fn open_sequential(
        path: &Path,
        number: u32,
        info: &ShardInfo,
        archive_id: [u8; 16],
        limits: Limits,
    ) -> Result<Shard> {
        let shard = Shard::open_expected(path, number, Some((info, archive_id)), limits)?;
        shard.bytes.advise(AccessPattern::Sequential);
        Ok(shard)
    }

    /// The shard's dictionary (§5.5), its CRC checked once, on first use.
    pub(crate) fn dictionary(&self) -> Result<&DecodingDictionary> {
        let offset = self.header.dictionary_offset();
        let len = u64::from(self.header.dictionary_len);
        let prepared = self.dictionary.get_or_init(|| {
            if len == 0 {
                return Err("a dictionary (the shard header declares none)".into());
            }
            let bytes = self
                .slice(offset, len, "dictionary")
                .map_err(|e| e.to_string())?;
            DecodingDictionary::checked(bytes, self.header.dictionary_crc)
        });
        prepared.as_ref().map_err(|found| {
            self.corrupt(
                offset,
                "shard dictionary",
                format!(
                    "a zstd dictionary of {len} bytes with crc32 {:#010x}",
                    self.header.dictionary_crc
                ),
                found.clone(),
            )
        })
    }

    /// The codec of a block, from its entry's lengths and the shard header (§5.2).
    fn block_codec(&self, block: &BlockEntry) -> Codec {
        if block.stored_len == block.raw_len {
            Codec::Stored
        } else {
            self.header.compressed_codec()
        }
    }

    /// The decoded payload of block `block`, its CRC checked before decoding.
    fn decoded_block(
        &self,
        block: u32,
        entry: &BlockEntry,
        header: &BlockHeader,
    ) -> Result<Arc<Vec<u8>>> {
        if let Ok(guard) = self.decoded.lock() {
            if let Some((cached, data)) = guard.as_ref() {
                if *cached == block {
                    return Ok(Arc::clone(data));
                }
            }
        }
        let payload_offset = entry.offset + BLOCK_HEADER_LEN as u64;
        let payload = self.slice(payload_offset, header.stored_len, "block payload")?;
        let crc = checksum::crc32(payload);
        if crc != header.payload_crc {
            return Err(self.corrupt(
                payload_offset,
                format!("block {block} payload"),
                format!("crc32 {:#010x}", header.payload_crc),
                format!("{crc:#010x}"),
            ));
        }
        let dictionary = match header.codec {
            Codec::ZstdDictionary => Some(self.dictionary()?),
            _ => None,
        };
        let decoded = codec::decode_block(
            header.codec,
            payload,
            header.record_count,
            header.raw_len,
            dictionary,
        );
        let data = decoded.map_err(|e| {
            self.corrupt(
                payload_offset,
                format!("block {block} zstd frame"),
                format!("{} decoded bytes", header.raw_len),
                e.to_string(),
            )
        })?;
        let data = Arc::new(data);
        if let Ok(mut guard) = self.decoded.lock() {
            *guard = Some((block, Arc::clone(&data)));
        }
        Ok(data)
    }

    /// The file range holding record `local`'s bytes as stored (the whole block payload
    /// for a compressed block), if the index entries are sane.
    pub fn record_range(&self, local: u32) -> Option<(u64, u64)> {
        if local >= self.layout.record_count {
            return None;
        }
        let entry = self.record_entry(local).ok()?;
        let block = self.block_entry(entry.block).ok()?;
        let payload = block.offset + BLOCK_HEADER_LEN as u64;
        if block.stored_len == block.raw_len {
            let start = payload.checked_add(entry.offset)?;
            Some((start, start.checked_add(entry.len)?))
        } else {
            Some((block.offset, payload.checked_add(block.stored_len)?))
        }
    }

    /// Asks the kernel to read `len` bytes at `offset` ahead of use.
    pub(crate) fn prefetch(&self, offset: u64, len: u64) {
        if let Some(t) = &self.trace {
            t.record(crate::IoKind::Prefetch, self.number, offset, len);
        }
        self.bytes.will_need(offset, len);
    }

    /// Key-heap range of record `local`, validated.
    fn key_range(&self, local: u32, entry: &RecordEntry, block: &BlockEntry) -> Result<Range<u64>> {
        let next = if local + 1 < self.layout.record_count {
            Some(self.record_entry(local + 1)?.key_offset)
        } else {
            None
        };
        self.layout
            .check_record(local, entry, block, next)
            .map_err(|d| {
                d.at(
                    &self.path,
                    Some(self.number),
                    self.layout.record_entry_offset(local),
                )
            })
    }

    /// The key of record `local`, from the key heap.
    ///
    /// # Errors
    /// `local` out of range, or a damaged index.
    pub fn key(&self, local: u32) -> Result<&str> {
        Ok(std::str::from_utf8(self.key_bytes(local)?).unwrap_or_default())
    }

    /// Checks the index CRC, once per shard: reads of keys and of the key order trust the
    /// index without a per-entry checksum, so the whole region is checked before the first.
    pub(crate) fn check_index(&self) -> Result<()> {
        let found = *self.index_checked.get_or_init(|| {
            self.slice(self.layout.index_offset, self.layout.index_len, "index")
                .map(checksum::crc32)
                .unwrap_or(!self.index_crc)
        });
        if found == self.index_crc {
            Ok(())
        } else {
            Err(self.corrupt(
                self.layout.index_offset,
                "index",
                format!("crc32 {:#010x} (trailer)", self.index_crc),
                format!("{found:#010x}"),
            ))
        }
    }

    fn key_bytes(&self, local: u32) -> Result<&[u8]> {
        self.check_index()?;

        if local >= self.layout.record_count {
            return Err(ErrorKind::OrdinalOutOfRange {
                ordinal: u64::from(local),
                len: u64::from(self.layout.record_count),
            }
            .into());
        }
        let entry = self.record_entry(local)?;
        let next = if local + 1 < self.layout.record_count {
            Some(self.record_entry(local + 1)?.key_offset)
        } else {
            None
        };
        let end = next.unwrap_or(self.layout.key_heap_len);
        if local == 0 && entry.key_offset != 0 {
            return Err(self.corrupt(
                self.layout.record_entry_offset(0) + 16,
                "first key offset",
                0,
                entry.key_offset,
            ));
        }
        let bytes = end
            .checked_sub(entry.key_offset)
            .filter(|n| {
                (1..=crate::format::MAX_KEY_BYTES as u64).contains(n)
                    && end <= self.layout.key_heap_len
            })
            .map(|len| self.slice(self.layout.key_heap_offset + entry.key_offset, len, "key"))
            .ok_or_else(|| {
                self.corrupt(
                    self.layout.record_entry_offset(local) + 16,
                    "record key offset",
                    "a key within the key heap",
                    format!("{}..{end}", entry.key_offset),
                )
            })??;
        if std::str::from_utf8(bytes).is_err() {
            return Err(self.corrupt(
                self.layout.key_heap_offset + entry.key_offset,
                "key",
                "UTF-8",
                "invalid UTF-8",
            ));
        }
        Ok(bytes)
    }

    /// Finds `key` by binary search over the on-disk key order; O(log n) reads in place.
    ///
    /// # Errors
    /// A damaged index.
    pub fn find(&self, key: &[u8]) -> Result<Option<u32>> {
        self.check_index()?;

        let (mut lo, mut hi) = (0u32, self.layout.record_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let offset = self.layout.key_order_entry_offset(mid);
            let local = u32::from_le_bytes(self.array(offset, "key order entry")?);
            if local >= self.layout.record_count {
                return Err(self.corrupt(
                    offset,
                    "key order entry",
                    format!("a record below {}", self.layout.record_count),
                    local,
                ));
            }
            match self.key_bytes(local)?.cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Some(local)),
            }
        }
        Ok(None)
    }

    /// Reads record `local` (shard-local number), checking its CRC and layout, and that its
    /// key matches the index.
    ///
    /// # Errors
    /// `local` out of range, or an error naming the damaged place.
    pub fn get(&self, local: u32) -> Result<Sample<'_>> {
        if local >= self.layout.record_count {
            return Err(ErrorKind::OrdinalOutOfRange {
                ordinal: u64::from(local),
                len: u64::from(self.layout.record_count),
            }
            .into());
        }
        let entry = self.record_entry(local)?;
        let block = self.block_entry(entry.block)?;
        let key_range = self.key_range(local, &entry, &block)?;
        let heap_key = self.slice(
            self.layout.key_heap_offset + key_range.start,
            key_range.end - key_range.start,
            "key",
        )?;
        if local > block.first_record {
            // Records of a block are in offset order and never share bytes (§6.2).
            let prev = self.record_entry(local - 1)?;
            if prev.offset.saturating_add(prev.len) > entry.offset {
                return Err(self.corrupt(
                    self.layout.record_entry_offset(local),
                    format!("record {local} offset"),
                    format!(
                        "at least {} (after record {})",
                        prev.offset.saturating_add(prev.len),
                        local - 1
                    ),
                    entry.offset,
                ));
            }
        }
        // A stored block is read without its header: the lengths tell the codec (§5.2) and
        // the record CRC covers the bytes, so a random read touches only the record's pages.
        let codec = self.block_codec(&block);
        let ordinal = self.header.first_ordinal + u64::from(local);
        let payload_offset = block.offset + BLOCK_HEADER_LEN as u64;
        let what = || format!("record {local} (ordinal {ordinal})");
        let (bytes, place) = match codec {
            Codec::Stored => {
                let offset = payload_offset + entry.offset;
                (
                    SampleBytes::Mapped(self.slice(offset, entry.len, &what())?),
                    offset,
                )
            }
            Codec::Zstd => {
                let header = self.block_header(entry.block, &block)?;
                let data = self.decoded_block(entry.block, &block, &header)?;
                let range = entry.offset as usize..(entry.offset + entry.len) as usize;
                (
                    SampleBytes::Decoded(data as BlockBytes, range),
                    payload_offset,
                )
            }
            Codec::ZstdDictionary => {
                // One frame decodes alone; the record CRC below covers what it yields, so
                // the rest of the block is not read (§5.5).
                self.block_header(entry.block, &block)?;
                let dictionary = self.dictionary()?;
                let payload = self.slice(payload_offset, block.stored_len, "block payload")?;
                let local_index = local - block.first_record;
                let mut decoded = Vec::new();
                let frame =
                    codec::dictionary::frame_range(payload, block.record_count, local_index)
                        .and_then(|range| {
                            let frame = payload.get(range.clone()).unwrap_or_default();
                            codec::dictionary::decode_frame(
                                frame,
                                entry.len,
                                dictionary,
                                &mut decoded,
                            )
                            .map(|()| range.start as u64)
                        });
                let at = frame.map_err(|e| {
                    self.corrupt(
                        payload_offset,
                        format!("{} frame in block {}", what(), entry.block),
                        format!("{} decoded bytes", entry.len),
                        e.to_string(),
                    )
                })?;
                (SampleBytes::Owned(decoded), payload_offset + at)
            }
        };
        // The bytes between records are not read here: checking that they form one filler
        // would touch the page before a page-placed record (§5.4). A crafted table that
        // points inside another record's data passes a read; full verification checks the
        // fillers (§13.1) and reports it.
        let record = bytes.as_slice();
        let crc = checksum::crc32(record);
        if crc != entry.crc {
            let detail = if codec != Codec::Stored {
                format!("{} at decoded offset {}", what(), entry.offset)
            } else {
                what()
            };
            return Err(self.corrupt(
                place,
                detail,
                format!("crc32 {:#010x}", entry.crc),
                format!("{crc:#010x}"),
            ));
        }
        let view = RecordView::parse(record).map_err(|d| match d {
            Defect::Invalid {
                what: w,
                expected,
                found,
                ..
            } => self.corrupt(place, format!("{} {w}", what()), expected, found),
            d => d.at(&self.path, Some(self.number), place),
        })?;
        if view.key_bytes() != heap_key {
            return Err(self.corrupt(
                place,
                format!("{} key", what()),
                format!("{:?} (index)", String::from_utf8_lossy(heap_key)),
                format!("{:?}", view.key()),
            ));
        }
        let (field_count, key_len) = (view.field_count(), view.key_len());
        Ok(Sample {
            ordinal,
            shard: self.number,
            bytes,
            field_count,
            key_len,
        })
    }
}

/// The shard number a shard's header claims, before the header is checked (for error
/// locations while checking it).
fn claimed_number(bytes: &[u8]) -> u32 {
    crate::format::le::u32_at(bytes, 32)
}

/// The bytes of a block a sample may share: decoded into memory, or a range of a map.
pub(crate) type BlockBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A range of a shard's map, shared by the samples of a stored block read by a scan.
pub(crate) struct MappedRange(pub(crate) Arc<ShardBytes>, pub(crate) Range<usize>);

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        self.0.get(self.1.clone()).unwrap_or_default()
    }
}

enum SampleBytes<'a> {
    Mapped(&'a [u8]),
    Decoded(BlockBytes, Range<usize>),
    Owned(Vec<u8>),
}

impl SampleBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            SampleBytes::Mapped(bytes) => bytes,
            SampleBytes::Decoded(data, range) => {
                (**data).as_ref().get(range.clone()).unwrap_or_default()
            }
            SampleBytes::Owned(bytes) => bytes,
        }
    }
}

/// One sample read from an archive. Fields of stored blocks borrow straight from the map
/// (zero-copy); fields of compressed blocks borrow from the shared decoded block.
pub struct Sample<'a> {
    ordinal: u64,
    shard: u32,
    bytes: SampleBytes<'a>,
    field_count: usize,
    key_len: usize,
}

impl Sample<'static> {
    /// A sample in a decoded block read sequentially; its layout is checked here.
    pub(crate) fn from_block(
        ordinal: u64,
        shard: u32,
        data: BlockBytes,
        range: Range<usize>,
    ) -> std::result::Result<Self, Defect> {
        let view = RecordView::parse((*data).as_ref().get(range.clone()).unwrap_or_default())?;
        let (field_count, key_len) = (view.field_count(), view.key_len());
        Ok(Sample {
            ordinal,
            shard,
            bytes: SampleBytes::Decoded(data, range),
            field_count,
            key_len,
        })
    }
}

impl Sample<'_> {
    fn view(&self) -> RecordView<'_> {
        RecordView::from_checked(self.bytes.as_slice(), self.field_count, self.key_len)
    }

    /// Global ordinal.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// Number of the shard holding the sample.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The key.
    pub fn key(&self) -> &str {
        self.view().key()
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.field_count
    }

    /// The (name, data) pairs in stored order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.view().fields()
    }

    /// The data of field `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.view()
            .fields()
            .find(|(n, _)| *n == name)
            .map(|(_, data)| data)
    }

    /// The whole record's bytes as stored (§6.3).
    pub fn record_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// True when the fields borrow from the memory map with no copy or decode.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.bytes, SampleBytes::Mapped(_))
    }
}

impl std::fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("ordinal", &self.ordinal)
            .field("key", &self.key())
            .field(
                "fields",
                &self
                    .fields()
                    .map(|(n, d)| (n.to_string(), d.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
