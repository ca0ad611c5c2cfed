//! Tape stream framing (§16): a whole archive as one stream of fixed-size records.
//!
//! ```text
//! [start entry] [shard 0] [checkpoint entry] [shard 1] [checkpoint entry] ... [final entry]
//! ```
//!
//! Every item starts on a record boundary and fills whole records (zero padding). A shard is
//! its file's bytes unchanged. A manifest entry is one record holding this 128-byte entry
//! header, followed by the manifest JSON in as many records as it needs.

use super::{le, sealed, DecodeError};
use crate::{Defect, Structure};

/// Signature of a manifest entry.
pub const ENTRY_MAGIC: [u8; 8] = *b"\x89SPM\r\n\x1a\n";

/// Length of the encoded entry header.
pub const ENTRY_HEADER_LEN: usize = 128;

pub(crate) const RECORD_SIZE_OFFSET: usize = sealed::BODY_OFFSET;
pub(crate) const KIND_OFFSET: usize = RECORD_SIZE_OFFSET + 4;
const RESERVED_A_OFFSET: usize = KIND_OFFSET + 1;
pub(crate) const GENERATION_OFFSET: usize = RESERVED_A_OFFSET + 3;
pub(crate) const MANIFEST_LEN_OFFSET: usize = GENERATION_OFFSET + 8;
pub(crate) const SELF_OFFSET: usize = MANIFEST_LEN_OFFSET + 8;
pub(crate) const PREVIOUS_OFFSET: usize = SELF_OFFSET + 8;
/// Offset of the archive id in a stream entry header.
pub const ARCHIVE_ID_OFFSET: usize = PREVIOUS_OFFSET + 8;
pub(crate) const DIGEST_OFFSET: usize = ARCHIVE_ID_OFFSET + 16;
const RESERVED_B_OFFSET: usize = DIGEST_OFFSET + 32;
const CRC_OFFSET: usize = ENTRY_HEADER_LEN - 4;

/// `previous` of the first entry.
pub const NO_PREVIOUS: u64 = u64::MAX;

/// What a manifest entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// The first record of a stream: no manifest, tells the record size.
    Start,
    /// The manifest of every shard so far; a stream torn later keeps these.
    Checkpoint,
    /// The last manifest; it closes the stream.
    Final,
}

impl EntryKind {
    fn to_byte(self) -> u8 {
        match self {
            EntryKind::Start => 0,
            EntryKind::Checkpoint => 1,
            EntryKind::Final => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(EntryKind::Start),
            1 => Some(EntryKind::Checkpoint),
            2 => Some(EntryKind::Final),
            _ => None,
        }
    }
}

/// A decoded manifest-entry header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// The stream's record size: every item fills whole records of this size.
    pub record_size: u32,
    /// What the entry is.
    pub kind: EntryKind,
    /// 0 for the start entry, then one more for each manifest entry.
    pub generation: u64,
    /// Length of the manifest JSON that follows (0 for the start entry).
    pub manifest_len: u64,
    /// Stream offset of this entry.
    pub self_offset: u64,
    /// Stream offset of the previous manifest entry, or [`NO_PREVIOUS`].
    pub previous: u64,
    /// The archive id.
    pub archive_id: [u8; 16],
    /// BLAKE3 of the manifest bytes.
    pub digest: [u8; 32],
}

impl EntryHeader {
    /// Encodes the header with its CRC.
    pub fn encode(&self) -> [u8; ENTRY_HEADER_LEN] {
        let mut b: [u8; ENTRY_HEADER_LEN] = sealed::new(&ENTRY_MAGIC, super::VERSION_1_0);
        le::put(&mut b, RECORD_SIZE_OFFSET, &self.record_size.to_le_bytes());
        le::put(&mut b, KIND_OFFSET, &[self.kind.to_byte()]);
        le::put(&mut b, GENERATION_OFFSET, &self.generation.to_le_bytes());
        le::put(
            &mut b,
            MANIFEST_LEN_OFFSET,
            &self.manifest_len.to_le_bytes(),
        );
        le::put(&mut b, SELF_OFFSET, &self.self_offset.to_le_bytes());
        le::put(&mut b, PREVIOUS_OFFSET, &self.previous.to_le_bytes());
        le::put(&mut b, ARCHIVE_ID_OFFSET, &self.archive_id);
        le::put(&mut b, DIGEST_OFFSET, &self.digest);
        sealed::seal(&mut b);
        b
    }

    /// Decodes and validates an entry header.
    pub fn decode(b: &[u8; ENTRY_HEADER_LEN]) -> Result<EntryHeader, DecodeError> {
        sealed::open(b, &ENTRY_MAGIC, Structure::StreamEntry)?;
        let record_size = le::u32_at(b, RECORD_SIZE_OFFSET);
        // §16.1: a power of two from 4 KiB to 8 MiB.
        let (min, max) = (
            crate::archive::media::MIN_STREAM_RECORD,
            crate::archive::media::MAX_STREAM_RECORD,
        );
        if !record_size.is_power_of_two() || !(min..=max).contains(&record_size) {
            return Err(DecodeError::invalid(
                RECORD_SIZE_OFFSET,
                Structure::StreamEntry,
                "record size",
                format!("a power of two from {min} to {max}"),
                record_size,
            ));
        }
        let kind_byte = le::u8_at(b, KIND_OFFSET);
        let kind = EntryKind::from_byte(kind_byte).ok_or_else(|| {
            DecodeError::invalid(
                KIND_OFFSET,
                Structure::StreamEntry,
                "kind",
                "0, 1 or 2",
                kind_byte,
            )
        })?;
        if !le::all_zero(b, RESERVED_A_OFFSET, GENERATION_OFFSET)
            || !le::all_zero(b, RESERVED_B_OFFSET, CRC_OFFSET)
        {
            return Err(DecodeError::new(
                RESERVED_A_OFFSET,
                Defect::not_zero(Structure::StreamEntry),
            ));
        }
        Ok(EntryHeader {
            record_size,
            kind,
            generation: le::u64_at(b, GENERATION_OFFSET),
            manifest_len: le::u64_at(b, MANIFEST_LEN_OFFSET),
            self_offset: le::u64_at(b, SELF_OFFSET),
            previous: le::u64_at(b, PREVIOUS_OFFSET),
            archive_id: le::array_at(b, ARCHIVE_ID_OFFSET),
            digest: le::array_at(b, DIGEST_OFFSET),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_flips() {
        let h = EntryHeader {
            record_size: 1 << 19,
            kind: EntryKind::Checkpoint,
            generation: 3,
            manifest_len: 700,
            self_offset: 1 << 30,
            previous: 1 << 29,
            archive_id: [9; 16],
            digest: [7; 32],
        };
        let b = h.encode();
        assert_eq!(EntryHeader::decode(&b), Ok(h));
        assert_eq!(RESERVED_B_OFFSET, 104);
        for i in 0..ENTRY_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x08;
            assert!(EntryHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
    }
}
