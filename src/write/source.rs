//! Where a sample's bytes come from when it is appended: memory, or open files read with
//! positioned reads in bounded pieces, each checked against the length it was given.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::format::record;
use crate::{Error, InputChange, Result};

/// The bytes of one field for [`crate::Writer::append_from`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum FieldData<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// The first `len` bytes of an open regular file, which must be exactly `len` bytes
    /// long. It is read with positioned reads (its own offset is neither used nor moved),
    /// in bounded pieces straight into the block being built, so a large file never sits
    /// in memory whole. `path` names it in errors.
    File {
        /// The open file.
        file: &'a File,
        /// Its length, as taken when it was listed.
        len: u64,
        /// Its name in errors.
        path: &'a Path,
    },
}

impl<'a> FieldData<'a> {
    /// A field read from `file`, which must be `len` bytes long; `path` names it in errors.
    #[must_use]
    pub fn file(file: &'a File, len: u64, path: &'a Path) -> Self {
        FieldData::File { file, len, path }
    }

    /// The field's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            FieldData::Bytes(b) => b.len() as u64,
            FieldData::File { len, .. } => *len,
        }
    }

    /// True for an empty field.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest piece read or written at once when a record is copied from its sources.
pub(crate) const COPY_PIECE_BYTES: usize = 1 << 20;

/// A record to be encoded from its sources: its head (prefix, descriptors, key and names),
/// then each field's data.
pub(crate) struct RecordSources<'s, 'a> {
    head: Vec<u8>,
    fields: &'s [(&'a str, FieldData<'a>)],
    len: u64,
    key: &'s str,
}

impl<'s, 'a> RecordSources<'s, 'a> {
    /// The record of `key` and `fields`, `len` bytes long (the caller computed it with
    /// [`record::encoded_len_of`] and validated the sample).
    pub(crate) fn new(key: &'s str, fields: &'s [(&'a str, FieldData<'a>)], len: u64) -> Self {
        let lens: Vec<(&str, u64)> = fields.iter().map(|(n, d)| (*n, d.len())).collect();
        let mut head = Vec::new();
        record::encode_head(&mut head, key, &lens);
        RecordSources {
            head,
            fields,
            len,
            key,
        }
    }

    /// Checks, before anything is read, that every file has the length it was given.
    pub(crate) fn check_sizes(&self) -> Result<()> {
        for (_, field) in self.fields {
            if let FieldData::File { file, len, path } = field {
                let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
                if !meta.is_file() {
                    return Err(Error::input_changed(
                        path,
                        0,
                        InputChange::NotRegular {
                            now: "not a regular file",
                        },
                    ));
                }
                if meta.len() != *len {
                    return Err(Error::input_changed(
                        path,
                        0,
                        InputChange::Size {
                            expected: *len,
                            found: meta.len(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A record's bytes: encoded in memory, or from its sources.
#[derive(Clone, Copy)]
pub(crate) enum RecordBytes<'r> {
    Encoded(&'r [u8]),
    Sources(&'r RecordSources<'r, 'r>),
}

impl RecordBytes<'_> {
    pub(crate) fn len(&self) -> u64 {
        match self {
            RecordBytes::Encoded(b) => b.len() as u64,
            RecordBytes::Sources(s) => s.len,
        }
    }

    /// Names the record in errors that concern it as a whole: its first file, or its key.
    pub(crate) fn name(&self) -> String {
        match self {
            RecordBytes::Sources(s) => s
                .fields
                .iter()
                .find_map(|(_, f)| match f {
                    FieldData::File { path, .. } => Some(path.display().to_string()),
                    FieldData::Bytes(_) => None,
                })
                .unwrap_or_else(|| format!("sample {:?}", s.key)),
            RecordBytes::Encoded(_) => "a held-back record".into(),
        }
    }

    /// Appends the whole record to `out`, reading files straight into it in pieces; on an
    /// error `out` is left as it was.
    pub(crate) fn append_to(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let result = self.pieces(&mut Vec::new(), &mut |piece, _| {
            out.extend_from_slice(piece);
            Ok(())
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Fills `buf` with the record's bytes from `offset` (within the record).
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let sources = match self {
            RecordBytes::Encoded(b) => {
                let piece = usize::try_from(offset)
                    .ok()
                    .and_then(|at| b.get(at..at.checked_add(buf.len())?))
                    .ok_or_else(|| Error::invalid_input("record", "read past its end"))?;
                buf.copy_from_slice(piece);
                return Ok(());
            }
            RecordBytes::Sources(s) => s,
        };
        let mut at = 0u64;
        let mut filled = 0usize;
        let parts = std::iter::once(FieldData::Bytes(&sources.head))
            .chain(sources.fields.iter().map(|(_, f)| *f));
        for part in parts {
            let part_len = part.len();
            let want = offset + filled as u64;
            if filled == buf.len() {
                break;
            }
            if want < at + part_len {
                let within = want - at;
                let n = ((part_len - within) as usize).min(buf.len() - filled);
                let dst = &mut buf[filled..filled + n];
                match part {
                    FieldData::Bytes(b) => {
                        dst.copy_from_slice(&b[within as usize..within as usize + n]);
                    }
                    FieldData::File { file, len, path } => {
                        read_exact_at(file, path, within, len, dst)?;
                    }
                }
                filled += n;
            }
            at += part_len;
        }
        if filled < buf.len() {
            return Err(Error::invalid_input("record", "read past its end"));
        }
        Ok(())
    }

    /// Calls `each(piece, is_last)` with the record's bytes in order, in pieces of at most
    /// [`COPY_PIECE_BYTES`] (`buf` holds file pieces), checking that every file has exactly
    /// its length.
    pub(crate) fn pieces(
        &self,
        buf: &mut Vec<u8>,
        each: &mut dyn FnMut(&[u8], bool) -> Result<()>,
    ) -> Result<()> {
        let sources = match self {
            RecordBytes::Encoded(b) => {
                let mut chunks = b.chunks(COPY_PIECE_BYTES).peekable();
                while let Some(c) = chunks.next() {
                    each(c, chunks.peek().is_none())?;
                }
                return Ok(());
            }
            RecordBytes::Sources(s) => s,
        };
        let total = sources.len;
        let mut done = 0u64;
        let mut emit = |piece: &[u8], done: &mut u64| {
            *done += piece.len() as u64;
            each(piece, *done == total)
        };
        for c in sources.head.chunks(COPY_PIECE_BYTES) {
            emit(c, &mut done)?;
        }
        for (_, field) in sources.fields {
            match *field {
                FieldData::Bytes(b) => {
                    for c in b.chunks(COPY_PIECE_BYTES) {
                        emit(c, &mut done)?;
                    }
                }
                FieldData::File { file, len, path } => {
                    let mut at = 0u64;
                    while at < len {
                        let n = (len - at).min(COPY_PIECE_BYTES as u64) as usize;
                        buf.resize(n, 0);
                        read_exact_at(file, path, at, len, buf)?;
                        at += n as u64;
                        emit(buf, &mut done)?;
                    }
                    refuse_growth(file, path, len)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads the whole of `file`, which must be exactly `len` bytes long.
pub(crate) fn read_whole(file: &File, len: u64, path: &Path) -> Result<Vec<u8>> {
    let n = usize::try_from(len).map_err(|_| {
        Error::input_changed(
            path,
            0,
            InputChange::Size {
                expected: len,
                found: len,
            },
        )
    })?;
    let mut bytes = vec![0u8; n];
    read_exact_at(file, path, 0, len, &mut bytes)?;
    refuse_growth(file, path, len)?;
    Ok(bytes)
}

/// Fills `buf` from `file` at `offset`; a file that ends first has shrunk from `len`.
fn read_exact_at(file: &File, path: &Path, offset: u64, len: u64, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let at = offset + filled as u64;
        match file.read_at(&mut buf[filled..], at) {
            Ok(0) => {
                return Err(Error::input_changed(
                    path,
                    at,
                    InputChange::Shrank { expected: len },
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io_at(path, "read", at, e)),
        }
    }
    Ok(())
}

/// Refuses a file with a byte at `len`, which it should not have.
fn refuse_growth(file: &File, path: &Path, len: u64) -> Result<()> {
    let mut one = [0u8; 1];
    loop {
        match file.read_at(&mut one, len) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(Error::input_changed(
                    path,
                    len,
                    InputChange::Grew { expected: len },
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io_at(path, "read", len, e)),
        }
    }
}
