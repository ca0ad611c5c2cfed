//! A shard's identity, and the bytes that carry it (§13.5): the archive id, the shard number
//! and the first ordinal, written in the header, in every block header (number and ordinal)
//! and in the trailer. Rewriting them, and the CRCs that cover them, is all it takes to move
//! a shard into another archive: nothing else in a shard depends on its identity (the block
//! table, record table and key order count records from 0 within the shard; payloads and
//! dictionaries hold no ordinal).
//!
//! Each function checks that the structure decodes before it rewrites it (a damaged one is
//! never resealed), changes only the identity fields and the structure's CRC, and leaves every
//! other byte as it was.

use super::block::{self, BlockHeader, BLOCK_HEADER_LEN};
use super::header::{self, ShardHeader, HEADER_LEN};
use super::trailer::{Trailer, TRAILER_LEN};
use super::{checksum, le, sealed, DecodeError};

/// Where a shard stands in its archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The archive's id (header and trailer).
    pub archive_id: [u8; 16],
    /// The shard's number (header, trailer, every block header).
    pub shard_number: u32,
    /// The ordinal of the shard's record 0 (header and trailer; a block header holds it plus
    /// the block's first record number).
    pub first_ordinal: u64,
}

impl Identity {
    /// The identity a decoded header carries.
    pub fn of(header: &ShardHeader) -> Identity {
        Identity {
            archive_id: header.archive_id,
            shard_number: header.shard_number,
            first_ordinal: header.first_ordinal,
        }
    }
}

/// Rewrites a shard header to carry `to`, and its `header_crc` (bytes 124..128); returns the
/// decoded header as it was and the new `header_crc`, which the trailer copies.
///
/// # Errors
/// The header does not decode (its own magic, version, CRC or field rules).
pub fn rewrite_header(
    b: &mut [u8; HEADER_LEN],
    to: &Identity,
) -> Result<(ShardHeader, u32), DecodeError> {
    let was = ShardHeader::decode(b)?;
    le::put(b, header::ARCHIVE_ID_OFFSET, &to.archive_id);
    le::put(
        b,
        header::SHARD_NUMBER_OFFSET,
        &to.shard_number.to_le_bytes(),
    );
    le::put(
        b,
        header::FIRST_ORDINAL_OFFSET,
        &to.first_ordinal.to_le_bytes(),
    );
    sealed::seal(b);
    Ok((was, le::u32_at(b, header::CRC_OFFSET)))
}

/// Rewrites a block header to belong to shard `shard_number` with its first record at
/// `first_ordinal`, and its `block_header_crc` (bytes 60..64); returns the decoded header as
/// it was.
///
/// # Errors
/// The block header does not decode.
pub fn rewrite_block_header(
    b: &mut [u8; BLOCK_HEADER_LEN],
    shard_number: u32,
    first_ordinal: u64,
) -> Result<BlockHeader, DecodeError> {
    let was = BlockHeader::decode(b)?;
    le::put(b, block::SHARD_NUMBER_OFFSET, &shard_number.to_le_bytes());
    le::put(b, block::FIRST_ORDINAL_OFFSET, &first_ordinal.to_le_bytes());
    let crc = checksum::crc32(b.get(..block::CRC_OFFSET).unwrap_or_default());
    le::put(b, block::CRC_OFFSET, &crc.to_le_bytes());
    Ok(was)
}

/// Rewrites a trailer to carry `to` and the header CRC copy `header_crc`, and its
/// `trailer_crc` (bytes 124..128); returns the decoded trailer as it was.
///
/// # Errors
/// The trailer does not decode.
pub fn rewrite_trailer(
    b: &mut [u8; TRAILER_LEN],
    to: &Identity,
    header_crc: u32,
) -> Result<Trailer, DecodeError> {
    let was = Trailer::decode(b)?;
    le::put(b, Trailer::ARCHIVE_ID_FIELD, &to.archive_id);
    le::put(
        b,
        Trailer::SHARD_NUMBER_FIELD,
        &to.shard_number.to_le_bytes(),
    );
    le::put(
        b,
        Trailer::FIRST_ORDINAL_FIELD,
        &to.first_ordinal.to_le_bytes(),
    );
    le::put(b, Trailer::HEADER_CRC_FIELD, &header_crc.to_le_bytes());
    sealed::seal(b);
    Ok(was)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Codec;

    fn header() -> ShardHeader {
        ShardHeader {
            archive_id: [7; 16],
            shard_number: 3,
            first_ordinal: 1000,
            block_bytes: 1 << 20,
            shard_bytes: 1 << 28,
            align: 4096,
            codec: Codec::Zstd,
            level: 3,
            profile: 2,
            dictionary_len: 4096,
            dictionary_crc: 0xdead_beef,
            crc: 0,
        }
    }

    const TO: Identity = Identity {
        archive_id: [9; 16],
        shard_number: 41,
        first_ordinal: 123_456,
    };

    /// The byte positions at which `a` and `b` differ.
    fn differing(a: &[u8], b: &[u8]) -> Vec<usize> {
        (0..a.len()).filter(|&i| a[i] != b[i]).collect()
    }

    #[test]
    fn a_rewritten_header_is_the_one_the_writer_would_encode() {
        let h = header();
        let mut b = h.encode();
        let before = b;
        let (was, crc) = rewrite_header(&mut b, &TO).unwrap();
        assert_eq!(was.first_ordinal, 1000);
        let want = ShardHeader {
            archive_id: TO.archive_id,
            shard_number: TO.shard_number,
            first_ordinal: TO.first_ordinal,
            ..h
        };
        assert_eq!(b, want.encode());
        assert_eq!(ShardHeader::decode(&b).unwrap().crc, crc);
        assert!(differing(&before, &b)
            .iter()
            .all(|&i| (16..48).contains(&i) || i >= 124));
    }

    #[test]
    fn a_rewritten_block_header_changes_its_number_ordinal_and_crc_only() {
        let h = BlockHeader {
            shard_number: 3,
            block_number: 5,
            first_ordinal: 1010,
            record_count: 4,
            codec: Codec::ZstdDictionary,
            stored_len: 100,
            raw_len: 600,
            payload_crc: 77,
        };
        let mut b = h.encode();
        let before = b;
        assert_eq!(rewrite_block_header(&mut b, 41, 123_466).unwrap(), h);
        let want = BlockHeader {
            shard_number: 41,
            first_ordinal: 123_466,
            ..h
        };
        assert_eq!(b, want.encode());
        assert!(differing(&before, &b)
            .iter()
            .all(|&i| (8..12).contains(&i) || (16..24).contains(&i) || i >= 60));
    }

    #[test]
    fn a_rewritten_trailer_changes_its_identity_header_crc_copy_and_crc_only() {
        let t = Trailer {
            version: crate::format::VERSION_1_1,
            archive_id: [7; 16],
            shard_number: 3,
            block_count: 2,
            record_count: 4,
            first_ordinal: 1000,
            index_offset: 8192,
            index_len: 300,
            key_heap_len: 92,
            file_len: 12288,
            index_crc: 10,
            header_crc: 11,
            raw_bytes: 12,
        };
        let mut b = t.encode();
        let before = b;
        assert_eq!(rewrite_trailer(&mut b, &TO, 0x1234_5678).unwrap(), t);
        let want = Trailer {
            archive_id: TO.archive_id,
            shard_number: TO.shard_number,
            first_ordinal: TO.first_ordinal,
            header_crc: 0x1234_5678,
            ..t
        };
        assert_eq!(b, want.encode());
        let allowed = |i: usize| {
            (16..36).contains(&i) || (48..56).contains(&i) || (92..96).contains(&i) || i >= 124
        };
        assert!(differing(&before, &b).into_iter().all(allowed));
    }

    #[test]
    fn damaged_structures_are_not_resealed() {
        let mut b = header().encode();
        b[60] ^= 1;
        let damaged = b;
        assert!(rewrite_header(&mut b, &TO).is_err());
        assert_eq!(b, damaged, "left as it was");
        let mut t = [0u8; TRAILER_LEN];
        assert!(rewrite_trailer(&mut t, &TO, 0).is_err());
        let mut bh = [0u8; BLOCK_HEADER_LEN];
        assert!(rewrite_block_header(&mut bh, 0, 0).is_err());
    }
}
