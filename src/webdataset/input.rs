//! Where tar bytes come from: files, standard input or any reader, plain or compressed
//! (recognised by their magic bytes, never by the file name), counted as they are read so
//! that errors can name offsets.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::braces::expand_braces;
use crate::limits::ZSTD_WINDOW_LOG_MAX;
use crate::{Error, Result, TarLocation, TarProblem};

/// One tar to import.
pub enum TarSource {
    /// A file.
    File(PathBuf),
    /// A reader (standard input, a pipe, a download); `name` names it in errors.
    Reader {
        /// The name in errors and reports.
        name: PathBuf,
        /// The bytes.
        reader: Box<dyn Read + Send>,
    },
}

impl std::fmt::Debug for TarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TarSource").field(&self.name()).finish()
    }
}

impl TarSource {
    /// The sources an argument names: `-` is standard input, anything else a file name
    /// or a brace pattern (`shards-{000000..000099}.tar`, see [`expand_braces`]).
    ///
    /// # Errors
    /// A pattern that does not expand.
    pub fn from_arg(arg: &str) -> Result<Vec<TarSource>> {
        if arg == "-" {
            return Ok(vec![TarSource::Reader {
                name: PathBuf::from("<stdin>"),
                reader: Box::new(io::stdin()),
            }]);
        }
        Ok(expand_braces(arg)?
            .into_iter()
            .map(|name| TarSource::File(PathBuf::from(name)))
            .collect())
    }

    /// The name in errors and reports.
    #[must_use]
    pub fn name(&self) -> &Path {
        match self {
            TarSource::File(path) => path,
            TarSource::Reader { name, .. } => name,
        }
    }

    /// The size in bytes, when it is a file whose size can be read.
    pub(crate) fn size(&self) -> Option<u64> {
        match self {
            TarSource::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            TarSource::Reader { .. } => None,
        }
    }
}

/// How a tar is compressed, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TarCompression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`), with any number of members.
    Gzip,
    /// zstd (`28 b5 2f fd`), with any number of frames.
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const BZIP2_MAGIC: &[u8] = b"BZh";
/// Bytes read to recognise the compression.
const MAGIC_LEN: usize = 6;

/// Counts the bytes read through it and remembers whether the end was reached, shared
/// with the importer while the tar reader owns it.
pub(crate) struct Counted<R> {
    inner: R,
    state: Rc<CountState>,
}

/// What a [`Counted`] reader has seen.
#[derive(Default)]
pub(crate) struct CountState {
    bytes: Cell<u64>,
    ended: Cell<bool>,
}

impl CountState {
    /// Bytes read so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// True once a read returned no bytes: the data ended there.
    pub(crate) fn ended(&self) -> bool {
        self.ended.get()
    }
}

impl<R: Read> Counted<R> {
    pub(crate) fn new(inner: R) -> (Self, Rc<CountState>) {
        let state = Rc::new(CountState::default());
        (
            Counted {
                inner,
                state: Rc::clone(&state),
            },
            state,
        )
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.state.ended.set(true);
        }
        self.state
            .bytes
            .set(self.state.bytes.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// An opened tar: the decompressed bytes, counted, and what the compressed input has
/// consumed, for progress.
pub(crate) struct OpenTar {
    pub(crate) reader: Counted<Box<dyn Read>>,
    pub(crate) tar: Rc<CountState>,
    pub(crate) raw: Rc<CountState>,
    pub(crate) compression: TarCompression,
}

/// Opens `source`, recognising its compression from its first bytes.
pub(crate) fn open(source: TarSource) -> Result<OpenTar> {
    let (name, reader): (PathBuf, Box<dyn Read>) = match source {
        TarSource::File(path) => {
            let file = File::open(&path).map_err(|e| Error::io(&path, "open", e))?;
            (path, Box::new(file))
        }
        TarSource::Reader { name, reader } => (name, reader),
    };
    let (mut raw, raw_state) = Counted::new(reader);
    let mut head = Vec::with_capacity(MAGIC_LEN);
    (&mut raw)
        .take(MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(&name, "read", e))?;
    let unsupported = |what: &str| {
        Error::tar(
            TarLocation::new(&name, 0),
            TarProblem::Unsupported {
                reason: format!("a {what}-compressed file; decompress it first"),
            },
        )
    };
    if head.starts_with(XZ_MAGIC) {
        return Err(unsupported("xz"));
    }
    if head.starts_with(BZIP2_MAGIC) {
        return Err(unsupported("bzip2"));
    }
    let whole: Box<dyn Read> = Box::new(io::Cursor::new(head.clone()).chain(raw));
    let (compression, decoded): (_, Box<dyn Read>) = if head.starts_with(GZIP_MAGIC) {
        (
            TarCompression::Gzip,
            Box::new(flate2::read::MultiGzDecoder::new(whole)),
        )
    } else if head.starts_with(ZSTD_MAGIC) {
        let mut decoder = zstd::stream::read::Decoder::new(whole)
            .map_err(|e| Error::io(&name, "start decompressing", e))?;
        decoder
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| Error::io(&name, "start decompressing", e))?;
        (TarCompression::Zstd, Box::new(decoder))
    } else {
        (TarCompression::None, whole)
    };
    let (reader, tar) = Counted::new(decoded);
    Ok(OpenTar {
        reader,
        tar,
        raw: raw_state,
        compression,
    })
}
