//! The crate's only `unsafe` code: mapping a finished shard file read-only, telling the
//! kernel how a file will be read or written back, and the advisory lock of an archive.
//!
//! # Safety contract
//!
//! A memory map shows the file's current bytes. If another process truncates a mapped file
//! the reader gets SIGBUS; if it rewrites the file, bytes change under a reader that has
//! already checked them. shardpack's contract is that **archive files are immutable once
//! finished**: the writer only ever creates new files (temporary name, then rename) and never
//! modifies a finished shard, and users must not edit, truncate or rewrite shard files while
//! a reader has them open. Readers copy every header to the stack before checking it and
//! check every record's CRC on each read, so a concurrent change is reported as corruption
//! rather than trusted; but SIGBUS from truncation cannot be caught, which is why the
//! contract exists (see memmap2's documentation of `Mmap::map`).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

use super::AccessPattern;

pub(crate) struct ReadOnlyMap(memmap2::Mmap);

impl ReadOnlyMap {
    pub(crate) fn new(file: &File) -> io::Result<Self> {
        // SAFETY: the file is opened read-only and mapped read-only, so this process never
        // writes through the map; other writers are excluded by the immutability contract in
        // this module's documentation, which the README repeats for users.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        Ok(ReadOnlyMap(map))
    }

    pub(crate) fn will_need(&self, offset: u64, len: u64) {
        // memmap2 checks the range against the map and aligns it to pages.
        if let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) {
            if offset
                .checked_add(len)
                .is_some_and(|end| end <= self.0.len())
            {
                let _ = self.0.advise_range(memmap2::Advice::WillNeed, offset, len);
            }
        }
    }

    pub(crate) fn advise(&self, pattern: AccessPattern) {
        let advice = match pattern {
            AccessPattern::Random => memmap2::Advice::Random,
            AccessPattern::Sequential => memmap2::Advice::Sequential,
        };
        // Advice is only a hint: failure changes speed, never results.
        let _ = self.0.advise(advice);
    }
}

impl Deref for ReadOnlyMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Tells the kernel that `file` will be read front to back, so it reads ahead further
/// (Linux doubles the readahead window). Only a hint: failure changes speed,
/// never results.
pub(crate) fn advise_sequential(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is valid
        // for the duration of the call because `file` is borrowed.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Asks the kernel to start writing `len` bytes of `file` at `offset` to the device now,
/// without waiting, so that the fsync closing a shard finds little left to write (what
/// RocksDB's `bytes_per_sync` does). Only a hint: failure changes speed, never results.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is valid
        // for the duration of the call because `file` is borrowed.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Takes an exclusive advisory lock on `file` (`flock`, which works on a directory too)
/// without waiting; false when another open file description holds it. The lock goes with
/// the descriptor: it is released when `file` is closed.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock only reads its integer arguments; the descriptor is valid for the
        // duration of the call because `file` is borrowed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            Ok(false)
        } else {
            Err(err)
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}
