//! The fixed-size trailer in the last bytes of a shard (§8): where the index is, the counts,
//! and a copy of the magic and version, so that a shard is readable from its end.

use super::{le, sealed, DecodeError};
use crate::{Defect, Structure};

/// Trailer signature, PNG-style like the header's but distinct from it.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89SPE\r\n\x1a\n";

/// Length of the encoded trailer.
pub const TRAILER_LEN: usize = 128;

const ARCHIVE_ID_OFFSET: usize = sealed::BODY_OFFSET;
const SHARD_NUMBER_OFFSET: usize = ARCHIVE_ID_OFFSET + 16;
const BLOCK_COUNT_OFFSET: usize = SHARD_NUMBER_OFFSET + 4;
const RECORD_COUNT_OFFSET: usize = BLOCK_COUNT_OFFSET + 4;
const FIRST_ORDINAL_OFFSET: usize = RECORD_COUNT_OFFSET + 8;
const INDEX_OFFSET_OFFSET: usize = FIRST_ORDINAL_OFFSET + 8;
const INDEX_LEN_OFFSET: usize = INDEX_OFFSET_OFFSET + 8;
const KEY_HEAP_LEN_OFFSET: usize = INDEX_LEN_OFFSET + 8;
const FILE_LEN_OFFSET: usize = KEY_HEAP_LEN_OFFSET + 8;
const INDEX_CRC_OFFSET: usize = FILE_LEN_OFFSET + 8;
const HEADER_CRC_OFFSET: usize = INDEX_CRC_OFFSET + 4;
const RAW_BYTES_OFFSET: usize = HEADER_CRC_OFFSET + 4;
const RESERVED_OFFSET: usize = RAW_BYTES_OFFSET + 8;
/// Offset of the trailer CRC, which covers bytes `0..CRC_OFFSET`.
pub const CRC_OFFSET: usize = TRAILER_LEN - 4;

/// A decoded trailer. Geometry is checked against the file by [`super::index::IndexLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The format version; equal to the header's (§10).
    pub version: (u16, u16),
    /// Equal to the header's archive id.
    pub archive_id: [u8; 16],
    /// Equal to the header's shard number.
    pub shard_number: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// Number of records (samples) in the shard.
    pub record_count: u64,
    /// Global ordinal of the first record; equal to the header's.
    pub first_ordinal: u64,
    /// File offset of the index region.
    pub index_offset: u64,
    /// Length of the index region.
    pub index_len: u64,
    /// Length of the key heap, the last part of the index region.
    pub key_heap_len: u64,
    /// Length of the whole shard file.
    pub file_len: u64,
    /// CRC-32 of the index region.
    pub index_crc: u32,
    /// Copy of the header's CRC, binding header and trailer.
    pub header_crc: u32,
    /// Sum of all record lengths (raw bytes before compression).
    pub raw_bytes: u64,
}

impl Trailer {
    /// Encodes the trailer with its CRC.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b: [u8; TRAILER_LEN] = sealed::new(&TRAILER_MAGIC, self.version);
        le::put(&mut b, ARCHIVE_ID_OFFSET, &self.archive_id);
        le::put(
            &mut b,
            SHARD_NUMBER_OFFSET,
            &self.shard_number.to_le_bytes(),
        );
        le::put(&mut b, BLOCK_COUNT_OFFSET, &self.block_count.to_le_bytes());
        le::put(
            &mut b,
            RECORD_COUNT_OFFSET,
            &self.record_count.to_le_bytes(),
        );
        le::put(
            &mut b,
            FIRST_ORDINAL_OFFSET,
            &self.first_ordinal.to_le_bytes(),
        );
        le::put(
            &mut b,
            INDEX_OFFSET_OFFSET,
            &self.index_offset.to_le_bytes(),
        );
        le::put(&mut b, INDEX_LEN_OFFSET, &self.index_len.to_le_bytes());
        le::put(
            &mut b,
            KEY_HEAP_LEN_OFFSET,
            &self.key_heap_len.to_le_bytes(),
        );
        le::put(&mut b, FILE_LEN_OFFSET, &self.file_len.to_le_bytes());
        le::put(&mut b, INDEX_CRC_OFFSET, &self.index_crc.to_le_bytes());
        le::put(&mut b, HEADER_CRC_OFFSET, &self.header_crc.to_le_bytes());
        le::put(&mut b, RAW_BYTES_OFFSET, &self.raw_bytes.to_le_bytes());
        sealed::seal(&mut b);
        b
    }

    /// Decodes a trailer and checks its own fields (magic, CRC, version, reserved bytes).
    pub fn decode(b: &[u8; TRAILER_LEN]) -> Result<Trailer, DecodeError> {
        let version = sealed::open(b, &TRAILER_MAGIC, Structure::Trailer)?;
        if !le::all_zero(b, RESERVED_OFFSET, CRC_OFFSET) {
            return Err(DecodeError::new(
                RESERVED_OFFSET,
                Defect::not_zero(Structure::Trailer),
            ));
        }
        Ok(Trailer {
            version,
            archive_id: le::array_at(b, ARCHIVE_ID_OFFSET),
            shard_number: le::u32_at(b, SHARD_NUMBER_OFFSET),
            block_count: le::u32_at(b, BLOCK_COUNT_OFFSET),
            record_count: le::u64_at(b, RECORD_COUNT_OFFSET),
            first_ordinal: le::u64_at(b, FIRST_ORDINAL_OFFSET),
            index_offset: le::u64_at(b, INDEX_OFFSET_OFFSET),
            index_len: le::u64_at(b, INDEX_LEN_OFFSET),
            key_heap_len: le::u64_at(b, KEY_HEAP_LEN_OFFSET),
            file_len: le::u64_at(b, FILE_LEN_OFFSET),
            index_crc: le::u32_at(b, INDEX_CRC_OFFSET),
            header_crc: le::u32_at(b, HEADER_CRC_OFFSET),
            raw_bytes: le::u64_at(b, RAW_BYTES_OFFSET),
        })
    }

    /// Offset of a trailer field, for error locations.
    pub(crate) const FILE_LEN_FIELD: usize = FILE_LEN_OFFSET;
    pub(crate) const INDEX_OFFSET_FIELD: usize = INDEX_OFFSET_OFFSET;
    pub(crate) const RECORD_COUNT_FIELD: usize = RECORD_COUNT_OFFSET;
    pub(crate) const BLOCK_COUNT_FIELD: usize = BLOCK_COUNT_OFFSET;
    pub(crate) const HEADER_CRC_FIELD: usize = HEADER_CRC_OFFSET;
    pub(crate) const ARCHIVE_ID_FIELD: usize = ARCHIVE_ID_OFFSET;
    pub(crate) const SHARD_NUMBER_FIELD: usize = SHARD_NUMBER_OFFSET;
    pub(crate) const FIRST_ORDINAL_FIELD: usize = FIRST_ORDINAL_OFFSET;
    pub(crate) const VERSION_FIELD: usize = sealed::VERSION_MAJOR_OFFSET;
    pub(crate) const RAW_BYTES_FIELD: usize = RAW_BYTES_OFFSET;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_flips() {
        let t = Trailer {
            version: crate::format::VERSION_1_0,
            archive_id: [1; 16],
            shard_number: 2,
            block_count: 3,
            record_count: 4,
            first_ordinal: 5,
            index_offset: 6,
            index_len: 7,
            key_heap_len: 8,
            file_len: 9,
            index_crc: 10,
            header_crc: 11,
            raw_bytes: 12,
        };
        let bytes = t.encode();
        assert_eq!(Trailer::decode(&bytes), Ok(t));
        assert_eq!(RESERVED_OFFSET, 104);
        for i in 0..TRAILER_LEN {
            let mut b = bytes;
            b[i] ^= 0x04;
            assert!(Trailer::decode(&b).is_err(), "flip at {i} accepted");
        }
    }
}
