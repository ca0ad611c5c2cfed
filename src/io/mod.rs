//! Where shard bytes come from. Every reader reaches a shard through one trait, [`ReadAt`]:
//! a read-only memory map (the fast path, zero-copy), an owned buffer, positioned reads of a
//! file (`pread`, the fallback a user can choose), or any source a user plugs in (a remote
//! object, a test double). Tracing wraps a source and observes it; it never changes what
//! is read or checked.

pub(crate) mod range_cache;
pub(crate) mod remote;
mod sys;
pub mod trace;

pub(crate) use sys::{advise_sequential, start_writeback, train_dictionary, Dir, EntryKind};

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::trace::{IoKind, IoTrace};

use crate::{Error, Result};

/// The bytes of one shard file, borrowed by readers as `&[u8]`.
pub(crate) enum ShardBytes {
    Mapped(sys::ReadOnlyMap),
    Owned(Vec<u8>),
}

impl ShardBytes {
    /// Maps `path` read-only; an empty file is held as an empty buffer (maps cannot be empty).
    pub(crate) fn map(path: &Path) -> Result<ShardBytes> {
        let (file, len) = open_regular(path)?;
        if len == 0 {
            return Ok(ShardBytes::Owned(Vec::new()));
        }
        sys::ReadOnlyMap::new(&file)
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

/// How a source will be read, so that it can read ahead or not (`madvise` for a map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessPattern {
    /// Reads of single records anywhere.
    Random,
    /// One pass front to back.
    Sequential,
}

/// Which source [`crate::Archive`] reads shard files through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceKind {
    /// A read-only memory map: stored samples borrow from it with no copy. Archive files
    /// must not change while mapped (a truncated file would fault the reader).
    #[default]
    Map,
    /// Positioned reads (`pread`) into owned buffers: for files that may change while read,
    /// or file systems that map badly. Sequential scans read in the profile's large chunks.
    Pread,
}

/// A shard file's bytes, read at any offset: the one way readers reach a shard.
///
/// Implement it to read shards from elsewhere (a remote object store, a test double):
/// every check a reader makes applies to the bytes it returns, whatever the source.
pub trait ReadAt: Send + Sync {
    /// The file's length in bytes.
    fn len(&self) -> u64;

    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`, or fails (a short read is an error).
    ///
    /// # Errors
    /// The I/O error; [`io::ErrorKind::UnexpectedEof`] past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// The whole file, when the source holds it in memory (a map or a buffer): readers
    /// then borrow from it instead of copying.
    fn in_memory(&self) -> Option<&[u8]> {
        None
    }

    /// Called when a reader takes `len` bytes at `offset` from [`ReadAt::in_memory`], so
    /// that an observer sees those accesses as it sees reads.
    fn touched(&self, _offset: u64, _len: u64) {}

    /// Hints that `len` bytes at `offset` will be read soon.
    fn will_need(&self, _offset: u64, _len: u64) {}

    /// Hints that each of `ranges` (offset, length) will be read soon: a remote source
    /// fetches them together, nearby ones merged, several requests in flight.
    fn will_need_ranges(&self, ranges: &[(u64, u64)]) {
        for &(offset, len) in ranges {
            self.will_need(offset, len);
        }
    }

    /// Hints how the source will be read.
    fn advise(&self, _pattern: AccessPattern) {}

    /// Tells the source that the `len` bytes at `offset` it returned failed a check (a
    /// CRC): a source that keeps bytes (a remote one's caches, in memory and on disk) gives
    /// those up, so that the next read fetches them again instead of meeting the same
    /// damaged bytes for ever.
    fn check_failed(&self, _offset: u64, _len: u64) {}
}

/// Another handle on a source, passing every call through (see `Shard::batch_handle`).
pub(crate) struct Shared(pub(crate) Arc<dyn ReadAt>);

impl ReadAt for Shared {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(offset, buf)
    }

    fn in_memory(&self) -> Option<&[u8]> {
        self.0.in_memory()
    }

    fn touched(&self, offset: u64, len: u64) {
        self.0.touched(offset, len)
    }

    fn will_need(&self, offset: u64, len: u64) {
        self.0.will_need(offset, len)
    }

    fn advise(&self, pattern: AccessPattern) {
        self.0.advise(pattern)
    }

    fn check_failed(&self, offset: u64, len: u64) {
        self.0.check_failed(offset, len)
    }
}

impl dyn ReadAt {
    /// `len` bytes at `offset`: borrowed from memory when the source holds them so, read
    /// into a buffer otherwise; `None` when the range is not within the file.
    pub(crate) fn bytes(&self, offset: u64, len: u64) -> Option<io::Result<Cow<'_, [u8]>>> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len())?;
        if let Some(all) = self.in_memory() {
            let range = usize::try_from(offset).ok()?..usize::try_from(end).ok()?;
            self.touched(offset, len);
            return all.get(range).map(|b| Ok(Cow::Borrowed(b)));
        }
        let mut buf = vec![0; usize::try_from(len).ok()?];
        Some(
            self.read_exact_at(offset, &mut buf)
                .map(|()| Cow::Owned(buf)),
        )
    }
}

impl ReadAt for ShardBytes {
    fn len(&self) -> u64 {
        (**self).len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn in_memory(&self) -> Option<&[u8]> {
        Some(self)
    }
    fn will_need(&self, offset: u64, len: u64) {
        ShardBytes::will_need(self, offset, len);
    }
    fn advise(&self, pattern: AccessPattern) {
        ShardBytes::advise(self, pattern);
    }
}

/// A regular file read with `pread`.
pub(crate) struct PreadFile {
    file: File,
    len: u64,
}

impl PreadFile {
    pub(crate) fn open(path: &Path) -> Result<PreadFile> {
        let (file, len) = open_regular(path)?;
        Ok(PreadFile { file, len })
    }
}

impl ReadAt for PreadFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset)
    }
    fn advise(&self, pattern: AccessPattern) {
        if pattern == AccessPattern::Sequential {
            advise_sequential(&self.file);
        }
    }
}

/// A source whose reads are recorded in a trace (shard `number`), and otherwise unchanged.
pub(crate) struct Traced {
    pub(crate) inner: Arc<dyn ReadAt>,
    pub(crate) trace: IoTrace,
    pub(crate) number: u32,
}

impl ReadAt for Traced {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let kind = match self.inner.in_memory() {
            Some(_) => IoKind::MapAccess,
            None => IoKind::Read,
        };
        self.trace
            .record(kind, self.number, offset, buf.len() as u64);
        self.inner.read_exact_at(offset, buf)
    }
    fn in_memory(&self) -> Option<&[u8]> {
        self.inner.in_memory()
    }
    fn touched(&self, offset: u64, len: u64) {
        self.trace
            .record(IoKind::MapAccess, self.number, offset, len);
        self.inner.touched(offset, len);
    }
    fn will_need(&self, offset: u64, len: u64) {
        self.trace
            .record(IoKind::Prefetch, self.number, offset, len);
        self.inner.will_need(offset, len);
    }
    fn will_need_ranges(&self, ranges: &[(u64, u64)]) {
        for &(offset, len) in ranges {
            self.trace
                .record(IoKind::Prefetch, self.number, offset, len);
        }
        self.inner.will_need_ranges(ranges);
    }
    fn advise(&self, pattern: AccessPattern) {
        self.inner.advise(pattern);
    }
    fn check_failed(&self, offset: u64, len: u64) {
        self.inner.check_failed(offset, len);
    }
}

/// Opens `path` for reading if it is a regular file (symbolic links to one are followed).
/// A FIFO, socket or device named like an archive file is refused at once: the open does
/// not wait for a writer (`O_NONBLOCK`, which changes nothing for a regular file), and the
/// type is checked on the opened file, not on the name.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io(path, "open", e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(Error::io(
            path,
            "open",
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    Ok((file, meta.len()))
}

/// Creates `path` for writing, new: a stale file of an interrupted run, or a symbolic link
/// planted under that name, is removed first (removing a link never touches its target),
/// and the file is then created with `O_CREAT | O_EXCL`, which fails rather than follow a
/// link put there in between. So a write never goes through a planted name.
pub(crate) fn create_new(path: &Path) -> Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            std::fs::remove_file(path).map_err(|e| Error::io(path, "remove a stale", e))?
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, "create", e))
}

/// An advisory lock on an archive folder, held by a command that changes the archive
/// (`protect`, `repair`) for as long as it lives. It locks the folder itself (`flock` on
/// the directory), so it adds no file to the archive; readers never take it.
pub(crate) struct ArchiveLock {
    _dir: File,
}

impl ArchiveLock {
    /// Takes the lock on `dir`, or fails at once if another process (or another call in
    /// this one) holds it.
    pub(crate) fn take(dir: &Path) -> Result<ArchiveLock> {
        ArchiveLock::try_take(dir)?.ok_or_else(|| {
            Error::io(
                dir,
                "lock",
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another shardpack command is changing this archive; try again when it has finished",
                ),
            )
        })
    }

    /// Takes the lock on `dir` if nobody holds it: `None` when another process (or another
    /// open of the folder in this one) does. A distributed write holds its staging folder's
    /// lock this way while it runs (§11.4).
    pub(crate) fn try_take(dir: &Path) -> Result<Option<ArchiveLock>> {
        let folder = File::open(dir).map_err(|e| Error::io(dir, "open archive folder", e))?;
        let locked = sys::try_lock_exclusive(&folder).map_err(|e| Error::io(dir, "lock", e))?;
        Ok(locked.then_some(ArchiveLock { _dir: folder }))
    }

    /// Whether someone else holds the lock on `dir` now (a running distributed write holds
    /// its staging folder's, §11.4). A folder that cannot be opened is not held.
    pub(crate) fn held_elsewhere(dir: &Path) -> bool {
        matches!(ArchiveLock::try_take(dir), Ok(None))
    }
}

/// Opens shard file `path` through the source `kind`, traced as shard `number` if asked.
pub(crate) fn open_source(
    path: &Path,
    kind: SourceKind,
    trace: Option<&IoTrace>,
    number: u32,
) -> Result<Arc<dyn ReadAt>> {
    let source: Arc<dyn ReadAt> = match kind {
        SourceKind::Map => Arc::new(ShardBytes::map(path)?),
        SourceKind::Pread => Arc::new(PreadFile::open(path)?),
    };
    Ok(match trace {
        Some(trace) => Arc::new(Traced {
            inner: source,
            trace: trace.clone(),
            number,
        }),
        None => source,
    })
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

/// An archive written inside a folder being read (packed, salvaged) would be read back into
/// itself (its own partial shards listed as inputs) or change the folder read: refused
/// before anything is created.
pub(crate) fn refuse_output_inside(input: &Path, output: &Path) -> Result<()> {
    let input = std::fs::canonicalize(input).map_err(|e| Error::io(input, "resolve", e))?;
    // The output need not exist yet: resolve its nearest existing ancestor, then append
    // the rest, so that links and `..` anywhere in it are seen through.
    let mut existing = output.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
        if existing.as_os_str().is_empty() {
            existing = PathBuf::from(".");
        }
    }
    let mut resolved =
        std::fs::canonicalize(&existing).map_err(|e| Error::io(&existing, "resolve", e))?;
    resolved.extend(rest.iter().rev());
    if resolved.starts_with(&input) {
        return Err(Error::invalid_input(
            output.display().to_string(),
            format!(
                "the archive would be inside the folder being read ({}); choose a path outside it",
                input.display()
            ),
        ));
    }
    Ok(())
}
