//! An optional, bounded on-disk cache of the bytes fetched from remote shards (issue #14),
//! so that a second epoch over a URL, or a second process, reads them from local disk.
//!
//! The folder holds fixed-size aligned blocks of shards, one file each, named by the
//! shard's BLAKE3 from the manifest and the block's number (`<64 hex digits>-<block>`).
//! Shards are immutable and named by their contents, so an entry can never hold bytes of
//! another version of an object. Each file is the block followed by its CRC-32/IEEE
//! (little-endian): a file of the wrong length or whose CRC fails (damaged on disk, cut
//! by a crash) is never served, but removed and fetched again. Cached bytes are otherwise
//! as untrusted as the network's: they reach readers only through the checks every read
//! makes, and a source told that bytes failed one ([`CachedShard::forget`]) drops them.
//!
//! Entries are written to a temporary file created new (`O_EXCL`, which never follows a
//! link) and renamed into place, which replaces a planted symbolic link instead of writing
//! through it; reads open with `O_NOFOLLOW`. So processes sharing the folder (forked data
//! loader workers) see whole entries or none. The folder is kept under its size by
//! removing the least recently used entries (by modification time, which a hit renews):
//! each handle counts what it writes and measures the folder again before its count
//! could pass the bound. Nothing in the folder but entries and their temporary files is
//! ever removed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::{Error, Result};

/// The size of a cached block: small enough that a random read of a small sample fetches
/// little more than the sample, large enough that a scan's files stay few.
pub(crate) const CACHE_BLOCK_BYTES: u64 = 64 << 10;

/// The CRC-32 after each block in its file.
const ENTRY_CRC_LEN: u64 = 4;

/// Where remote shard bytes are cached and how many bytes the folder may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl RemoteCache {
    /// The bound the command line and the Python package use when none is given: 10 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

    /// A cache in folder `dir` (created if missing) of at most `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> RemoteCache {
        RemoteCache {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes the folder holds (briefly more, by at most one fetch).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Opens the folder, creating it if needed, and measures what it holds.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Io`] naming the folder when it cannot be created or listed.
    pub(crate) fn open(&self) -> Result<Arc<RangeCache>> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(&self.dir, "create the cache folder", e))?;
        let cache = RangeCache {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            usage: Mutex::new(Usage::default()),
        };
        let held = cache
            .entries()
            .map_err(|e| Error::io(&self.dir, "list the cache folder", e))?;
        cache.lock_usage().measured = held.iter().map(|e| e.len).sum();
        Ok(Arc::new(cache))
    }
}

/// An open cache folder, shared by the shards of an archive.
pub(crate) struct RangeCache {
    dir: PathBuf,
    max_bytes: u64,
    usage: Mutex<Usage>,
}

/// The folder's size when last measured, and what this handle has written since.
#[derive(Default)]
struct Usage {
    measured: u64,
    written: u64,
}

/// One entry (or temporary file) found in the folder.
struct Entry {
    path: PathBuf,
    len: u64,
    used: SystemTime,
}

impl RangeCache {
    /// The cache of the shard at `url` whose BLAKE3 is `blake3` (as the manifest gives it)
    /// and whose length is `len`; `None` for a digest that is not 64 hex digits, which
    /// could not name a file safely.
    pub(crate) fn shard(
        self: &Arc<Self>,
        url: &str,
        blake3: &str,
        len: u64,
    ) -> Option<CachedShard> {
        is_digest_hex(blake3).then(|| CachedShard {
            cache: self.clone(),
            url: url.to_string(),
            key: blake3.to_ascii_lowercase(),
            len,
        })
    }

    fn lock_usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry_path(&self, key: &str, block: u64) -> PathBuf {
        self.dir.join(format!("{key}-{block}"))
    }

    /// Block `block` of shard `key`, `len` bytes, if the folder holds it whole and intact.
    /// A damaged entry is removed, so that it is fetched and written again.
    fn load(&self, key: &str, block: u64, len: u64) -> Option<Vec<u8>> {
        let path = self.entry_path(key, block);
        let mut file = open_no_follow(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() != len + ENTRY_CRC_LEN {
            return None;
        }
        let mut bytes = vec![0; usize::try_from(meta.len()).ok()?];
        file.read_exact(&mut bytes).ok()?;
        let crc_at = usize::try_from(len).ok()?;
        let stored = bytes
            .get(crc_at..)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())?;
        bytes.truncate(crc_at);
        if crate::format::checksum::crc32(&bytes) != u32::from_le_bytes(stored) {
            let _ = fs::remove_file(&path);
            return None;
        }
        // The least recently used entries go first: a hit renews this one.
        let _ = file.set_modified(SystemTime::now());
        Some(bytes)
    }

    /// True when the folder has an entry of the right length for block `block` of `key`.
    fn holds(&self, key: &str, block: u64, len: u64) -> bool {
        fs::symlink_metadata(self.entry_path(key, block))
            .is_ok_and(|m| m.is_file() && m.len() == len + ENTRY_CRC_LEN)
    }

    /// Writes block `block` of `key`. A failure (a full disk, a folder made read-only) only
    /// means the block is fetched again next time, so it is not reported.
    fn store(&self, key: &str, block: u64, bytes: &[u8]) {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            ".{key}-{block}.{}.{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.write_all(&crate::format::checksum::crc32(bytes).to_le_bytes())?;
            fs::rename(&temp, self.entry_path(key, block))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
            return;
        }
        self.lock_usage().written += bytes.len() as u64 + ENTRY_CRC_LEN;
    }

    fn remove(&self, key: &str, block: u64) {
        let _ = fs::remove_file(self.entry_path(key, block));
    }

    /// Keeps the folder under its bound: once what this handle wrote since the folder was
    /// measured could take it within a sixteenth of the bound, the folder is measured again
    /// (other processes write to it too) and, if it is that full, its least recently used
    /// entries are removed until it holds seven eighths of the bound.
    fn make_room(&self) {
        let headroom = self.max_bytes / 16;
        let mut usage = self.lock_usage();
        if usage.measured + usage.written + headroom <= self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries() else {
            return;
        };
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        if total + headroom > self.max_bytes {
            let target = self.max_bytes - self.max_bytes / 8;
            entries.sort_by_key(|e| e.used);
            for entry in entries {
                if total <= target {
                    break;
                }
                if fs::remove_file(&entry.path).is_ok() {
                    total = total.saturating_sub(entry.len);
                }
            }
        }
        *usage = Usage {
            measured: total,
            written: 0,
        };
    }

    /// The entries and temporary files in the folder, and nothing else in it.
    fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut found = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let item = item?;
            let name = item.file_name();
            if !name.to_str().is_some_and(is_cache_file_name) {
                continue;
            }
            // The entry's own metadata: a link is never followed.
            let Ok(meta) = item.metadata() else { continue };
            if meta.is_file() {
                found.push(Entry {
                    path: item.path(),
                    len: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(found)
    }
}

/// True for the names the cache writes: `<64 hex>-<block>` and `.<64 hex>-<block>.….tmp`.
fn is_cache_file_name(name: &str) -> bool {
    let entry = match name.strip_prefix('.') {
        Some(temp) => match temp.strip_suffix(".tmp") {
            Some(rest) => rest.split('.').next().unwrap_or_default(),
            None => return false,
        },
        None => name,
    };
    let Some((key, block)) = entry.split_once('-') else {
        return false;
    };
    is_digest_hex(key) && !block.is_empty() && block.bytes().all(|b| b.is_ascii_digit())
}

/// True for a BLAKE3 digest in hex (either case), the only names entries are keyed by.
fn is_digest_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO planted under an entry's name must not block the read either.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// The cached blocks of one shard.
#[derive(Clone)]
pub(crate) struct CachedShard {
    cache: Arc<RangeCache>,
    /// The shard's URL, for messages.
    url: String,
    key: String,
    len: u64,
}

impl CachedShard {
    /// `range` grown to whole blocks (the last one ends at the shard's end).
    pub(crate) fn widened(&self, range: Range<u64>) -> Range<u64> {
        let start = range.start - range.start % CACHE_BLOCK_BYTES;
        let end = range
            .end
            .div_ceil(CACHE_BLOCK_BYTES)
            .saturating_mul(CACHE_BLOCK_BYTES)
            .min(self.len);
        start..end.max(start)
    }

    fn blocks(&self, range: Range<u64>) -> Range<u64> {
        let span = self.widened(range);
        span.start / CACHE_BLOCK_BYTES..span.end.div_ceil(CACHE_BLOCK_BYTES)
    }

    fn block_range(&self, block: u64) -> Range<u64> {
        let start = block.saturating_mul(CACHE_BLOCK_BYTES);
        start..start.saturating_add(CACHE_BLOCK_BYTES).min(self.len)
    }

    /// True when every block of `range` is in the folder.
    pub(crate) fn holds(&self, range: Range<u64>) -> bool {
        self.blocks(range).all(|b| {
            let r = self.block_range(b);
            self.cache.holds(&self.key, b, r.end - r.start)
        })
    }

    /// Bytes `range` of the shard: the blocks it spans from the folder where held, each
    /// run of missing blocks with one call of `fetch` (whose bytes are then cached).
    ///
    /// # Errors
    /// What `fetch` returns; [`io::ErrorKind::UnexpectedEof`] when it returns other than
    /// the length asked, or `range` is not within the shard.
    pub(crate) fn read(
        &self,
        range: Range<u64>,
        fetch: &dyn Fn(Range<u64>) -> Result<Bytes>,
    ) -> Result<Bytes> {
        let span = self.widened(range.clone());
        if range.end > self.len || range.start > range.end {
            return Err(self.short_read(range.start));
        }
        let mut out = Vec::with_capacity(usize::try_from(span.end - span.start).unwrap_or(0));
        let blocks = self.blocks(range.clone());
        let mut block = blocks.start;
        while block < blocks.end {
            let own = self.block_range(block);
            if let Some(bytes) = self.cache.load(&self.key, block, own.end - own.start) {
                out.extend_from_slice(&bytes);
                block += 1;
                continue;
            }
            let run_end = (block + 1..blocks.end)
                .find(|&b| {
                    let r = self.block_range(b);
                    self.cache.holds(&self.key, b, r.end - r.start)
                })
                .unwrap_or(blocks.end);
            let wanted = own.start..self.block_range(run_end - 1).end;
            let fetched = fetch(wanted.clone())?;
            if fetched.len() as u64 != wanted.end - wanted.start {
                return Err(self.short_read(wanted.start));
            }
            self.store(wanted.start, &fetched);
            out.extend_from_slice(&fetched);
            block = run_end;
        }
        let from = usize::try_from(range.start - span.start).unwrap_or(usize::MAX);
        let to = usize::try_from(range.end - span.start).unwrap_or(usize::MAX);
        let out = Bytes::from(out);
        if to > out.len() || from > to {
            return Err(self.short_read(range.start));
        }
        Ok(out.slice(from..to))
    }

    /// Caches the whole blocks of `bytes`, which start at shard offset `start` (the end of
    /// the shard ends a block), then keeps the folder under its bound.
    pub(crate) fn store(&self, start: u64, bytes: &[u8]) {
        if start % CACHE_BLOCK_BYTES != 0 {
            return;
        }
        let first = start / CACHE_BLOCK_BYTES;
        for (n, piece) in bytes
            .chunks(CACHE_BLOCK_BYTES as usize)
            .enumerate()
            .map(|(n, piece)| (first + n as u64, piece))
        {
            let own = self.block_range(n);
            if piece.len() as u64 == own.end - own.start {
                self.cache.store(&self.key, n, piece);
            }
        }
        self.cache.make_room();
    }

    fn short_read(&self, offset: u64) -> Error {
        crate::ErrorKind::Remote {
            url: self.url.clone(),
            offset: Some(offset),
            status: None,
            expected: "the bytes asked for, within the shard".into(),
            reason: "a read through the cache was not of the length asked".into(),
        }
        .into()
    }

    /// Removes the blocks of `range`, whose bytes failed a check: the next read fetches
    /// them again instead of meeting the same bytes.
    pub(crate) fn forget(&self, range: Range<u64>) {
        for block in self.blocks(range) {
            self.cache.remove(&self.key, block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cache_own_names_are_its_files() {
        let key = "ab".repeat(32);
        assert!(is_cache_file_name(&format!("{key}-0")));
        assert!(is_cache_file_name(&format!(".{key}-12.345.6.tmp")));
        assert!(!is_cache_file_name("notes.txt"));
        assert!(!is_cache_file_name(&format!("{key}-")));
        assert!(!is_cache_file_name(&format!("{key}-1x")));
        assert!(!is_cache_file_name(&format!(".{key}-1")));
        assert!(!is_cache_file_name(&format!("{}-1", "ab".repeat(31))));
    }

    #[test]
    fn digests_that_are_not_hex_name_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RemoteCache::new(dir.path(), 1 << 20).open().unwrap();
        assert!(cache.shard("u", &"0".repeat(64), 10).is_some());
        assert!(cache
            .shard("u", &format!("../{}", "0".repeat(61)), 10)
            .is_none());
        assert!(cache.shard("u", "abc", 10).is_none());
    }

    #[test]
    fn ranges_widen_to_whole_blocks_within_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RemoteCache::new(dir.path(), 1 << 20).open().unwrap();
        let shard = cache.shard("u", &"0".repeat(64), 100_000).unwrap();
        assert_eq!(shard.widened(10..20), 0..CACHE_BLOCK_BYTES);
        assert_eq!(shard.widened(70_000..70_001), CACHE_BLOCK_BYTES..100_000);
        assert_eq!(shard.widened(0..0), 0..0);
    }
}
