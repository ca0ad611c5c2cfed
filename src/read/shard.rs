//! One shard file, mapped and structurally checked, read record by record (§12.2–§12.5).
//!
//! Long because it is the one type every reader goes through: opening with the header,
//! trailer and index geometry checked, the record and block tables, the dictionary and
//! the decoded-block cache are the state of [`Shard`] that each read checks against; the
//! byte layouts and their pure checks live in `format/`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::archive::manifest::ShardInfo;
use crate::codec;
use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{self, BlockHeader, BLOCK_HEADER_LEN};
use crate::format::header::{self, ShardHeader, HEADER_LEN};
use crate::format::index::{
    BlockEntry, IndexLayout, RecordEntry, WalkedRecord, RECORD_KEY_OFFSET_OFFSET,
    RECORD_OFFSET_OFFSET,
};
use crate::format::record::RecordView;
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{checksum, hex, Codec};
use crate::io::{open_source, AccessPattern, ReadAt, ShardBytes, SourceKind};
use crate::read::sample::{BlockBytes, SampleBytes};
use crate::read::Sample;
use crate::{Defect, Error, ErrorKind, IoTrace, Limits, Location, Result, Structure};

/// Decoded blocks a shard keeps, so that threads reading records of a few compressed blocks
/// each decode each block once instead of evicting one another's.
const DECODED_BLOCKS_KEPT: usize = 8;

/// One shard file, mapped read-only (or read through another [`ReadAt`] source), with its
/// header, trailer and index geometry checked.
pub struct Shard {
    path: PathBuf,
    number: u32,
    bytes: Arc<dyn ReadAt>,
    header: ShardHeader,
    layout: IndexLayout,
    limits: Limits,
    /// The blocks decoded last, most recent at the end (at most [`DECODED_BLOCKS_KEPT`]).
    decoded: Mutex<Vec<(u32, Arc<Vec<u8>>)>>,
    /// The trailer's CRC of the index region.
    index_crc: u32,
    /// The index region's actual CRC, computed on the first key read.
    index_checked: OnceLock<u32>,
    /// The shard's dictionary, checked and prepared on the first read that needs it.
    dictionary: OnceLock<std::result::Result<DecodingDictionary, Defect>>,
}

impl Shard {
    /// Maps and checks a shard file on its own, without a manifest.
    ///
    /// # Errors
    /// An I/O error or a structural defect, located.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Shard> {
        let path = path.as_ref();
        Shard::from_source(path, Arc::new(ShardBytes::map(path)?), limits)
    }

    /// Checks a shard held in memory (read from a pipe, a tape, or a fuzzer). `path` only
    /// names it in errors.
    ///
    /// # Errors
    /// A structural defect, located.
    pub fn from_vec(path: impl AsRef<Path>, bytes: Vec<u8>, limits: Limits) -> Result<Shard> {
        Shard::from_source(path.as_ref(), Arc::new(ShardBytes::Owned(bytes)), limits)
    }

    /// Checks a shard read through any source (a remote object, a test double). `path`
    /// only names it in errors. Every read checks the bytes the source returns exactly as
    /// it checks a mapped file's.
    ///
    /// # Errors
    /// An I/O error from the source or a structural defect, located.
    pub fn from_source(
        path: impl AsRef<Path>,
        source: Arc<dyn ReadAt>,
        limits: Limits,
    ) -> Result<Shard> {
        let path = path.as_ref();
        let mut number = [0u8; 4];
        // The number the header claims, to locate errors found while checking the header.
        let _ = source.read_exact_at(SHARD_NUMBER_OFFSET, &mut number);
        Shard::from_bytes(path, u32::from_le_bytes(number), source, None, limits)
    }

    pub(crate) fn open_expected(
        path: &Path,
        number: u32,
        expected: Option<(&ShardInfo, [u8; 16])>,
        limits: Limits,
        source: SourceKind,
        trace: Option<IoTrace>,
    ) -> Result<Shard> {
        let bytes = open_source(path, source, trace.as_ref(), number)?;
        Shard::from_bytes(path, number, bytes, expected, limits)
    }

    /// A shard of an archive read through `bytes` (a remote file), checked against the
    /// manifest's entry as [`Shard::open_expected`] checks a local one.
    pub(crate) fn open_expected_source(
        path: &Path,
        number: u32,
        bytes: Arc<dyn ReadAt>,
        expected: Option<(&ShardInfo, [u8; 16])>,
        limits: Limits,
    ) -> Result<Shard> {
        Shard::from_bytes(path, number, bytes, expected, limits)
    }

    fn from_bytes(
        path: &Path,
        number: u32,
        bytes: Arc<dyn ReadAt>,
        expected: Option<(&ShardInfo, [u8; 16])>,
        limits: Limits,
    ) -> Result<Shard> {
        let file_len = bytes.len();
        let at = |offset: u64| Location::shard(path, number, offset);
        if let Some((info, _)) = expected {
            if file_len != info.size {
                return Err(Error::corrupt(
                    at(file_len.min(info.size)),
                    crate::error::shard_length(info.size, file_len),
                ));
            }
        }
        if file_len < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(Error::corrupt(
                at(file_len),
                Defect::truncated(
                    Structure::ShardFile,
                    (HEADER_LEN + TRAILER_LEN) as u64,
                    Some(file_len),
                ),
            ));
        }
        let read = |offset: u64, buf: &mut [u8]| {
            bytes
                .read_exact_at(offset, buf)
                .map_err(|e| Error::io_at(path, "read", offset, e))
        };
        let mut header_bytes = [0u8; HEADER_LEN];
        read(0, &mut header_bytes)?;
        let header = ShardHeader::decode(&header_bytes).map_err(|d| d.at(path, Some(number), 0))?;
        if header.shard_number != number {
            return Err(Error::corrupt(
                at(header::SHARD_NUMBER_OFFSET as u64),
                Defect::mismatch(
                    Structure::ShardHeader,
                    "shard number",
                    number,
                    header.shard_number,
                ),
            ));
        }
        if let Some((info, id)) = expected {
            if header.archive_id != id {
                return Err(Error::corrupt(
                    at(header::ARCHIVE_ID_OFFSET as u64),
                    Defect::mismatch(
                        Structure::ShardHeader,
                        "archive id (shard from another archive?)",
                        hex(&id),
                        hex(&header.archive_id),
                    ),
                ));
            }
            if header.first_ordinal != info.first_ordinal {
                return Err(Error::corrupt(
                    at(header::FIRST_ORDINAL_OFFSET as u64),
                    Defect::mismatch(
                        Structure::ShardHeader,
                        "first ordinal",
                        info.first_ordinal,
                        header.first_ordinal,
                    ),
                ));
            }
        }
        let trailer_offset = file_len - TRAILER_LEN as u64;
        let mut trailer_bytes = [0u8; TRAILER_LEN];
        read(trailer_offset, &mut trailer_bytes)?;
        let trailer = Trailer::decode(&trailer_bytes)
            .map_err(|d| d.at(path, Some(number), trailer_offset))?;
        let layout = IndexLayout::new(&header, &trailer, file_len)
            .map_err(|d| d.at(path, Some(number), trailer_offset))?;
        if let Some((info, _)) = expected {
            if trailer.record_count != info.samples {
                return Err(Error::corrupt(
                    at(trailer_offset + Trailer::RECORD_COUNT_FIELD as u64),
                    Defect::mismatch(
                        Structure::Trailer,
                        "record count",
                        format!("{} (manifest)", info.samples),
                        trailer.record_count,
                    ),
                ));
            }
        }
        bytes.advise(AccessPattern::Random);
        Ok(Shard {
            path: path.to_path_buf(),
            number,
            bytes,
            header,
            layout,
            limits,
            decoded: Mutex::new(Vec::new()),
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

    fn corrupt(&self, offset: u64, defect: Defect) -> Error {
        Error::corrupt(self.location(offset), defect)
    }

    /// `len` bytes at `offset`, borrowed from the map when the source is one.
    fn slice(&self, offset: u64, len: u64, structure: Structure) -> Result<Cow<'_, [u8]>> {
        match self.bytes.bytes(offset, len) {
            Some(read) => read.map_err(|e| Error::io_at(&self.path, "read", offset, e)),
            None => Err(self.corrupt(
                offset,
                Defect::truncated(
                    structure,
                    len,
                    Some(self.bytes.len().saturating_sub(offset)),
                ),
            )),
        }
    }

    fn array<const N: usize>(&self, offset: u64, structure: Structure) -> Result<[u8; N]> {
        let s = self.slice(offset, N as u64, structure)?;
        Ok((*s).try_into().unwrap_or([0; N]))
    }

    fn record_entry(&self, local: u32) -> Result<RecordEntry> {
        let offset = self.layout.record_entry_offset(local);
        Ok(RecordEntry::decode(
            &self.array(offset, Structure::RecordTable)?,
        ))
    }

    /// Block-table entry `block`, validated.
    pub fn block_entry(&self, block: u32) -> Result<BlockEntry> {
        if block >= self.layout.block_count {
            return Err(self.corrupt(
                self.layout.index_offset,
                Defect::invalid(
                    Structure::Block { block },
                    "number",
                    format!("below {}", self.layout.block_count),
                    block,
                ),
            ));
        }
        let offset = self.layout.block_entry_offset(block);
        let entry = BlockEntry::decode(&self.array(offset, Structure::BlockEntry { block })?);
        self.layout
            .check_block(block, &entry)
            .map_err(|d| d.at(&self.path, Some(self.number), offset))?;
        Ok(entry)
    }

    /// The header of block `block`, checked against its index entry.
    pub fn block_header(&self, block: u32, entry: &BlockEntry) -> Result<BlockHeader> {
        let h = BlockHeader::decode(&self.array(entry.offset, Structure::BlockHeader)?)
            .map_err(|d| d.at(&self.path, Some(self.number), entry.offset))?;
        let first_ordinal = self.header.first_ordinal + u64::from(entry.first_record);
        let mismatch = [
            (
                "shard number",
                block::SHARD_NUMBER_OFFSET,
                u64::from(self.number),
                u64::from(h.shard_number),
            ),
            (
                "block number",
                block::BLOCK_NUMBER_OFFSET,
                u64::from(block),
                u64::from(h.block_number),
            ),
            (
                "first ordinal",
                block::FIRST_ORDINAL_OFFSET,
                first_ordinal,
                h.first_ordinal,
            ),
            (
                "record count",
                block::RECORD_COUNT_OFFSET,
                u64::from(entry.record_count),
                u64::from(h.record_count),
            ),
            (
                "stored length",
                block::STORED_LEN_OFFSET,
                entry.stored_len,
                h.stored_len,
            ),
            (
                "decoded length",
                block::RAW_LEN_OFFSET,
                entry.raw_len,
                h.raw_len,
            ),
        ]
        .into_iter()
        .find(|(_, _, want, got)| want != got);
        if let Some((what, field, want, got)) = mismatch {
            return Err(self.corrupt(
                entry.offset + field as u64,
                Defect::mismatch(
                    Structure::Block { block },
                    what,
                    format!("{want} (index)"),
                    got,
                ),
            ));
        }
        let codec = self.block_codec(entry);
        if h.codec != codec {
            // A dictionary shard's compressed blocks are all codec 2, no other's are (§5.5).
            return Err(self.corrupt(
                entry.offset + block::CODEC_OFFSET as u64,
                Defect::invalid(
                    Structure::Block { block },
                    "codec",
                    format!("{} ({})", codec.to_byte(), codec.name()),
                    h.codec.to_byte(),
                ),
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

    /// The source the shard's bytes come from: scans borrow from it without a copy when it
    /// holds them in memory.
    pub(crate) fn source(&self) -> &Arc<dyn ReadAt> {
        &self.bytes
    }

    /// Hints how the shard will be read next.
    pub(crate) fn advise(&self, pattern: AccessPattern) {
        self.bytes.advise(pattern);
    }

    /// Decoded payload bytes `range` of the shard, or a located error past the end.
    pub(crate) fn payload(&self, range: Range<u64>) -> Result<Cow<'_, [u8]>> {
        self.slice(
            range.start,
            range.end.saturating_sub(range.start),
            Structure::BlockHeader,
        )
    }

    /// The shard's dictionary (§5.5), its CRC checked once, on first use.
    pub(crate) fn dictionary(&self) -> Result<&DecodingDictionary> {
        let offset = self.header.dictionary_offset();
        let len = u64::from(self.header.dictionary_len);
        let prepared = self.dictionary.get_or_init(|| {
            if len == 0 {
                return Err(Defect::missing(
                    Structure::Dictionary,
                    "a dictionary (the shard header declares none)",
                ));
            }
            let bytes = self
                .slice(offset, len, Structure::Dictionary)
                .map_err(|e| {
                    e.defect().cloned().unwrap_or_else(|| {
                        Defect::undecodable(Structure::Dictionary, "a readable dictionary", e)
                    })
                })?;
            DecodingDictionary::checked(&bytes, self.header.dictionary_crc)
        });
        prepared
            .as_ref()
            .map_err(|defect| self.corrupt(offset, defect.clone()))
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
        if let Ok(kept) = self.decoded.lock() {
            if let Some((_, data)) = kept.iter().find(|(b, _)| *b == block) {
                return Ok(Arc::clone(data));
            }
        }
        let payload_offset = entry.offset + BLOCK_HEADER_LEN as u64;
        let payload = self.slice(
            payload_offset,
            header.stored_len,
            Structure::BlockPayload { block },
        )?;
        let crc = checksum::crc32(&payload);
        if crc != header.payload_crc {
            return Err(Error::corrupt(
                self.location(payload_offset).len(header.stored_len),
                Defect::crc(Structure::BlockPayload { block }, header.payload_crc, crc),
            ));
        }
        let dictionary = match header.codec {
            Codec::ZstdDictionary => Some(self.dictionary()?),
            _ => None,
        };
        let decoded = codec::decode_block(
            header.codec,
            &payload,
            header.record_count,
            header.raw_len,
            dictionary,
        );
        let data = decoded.map_err(|e| {
            self.corrupt(
                payload_offset,
                Defect::undecodable(
                    Structure::BlockFrame { block },
                    format!("{} decoded bytes", header.raw_len),
                    e,
                ),
            )
        })?;
        let data = Arc::new(data);
        if let Ok(mut kept) = self.decoded.lock() {
            // Two threads may have decoded the same block; keeping one copy is enough.
            if !kept.iter().any(|(b, _)| *b == block) {
                if kept.len() == DECODED_BLOCKS_KEPT {
                    kept.remove(0);
                }
                kept.push((block, Arc::clone(&data)));
            }
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

    /// Asks the source to read each of `ranges` (offset, length) ahead of use, together.
    pub(crate) fn prefetch_ranges(&self, ranges: &[(u64, u64)]) {
        self.bytes.will_need_ranges(ranges);
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

    /// Checks a record found by walking a block's decoded payload (at `offset` in it) against
    /// the record table: the same block, place and length, the record's CRC, and its key equal
    /// to the heap key. A sequential read that passes this returns exactly the sample `get`
    /// returns for the same ordinal, and fails where `get` fails (§12.7).
    pub(crate) fn check_walked(
        &self,
        local: u32,
        block: u32,
        offset: u64,
        record: &[u8],
        key: &[u8],
    ) -> Result<()> {
        let entry = self.record_entry(local)?;
        let block_entry = self.block_entry(block)?;
        let range = self.key_range(local, &entry, &block_entry)?;
        let listed = self.slice(
            self.layout.key_heap_offset + range.start,
            range.end - range.start,
            Structure::KeyHeap,
        )?;
        let walked = WalkedRecord {
            block,
            offset,
            len: record.len() as u64,
            crc: checksum::crc32(record),
            key,
        };
        self.layout
            .check_walked(local, &entry, &walked, &listed, range.start)
            .map_err(|e| e.at(&self.path, Some(self.number), 0))
    }

    /// The key of record `local`, from the key heap.
    ///
    /// # Errors
    /// `local` out of range, or a damaged index.
    pub fn key(&self, local: u32) -> Result<Cow<'_, str>> {
        // `key_bytes` checked that the key is UTF-8.
        Ok(match self.key_bytes(local)? {
            Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default()),
            Cow::Owned(v) => Cow::Owned(String::from_utf8(v).unwrap_or_default()),
        })
    }

    /// Checks the index CRC, once per shard: reads of keys and of the key order trust the
    /// index without a per-entry checksum, so the whole region is checked before the first.
    pub(crate) fn check_index(&self) -> Result<()> {
        let found = *self.index_checked.get_or_init(|| {
            self.slice(
                self.layout.index_offset,
                self.layout.index_len,
                Structure::Index,
            )
            .map(|index| checksum::crc32(&index))
            .unwrap_or(!self.index_crc)
        });
        if found == self.index_crc {
            Ok(())
        } else {
            Err(Error::corrupt(
                self.location(self.layout.index_offset)
                    .len(self.layout.index_len),
                Defect::crc(Structure::Index, self.index_crc, found),
            ))
        }
    }

    fn key_bytes(&self, local: u32) -> Result<Cow<'_, [u8]>> {
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
                self.layout.record_entry_offset(0) + RECORD_KEY_OFFSET_OFFSET as u64,
                Defect::invalid(
                    Structure::RecordTable,
                    "first key offset",
                    0,
                    entry.key_offset,
                ),
            ));
        }
        let bytes = end
            .checked_sub(entry.key_offset)
            .filter(|n| {
                (1..=crate::format::MAX_KEY_BYTES as u64).contains(n)
                    && end <= self.layout.key_heap_len
            })
            .map(|len| {
                self.slice(
                    self.layout.key_heap_offset + entry.key_offset,
                    len,
                    Structure::KeyHeap,
                )
            })
            .ok_or_else(|| {
                self.corrupt(
                    self.layout.record_entry_offset(local) + RECORD_KEY_OFFSET_OFFSET as u64,
                    Defect::invalid(
                        Structure::RecordTable,
                        "key offset",
                        "a key within the key heap",
                        format!("{}..{end}", entry.key_offset),
                    ),
                )
            })??;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(self.corrupt(
                self.layout.key_heap_offset + entry.key_offset,
                Defect::invalid(Structure::KeyHeap, "key", "UTF-8", "invalid UTF-8"),
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
            let local = self.ranked(mid)?;
            match (*self.key_bytes(local)?).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Some(local)),
            }
        }
        Ok(None)
    }

    /// The record number that key-order entry `rank` lists, checked to be a record.
    fn ranked(&self, rank: u32) -> Result<u32> {
        if rank >= self.layout.record_count {
            return Err(ErrorKind::OrdinalOutOfRange {
                ordinal: u64::from(rank),
                len: u64::from(self.layout.record_count),
            }
            .into());
        }
        let offset = self.layout.key_order_entry_offset(rank);
        let local = u32::from_le_bytes(self.array(offset, Structure::KeyOrder)?);
        if local >= self.layout.record_count {
            return Err(self.corrupt(
                offset,
                Defect::invalid(
                    Structure::KeyOrder,
                    "entry",
                    format!("a record below {}", self.layout.record_count),
                    local,
                ),
            ));
        }
        Ok(local)
    }

    /// The record and key that key-order entry `rank` lists (`rank` below [`Shard::len`]):
    /// the shard's keys in ascending order, one at a time, read in place. The caller checks
    /// that they ascend; this checks the index CRC (once) and the entry.
    pub(crate) fn key_in_order(&self, rank: u32) -> Result<(u32, Cow<'_, [u8]>)> {
        self.check_index()?;
        let local = self.ranked(rank)?;
        Ok((local, self.key_bytes(local)?))
    }

    /// Reads record `local` (shard-local number), checking its CRC and layout, and that its
    /// key matches the index.
    ///
    /// # Errors
    /// `local` out of range, or an error naming the damaged place.
    pub fn get(&self, local: u32) -> Result<Sample> {
        self.get_holding(local, &self.bytes)
    }

    /// A handle on this shard's bytes for the samples of one batch: they share it, so
    /// threads reading batches of one shard at once each count references on a counter of
    /// their own instead of all on the shard's.
    pub(crate) fn batch_handle(&self) -> Arc<dyn ReadAt> {
        Arc::new(crate::io::Shared(Arc::clone(&self.bytes)))
    }

    /// [`Shard::get`], a stored sample holding `handle` (this shard's bytes, or a
    /// [`Shard::batch_handle`]) for its map. When the record fails a check, the source is
    /// told which bytes failed (the record's, and the place the error names), so that a
    /// source keeping them fetches them again for the next read.
    pub(crate) fn get_holding(&self, local: u32, handle: &Arc<dyn ReadAt>) -> Result<Sample> {
        let read = self.read_record(local, handle);
        if let Err(ErrorKind::Corrupt { location, .. }) = read.as_ref().map_err(Error::kind) {
            if let Some((start, end)) = self.record_range(local) {
                handle.check_failed(start, end - start);
            }
            handle.check_failed(location.offset, location.len);
        }
        read
    }

    fn read_record(&self, local: u32, handle: &Arc<dyn ReadAt>) -> Result<Sample> {
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
        let record_structure = Structure::Record {
            record: Some(u64::from(local)),
        };
        let heap_key = self.slice(
            self.layout.key_heap_offset + key_range.start,
            key_range.end - key_range.start,
            Structure::KeyHeap,
        )?;
        if local > block.first_record {
            // Records of a block are in offset order and never share bytes (§6.2).
            let prev = self.record_entry(local - 1)?;
            if prev.offset.saturating_add(prev.len) > entry.offset {
                return Err(self.corrupt(
                    self.layout.record_entry_offset(local) + RECORD_OFFSET_OFFSET as u64,
                    Defect::invalid(
                        record_structure,
                        "offset",
                        format!(
                            "at least {} (after record {})",
                            prev.offset.saturating_add(prev.len),
                            local - 1
                        ),
                        entry.offset,
                    ),
                ));
            }
        }
        // A stored block is read without its header: the lengths tell the codec (§5.2) and
        // the record CRC covers the bytes, so a random read touches only the record's pages.
        let codec = self.block_codec(&block);
        let ordinal = self.header.first_ordinal + u64::from(local);
        let payload_offset = block.offset + BLOCK_HEADER_LEN as u64;
        let (bytes, place) = match codec {
            Codec::Stored => {
                let offset = payload_offset + entry.offset;
                let bytes = match self.slice(offset, entry.len, record_structure)? {
                    // Borrowed means in memory, so the range is within it.
                    Cow::Borrowed(_) => SampleBytes::Mapped(
                        Arc::clone(handle),
                        offset as usize..(offset + entry.len) as usize,
                    ),
                    Cow::Owned(copy) => SampleBytes::Owned(copy),
                };
                (bytes, offset)
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
                let payload = self.slice(
                    payload_offset,
                    block.stored_len,
                    Structure::BlockPayload { block: entry.block },
                )?;
                let local_index = local - block.first_record;
                let mut decoded = Vec::new();
                let frame =
                    codec::dictionary::frame_range(&payload, block.record_count, local_index)
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
                        Defect::undecodable(
                            Structure::BlockFrame { block: entry.block },
                            format!("record {local}: {} decoded bytes", entry.len),
                            e,
                        ),
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
            return Err(Error::corrupt(
                self.location(place).len(entry.len),
                Defect::crc(record_structure, entry.crc, crc),
            ));
        }
        let view = RecordView::parse(record).map_err(|d| {
            d.of(record_structure)
                .at(&self.path, Some(self.number), place)
        })?;
        if view.key_bytes() != &*heap_key {
            return Err(self.corrupt(
                place,
                Defect::mismatch(
                    record_structure,
                    "key",
                    format!("{:?} (index)", String::from_utf8_lossy(&heap_key)),
                    format!("{:?}", view.key()),
                ),
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

/// Where the header keeps the shard number (§3), read before the header is checked to
/// locate errors found while checking it.
const SHARD_NUMBER_OFFSET: u64 = crate::format::header::SHARD_NUMBER_OFFSET as u64;
