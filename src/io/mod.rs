//! Where shard bytes come from: a read-only memory map (the fast path) or an owned buffer.

mod mmap;
pub mod trace;

pub(crate) use mmap::{advise_sequential, start_writeback};

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::{Error, Result};

/// The bytes of one shard file, borrowed by readers as `&[u8]`.
pub(crate) enum ShardBytes {
    Mapped(mmap::ReadOnlyMap),
    Owned(Vec<u8>),
}

impl ShardBytes {
    /// Maps `path` read-only; an empty file is held as an empty buffer (maps cannot be empty).
    pub(crate) fn map(path: &Path) -> Result<ShardBytes> {
        // Opening a FIFO or device named like a shard would block or misbehave: regular
        // files only (symbolic links to them are followed).
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "stat", e))?;
        if !meta.is_file() {
            return Err(Error::io(
                path,
                "map",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        if len == 0 {
            return Ok(ShardBytes::Owned(Vec::new()));
        }
        mmap::ReadOnlyMap::new(&file)
            .map(ShardBytes::Mapped)
            .map_err(|e| Error::io(path, "map", e))
    }

    /// Asks the kernel to start reading a range of the map (no-op for owned bytes).
    pub(crate) fn will_need(&self, offset: u64, len: u64) {
        if let ShardBytes::Mapped(map) = self {
            map.will_need(offset, len);
        }
    }

    /// Tells the kernel how the map will be read (no-op for owned bytes).
    pub(crate) fn advise(&self, pattern: AccessPattern) {
        if let ShardBytes::Mapped(map) = self {
            map.advise(pattern);
        }
    }
}

/// Expected access pattern, passed to `madvise`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AccessPattern {
    Random,
    Sequential,
}

impl Deref for ShardBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ShardBytes::Mapped(map) => map,
            ShardBytes::Owned(bytes) => bytes,
        }
    }
}
