//! Caps that keep hostile input from making the reader allocate or work without bound.

/// Limits applied when reading archives. The defaults accept anything the writer produces
/// with its default settings; raise them only for archives you trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest manifest file read into memory.
    pub max_manifest_bytes: u64,
    /// Largest decoded block (and so largest sample) the reader will decompress.
    pub max_block_bytes: u64,
}

impl Limits {
    /// The default limits: a 256 MiB manifest (about a million shards) and 4 GiB blocks.
    pub const DEFAULT: Limits = Limits {
        max_manifest_bytes: 256 << 20,
        max_block_bytes: 4 << 30,
    };

    /// No limits beyond what the address space allows; for trusted archives only.
    pub fn none() -> Limits {
        Limits {
            max_manifest_bytes: u64::MAX,
            max_block_bytes: u64::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Decoded blocks up to this size are decompressed into a buffer allocated up front; larger
/// ones grow their buffer only as real output arrives, so a lying length costs no memory.
pub(crate) const EAGER_ALLOC_BYTES: u64 = 16 << 20;

/// zstd window limit (2^27 = 128 MiB), as a defence against window bombs, checked in each
/// frame header before decoding (§5.2, §12.6); levels -7 to 22 never need more.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 27;
