//! The parity file header (§17): `parity.spp` holds Reed-Solomon recovery layers for the
//! files of an archive folder (or of one volume), and the BLAKE3-64 digest (§17.3) of every
//! data and parity chunk. Only the header and the tables as a whole are sealed by CRC-32.
//! The header carries the archive's root digest (§11.2), which binds the parity file to the
//! exact contents it was written for (format 1.2).

use super::{le, sealed, DecodeError, VERSION_1_2};
use crate::{Defect, Structure};

/// Signature of a parity file (and of the copy of its header at its end).
pub const PARITY_MAGIC: [u8; 8] = *b"\x89SPR\r\n\x1a\n";

/// Length of the encoded header.
pub const PARITY_HEADER_LEN: usize = 128;

/// The largest `tables_len` (§17.3, §17.5 rule 2): 1 GiB, four times the manifest limit. A
/// loader refuses larger tables, so a writer refuses to write them.
pub const MAX_TABLES_LEN: u64 = 1 << 30;

/// The largest chunk a loader accepts (§17.5 rule 2): 16 MiB, the largest alignment and so
/// the largest chunk a writer uses (`max(align, 4096)`). A loader holds chunks in memory, so
/// a header may not make it allocate more.
pub const MAX_CHUNK_BYTES: u64 = super::MAX_ALIGN_BYTES as u64;

/// Offset of the archive id in the parity header.
pub const ARCHIVE_ID_OFFSET: usize = sealed::BODY_OFFSET;
const CHUNK_BYTES_OFFSET: usize = ARCHIVE_ID_OFFSET + 16;
const DATA_LAYERS_OFFSET: usize = CHUNK_BYTES_OFFSET + 4;
const PARITY_LAYERS_OFFSET: usize = DATA_LAYERS_OFFSET + 4;
const FILE_COUNT_OFFSET: usize = PARITY_LAYERS_OFFSET + 4;
const LAYER_CHUNKS_OFFSET: usize = FILE_COUNT_OFFSET + 4;
const DATA_CHUNKS_OFFSET: usize = LAYER_CHUNKS_OFFSET + 8;
const TABLES_OFFSET_OFFSET: usize = DATA_CHUNKS_OFFSET + 8;
const TABLES_LEN_OFFSET: usize = TABLES_OFFSET_OFFSET + 8;
const TABLES_CRC_OFFSET: usize = TABLES_LEN_OFFSET + 8;
/// Offset of the archive's root digest (§17.1, format 1.2).
pub const ROOT_OFFSET: usize = TABLES_CRC_OFFSET + 4;
const RESERVED_OFFSET: usize = ROOT_OFFSET + 32;
const CRC_OFFSET: usize = PARITY_HEADER_LEN - 4;

/// A decoded parity header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParityHeader {
    /// The archive's id.
    pub archive_id: [u8; 16],
    /// Bytes per chunk: the unit of checksums and of erasures.
    pub chunk_bytes: u32,
    /// Number of data layers (k): the protected data is cut into k layers of equal length.
    pub data_layers: u32,
    /// Number of parity layers (m).
    pub parity_layers: u32,
    /// Number of protected files.
    pub file_count: u32,
    /// Chunks per layer (L).
    pub layer_chunks: u64,
    /// Chunks of protected data (N ≤ k·L).
    pub data_chunks: u64,
    /// Offset of the tables in the parity file.
    pub tables_offset: u64,
    /// Length of the tables.
    pub tables_len: u64,
    /// CRC-32 of the tables.
    pub tables_crc: u32,
    /// The root digest (§11.2) of the archive whose files the parity file describes: the
    /// 32 bytes whose hex is the manifest's `root`.
    pub root: [u8; 32],
}

impl ParityHeader {
    /// Encodes the header with its CRC.
    pub fn encode(&self) -> [u8; PARITY_HEADER_LEN] {
        let mut b: [u8; PARITY_HEADER_LEN] = sealed::new(&PARITY_MAGIC, VERSION_1_2);
        le::put(&mut b, ARCHIVE_ID_OFFSET, &self.archive_id);
        le::put(&mut b, CHUNK_BYTES_OFFSET, &self.chunk_bytes.to_le_bytes());
        le::put(&mut b, DATA_LAYERS_OFFSET, &self.data_layers.to_le_bytes());
        le::put(
            &mut b,
            PARITY_LAYERS_OFFSET,
            &self.parity_layers.to_le_bytes(),
        );
        le::put(&mut b, FILE_COUNT_OFFSET, &self.file_count.to_le_bytes());
        le::put(
            &mut b,
            LAYER_CHUNKS_OFFSET,
            &self.layer_chunks.to_le_bytes(),
        );
        le::put(&mut b, DATA_CHUNKS_OFFSET, &self.data_chunks.to_le_bytes());
        le::put(
            &mut b,
            TABLES_OFFSET_OFFSET,
            &self.tables_offset.to_le_bytes(),
        );
        le::put(&mut b, TABLES_LEN_OFFSET, &self.tables_len.to_le_bytes());
        le::put(&mut b, TABLES_CRC_OFFSET, &self.tables_crc.to_le_bytes());
        le::put(&mut b, ROOT_OFFSET, &self.root);
        sealed::seal(&mut b);
        b
    }

    /// Decodes and validates a header; the geometry is checked by the parity reader.
    ///
    /// A version above 1.3 is unsupported; 1.0, 1.1 and 1.3 are refused as invalid: 1.0 and
    /// 1.1 headers carry no root, so nothing proves which contents they describe, and 1.3
    /// defines nothing here (§10, §17.1).
    pub fn decode(b: &[u8; PARITY_HEADER_LEN]) -> Result<ParityHeader, DecodeError> {
        let version = sealed::open(b, &PARITY_MAGIC, Structure::ParityHeader)?;
        if version != VERSION_1_2 {
            return Err(DecodeError::invalid(
                sealed::VERSION_MAJOR_OFFSET,
                Structure::ParityHeader,
                "version",
                "1.2 (a parity header bound to the archive's root; protect the archive again)",
                format!("{}.{}", version.0, version.1),
            ));
        }
        if !le::all_zero(b, RESERVED_OFFSET, CRC_OFFSET) {
            return Err(DecodeError::new(
                RESERVED_OFFSET,
                Defect::not_zero(Structure::ParityHeader),
            ));
        }
        Ok(ParityHeader {
            archive_id: le::array_at(b, ARCHIVE_ID_OFFSET),
            chunk_bytes: le::u32_at(b, CHUNK_BYTES_OFFSET),
            data_layers: le::u32_at(b, DATA_LAYERS_OFFSET),
            parity_layers: le::u32_at(b, PARITY_LAYERS_OFFSET),
            file_count: le::u32_at(b, FILE_COUNT_OFFSET),
            layer_chunks: le::u64_at(b, LAYER_CHUNKS_OFFSET),
            data_chunks: le::u64_at(b, DATA_CHUNKS_OFFSET),
            tables_offset: le::u64_at(b, TABLES_OFFSET_OFFSET),
            tables_len: le::u64_at(b, TABLES_LEN_OFFSET),
            tables_crc: le::u32_at(b, TABLES_CRC_OFFSET),
            root: le::array_at(b, ROOT_OFFSET),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_flips() {
        let h = ParityHeader {
            archive_id: [3; 16],
            chunk_bytes: 4096,
            data_layers: 200,
            parity_layers: 30,
            file_count: 4,
            layer_chunks: 77,
            data_chunks: 15_000,
            tables_offset: 1 << 20,
            tables_len: 70_000,
            tables_crc: 9,
            root: [7; 32],
        };
        let b = h.encode();
        assert_eq!(ParityHeader::decode(&b), Ok(h));
        assert_eq!((ROOT_OFFSET, RESERVED_OFFSET), (84, 116));
        assert_eq!(&b[8..12], &[1, 0, 2, 0], "written as 1.2");
        for i in 0..PARITY_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x02;
            assert!(ParityHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn versions_without_a_root_are_refused_and_later_ones_unsupported() {
        let h = ParityHeader {
            archive_id: [3; 16],
            chunk_bytes: 4096,
            data_layers: 1,
            parity_layers: 1,
            file_count: 1,
            layer_chunks: 1,
            data_chunks: 1,
            tables_offset: 8192,
            tables_len: 71,
            tables_crc: 9,
            root: [0; 32],
        };
        let with_minor = |minor: u16| {
            let mut b = h.encode();
            b[10..12].copy_from_slice(&minor.to_le_bytes());
            sealed::seal(&mut b);
            ParityHeader::decode(&b)
        };
        // 1.3 defines nothing in a parity header: invalid like 1.0 and 1.1.
        for minor in [0, 1, 3] {
            assert!(
                matches!(
                    with_minor(minor),
                    Err(DecodeError::Defect {
                        offset: 8,
                        defect: Defect::Invalid {
                            structure: Structure::ParityHeader,
                            ..
                        }
                    })
                ),
                "minor {minor}"
            );
        }
        assert!(matches!(
            with_minor(4),
            Err(DecodeError::Version { got: (1, 4), .. })
        ));
    }
}
