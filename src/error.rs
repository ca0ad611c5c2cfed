//! Errors: every one names the file, the shard and the byte offset where it applies.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from reading, writing or checking an archive.
///
/// Boxed so that `Result<T>` stays one word wide on the happy path.
pub struct Error(Box<ErrorKind>);

/// Where in an archive an error or a finding applies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The file (shard or manifest) concerned.
    pub file: PathBuf,
    /// The shard number, when the file is a shard.
    pub shard: Option<u32>,
    /// The byte offset in `file`.
    pub offset: u64,
}

impl Location {
    /// A location in a shard file.
    pub fn shard(file: &Path, shard: u32, offset: u64) -> Self {
        Location {
            file: file.to_path_buf(),
            shard: Some(shard),
            offset,
        }
    }

    /// A location in a file that is not a shard (the manifest, an input file).
    pub fn file(file: &Path, offset: u64) -> Self {
        Location {
            file: file.to_path_buf(),
            shard: None,
            offset,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(shard) = self.shard {
            write!(f, " (shard {shard})")?;
        }
        write!(f, " at byte {}", self.offset)
    }
}

/// What went wrong. New variants may be added in minor releases.
#[non_exhaustive]
#[derive(Debug)]
pub enum ErrorKind {
    /// An operating-system I/O error on `path`.
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done ("open", "read", "write", ...).
        op: &'static str,
        /// The byte offset in `path`, when the operation had one.
        offset: Option<u64>,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored bytes do not match what the format requires: the data is damaged or was not
    /// written by a conforming writer. `verify` reports every such place; `repair` or
    /// re-transfer the shard named here.
    Corrupt {
        /// Where the defect is.
        location: Location,
        /// What was being read (e.g. "block header", "record 41").
        what: String,
        /// What the format requires there.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The file is of a format version this build cannot read: upgrade shardpack.
    UnsupportedVersion {
        /// Where the version was read.
        location: Location,
        /// The highest (major, minor) version this build reads.
        expected: (u16, u16),
        /// The version found.
        got: (u16, u16),
    },
    /// The archive has no finished manifest: `pack` was interrupted or the folder is not an
    /// archive. Re-run `pack`, or `salvage` the shards.
    Incomplete {
        /// The archive folder.
        path: PathBuf,
        /// Why it is considered incomplete.
        reason: String,
    },
    /// The ordinal is not below the number of samples.
    OrdinalOutOfRange {
        /// The ordinal asked for.
        ordinal: u64,
        /// The number of samples in the archive.
        len: u64,
    },
    /// No sample has this key.
    KeyNotFound {
        /// The key asked for.
        key: String,
    },
    /// The caller's input is not acceptable (bad key, duplicate key, bad option...). Nothing
    /// was written for it.
    InvalidInput {
        /// Which input, e.g. the key or the input file path.
        subject: String,
        /// Why it is refused.
        reason: String,
    },
    /// A configured limit (see [`crate::Limits`]) stopped the operation before it allocated
    /// or wrote more than allowed.
    LimitExceeded {
        /// Where the limit was hit.
        location: Location,
        /// Which limit.
        limit: &'static str,
        /// The limit's value.
        max: u64,
        /// The value that exceeded it.
        got: u64,
    },
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Unwraps the kind of error.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// True when this is an operating-system I/O error rather than a defect in the data.
    pub fn is_io(&self) -> bool {
        matches!(*self.0, ErrorKind::Io { .. })
    }

    /// True when stored bytes are damaged or non-conforming.
    pub fn is_corruption(&self) -> bool {
        matches!(
            *self.0,
            ErrorKind::Corrupt { .. } | ErrorKind::LimitExceeded { .. }
        )
    }

    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        ErrorKind::Io {
            path: path.to_path_buf(),
            op,
            offset: None,
            source,
        }
        .into()
    }

    pub(crate) fn io_at(path: &Path, op: &'static str, offset: u64, source: io::Error) -> Self {
        ErrorKind::Io {
            path: path.to_path_buf(),
            op,
            offset: Some(offset),
            source,
        }
        .into()
    }

    pub(crate) fn corrupt(
        location: Location,
        what: impl Into<String>,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        ErrorKind::Corrupt {
            location,
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
        .into()
    }

    pub(crate) fn invalid_input(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        ErrorKind::InvalidInput {
            subject: subject.into(),
            reason: reason.into(),
        }
        .into()
    }

    /// The location of a data defect, if this error has one.
    pub fn location(&self) -> Option<&Location> {
        match &*self.0 {
            ErrorKind::Corrupt { location, .. }
            | ErrorKind::UnsupportedVersion { location, .. }
            | ErrorKind::LimitExceeded { location, .. } => Some(location),
            _ => None,
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            ErrorKind::Io {
                path,
                op,
                offset: None,
                source,
            } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            ErrorKind::Io {
                path,
                op,
                offset: Some(offset),
                source,
            } => {
                write!(
                    f,
                    "cannot {op} {} at byte {offset}: {source}",
                    path.display()
                )
            }
            ErrorKind::Corrupt {
                location,
                what,
                expected,
                found,
            } => write!(
                f,
                "corrupt {what} in {location}: expected {expected}, found {found}"
            ),
            ErrorKind::UnsupportedVersion {
                location,
                expected,
                got,
            } => write!(
                f,
                "unsupported format version {}.{} in {location}: this build reads up to {}.{}",
                got.0, got.1, expected.0, expected.1
            ),
            ErrorKind::Incomplete { path, reason } => {
                write!(f, "incomplete archive {}: {reason}", path.display())
            }
            ErrorKind::OrdinalOutOfRange { ordinal, len } => {
                write!(
                    f,
                    "ordinal {ordinal} is out of range: the archive has {len} samples"
                )
            }
            ErrorKind::KeyNotFound { key } => write!(f, "no sample has the key {key:?}"),
            ErrorKind::InvalidInput { subject, reason } => write!(f, "{subject}: {reason}"),
            ErrorKind::LimitExceeded {
                location,
                limit,
                max,
                got,
            } => write!(
                f,
                "{limit} exceeded in {location}: limit {max}, found {got}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            ErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind() {
            ErrorKind::Io { source, .. } => source.kind(),
            ErrorKind::Corrupt { .. } | ErrorKind::LimitExceeded { .. } => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::UnsupportedVersion { .. } => io::ErrorKind::Unsupported,
            ErrorKind::KeyNotFound { .. } | ErrorKind::OrdinalOutOfRange { .. } => {
                io::ErrorKind::NotFound
            }
            ErrorKind::InvalidInput { .. } => io::ErrorKind::InvalidInput,
            ErrorKind::Incomplete { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}
