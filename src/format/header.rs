//! The shard header at offset 0 (§3).

use super::{is_valid_align, le, sealed, Codec, Defect};

/// PNG-style signature: a high-bit byte catches 7-bit transfers, CR LF and LF catch line-ending
/// conversion, 0x1A stops `type` on DOS.
pub const SHARD_MAGIC: [u8; 8] = *b"\x89SHP\r\n\x1a\n";

const NAMES: sealed::Names = sealed::Names {
    magic: "shard magic",
    crc: "shard header",
    len: "header length",
};

/// Length of the encoded header.
pub const HEADER_LEN: usize = 128;

const ARCHIVE_ID_OFFSET: usize = sealed::BODY_OFFSET;
const SHARD_NUMBER_OFFSET: usize = ARCHIVE_ID_OFFSET + 16;
const FLAGS_OFFSET: usize = SHARD_NUMBER_OFFSET + 4;
const FIRST_ORDINAL_OFFSET: usize = FLAGS_OFFSET + 4;
const BLOCK_BYTES_OFFSET: usize = FIRST_ORDINAL_OFFSET + 8;
const SHARD_BYTES_OFFSET: usize = BLOCK_BYTES_OFFSET + 8;
const ALIGN_OFFSET: usize = SHARD_BYTES_OFFSET + 8;
const CODEC_OFFSET: usize = ALIGN_OFFSET + 4;
const LEVEL_OFFSET: usize = CODEC_OFFSET + 1;
const PROFILE_OFFSET: usize = LEVEL_OFFSET + 1;
const RESERVED_OFFSET: usize = PROFILE_OFFSET + 1;
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
    /// The stored header CRC (also copied into the trailer).
    pub crc: u32,
}

impl ShardHeader {
    /// Encodes the header; the CRC is computed here and stored in `self.crc` is ignored.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b: [u8; HEADER_LEN] = sealed::new(&SHARD_MAGIC);
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
        sealed::seal(&mut b);
        b
    }

    /// Decodes and validates a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<ShardHeader, Defect> {
        sealed::open(b, &SHARD_MAGIC, &NAMES)?;
        let crc = le::u32_at(b, CRC_OFFSET);
        let flags = le::u32_at(b, FLAGS_OFFSET);
        if flags != 0 {
            return Err(Defect::invalid(FLAGS_OFFSET, "header flags", 0, flags));
        }
        let align = le::u32_at(b, ALIGN_OFFSET);
        if !is_valid_align(align) {
            return Err(Defect::invalid(
                ALIGN_OFFSET,
                "alignment",
                "a power of two from 64 to 16777216",
                align,
            ));
        }
        let codec_byte = le::u8_at(b, CODEC_OFFSET);
        let codec = Codec::from_byte(codec_byte)
            .ok_or_else(|| Defect::invalid(CODEC_OFFSET, "codec", "0 or 1", codec_byte))?;
        if !le::all_zero(b, RESERVED_OFFSET, CRC_OFFSET) {
            return Err(Defect::invalid(
                RESERVED_OFFSET,
                "reserved header bytes",
                "zeros",
                "non-zero",
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
            crc,
        })
    }

    /// Offset of the first block: the header rounded up to the alignment.
    pub fn data_offset(&self) -> u64 {
        super::align_up(HEADER_LEN as u64, u64::from(self.align)).unwrap_or(u64::MAX)
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
            crc: 0,
        }
    }

    #[test]
    fn roundtrip() {
        let h = sample();
        let bytes = h.encode();
        let back = ShardHeader::decode(&bytes).unwrap();
        assert_eq!(ShardHeader { crc: back.crc, ..h }, back);
        assert_eq!(RESERVED_OFFSET, 71);
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
            Err(Defect::Version {
                offset: sealed::VERSION_MAJOR_OFFSET as u64,
                got: (2, 0)
            })
        );
    }
}
