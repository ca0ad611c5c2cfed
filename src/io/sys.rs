//! The crate's only `unsafe` code: mapping a finished shard file read-only, telling the
//! kernel how a file will be read or written back, the advisory lock of an archive, and
//! opening, listing and creating files relative to an open folder (`openat`, `fdopendir`,
//! `fstatat`, `mkdirat`), so that no path is ever resolved again from its start: a key of
//! 4,096 bytes is never a path too long to open, and a symbolic link swapped in after a
//! folder was walked is refused, never followed.
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
//!
//! The folder calls are sound by construction, whatever is on disk: each takes a
//! descriptor borrowed from an open [`Dir`] (valid for the call) and a NUL-terminated name
//! owned by the caller ([`CString`]); a descriptor a call returns is checked for -1 and
//! owned at once ([`OwnedFd`]), so it is closed exactly once. `fdopendir` takes a duplicate
//! descriptor it then owns; the `DIR` stream is used by one thread and closed once, and
//! each entry's name is copied out (`CStr::from_ptr` on the NUL-terminated `d_name`) before
//! the next `readdir`, which may reuse its memory. `fstatat` writes into a zeroed `stat`
//! owned by the caller. None of them can corrupt memory on hostile file names or types;
//! what they return is checked like any input.
//!
//! [`train_dictionary`] calls zstd's dictionary trainer through its C interface, which the
//! zstd crate does not expose with fixed parameters. It is sound for any bytes: the
//! trainer reads `records[..sum of lens]`, which the function checks lies inside
//! `records`, and writes at most `capacity` bytes into a buffer of that capacity, whose
//! length is then set to what it returned only when that is not an error code and not
//! larger than the capacity.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::AccessPattern;

/// Trains a zstd dictionary of at most `capacity` bytes on `records` (concatenated, `lens`
/// their lengths) with FASTCOVER at segment size `k` and d-mer size `d`, for frames
/// compressed at `level`; `None` when zstd cannot train one. Deterministic: the same input
/// gives the same dictionary.
pub(crate) fn train_dictionary(
    records: &[u8],
    lens: &[usize],
    capacity: usize,
    (k, d): (u32, u32),
    level: i32,
) -> Option<Vec<u8>> {
    let total = lens
        .iter()
        .try_fold(0usize, |sum, &len| sum.checked_add(len))?;
    let count = u32::try_from(lens.len()).ok()?;
    if total > records.len() {
        return None;
    }
    // SAFETY: an all-zero ZDICT_fastCover_params_t is the documented "default" for every
    // field; the ones that matter are set below.
    let mut params: zstd_sys::ZDICT_fastCover_params_t = unsafe { std::mem::zeroed() };
    params.k = k;
    params.d = d;
    params.zParams.compressionLevel = level;
    let mut dictionary = Vec::<u8>::with_capacity(capacity);
    // SAFETY: see the module documentation: the samples lie inside `records`, and the
    // output buffer has room for `capacity` bytes.
    let written = unsafe {
        zstd_sys::ZDICT_trainFromBuffer_fastCover(
            dictionary.as_mut_ptr().cast(),
            capacity,
            records.as_ptr().cast(),
            lens.as_ptr(),
            count,
            params,
        )
    };
    // SAFETY: `ZDICT_isError` only inspects the value.
    if unsafe { zstd_sys::ZDICT_isError(written) } != 0 || written > capacity {
        return None;
    }
    // SAFETY: the trainer initialised the first `written` bytes, and `written <= capacity`.
    unsafe { dictionary.set_len(written) };
    Some(dictionary)
}

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

/// What a folder entry is, without following a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Folder,
    File,
    SymbolicLink,
    /// A device, socket or FIFO.
    Other,
}

impl EntryKind {
    fn of_mode(mode: libc::mode_t) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Folder,
            libc::S_IFREG => EntryKind::File,
            libc::S_IFLNK => EntryKind::SymbolicLink,
            _ => EntryKind::Other,
        }
    }

    /// What a file's metadata says it is.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        let t = meta.file_type();
        if t.is_dir() {
            EntryKind::Folder
        } else if t.is_file() {
            EntryKind::File
        } else if t.is_symlink() {
            EntryKind::SymbolicLink
        } else {
            EntryKind::Other
        }
    }

    /// How messages name it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            EntryKind::Folder => "a folder",
            EntryKind::File => "a regular file",
            EntryKind::SymbolicLink => "a symbolic link",
            EntryKind::Other => "a device, socket or FIFO",
        }
    }
}

/// An open folder: every name below is opened relative to it, one component at a time.
#[derive(Debug)]
pub(crate) struct Dir(File);

/// A name as the C calls take it; a name with a NUL byte is refused.
fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a file name with a NUL byte"))
}

/// Owns the descriptor a call returned, or gives its error.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful call that opened it; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Dir {
    /// Opens the folder at `path`, which the caller named (a link in it is followed).
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Dir(file))
    }

    fn at(&self, name: &OsStr, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
        let name = c_name(name)?;
        // SAFETY: the descriptor is valid for the call (borrowed from `self`) and `name` is a
        // NUL-terminated string that outlives it; the result is checked and owned by `owned`.
        owned(unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), flags, mode) })
    }

    /// Opens the folder `name` in this one, refusing a symbolic link (`ELOOP`) and
    /// anything that is not a folder (`ENOTDIR`).
    pub(crate) fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        self.at(name, flags, 0).map(|fd| Dir(File::from(fd)))
    }

    /// Opens the file `name` in this one for reading, never following a symbolic link
    /// (`ELOOP`) and never waiting (`O_NONBLOCK`: a FIFO opens at once, to be refused by
    /// the caller's `fstat`).
    pub(crate) fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        self.at(name, flags, 0).map(File::from)
    }

    /// Creates the file `name` in this one for writing: never an existing name, never
    /// through a symbolic link (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    pub(crate) fn create_file(&self, name: &OsStr) -> io::Result<File> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        self.at(name, flags, 0o666).map(File::from)
    }

    /// Creates the folder `name` in this one.
    pub(crate) fn create_dir(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: as in `at`; mkdirat only reads its arguments.
        let rc = unsafe { libc::mkdirat(self.0.as_raw_fd(), name.as_ptr(), 0o777) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// What `name` in this folder is, and its size, without following a symbolic link.
    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<(EntryKind, u64)> {
        let c = c_name(name)?;
        // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is borrowed from `self`, `c` is NUL-terminated and `st` is
        // a writable `stat` owned here; all outlive the call.
        let rc = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            EntryKind::of_mode(st.st_mode),
            u64::try_from(st.st_size).unwrap_or(0),
        ))
    }

    /// The metadata of the open folder itself.
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.0.metadata()
    }

    /// The names in this folder (without `.` and `..`), each with what its entry says it is
    /// (`None` when the file system does not say: ask [`stat`](Self::stat)).
    pub(crate) fn entries(&self) -> io::Result<Vec<(OsString, Option<EntryKind>)>> {
        // fdopendir owns the descriptor it is given: give it a duplicate.
        let dup = self.0.try_clone()?;
        let fd = OwnedFd::from(dup);
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open descriptor of a folder that nothing else owns; on success
        // the stream owns it and `closedir` below closes it.
        let stream = unsafe { libc::fdopendir(raw) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: on failure fdopendir did not take the descriptor: own it to close it.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
            return Err(err);
        }
        // SAFETY: `stream` is a valid DIR stream; the duplicate shares its offset with
        // `self`, which is never read otherwise, so start from the first entry.
        unsafe { libc::rewinddir(stream) };
        let mut names = Vec::new();
        let result = loop {
            set_errno(0);
            // SAFETY: `stream` is valid and used by this thread only.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let err = io::Error::last_os_error();
                break match err.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(err),
                };
            }
            // SAFETY: a non-null entry is valid until the next readdir on `stream`, and its
            // `d_name` is NUL-terminated; the name is copied out before that.
            let (name, d_type) = unsafe {
                let e = &*entry;
                (
                    CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(),
                    e.d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match d_type {
                libc::DT_DIR => Some(EntryKind::Folder),
                libc::DT_REG => Some(EntryKind::File),
                libc::DT_LNK => Some(EntryKind::SymbolicLink),
                libc::DT_UNKNOWN => None,
                _ => Some(EntryKind::Other),
            };
            names.push((OsString::from_vec(name), kind));
        };
        // SAFETY: `stream` is valid and closed exactly once, with its descriptor.
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }
}

/// Sets `errno`, so that a null from `readdir` tells the end from an error.
fn set_errno(value: libc::c_int) {
    // SAFETY: the errno location is the calling thread's own, valid for its lifetime.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = value;
    }
    // SAFETY: as above.
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = value;
    }
}
