//! The shard header at offset 0 (§3).

use super::{is_valid_align, le, sealed, Codec, DecodeError, VERSION_1_0, VERSION_1_1};
use crate::{Defect, Structure};

/// PNG-style signature: a high-bit byte catches 7-bit transfers, CR LF and LF catch line-ending
/// conversion, 0x1A stops `type` on DOS.
pub const SHARD_MAGIC: [u8; 8] = *b"\x89SHP\r\n\x1a\n";

/// Length of the encoded header.
pub const HEADER_LEN: usize = 128;

/// Largest shard dictionary (§5.5): the ssd profile trains 256 KiB, and a reader
/// holds one prepared copy per open shard.
pub const MAX_DICTIONARY_BYTES: u32 = 1 << 20;

/// Offset of the header's archive id (16 bytes) (§3).
pub const ARCHIVE_ID_OFFSET: usize = sealed::BODY_OFFSET;
/// Offset of the header's shard number (u32) (§3).
pub const SHARD_NUMBER_OFFSET: usize = ARCHIVE_ID_OFFSET + 16;
/// Offset of the header's flags (u32) (§3).
pub const FLAGS_OFFSET: usize = SHARD_NUMBER_OFFSET + 4;
/// Offset of the header's first ordinal (u64) (§3).
pub const FIRST_ORDINAL_OFFSET: usize = FLAGS_OFFSET + 4;
/// Offset of the header's block size (u64) (§3).
pub const BLOCK_BYTES_OFFSET: usize = FIRST_ORDINAL_OFFSET + 8;
/// Offset of the header's target shard size (u64) (§3).
pub const SHARD_BYTES_OFFSET: usize = BLOCK_BYTES_OFFSET + 8;
/// Offset of the header's alignment (u32) (§3).
pub const ALIGN_OFFSET: usize = SHARD_BYTES_OFFSET + 8;
/// Offset of the header's codec byte (§3).
pub const CODEC_OFFSET: usize = ALIGN_OFFSET + 4;
/// Offset of the header's compression level (i8) (§3).
pub const LEVEL_OFFSET: usize = CODEC_OFFSET + 1;
/// Offset of the header's profile byte (§3).
pub const PROFILE_OFFSET: usize = LEVEL_OFFSET + 1;
/// Offset of the header's first reserved byte (§3).
pub const RESERVED_A_OFFSET: usize = PROFILE_OFFSET + 1;
/// Offset of the header's dictionary length (u32) (§3).
pub const DICTIONARY_LEN_OFFSET: usize = RESERVED_A_OFFSET + 1;
/// Offset of the header's dictionary CRC (u32) (§3).
pub const DICTIONARY_CRC_OFFSET: usize = DICTIONARY_LEN_OFFSET + 4;
/// Offset of the header's second reserved run (§3).
pub const RESERVED_B_OFFSET: usize = DICTIONARY_CRC_OFFSET + 4;
/// Offset of the header CRC, which covers bytes `0..CRC_OFFSET`.
pub const CRC_OFFSET: usize = HEADER_LEN - 4;

/// The decoded, validated shard header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    /// Identifies the archive; equal in every shard of one archive.
    pub archive_id: [u8; 16],
    /// This shard's number, counting from 0 in archive order.
    pub shard_number: u32,
    /// Global ordinal of the shard's first sample.
    pub first_ordinal: u64,
    /// The writer's target raw size of a block.
    pub block_bytes: u64,
    /// The writer's target size of a shard file.
    pub shard_bytes: u64,
    /// Alignment of every block, the index and the file length.
    pub align: u32,
    /// The codec the writer tried for each block.
    pub codec: Codec,
    /// The zstd level (0 when `codec` is stored).
    pub level: i8,
    /// The media profile the writer used (§9); informational.
    pub profile: u8,
    /// Length of the shard's zstd dictionary, which follows the header (§5.5); 0 for none.
    /// A shard with a dictionary is version 1.1, any other 1.0.
    pub dictionary_len: u32,
    /// CRC-32 of the dictionary bytes; 0 without one.
    pub dictionary_crc: u32,
    /// The stored header CRC (also copied into the trailer).
    pub crc: u32,
}

impl ShardHeader {
    /// Encodes the header; the CRC is computed here and stored in `self.crc` is ignored.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b: [u8; HEADER_LEN] = sealed::new(&SHARD_MAGIC, self.version());
        le::put(&mut b, ARCHIVE_ID_OFFSET, &self.archive_id);
        le::put(
            &mut b,
            SHARD_NUMBER_OFFSET,
            &self.shard_number.to_le_bytes(),
        );
        le::put(
            &mut b,
            FIRST_ORDINAL_OFFSET,
            &self.first_ordinal.to_le_bytes(),
        );
        le::put(&mut b, BLOCK_BYTES_OFFSET, &self.block_bytes.to_le_bytes());
        le::put(&mut b, SHARD_BYTES_OFFSET, &self.shard_bytes.to_le_bytes());
        le::put(&mut b, ALIGN_OFFSET, &self.align.to_le_bytes());
        le::put(&mut b, CODEC_OFFSET, &[self.codec.to_byte()]);
        le::put(&mut b, LEVEL_OFFSET, &self.level.to_le_bytes());
        le::put(&mut b, PROFILE_OFFSET, &[self.profile]);
        le::put(
            &mut b,
            DICTIONARY_LEN_OFFSET,
            &self.dictionary_len.to_le_bytes(),
        );
        le::put(
            &mut b,
            DICTIONARY_CRC_OFFSET,
            &self.dictionary_crc.to_le_bytes(),
        );
        sealed::seal(&mut b);
        b
    }

    /// Decodes and validates a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<ShardHeader, DecodeError> {
        let version = sealed::open(b, &SHARD_MAGIC, Structure::ShardHeader)?;
        let crc = le::u32_at(b, CRC_OFFSET);
        let flags = le::u32_at(b, FLAGS_OFFSET);
        if flags != 0 {
            return Err(DecodeError::invalid(
                FLAGS_OFFSET,
                Structure::ShardHeader,
                "flags",
                0,
                flags,
            ));
        }
        let align = le::u32_at(b, ALIGN_OFFSET);
        if !is_valid_align(align) {
            return Err(DecodeError::invalid(
                ALIGN_OFFSET,
                Structure::ShardHeader,
                "alignment",
                "a power of two from 64 to 16777216",
                align,
            ));
        }
        let codec_byte = le::u8_at(b, CODEC_OFFSET);
        let codec = Codec::from_byte(codec_byte)
            .filter(|&c| c != Codec::ZstdDictionary)
            .ok_or_else(|| {
                DecodeError::invalid(
                    CODEC_OFFSET,
                    Structure::ShardHeader,
                    "codec",
                    "0 or 1",
                    codec_byte,
                )
            })?;
        if !le::all_zero(b, RESERVED_A_OFFSET, DICTIONARY_LEN_OFFSET)
            || !le::all_zero(b, RESERVED_B_OFFSET, CRC_OFFSET)
        {
            return Err(DecodeError::new(
                RESERVED_A_OFFSET,
                Defect::not_zero(Structure::ShardHeader),
            ));
        }
        let dictionary_len = le::u32_at(b, DICTIONARY_LEN_OFFSET);
        let dictionary_crc = le::u32_at(b, DICTIONARY_CRC_OFFSET);
        if dictionary_len > MAX_DICTIONARY_BYTES || (dictionary_len > 0 && codec != Codec::Zstd) {
            return Err(DecodeError::invalid(
                DICTIONARY_LEN_OFFSET,
                Structure::ShardHeader,
                "dictionary length",
                format!("0, or 1 to {MAX_DICTIONARY_BYTES} with codec 1"),
                dictionary_len,
            ));
        }
        if dictionary_len == 0 && dictionary_crc != 0 {
            return Err(DecodeError::invalid(
                DICTIONARY_CRC_OFFSET,
                Structure::ShardHeader,
                "dictionary crc without a dictionary",
                0,
                dictionary_crc,
            ));
        }
        let expected = if dictionary_len > 0 {
            VERSION_1_1
        } else {
            VERSION_1_0
        };
        if version != expected {
            // The lowest version that describes the shard, and no other: one encoding.
            return Err(DecodeError::invalid(
                sealed::VERSION_MAJOR_OFFSET,
                Structure::ShardHeader,
                "version",
                format!("{}.{} for this dictionary length", expected.0, expected.1),
                format!("{}.{}", version.0, version.1),
            ));
        }
        Ok(ShardHeader {
            archive_id: le::array_at(b, ARCHIVE_ID_OFFSET),
            shard_number: le::u32_at(b, SHARD_NUMBER_OFFSET),
            first_ordinal: le::u64_at(b, FIRST_ORDINAL_OFFSET),
            block_bytes: le::u64_at(b, BLOCK_BYTES_OFFSET),
            shard_bytes: le::u64_at(b, SHARD_BYTES_OFFSET),
            align,
            codec,
            level: i8::from_le_bytes([le::u8_at(b, LEVEL_OFFSET)]),
            profile: le::u8_at(b, PROFILE_OFFSET),
            dictionary_len,
            dictionary_crc,
            crc,
        })
    }

    /// The version this header carries: 1.1 with a dictionary, 1.0 without.
    pub fn version(&self) -> (u16, u16) {
        if self.dictionary_len > 0 {
            VERSION_1_1
        } else {
            VERSION_1_0
        }
    }

    /// The codec of this shard's compressed blocks: 2 with a dictionary, 1 without (§5.5).
    pub fn compressed_codec(&self) -> Codec {
        if self.dictionary_len > 0 {
            Codec::ZstdDictionary
        } else {
            Codec::Zstd
        }
    }

    /// File offset of the dictionary: right after the header.
    pub fn dictionary_offset(&self) -> u64 {
        HEADER_LEN as u64
    }

    /// Offset of the first block: the header and the dictionary, rounded up to the
    /// alignment.
    pub fn data_offset(&self) -> u64 {
        super::align_up(
            HEADER_LEN as u64 + u64::from(self.dictionary_len),
            u64::from(self.align),
        )
        .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ShardHeader {
        ShardHeader {
            archive_id: [7; 16],
            shard_number: 3,
            first_ordinal: 1000,
            block_bytes: 1 << 20,
            shard_bytes: 1 << 28,
            align: 4096,
            codec: Codec::Zstd,
            level: 3,
            profile: 0,
            dictionary_len: 0,
            dictionary_crc: 0,
            crc: 0,
        }
    }

    #[test]
    fn roundtrip() {
        let h = sample();
        let bytes = h.encode();
        let back = ShardHeader::decode(&bytes).unwrap();
        assert_eq!(ShardHeader { crc: back.crc, ..h }, back);
        assert_eq!(RESERVED_A_OFFSET, 71);
        assert_eq!(DICTIONARY_LEN_OFFSET, 72);
        assert_eq!(RESERVED_B_OFFSET, 80);
        let with_dictionary = ShardHeader {
            dictionary_len: 32768,
            dictionary_crc: 0x1234_5678,
            ..h
        };
        let bytes = with_dictionary.encode();
        assert_eq!(&bytes[8..12], &[1, 0, 1, 0]);
        let back = ShardHeader::decode(&bytes).unwrap();
        assert_eq!(back.dictionary_len, 32768);
        assert_eq!(back.data_offset(), 4096 * 9);
    }

    #[test]
    fn every_byte_flip_is_rejected() {
        let bytes = sample().encode();
        for i in 0..HEADER_LEN {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert!(ShardHeader::decode(&b).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        let mut b = sample().encode();
        b[sealed::VERSION_MAJOR_OFFSET] = 2;
        let crc = crate::format::checksum::crc32(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            ShardHeader::decode(&b),
            Err(DecodeError::Version {
                offset: sealed::VERSION_MAJOR_OFFSET as u64,
                got: (2, 0)
            })
        );
    }
}
