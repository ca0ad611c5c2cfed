//! Sources read strictly front to back (a file by `pread`, any `Read`), and the sliding
//! window over one that the sequential readers take their bytes from.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::format::checksum;
use crate::io::trace::{IoKind, IoTrace};
use crate::{Error, Result};

/// A byte source read strictly front to back.
pub(crate) trait SeqRead {
    /// Reads the next bytes into `buf`; 0 at the end.
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A file read with `pread` at ascending offsets, with the kernel told the reads are
/// sequential.
pub(crate) struct FileSource {
    file: File,
    offset: u64,
    number: u32,
    trace: Option<IoTrace>,
}

impl FileSource {
    pub(crate) fn open(path: &Path, number: u32, trace: Option<IoTrace>) -> Result<Self> {
        let (file, _) = crate::io::open_regular(path)?;
        crate::io::advise_sequential(&file);
        Ok(FileSource {
            file,
            offset: 0,
            number,
            trace,
        })
    }
}

impl SeqRead for FileSource {
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        if let Some(t) = &self.trace {
            t.record(IoKind::Read, self.number, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Any `Read` (a pipe, standard input, a tape device).
pub(crate) struct StreamSource<R> {
    inner: R,
    offset: u64,
    trace: Option<IoTrace>,
}

impl<R: Read> StreamSource<R> {
    pub(crate) fn new(inner: R, trace: Option<IoTrace>) -> Self {
        StreamSource {
            inner,
            offset: 0,
            trace,
        }
    }
}

impl<R: Read> SeqRead for StreamSource<R> {
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if let Some(t) = &self.trace {
            t.record(IoKind::Read, 0, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// A sliding window over a [`SeqRead`]: refills in reads of at least `chunk` bytes, never
/// goes back, and drops what the cursor has passed.
pub(crate) struct Window<S> {
    src: S,
    /// Allocated space; bytes `head..end` are the data not yet taken.
    buf: Vec<u8>,
    head: usize,
    end: usize,
    offset: u64,
    chunk: usize,
    eof: bool,
    name: PathBuf,
}

impl<S: SeqRead> Window<S> {
    pub(crate) fn new(src: S, chunk: usize, name: PathBuf) -> Self {
        Window {
            src,
            buf: Vec::new(),
            head: 0,
            end: 0,
            offset: 0,
            chunk: chunk.max(1),
            eof: false,
            name,
        }
    }

    /// Changes the size of later reads.
    pub(crate) fn set_chunk(&mut self, chunk: usize) {
        self.chunk = chunk.max(1);
    }

    /// True once the source has reported its end.
    pub(crate) fn ended(&self) -> bool {
        self.eof
    }

    /// Absolute offset of the cursor.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes `n` bytes after the cursor available; false when the source ends first.
    pub(crate) fn ensure(&mut self, n: usize) -> Result<bool> {
        while self.end - self.head < n && !self.eof {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.end, 0);
                self.end -= self.head;
                self.head = 0;
            }
            // One chunk at a time: the buffer grows only as real bytes arrive, so a hostile
            // length costs no more memory than the data actually there; and every request
            // is a whole chunk (whole tape records). Space is zeroed once, when it grows.
            let want = self.chunk;
            if self.buf.len() < self.end + want {
                self.buf.resize(self.end + want, 0);
            }
            let mut got = 0;
            while got < want {
                let at = self.offset + (self.end + got) as u64;
                let start = self.end + got;
                let read = self
                    .src
                    .read_next(&mut self.buf[start..self.end + want])
                    .map_err(|e| Error::io_at(&self.name, "read", at, e))?;
                if read == 0 {
                    self.eof = true;
                    break;
                }
                got += read;
            }
            self.end += got;
        }
        Ok(self.end - self.head >= n)
    }

    /// The next `n` bytes without moving the cursor, or `None` at the end.
    pub(crate) fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        Ok(if self.ensure(n)? {
            self.buf.get(self.head..self.head + n)
        } else {
            None
        })
    }

    /// The next `n` bytes, moving the cursor past them, or `None` at the end.
    pub(crate) fn take(&mut self, n: usize) -> Result<Option<&[u8]>> {
        if !self.ensure(n)? {
            return Ok(None);
        }
        let start = self.head;
        self.head += n;
        self.offset += n as u64;
        Ok(self.buf.get(start..start + n))
    }

    /// Bytes available after the cursor without reading more.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.head
    }
}

/// BLAKE3 of a whole file, read front to back in reads of `chunk` bytes.
pub(crate) fn hash_file(
    path: &Path,
    number: u32,
    chunk: u64,
    trace: Option<crate::IoTrace>,
) -> Result<String> {
    let src = FileSource::open(path, number, trace)?;
    let mut win = Window::new(src, chunk as usize, path.to_path_buf());
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = win.buffered();
        if n == 0 && !win.ensure(1)? {
            break;
        }
        let n = win.buffered();
        if let Some(bytes) = win.take(n)? {
            checksum::blake3_update(&mut hasher, bytes);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}
