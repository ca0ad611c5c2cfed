//! Sequential reading of one shard (§12.7): front to back in large ascending reads, its
//! blocks found through their own headers (no index needed), every byte hashed on the way,
//! and the records walked checked against the index at its end. Serves the pread scan,
//! tape streams and salvage.

use std::path::{Path, PathBuf};

use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{self, BlockHeader, BLOCK_HEADER_LEN, BLOCK_SYNC};
use crate::format::header::{ShardHeader, HEADER_LEN};
use crate::format::index::{IndexLayout, WalkedRecord, BLOCK_ENTRY_LEN, RECORD_ENTRY_LEN};
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{align_up, checksum, Codec};
use crate::read::block::BlockCursor;
use crate::read::window::{SeqRead, Window};
use crate::{Defect, Error, Location, Result, Structure};

/// The end of a scanned shard.
#[derive(Debug)]
pub(crate) struct ScannedShard {
    pub(crate) file_len: u64,
    pub(crate) blake3: String,
    /// The index region's bytes, CRC checked, and where its tables are.
    pub(crate) index: Vec<u8>,
    pub(crate) layout: IndexLayout,
}

/// The records a sequential reader took from one shard, to be compared with the shard's
/// record table once its index is read (§12.7): a stream hands out a shard's samples before
/// it reaches their index.
#[derive(Default)]
pub(crate) struct WalkLog {
    shard: Option<u32>,
    /// Block, offset in the decoded payload, length and CRC of each record taken.
    records: Vec<(u32, u64, u64, u32)>,
    /// The records' keys, back to back, and where each ends.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
}

impl WalkLog {
    /// Notes a record taken from `cursor`'s block, starting a new log at a new shard.
    pub(crate) fn push(&mut self, cursor: &BlockCursor, sample: &crate::Sample) {
        if self.shard != Some(cursor.shard) {
            *self = WalkLog {
                shard: Some(cursor.shard),
                ..WalkLog::default()
            };
        }
        let record = sample.record_bytes();
        self.records.push((
            cursor.block,
            cursor.last_offset,
            record.len() as u64,
            checksum::crc32(record),
        ));
        self.keys.extend_from_slice(sample.key().as_bytes());
        self.key_ends.push(self.keys.len());
    }

    /// Compares the records taken from shard `number` with its record table: the same
    /// block, place, length, CRC and key for each, so that a sequential read returned what
    /// a random read returns. The log is emptied.
    pub(crate) fn check(
        &mut self,
        number: u32,
        index: &[u8],
        layout: &IndexLayout,
        path: &Path,
    ) -> Result<()> {
        let log = std::mem::take(self);
        let records: &[(u32, u64, u64, u32)] = match log.shard {
            Some(shard) if shard == number => &log.records,
            _ => &[],
        };
        let at = |offset: u64| Location::shard(path, number, offset);
        let entry_at = |offset: u64| -> Option<&[u8]> {
            let start = usize::try_from(offset.checked_sub(layout.index_offset)?).ok()?;
            index.get(start..start.checked_add(crate::format::index::RECORD_ENTRY_LEN)?)
        };
        if records.len() as u64 != u64::from(layout.record_count) {
            return Err(Error::corrupt(
                at(layout.index_offset),
                Defect::mismatch(
                    Structure::RecordTable,
                    "record count",
                    format!("{} records (found by reading the blocks)", records.len()),
                    layout.record_count,
                ),
            ));
        }
        let mut key_start = 0;
        for (local, &(block, offset, len, crc)) in records.iter().enumerate() {
            let local = local as u32;
            let entry_offset = layout.record_entry_offset(local);
            let decode = |local: u32| {
                entry_at(layout.record_entry_offset(local))
                    .and_then(|b| b.try_into().ok())
                    .map(|b| crate::format::index::RecordEntry::decode(&b))
            };
            let Some(entry) = decode(local) else {
                return Err(Error::corrupt(
                    at(entry_offset),
                    Defect::truncated(Structure::RecordTable, RECORD_ENTRY_LEN as u64, None),
                ));
            };
            let block_offset = layout.block_entry_offset(block);
            let block_entry = usize::try_from(block_offset - layout.index_offset)
                .ok()
                .and_then(|start| index.get(start..start + crate::format::index::BLOCK_ENTRY_LEN))
                .and_then(|b| b.try_into().ok())
                .map(|b| crate::format::index::BlockEntry::decode(&b));
            let Some(block_entry) = block_entry else {
                return Err(Error::corrupt(
                    at(block_offset),
                    Defect::truncated(
                        Structure::BlockEntry { block },
                        BLOCK_ENTRY_LEN as u64,
                        None,
                    ),
                ));
            };
            layout
                .check_block(block, &block_entry)
                .map_err(|d| d.at(path, Some(number), block_offset))?;
            let next = (local + 1 < layout.record_count)
                .then(|| decode(local + 1).map(|e| e.key_offset))
                .flatten();
            let range = layout
                .check_record(local, &entry, &block_entry, next)
                .map_err(|d| d.at(path, Some(number), entry_offset))?;
            let heap = (layout.key_heap_offset - layout.index_offset) as usize;
            let listed = index
                .get(heap + range.start as usize..heap + range.end as usize)
                .unwrap_or_default();
            let key_end = log
                .key_ends
                .get(local as usize)
                .copied()
                .unwrap_or(key_start);
            let walked = WalkedRecord {
                block,
                offset,
                len,
                crc,
                key: log.keys.get(key_start..key_end).unwrap_or_default(),
            };
            key_start = key_end;
            layout
                .check_walked(local, &entry, &walked, listed, range.start)
                .map_err(|e| e.at(path, Some(number), 0))?;
        }
        Ok(())
    }
}

/// Reads one shard front to back from a window positioned at its first byte. The window is
/// passed to each call, so that a stream's window outlives its shards.
pub(crate) struct ShardScanner {
    /// The shard's file, for error locations.
    path: PathBuf,
    base: u64,
    header: ShardHeader,
    dictionary: Option<std::sync::Arc<DecodingDictionary>>,
    hasher: blake3::Hasher,
    blocks: u32,
    records: u64,
    /// Each block read, as its block table entry must describe it (§12.7 step 4).
    read: Vec<crate::format::index::BlockEntry>,
    next_ordinal: u64,
    /// The shard's length when known (a file); `None` in a stream.
    known_len: Option<u64>,
    /// Receives a copy of every byte read (to write the shard out while reading a stream).
    copy: Option<Box<dyn std::io::Write>>,
    /// Largest stored block accepted: bounds what a hostile block length can ask for.
    max_block: u64,
}

impl ShardScanner {
    /// Reads and checks the header and its padding.
    pub(crate) fn start<S: SeqRead>(
        win: &mut Window<S>,
        path: PathBuf,
        known_len: Option<u64>,
        mut copy: Option<Box<dyn std::io::Write>>,
    ) -> Result<Self> {
        let base = win.offset();
        let mut hasher = blake3::Hasher::new();
        let at = |o: u64| Location::file(&path, o);
        let bytes: [u8; HEADER_LEN] = match win.take(HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    at(0),
                    Defect::truncated(Structure::ShardHeader, HEADER_LEN as u64, None),
                ))
            }
        };
        hasher.update(&bytes);
        if let Some(c) = copy.as_mut() {
            c.write_all(&bytes)
                .map_err(|e| Error::io(&path, "copy", e))?;
        }
        let header = ShardHeader::decode(&bytes).map_err(|d| d.at(&path, None, 0))?;
        let dictionary_len = header.dictionary_len as usize;
        let dictionary = if dictionary_len > 0 {
            let Some(d) = win.take(dictionary_len)? else {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::truncated(Structure::Dictionary, dictionary_len as u64, None),
                ));
            };
            hasher.update(d);
            if let Some(c) = copy.as_mut() {
                c.write_all(d).map_err(|e| Error::io(&path, "copy", e))?;
            }
            let prepared = DecodingDictionary::checked(d, header.dictionary_crc)
                .map_err(|defect| Error::corrupt(at(HEADER_LEN as u64), defect))?;
            Some(std::sync::Arc::new(prepared))
        } else {
            None
        };
        let pad = (header.data_offset() - HEADER_LEN as u64) as usize - dictionary_len;
        match win.take(pad)? {
            Some(p) if p.iter().all(|&b| b == 0) => {
                hasher.update(p);
                if let Some(c) = copy.as_mut() {
                    c.write_all(p).map_err(|e| Error::io(&path, "copy", e))?;
                }
            }
            Some(_) => {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::not_zero(Structure::HeaderPadding),
                ))
            }
            None => {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::truncated(Structure::HeaderPadding, pad as u64, None),
                ))
            }
        }
        let next_ordinal = header.first_ordinal;
        Ok(ShardScanner {
            path,
            base,
            header,
            dictionary,
            hasher,
            blocks: 0,
            records: 0,
            read: Vec::new(),
            next_ordinal,
            known_len,
            copy,
            max_block: crate::Limits::DEFAULT.max_block_bytes,
        })
    }

    /// The shard's header.
    pub(crate) fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// The shard's dictionary, checked and prepared, if it has one.
    pub(crate) fn dictionary(&self) -> Option<&std::sync::Arc<DecodingDictionary>> {
        self.dictionary.as_ref()
    }

    /// Hashes (and copies) bytes read, in file order.
    fn consume(&mut self, bytes: &[u8]) -> Result<()> {
        checksum::blake3_update(&mut self.hasher, bytes);
        if let Some(c) = self.copy.as_mut() {
            c.write_all(bytes)
                .map_err(|e| Error::io(&self.path, "copy", e))?;
        }
        Ok(())
    }

    fn at(&self, abs: u64) -> Location {
        Location::shard(&self.path, self.header.shard_number, abs - self.base)
    }

    /// The next block: its offset in the shard, its header and its stored payload; `None`
    /// after the last block. The block's CRC, numbering and padding are checked.
    pub(crate) fn next_block<'w, S: SeqRead>(
        &mut self,
        win: &'w mut Window<S>,
    ) -> Result<Option<(u64, BlockHeader, &'w [u8])>> {
        let abs = win.offset();
        let rel = abs - self.base;
        if self
            .known_len
            .is_some_and(|len| rel + (TRAILER_LEN as u64) >= len)
        {
            return Ok(None);
        }
        match win.peek(8)? {
            Some(sync) if sync == BLOCK_SYNC => {}
            // Not a block: the index starts here (its first entry is a small offset, never
            // the sync marker, §6.1).
            _ => return Ok(None),
        }
        let bytes: [u8; BLOCK_HEADER_LEN] = match win.take(BLOCK_HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; BLOCK_HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    self.at(abs),
                    Defect::truncated(Structure::BlockHeader, BLOCK_HEADER_LEN as u64, None),
                ))
            }
        };
        self.consume(&bytes)?;
        let number = self.header.shard_number;
        let h = BlockHeader::decode(&bytes).map_err(|d| d.at(&self.path, Some(number), rel))?;
        let expect = [
            (
                "shard number",
                block::SHARD_NUMBER_OFFSET,
                u64::from(number),
                u64::from(h.shard_number),
            ),
            (
                "block number",
                block::BLOCK_NUMBER_OFFSET,
                u64::from(self.blocks),
                u64::from(h.block_number),
            ),
            (
                "first ordinal",
                block::FIRST_ORDINAL_OFFSET,
                self.next_ordinal,
                h.first_ordinal,
            ),
        ];
        if let Some((what, field, want, got)) = expect.into_iter().find(|(_, _, w, g)| w != g) {
            return Err(Error::corrupt(
                self.at(abs + field as u64),
                Defect::mismatch(Structure::BlockHeader, what, want, got),
            ));
        }
        let compressed = self.header.compressed_codec();
        if h.codec != Codec::Stored && h.codec != compressed {
            // A dictionary shard's compressed blocks are all codec 2, no other's are (§5.5).
            return Err(Error::corrupt(
                self.at(abs + block::CODEC_OFFSET as u64),
                Defect::invalid(
                    Structure::Block {
                        block: h.block_number,
                    },
                    "codec",
                    format!("0 or {} ({})", compressed.to_byte(), compressed.name()),
                    h.codec.to_byte(),
                ),
            ));
        }
        let payload_at = abs + BLOCK_HEADER_LEN as u64;
        let stored_len = usize::try_from(h.stored_len).unwrap_or(usize::MAX);
        if h.stored_len > self.max_block
            || self.known_len.is_some_and(|len| {
                rel.saturating_add(BLOCK_HEADER_LEN as u64)
                    .saturating_add(h.stored_len)
                    > len
            })
        {
            return Err(Error::corrupt(
                self.at(abs + block::STORED_LEN_OFFSET as u64),
                Defect::invalid(
                    Structure::Block {
                        block: h.block_number,
                    },
                    "length",
                    "a payload within the shard",
                    h.stored_len,
                ),
            ));
        }
        let end = payload_at + h.stored_len;
        let align = u64::from(self.header.align);
        let padded = align_up(end - self.base, align).unwrap_or(u64::MAX) - (end - self.base);
        // Payload and padding are taken together, then checked.
        let total = stored_len.saturating_add(padded as usize);
        let short = Error::corrupt(
            self.at(payload_at),
            Defect::truncated(
                Structure::BlockPayload {
                    block: h.block_number,
                },
                h.stored_len,
                None,
            ),
        );
        let Some(chunk) = win.take(total)? else {
            return Err(short);
        };
        self.consume(chunk)?;
        let (payload, padding) = chunk.split_at(stored_len.min(chunk.len()));
        let crc = checksum::crc32(payload);
        if crc != h.payload_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, payload_at - self.base).len(h.stored_len),
                Defect::crc(
                    Structure::BlockPayload {
                        block: h.block_number,
                    },
                    h.payload_crc,
                    crc,
                ),
            ));
        }
        if crate::format::le::first_nonzero(padding).is_some() {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, end - self.base),
                Defect::not_zero(Structure::BlockPadding),
            ));
        }
        self.read.push(crate::format::index::BlockEntry {
            offset: rel,
            stored_len: h.stored_len,
            raw_len: h.raw_len,
            first_record: (self.next_ordinal - self.header.first_ordinal) as u32,
            record_count: h.record_count,
        });
        self.blocks += 1;
        self.records += u64::from(h.record_count);
        self.next_ordinal += u64::from(h.record_count);
        Ok(Some((rel, h, payload)))
    }

    /// Reads the index, padding and trailer after the last block and checks them against
    /// the blocks read: the shard's length comes from its own trailer, found where the
    /// index geometry puts it (§16.3).
    pub(crate) fn finish<S: SeqRead>(mut self, win: &mut Window<S>) -> Result<ScannedShard> {
        let number = self.header.shard_number;
        let index_abs = win.offset();
        let index_rel = index_abs - self.base;
        let align = u64::from(self.header.align);
        // In a file the length is known. In a stream the trailer ends the first aligned
        // unit after the index whose last bytes are a trailer naming this index; the index
        // can be no longer than the blocks and records read allow (§16.3).
        let longest = index_rel
            .saturating_add(u64::from(self.blocks) * 32)
            .saturating_add(
                self.records
                    .saturating_mul(36 + crate::format::MAX_KEY_BYTES as u64),
            )
            .saturating_add(TRAILER_LEN as u64 + align);
        let mut end = match self.known_len {
            Some(len) => len,
            None => align_up(index_rel + TRAILER_LEN as u64, align).unwrap_or(u64::MAX),
        };
        let mut tail: Vec<u8> = Vec::new();
        let file_len = loop {
            let need = usize::try_from(end.saturating_sub(index_rel)).unwrap_or(usize::MAX);
            if end > longest || need < TRAILER_LEN {
                return Err(Error::corrupt(
                    Location::shard(&self.path, number, index_rel),
                    Defect::missing(Structure::Trailer, "a trailer naming this index"),
                ));
            }
            if tail.len() < need {
                match win.take(need - tail.len())? {
                    Some(b) => tail.extend_from_slice(b),
                    None => {
                        return Err(Error::corrupt(
                            Location::shard(&self.path, number, index_rel + tail.len() as u64),
                            Defect::truncated(Structure::Trailer, TRAILER_LEN as u64, None),
                        ))
                    }
                }
            }
            let t_bytes: [u8; TRAILER_LEN] = tail[need - TRAILER_LEN..need]
                .try_into()
                .unwrap_or([0; TRAILER_LEN]);
            match Trailer::decode(&t_bytes) {
                Ok(t) if t.index_offset == index_rel && t.file_len == end => break end,
                Err(d) if self.known_len.is_some() => {
                    return Err(d.at(&self.path, Some(number), end - TRAILER_LEN as u64))
                }
                Ok(t) if self.known_len.is_some() => {
                    return Err(Error::corrupt(
                        Location::shard(
                            &self.path,
                            number,
                            end - TRAILER_LEN as u64 + Trailer::INDEX_OFFSET_FIELD as u64,
                        ),
                        Defect::mismatch(
                            Structure::Trailer,
                            "index offset and file length",
                            format!("{index_rel} and {end}"),
                            format!("{} and {}", t.index_offset, t.file_len),
                        ),
                    ))
                }
                _ => end += align,
            }
        };
        let tail = &tail[..(file_len - index_rel) as usize];
        self.consume(tail)?;
        if let Some(c) = self.copy.as_mut() {
            c.flush().map_err(|e| Error::io(&self.path, "copy", e))?;
        }
        let t_bytes: [u8; TRAILER_LEN] = tail[tail.len() - TRAILER_LEN..]
            .try_into()
            .unwrap_or([0; TRAILER_LEN]);
        let trailer_at = file_len - TRAILER_LEN as u64;
        let trailer =
            Trailer::decode(&t_bytes).map_err(|d| d.at(&self.path, Some(number), trailer_at))?;
        let layout = IndexLayout::new(&self.header, &trailer, file_len)
            .map_err(|d| d.at(&self.path, Some(number), trailer_at))?;
        let checks = [
            (
                "index offset",
                Trailer::INDEX_OFFSET_FIELD,
                index_rel,
                layout.index_offset,
            ),
            (
                "block count",
                Trailer::BLOCK_COUNT_FIELD,
                u64::from(self.blocks),
                u64::from(layout.block_count),
            ),
            (
                "record count",
                Trailer::RECORD_COUNT_FIELD,
                self.records,
                u64::from(layout.record_count),
            ),
        ];
        if let Some((what, field, want, got)) = checks.into_iter().find(|(_, _, w, g)| w != g) {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, trailer_at + field as u64),
                Defect::mismatch(
                    Structure::Trailer,
                    what,
                    format!("{want} (found by reading the blocks)"),
                    got,
                ),
            ));
        }
        let index = &tail[..layout.index_len as usize];
        let crc = checksum::crc32(index);
        if crc != trailer.index_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel).len(layout.index_len),
                Defect::crc(Structure::Index, trailer.index_crc, crc),
            ));
        }
        for (b, read) in self.read.iter().enumerate() {
            let offset = layout.block_entry_offset(b as u32);
            let listed = usize::try_from(offset - index_rel)
                .ok()
                .and_then(|at| index.get(at..at + crate::format::index::BLOCK_ENTRY_LEN))
                .and_then(|e| e.try_into().ok())
                .map(|e| crate::format::index::BlockEntry::decode(&e));
            if listed.as_ref() != Some(read) {
                return Err(Error::corrupt(
                    Location::shard(&self.path, number, offset),
                    Defect::mismatch(
                        Structure::BlockEntry { block: b as u32 },
                        "",
                        format!("{read:?} (found by reading the blocks)"),
                        format!("{listed:?}"),
                    ),
                ));
            }
        }
        let index_end = (layout.index_len) as usize;
        if tail[index_end..tail.len() - TRAILER_LEN]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel + index_end as u64),
                Defect::not_zero(Structure::IndexPadding),
            ));
        }
        Ok(ScannedShard {
            file_len,
            blake3: self.hasher.finalize().to_hex().to_string(),
            index: index.to_vec(),
            layout,
        })
    }
}
