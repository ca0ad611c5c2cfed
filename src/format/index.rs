//! The index region (§6): fixed-width tables read in place, never deserialized as a whole.
//!
//! ```text
//! block table   block_count  x 32 bytes   BlockEntry
//! record table  record_count x 32 bytes   RecordEntry, in ordinal order
//! key order     record_count x  4 bytes   u32 record numbers sorted by key bytes
//! key heap      key_heap_len bytes        keys, concatenated in record order
//! ```

use super::header::ShardHeader;
use super::trailer::{Trailer, TRAILER_LEN};
use super::{align_up, le, DecodeError, MAX_KEY_BYTES};
use crate::{Defect, Structure};

/// Length of one block-table entry.
pub const BLOCK_ENTRY_LEN: usize = 32;
/// Length of one record-table entry.
pub const RECORD_ENTRY_LEN: usize = 32;
/// Length of one key-order entry.
pub const KEY_ORDER_ENTRY_LEN: usize = 4;

/// Offset of a block entry's block offset (u64, §7.1).
pub const BLOCK_ENTRY_OFFSET_OFFSET: usize = 0;
/// Offset of a block entry's stored payload length (u64).
pub const BLOCK_ENTRY_STORED_LEN_OFFSET: usize = BLOCK_ENTRY_OFFSET_OFFSET + 8;
/// Offset of a block entry's decoded payload length (u64).
pub const BLOCK_ENTRY_RAW_LEN_OFFSET: usize = BLOCK_ENTRY_STORED_LEN_OFFSET + 8;
/// Offset of a block entry's first record (u32).
pub const BLOCK_ENTRY_FIRST_RECORD_OFFSET: usize = BLOCK_ENTRY_RAW_LEN_OFFSET + 8;
/// Offset of a block entry's record count (u32).
pub const BLOCK_ENTRY_RECORD_COUNT_OFFSET: usize = BLOCK_ENTRY_FIRST_RECORD_OFFSET + 4;

/// A record as a sequential reader found it, walking a block's decoded payload.
#[derive(Clone, Copy, Debug)]
pub struct WalkedRecord<'a> {
    /// The block it was found in.
    pub block: u32,
    /// Its offset in the block's decoded payload.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// The CRC-32 of its bytes.
    pub crc: u32,
    /// Its key, as its record header gives it.
    pub key: &'a [u8],
}

/// One row of the block table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// File offset of the block header.
    pub offset: u64,
    /// Payload length as stored.
    pub stored_len: u64,
    /// Payload length once decoded.
    pub raw_len: u64,
    /// Shard-local number of the block's first record.
    pub first_record: u32,
    /// Number of records in the block.
    pub record_count: u32,
}

impl BlockEntry {
    /// Encodes the entry.
    pub fn encode(&self) -> [u8; BLOCK_ENTRY_LEN] {
        let mut b = [0u8; BLOCK_ENTRY_LEN];
        le::put(
            &mut b,
            BLOCK_ENTRY_OFFSET_OFFSET,
            &self.offset.to_le_bytes(),
        );
        le::put(
            &mut b,
            BLOCK_ENTRY_STORED_LEN_OFFSET,
            &self.stored_len.to_le_bytes(),
        );
        le::put(
            &mut b,
            BLOCK_ENTRY_RAW_LEN_OFFSET,
            &self.raw_len.to_le_bytes(),
        );
        le::put(
            &mut b,
            BLOCK_ENTRY_FIRST_RECORD_OFFSET,
            &self.first_record.to_le_bytes(),
        );
        le::put(
            &mut b,
            BLOCK_ENTRY_RECORD_COUNT_OFFSET,
            &self.record_count.to_le_bytes(),
        );
        b
    }

    /// Decodes an entry; [`IndexLayout::check_block`] validates it.
    pub fn decode(b: &[u8; BLOCK_ENTRY_LEN]) -> BlockEntry {
        BlockEntry {
            offset: le::u64_at(b, BLOCK_ENTRY_OFFSET_OFFSET),
            stored_len: le::u64_at(b, BLOCK_ENTRY_STORED_LEN_OFFSET),
            raw_len: le::u64_at(b, BLOCK_ENTRY_RAW_LEN_OFFSET),
            first_record: le::u32_at(b, BLOCK_ENTRY_FIRST_RECORD_OFFSET),
            record_count: le::u32_at(b, BLOCK_ENTRY_RECORD_COUNT_OFFSET),
        }
    }
}

/// One row of the record table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordEntry {
    /// Offset of the record within its block's decoded payload.
    pub offset: u64,
    /// Length of the record.
    pub len: u64,
    /// Offset of the record's key in the key heap.
    pub key_offset: u64,
    /// The block holding the record.
    pub block: u32,
    /// CRC-32 of the record's bytes.
    pub crc: u32,
}

/// Offset of a record entry's data offset within its block (u64, §6.2).
pub const RECORD_OFFSET_OFFSET: usize = 0;
/// Offset of a record entry's length (u64).
pub const RECORD_LEN_OFFSET: usize = RECORD_OFFSET_OFFSET + 8;
/// Offset of a record entry's key offset in the key heap (u64).
pub const RECORD_KEY_OFFSET_OFFSET: usize = RECORD_LEN_OFFSET + 8;
/// Offset of a record entry's block number (u32).
pub const RECORD_BLOCK_OFFSET: usize = RECORD_KEY_OFFSET_OFFSET + 8;
/// Offset of a record entry's CRC (u32).
pub const RECORD_CRC_OFFSET: usize = RECORD_BLOCK_OFFSET + 4;

impl RecordEntry {
    /// Encodes the entry.
    pub fn encode(&self) -> [u8; RECORD_ENTRY_LEN] {
        let mut b = [0u8; RECORD_ENTRY_LEN];
        le::put(&mut b, RECORD_OFFSET_OFFSET, &self.offset.to_le_bytes());
        le::put(&mut b, RECORD_LEN_OFFSET, &self.len.to_le_bytes());
        le::put(
            &mut b,
            RECORD_KEY_OFFSET_OFFSET,
            &self.key_offset.to_le_bytes(),
        );
        le::put(&mut b, RECORD_BLOCK_OFFSET, &self.block.to_le_bytes());
        le::put(&mut b, RECORD_CRC_OFFSET, &self.crc.to_le_bytes());
        b
    }

    /// Decodes an entry; [`IndexLayout::check_record`] validates it.
    pub fn decode(b: &[u8; RECORD_ENTRY_LEN]) -> RecordEntry {
        RecordEntry {
            offset: le::u64_at(b, RECORD_OFFSET_OFFSET),
            len: le::u64_at(b, RECORD_LEN_OFFSET),
            key_offset: le::u64_at(b, RECORD_KEY_OFFSET_OFFSET),
            block: le::u32_at(b, RECORD_BLOCK_OFFSET),
            crc: le::u32_at(b, RECORD_CRC_OFFSET),
        }
    }
}

/// The validated geometry of a shard: where each table is. Building one costs O(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexLayout {
    /// Offset of the first block (the header rounded up to the alignment).
    pub data_offset: u64,
    /// Offset of the block table (= the index region).
    pub index_offset: u64,
    /// Length of the index region.
    pub index_len: u64,
    /// Offset of the record table.
    pub record_table_offset: u64,
    /// Offset of the key-order table.
    pub key_order_offset: u64,
    /// Offset of the key heap.
    pub key_heap_offset: u64,
    /// Length of the key heap.
    pub key_heap_len: u64,
    /// Offset of the trailer.
    pub trailer_offset: u64,
    /// Number of blocks.
    pub block_count: u32,
    /// Number of records, 1 to `u32::MAX`.
    pub record_count: u32,
    /// Alignment of blocks, index and file length.
    pub align: u64,
}

impl IndexLayout {
    /// Checks the trailer against the header and the real file length. Defect offsets are
    /// relative to the trailer's first byte.
    pub fn new(
        header: &ShardHeader,
        trailer: &Trailer,
        file_len: u64,
    ) -> Result<IndexLayout, DecodeError> {
        let align = u64::from(header.align);
        if trailer.file_len != file_len {
            return Err(DecodeError::new(
                Trailer::FILE_LEN_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "file length",
                    trailer.file_len,
                    file_len,
                ),
            ));
        }
        if trailer.header_crc != header.crc {
            return Err(DecodeError::new(
                Trailer::HEADER_CRC_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "header crc copy",
                    format!("{:#010x}", header.crc),
                    format!("{:#010x}", trailer.header_crc),
                ),
            ));
        }
        if trailer.version != header.version() {
            return Err(DecodeError::new(
                Trailer::VERSION_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "version",
                    format!(
                        "{}.{}, the header's",
                        header.version().0,
                        header.version().1
                    ),
                    format!("{}.{}", trailer.version.0, trailer.version.1),
                ),
            ));
        }
        if trailer.archive_id != header.archive_id {
            return Err(DecodeError::new(
                Trailer::ARCHIVE_ID_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "archive id",
                    super::hex(&header.archive_id),
                    super::hex(&trailer.archive_id),
                ),
            ));
        }
        if trailer.shard_number != header.shard_number {
            return Err(DecodeError::new(
                Trailer::SHARD_NUMBER_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "shard number",
                    header.shard_number,
                    trailer.shard_number,
                ),
            ));
        }
        if trailer.first_ordinal != header.first_ordinal {
            return Err(DecodeError::new(
                Trailer::FIRST_ORDINAL_FIELD,
                Defect::mismatch(
                    Structure::Trailer,
                    "first ordinal",
                    header.first_ordinal,
                    trailer.first_ordinal,
                ),
            ));
        }
        let record_count = u32::try_from(trailer.record_count)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                DecodeError::invalid(
                    Trailer::RECORD_COUNT_FIELD,
                    Structure::Trailer,
                    "record count",
                    "1 to 4294967295",
                    trailer.record_count,
                )
            })?;
        if header
            .first_ordinal
            .checked_add(u64::from(record_count))
            .is_none()
        {
            return Err(DecodeError::invalid(
                Trailer::FIRST_ORDINAL_FIELD,
                Structure::Trailer,
                "first ordinal",
                "an ordinal range within 64 bits",
                header.first_ordinal,
            ));
        }
        let block_count = trailer.block_count;
        if block_count == 0 || block_count > record_count {
            return Err(DecodeError::invalid(
                Trailer::BLOCK_COUNT_FIELD,
                Structure::Trailer,
                "block count",
                format!("1 to {record_count}"),
                block_count,
            ));
        }
        let data_offset = header.data_offset();
        let geometry = || -> Option<(u64, u64, u64, u64, u64)> {
            let n = u64::from(record_count);
            let record_table = trailer
                .index_offset
                .checked_add(u64::from(block_count) * BLOCK_ENTRY_LEN as u64)?;
            let key_order = record_table.checked_add(n * RECORD_ENTRY_LEN as u64)?;
            let key_heap = key_order.checked_add(n * KEY_ORDER_ENTRY_LEN as u64)?;
            let index_end = key_heap.checked_add(trailer.key_heap_len)?;
            let trailer_offset = file_len.checked_sub(TRAILER_LEN as u64)?;
            Some((record_table, key_order, key_heap, index_end, trailer_offset))
        };
        let (record_table_offset, key_order_offset, key_heap_offset, index_end, trailer_offset) =
            geometry().ok_or_else(|| {
                DecodeError::invalid(
                    Trailer::INDEX_OFFSET_FIELD,
                    Structure::Index,
                    "geometry",
                    "offsets within the file",
                    "overflow",
                )
            })?;
        let index_fits = trailer.index_offset >= data_offset
            && trailer.index_offset % align == 0
            && index_end.checked_sub(trailer.index_offset) == Some(trailer.index_len)
            && index_end <= trailer_offset
            && align_up(index_end + TRAILER_LEN as u64, align) == Some(file_len);
        if !index_fits {
            return Err(DecodeError::invalid(
                Trailer::INDEX_OFFSET_FIELD,
                Structure::Index,
                "geometry",
                format!(
                    "an aligned index of {} bytes ending where the trailer's padding starts",
                    index_end.saturating_sub(trailer.index_offset)
                ),
                format!(
                    "index at {} of {} bytes in a file of {file_len}",
                    trailer.index_offset, trailer.index_len
                ),
            ));
        }
        Ok(IndexLayout {
            data_offset,
            index_offset: trailer.index_offset,
            index_len: trailer.index_len,
            record_table_offset,
            key_order_offset,
            key_heap_offset,
            key_heap_len: trailer.key_heap_len,
            trailer_offset,
            block_count,
            record_count,
            align,
        })
    }

    /// File offset of block-table entry `block`.
    pub fn block_entry_offset(&self, block: u32) -> u64 {
        self.index_offset + u64::from(block) * BLOCK_ENTRY_LEN as u64
    }

    /// File offset of record-table entry `record`.
    pub fn record_entry_offset(&self, record: u32) -> u64 {
        self.record_table_offset + u64::from(record) * RECORD_ENTRY_LEN as u64
    }

    /// File offset of key-order entry `rank`.
    pub fn key_order_entry_offset(&self, rank: u32) -> u64 {
        self.key_order_offset + u64::from(rank) * KEY_ORDER_ENTRY_LEN as u64
    }

    /// Validates a block entry read from the table (offsets are relative to the entry).
    pub fn check_block(&self, number: u32, e: &BlockEntry) -> Result<(), DecodeError> {
        let payload_end = e
            .offset
            .checked_add(super::block::BLOCK_HEADER_LEN as u64)
            .and_then(|v| v.checked_add(e.stored_len));
        if e.offset < self.data_offset
            || e.offset % self.align != 0
            || payload_end.is_none_or(|end| end > self.index_offset)
        {
            return Err(DecodeError::invalid(
                BLOCK_ENTRY_OFFSET_OFFSET,
                Structure::BlockEntry { block: number },
                "offset",
                format!(
                    "an aligned block between {} and {}",
                    self.data_offset, self.index_offset
                ),
                format!("block {number} at {} of {} bytes", e.offset, e.stored_len),
            ));
        }
        let end = u64::from(e.first_record) + u64::from(e.record_count);
        if e.record_count == 0 || end > u64::from(self.record_count) {
            return Err(DecodeError::invalid(
                BLOCK_ENTRY_FIRST_RECORD_OFFSET,
                Structure::BlockEntry { block: number },
                "records",
                format!("records within 0..{}", self.record_count),
                format!("{}..{end}", e.first_record),
            ));
        }
        Ok(())
    }

    /// Compares a record that a sequential reader found by walking a block with its
    /// record-table entry and the key the heap lists for it (§12.7): the same block, place,
    /// length, CRC and key. Offsets in the error are from the start of the file: the
    /// entry's field, or the listed key at `key_start` in the heap.
    pub fn check_walked(
        &self,
        local: u32,
        entry: &RecordEntry,
        walked: &WalkedRecord<'_>,
        listed_key: &[u8],
        key_start: u64,
    ) -> Result<(), DecodeError> {
        let entry_offset = self.record_entry_offset(local);
        let structure = Structure::Record {
            record: Some(u64::from(local)),
        };
        let fields = [
            (
                "block",
                RECORD_BLOCK_OFFSET,
                u64::from(walked.block),
                u64::from(entry.block),
            ),
            ("offset", RECORD_OFFSET_OFFSET, walked.offset, entry.offset),
            ("length", RECORD_LEN_OFFSET, walked.len, entry.len),
        ];
        if let Some((what, field, found, listed)) = fields.into_iter().find(|f| f.2 != f.3) {
            return Err(DecodeError::Defect {
                offset: entry_offset + field as u64,
                defect: Defect::mismatch(
                    structure,
                    what,
                    format!("{found} (found by reading the block)"),
                    listed,
                ),
            });
        }
        if walked.crc != entry.crc {
            return Err(DecodeError::Defect {
                offset: entry_offset + RECORD_CRC_OFFSET as u64,
                defect: Defect::crc(structure, entry.crc, walked.crc),
            });
        }
        if listed_key != walked.key {
            return Err(DecodeError::Defect {
                offset: self.key_heap_offset + key_start,
                defect: Defect::mismatch(
                    structure,
                    "key",
                    format!("{:?} (index)", String::from_utf8_lossy(listed_key)),
                    format!("{:?}", String::from_utf8_lossy(walked.key)),
                ),
            });
        }
        Ok(())
    }

    /// Validates a record entry against its block entry and the key heap; returns the key's
    /// range in the heap. `next_key_offset` is the next record's key offset, or `None` for the
    /// last record.
    pub fn check_record(
        &self,
        record: u32,
        e: &RecordEntry,
        block: &BlockEntry,
        next_key_offset: Option<u64>,
    ) -> Result<std::ops::Range<u64>, DecodeError> {
        let in_block = record >= block.first_record
            && u64::from(record) < u64::from(block.first_record) + u64::from(block.record_count);
        if !in_block || e.block >= self.block_count {
            return Err(DecodeError::invalid(
                RECORD_BLOCK_OFFSET,
                Structure::RecordTable,
                "entry block",
                "the block listing this record",
                e.block,
            ));
        }
        if e.offset
            .checked_add(e.len)
            .is_none_or(|end| end > block.raw_len)
            || e.len == 0
        {
            return Err(DecodeError::invalid(
                RECORD_OFFSET_OFFSET,
                Structure::RecordTable,
                "entry extent",
                format!(
                    "a non-empty range within the block's {} bytes",
                    block.raw_len
                ),
                format!("{}+{}", e.offset, e.len),
            ));
        }
        if record == 0 && e.key_offset != 0 {
            return Err(DecodeError::invalid(
                RECORD_KEY_OFFSET_OFFSET,
                Structure::RecordTable,
                "first key offset",
                0,
                e.key_offset,
            ));
        }
        let key_end = next_key_offset.unwrap_or(self.key_heap_len);
        let key_len = key_end.saturating_sub(e.key_offset);
        if key_len == 0 || key_len > MAX_KEY_BYTES as u64 || key_end > self.key_heap_len {
            return Err(DecodeError::invalid(
                RECORD_KEY_OFFSET_OFFSET,
                Structure::RecordTable,
                "key offset",
                format!(
                    "a key of 1 to {MAX_KEY_BYTES} bytes within the {}-byte key heap",
                    self.key_heap_len
                ),
                format!("{}..{key_end}", e.key_offset),
            ));
        }
        Ok(e.key_offset..key_end)
    }
}
