//! The block header that starts every data block (§5). Its sync marker lets a scanner find
//! blocks without the index.

use super::{check_crc, le, Codec, DecodeError};
use crate::{Defect, Structure};

/// Sync marker at the start of every block header.
pub const BLOCK_SYNC: [u8; 8] = *b"\x89SPB\r\n\x1a\n";

/// Length of the encoded block header.
pub const BLOCK_HEADER_LEN: usize = 64;

const SYNC_OFFSET: usize = 0;
/// Offset of the block header's shard number (u32).
pub const SHARD_NUMBER_OFFSET: usize = SYNC_OFFSET + 8;
/// Offset of the block number (u32).
pub const BLOCK_NUMBER_OFFSET: usize = SHARD_NUMBER_OFFSET + 4;
/// Offset of the block's first ordinal (u64).
pub const FIRST_ORDINAL_OFFSET: usize = BLOCK_NUMBER_OFFSET + 4;
/// Offset of the block's record count (u32).
pub const RECORD_COUNT_OFFSET: usize = FIRST_ORDINAL_OFFSET + 8;
/// Offset of the block header's codec byte (§5.1).
pub const CODEC_OFFSET: usize = RECORD_COUNT_OFFSET + 4;
const RESERVED_A_OFFSET: usize = CODEC_OFFSET + 1;
/// Offset of the stored payload length (u64).
pub const STORED_LEN_OFFSET: usize = RESERVED_A_OFFSET + 3;
/// Offset of the decoded payload length (u64).
pub const RAW_LEN_OFFSET: usize = STORED_LEN_OFFSET + 8;
/// Offset of the payload CRC (u32).
pub const PAYLOAD_CRC_OFFSET: usize = RAW_LEN_OFFSET + 8;
const RESERVED_B_OFFSET: usize = PAYLOAD_CRC_OFFSET + 4;
/// Offset of the header CRC, which covers bytes `0..CRC_OFFSET`.
pub const CRC_OFFSET: usize = BLOCK_HEADER_LEN - 4;

/// A decoded block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The shard this block belongs to.
    pub shard_number: u32,
    /// The block's number within its shard, from 0.
    pub block_number: u32,
    /// Global ordinal of the block's first record.
    pub first_ordinal: u64,
    /// Number of records in the block (at least 1).
    pub record_count: u32,
    /// How the payload is stored.
    pub codec: Codec,
    /// Length of the payload as stored, following this header.
    pub stored_len: u64,
    /// Length of the payload once decoded (equal to `stored_len` when stored).
    pub raw_len: u64,
    /// CRC-32 of the stored payload bytes.
    pub payload_crc: u32,
}

impl BlockHeader {
    /// Encodes the header with its CRC.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        le::put(&mut b, SYNC_OFFSET, &BLOCK_SYNC);
        le::put(
            &mut b,
            SHARD_NUMBER_OFFSET,
            &self.shard_number.to_le_bytes(),
        );
        le::put(
            &mut b,
            BLOCK_NUMBER_OFFSET,
            &self.block_number.to_le_bytes(),
        );
        le::put(
            &mut b,
            FIRST_ORDINAL_OFFSET,
            &self.first_ordinal.to_le_bytes(),
        );
        le::put(
            &mut b,
            RECORD_COUNT_OFFSET,
            &self.record_count.to_le_bytes(),
        );
        le::put(&mut b, CODEC_OFFSET, &[self.codec.to_byte()]);
        le::put(&mut b, STORED_LEN_OFFSET, &self.stored_len.to_le_bytes());
        le::put(&mut b, RAW_LEN_OFFSET, &self.raw_len.to_le_bytes());
        le::put(&mut b, PAYLOAD_CRC_OFFSET, &self.payload_crc.to_le_bytes());
        let crc = super::checksum::crc32(b.get(..CRC_OFFSET).unwrap_or_default());
        le::put(&mut b, CRC_OFFSET, &crc.to_le_bytes());
        b
    }

    /// Decodes and validates a block header.
    pub fn decode(b: &[u8; BLOCK_HEADER_LEN]) -> Result<BlockHeader, DecodeError> {
        let sync: [u8; 8] = le::array_at(b, SYNC_OFFSET);
        if sync != BLOCK_SYNC {
            return Err(DecodeError::new(
                SYNC_OFFSET,
                Defect::magic(Structure::BlockHeader, &BLOCK_SYNC, &sync),
            ));
        }
        check_crc(
            le::u32_at(b, CRC_OFFSET),
            b.get(..CRC_OFFSET).unwrap_or_default(),
            CRC_OFFSET,
            Structure::BlockHeader,
        )?;
        let codec_byte = le::u8_at(b, CODEC_OFFSET);
        let codec = Codec::from_byte(codec_byte).ok_or_else(|| {
            DecodeError::invalid(
                CODEC_OFFSET,
                Structure::BlockHeader,
                "codec",
                "0, 1 or 2",
                codec_byte,
            )
        })?;
        if !le::all_zero(b, RESERVED_A_OFFSET, STORED_LEN_OFFSET)
            || !le::all_zero(b, RESERVED_B_OFFSET, CRC_OFFSET)
        {
            return Err(DecodeError::new(
                RESERVED_A_OFFSET,
                Defect::not_zero(Structure::BlockHeader),
            ));
        }
        let header = BlockHeader {
            shard_number: le::u32_at(b, SHARD_NUMBER_OFFSET),
            block_number: le::u32_at(b, BLOCK_NUMBER_OFFSET),
            first_ordinal: le::u64_at(b, FIRST_ORDINAL_OFFSET),
            record_count: le::u32_at(b, RECORD_COUNT_OFFSET),
            codec,
            stored_len: le::u64_at(b, STORED_LEN_OFFSET),
            raw_len: le::u64_at(b, RAW_LEN_OFFSET),
            payload_crc: le::u32_at(b, PAYLOAD_CRC_OFFSET),
        };
        if header
            .first_ordinal
            .checked_add(u64::from(header.record_count))
            .is_none()
        {
            return Err(DecodeError::invalid(
                FIRST_ORDINAL_OFFSET,
                Structure::BlockHeader,
                "first ordinal",
                "an ordinal range within 64 bits",
                header.first_ordinal,
            ));
        }
        if header.record_count == 0 {
            return Err(DecodeError::invalid(
                RECORD_COUNT_OFFSET,
                Structure::BlockHeader,
                "record count",
                "at least 1",
                0,
            ));
        }
        if codec != Codec::Stored && header.stored_len >= header.raw_len {
            // A zstd block is only written when it is smaller; so a reader can tell the
            // codec from the lengths alone (§5.2).
            return Err(DecodeError::invalid(
                STORED_LEN_OFFSET,
                Structure::BlockHeader,
                "compressed length",
                format!("less than the decoded {}", header.raw_len),
                header.stored_len,
            ));
        }
        if codec == Codec::Stored && header.stored_len != header.raw_len {
            return Err(DecodeError::invalid(
                RAW_LEN_OFFSET,
                Structure::BlockHeader,
                "stored length",
                header.stored_len,
                header.raw_len,
            ));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_flips() {
        let h = BlockHeader {
            shard_number: 1,
            block_number: 2,
            first_ordinal: 3,
            record_count: 4,
            codec: Codec::Zstd,
            stored_len: 5,
            raw_len: 600,
            payload_crc: 7,
        };
        let bytes = h.encode();
        assert_eq!(BlockHeader::decode(&bytes), Ok(h));
        assert_eq!(RESERVED_B_OFFSET, 52);
        for i in 0..BLOCK_HEADER_LEN {
            let mut b = bytes;
            b[i] ^= 0x80;
            assert!(BlockHeader::decode(&b).is_err(), "flip at {i} accepted");
        }
    }
}
