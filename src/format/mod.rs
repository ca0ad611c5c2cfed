//! The wire layer: byte layouts of the shard file's structures, with no I/O.
//!
//! Every structure is fixed-width little-endian and decoded field by field with
//! `from_le_bytes` (never by casting). Section numbers (§) refer to `format-spec.md`.

pub mod block;
pub mod checksum;
pub mod header;
pub mod identity;
pub mod index;
pub mod parity;
pub mod record;
pub mod stream;
pub mod trailer;

/// The highest format version this build reads and writes: (major, minor). A reader rejects
/// any other major and any higher minor (§10). Each structure carries the lowest version
/// that defines all of its bytes: a shard with a dictionary is 1.1, every other is 1.0; a
/// parity header is 1.2; a manifest of a later generation is 1.3.
pub const FORMAT_VERSION: (u16, u16) = (1, 3);

/// Version 1.0: every structure that uses no 1.1 feature carries it, so that 1.0 readers
/// read every archive that needs nothing newer.
pub const VERSION_1_0: (u16, u16) = (1, 0);

/// Version 1.1: shard dictionaries (§5.5).
pub const VERSION_1_1: (u16, u16) = (1, 1);

/// Version 1.2: the archive's root digest in the parity header (§17.1).
pub const VERSION_1_2: (u16, u16) = (1, 2);

/// Version 1.3: generations, the manifest's `generation` member (§11.3).
pub const VERSION_1_3: (u16, u16) = (1, 3);

/// Required alignment bounds for the `align_bytes` layout parameter (§3).
pub const MIN_ALIGN_BYTES: u32 = 64;
/// Largest alignment a writer may choose: 16 MiB, the largest tape record the drives in docs/design.md §3 accept.
pub const MAX_ALIGN_BYTES: u32 = 16 << 20;

/// Longest sample key, in bytes of UTF-8 (Linux PATH_MAX, so that any key extracts).
pub const MAX_KEY_BYTES: usize = 4096;
/// Longest field name, in bytes of UTF-8 (Linux NAME_MAX).
pub const MAX_FIELD_NAME_BYTES: usize = 255;

/// Rounds `offset` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(offset: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    offset.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// True when `align` is an allowed alignment (§3).
pub fn is_valid_align(align: u32) -> bool {
    align.is_power_of_two() && (MIN_ALIGN_BYTES..=MAX_ALIGN_BYTES).contains(&align)
}

/// The block payload codec (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// The payload is the raw record bytes.
    Stored,
    /// The payload is one zstd frame holding the raw record bytes.
    Zstd,
    /// The payload is a frame table and one zstd frame per record, each compressed with the
    /// shard's dictionary, so that one record decodes alone (§5.5; version 1.1).
    ZstdDictionary,
}

impl Codec {
    /// The codec's wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Codec::Stored => 0,
            Codec::Zstd => 1,
            Codec::ZstdDictionary => 2,
        }
    }

    /// Decodes a wire byte.
    pub fn from_byte(byte: u8) -> Option<Codec> {
        match byte {
            0 => Some(Codec::Stored),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdDictionary),
            _ => None,
        }
    }

    /// The codec's name as shown to users and written in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Stored => "none",
            Codec::Zstd => "zstd",
            Codec::ZstdDictionary => "zstd-dictionary",
        }
    }
}

/// Little-endian field access on fixed buffers. Out-of-range reads yield 0 and writes are
/// dropped; callers pass constant offsets within fixed-size arrays, which unit tests cover.
pub(crate) mod le {
    pub fn u8_at(b: &[u8], at: usize) -> u8 {
        b.get(at).copied().unwrap_or(0)
    }
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        b.get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    }
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    }
    pub fn u64_at(b: &[u8], at: usize) -> u64 {
        b.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
    /// The `N` bytes at a file offset, if they are all there.
    pub fn array_at_offset<const N: usize>(b: &[u8], at: u64) -> Option<[u8; N]> {
        let start = usize::try_from(at).ok()?;
        b.get(start..start.checked_add(N)?)?.try_into().ok()
    }
    pub fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        b.get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
    pub fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    /// True when every byte of `b[from..to]` is zero.
    pub fn all_zero(b: &[u8], from: usize, to: usize) -> bool {
        b.get(from..to).is_some_and(|s| first_nonzero(s).is_none())
    }
    /// The position of the first byte of `s` that is not zero. Padding and fillers are
    /// most of a page-aligned archive's bytes, and every reader checks them: the bytes are
    /// OR-ed 64 at a time, which the compiler vectorizes (a byte loop that stops at the
    /// first non-zero byte it does not), and only a piece that is not zero is searched.
    pub fn first_nonzero(s: &[u8]) -> Option<usize> {
        const PIECE: usize = 64;
        s.chunks(PIECE)
            .position(|piece| piece.iter().fold(0u8, |acc, &x| acc | x) != 0)
            .and_then(|piece| {
                let start = piece * PIECE;
                let found = s.get(start..)?.iter().position(|&x| x != 0)?;
                Some(start + found)
            })
    }
}

/// A structure failed to decode. Offsets are relative to the structure's first byte; the
/// reader adds the structure's position and the file name (see [`DecodeError::at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes at `offset` within the structure are defective.
    Defect {
        /// Offset of the field within the structure.
        offset: u64,
        /// What is wrong.
        defect: crate::Defect,
    },
    /// The version field names a version this build does not read.
    Version {
        /// Offset of the version field within the structure.
        offset: u64,
        /// The version found.
        got: (u16, u16),
    },
}

impl DecodeError {
    /// `defect` at `offset` within the structure.
    pub(crate) fn new(offset: usize, defect: crate::Defect) -> Self {
        DecodeError::Defect {
            offset: offset as u64,
            defect,
        }
    }

    /// A field at `offset` of `structure` holds a value the format forbids.
    pub(crate) fn invalid(
        offset: usize,
        structure: crate::Structure,
        field: &'static str,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        Self::new(
            offset,
            crate::Defect::invalid(structure, field, expected, found),
        )
    }

    /// The same error said of `structure` (see [`crate::Defect`]); versions are unchanged.
    #[must_use]
    pub(crate) fn of(self, structure: crate::Structure) -> Self {
        match self {
            DecodeError::Defect { offset, defect } => DecodeError::Defect {
                offset,
                defect: defect.of(structure),
            },
            v => v,
        }
    }

    /// Turns the defect into an error located in `file` at `base` plus the field offset.
    pub fn at(self, file: &std::path::Path, shard: Option<u32>, base: u64) -> crate::Error {
        let location = |offset: u64| crate::Location {
            file: file.to_path_buf(),
            shard,
            offset: base.saturating_add(offset),
            len: 0,
        };
        match self {
            DecodeError::Defect { offset, defect } => {
                crate::Error::corrupt(location(offset), defect)
            }
            DecodeError::Version { offset, got } => crate::ErrorKind::UnsupportedVersion {
                location: location(offset),
                expected: FORMAT_VERSION,
                got,
            }
            .into(),
        }
    }
}

/// Checks a (major, minor) pair read at `offset`: major 1, minor up to [`FORMAT_VERSION`]'s.
pub(crate) fn check_version(major: u16, minor: u16, offset: usize) -> Result<(), DecodeError> {
    if major == FORMAT_VERSION.0 && minor <= FORMAT_VERSION.1 {
        Ok(())
    } else {
        Err(DecodeError::Version {
            offset: offset as u64,
            got: (major, minor),
        })
    }
}

/// Checks a stored CRC against the CRC of `covered`.
pub(crate) fn check_crc(
    stored: u32,
    covered: &[u8],
    offset: usize,
    structure: crate::Structure,
) -> Result<(), DecodeError> {
    let actual = checksum::crc32(covered);
    if stored == actual {
        Ok(())
    } else {
        Err(DecodeError::new(
            offset,
            crate::Defect::crc(structure, stored, actual),
        ))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The prelude and the closing CRC that the versioned structures share (shard header,
/// trailer, stream entry header, parity header): magic (8 bytes), major and minor version
/// (u16 each), the structure's length (u32), and in the last 4 bytes a CRC-32 of all the
/// bytes before them (§3).
pub(crate) mod sealed {
    use super::{check_crc, check_version, le, DecodeError};
    use crate::{Defect, Structure};

    /// Offset of the major version; the minor follows it.
    pub const VERSION_MAJOR_OFFSET: usize = 8;
    const VERSION_MINOR_OFFSET: usize = VERSION_MAJOR_OFFSET + 2;
    /// Offset of the structure's length.
    pub const LEN_OFFSET: usize = VERSION_MINOR_OFFSET + 2;
    /// Offset of the first field after the prelude.
    pub const BODY_OFFSET: usize = LEN_OFFSET + 4;

    /// A zeroed structure with its prelude written, carrying `version`.
    pub fn new<const N: usize>(magic: &[u8; 8], version: (u16, u16)) -> [u8; N] {
        let mut b = [0u8; N];
        le::put(&mut b, 0, magic);
        le::put(&mut b, VERSION_MAJOR_OFFSET, &version.0.to_le_bytes());
        le::put(&mut b, VERSION_MINOR_OFFSET, &version.1.to_le_bytes());
        le::put(&mut b, LEN_OFFSET, &(N as u32).to_le_bytes());
        b
    }

    /// Writes the closing CRC.
    pub fn seal<const N: usize>(b: &mut [u8; N]) {
        let crc = super::checksum::crc32(b.get(..N - 4).unwrap_or_default());
        le::put(b, N - 4, &crc.to_le_bytes());
    }

    /// Checks magic, then version (a later version may move what the CRC covers, and must
    /// read as unsupported rather than damaged), then the CRC, then the length; returns the
    /// version.
    pub fn open<const N: usize>(
        b: &[u8; N],
        magic: &[u8; 8],
        structure: Structure,
    ) -> Result<(u16, u16), DecodeError> {
        let found: [u8; 8] = le::array_at(b, 0);
        if &found != magic {
            return Err(DecodeError::new(0, Defect::magic(structure, magic, &found)));
        }
        check_version(
            le::u16_at(b, VERSION_MAJOR_OFFSET),
            le::u16_at(b, VERSION_MINOR_OFFSET),
            VERSION_MAJOR_OFFSET,
        )?;
        check_crc(
            le::u32_at(b, N - 4),
            b.get(..N - 4).unwrap_or_default(),
            N - 4,
            structure,
        )?;
        let len = le::u32_at(b, LEN_OFFSET);
        if len as usize != N {
            return Err(DecodeError::invalid(
                LEN_OFFSET, structure, "length", N, len,
            ));
        }
        Ok((
            le::u16_at(b, VERSION_MAJOR_OFFSET),
            le::u16_at(b, VERSION_MINOR_OFFSET),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::le;

    #[test]
    fn the_first_nonzero_byte_is_found_wherever_it_is() {
        assert_eq!(le::first_nonzero(&[]), None);
        for len in [1, 63, 64, 65, 200] {
            assert_eq!(le::first_nonzero(&vec![0; len]), None, "{len} zeros");
            for at in 0..len {
                let mut bytes = vec![0u8; len];
                bytes[at] = 0x80;
                if at + 1 < len {
                    bytes[len - 1] = 1;
                }
                assert_eq!(le::first_nonzero(&bytes), Some(at), "{len} bytes, at {at}");
                assert!(!le::all_zero(&bytes, 0, len));
                assert!(le::all_zero(&bytes, 0, at));
            }
        }
        assert!(
            !le::all_zero(&[0; 4], 2, 5),
            "a range past the end is not zero"
        );
    }
}
