//! What `verify` is asked and what it answers: its options and its report of findings.

use super::*;

/// How much `verify` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VerifyMode {
    /// Structure only: manifest, file presence and sizes, headers, trailers, index geometry.
    /// Reads a few hundred bytes per shard.
    Quick,
    /// Every byte: shard BLAKE3 digests, every block header and payload CRC, the index CRC
    /// and consistency, all padding, and the record CRCs of stored blocks.
    #[default]
    Full,
    /// `Full`, plus decompressing every compressed block and checking each record in it.
    Deep,
}

/// Options for [`verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// How much to read.
    pub mode: VerifyMode,
    /// The root digest the archive must have (from the label), 64 hex digits.
    pub expect_root: Option<String>,
    /// Caps on what hostile input can make the verifier allocate.
    pub limits: Limits,
    /// Records every read of the sequential pass.
    pub trace: Option<crate::IoTrace>,
    /// For a remote archive: read the shards through this on-disk cache (as
    /// [`crate::ArchiveOptions::remote_cache`] reads do), so that the bytes checked are
    /// the bytes reads would get. A shard with a finding has its cached blocks removed.
    pub remote_cache: Option<crate::RemoteCache>,
}

impl VerifyOptions {
    /// Refuses options that cannot be meant: an expected root that is not 64 hex digits
    /// is a mistyped argument, not damage to report.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(want) = &self.expect_root {
            let want = want.trim().to_ascii_lowercase();
            if crate::archive::manifest::parse_hex::<32>(&want).is_none() {
                return Err(Error::invalid_input(
                    format!("expected root {want:?}"),
                    "must be 64 hex digits, the root digest `info` prints",
                ));
            }
        }
        Ok(())
    }
}

/// One defect, with its place.
///
/// `what`, `expected` and `found` are the defect's sentence for people (and the JSON of
/// `verify --json`); match on [`Finding::defect`] instead of on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The file concerned.
    pub file: PathBuf,
    /// The shard number, when the file is a shard.
    pub shard: Option<u32>,
    /// First byte of the damaged range.
    pub offset: u64,
    /// Length of the damaged range (0 when unknown or not a range).
    pub len: u64,
    /// What is damaged.
    pub what: String,
    /// What the format requires there.
    pub expected: String,
    /// What was found.
    pub found: String,
    /// The typed defect; `None` for a finding that is an error rather than a defect in the
    /// data (an I/O error, an unsupported version, a limit). Serialized as its kind name
    /// ("crc", "digest", "not_zero", ...), with the structure as `structure`.
    #[serde(
        serialize_with = "serialize_defect_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub defect: Option<Defect>,
    /// The structure the defect is in, by its machine-readable name ("block_payload", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<&'static str>,
    /// First and last ordinal of the samples affected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<[u64; 2]>,
    /// Keys of the samples affected (at most a few), when the index is intact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

fn serialize_defect_name<S: serde::Serializer>(
    defect: &Option<Defect>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match defect {
        Some(d) => s.serialize_str(d.name()),
        None => s.serialize_none(),
    }
}

impl Finding {
    /// A finding of `defect` about `len` bytes at `offset` of `file`.
    pub(crate) fn new(
        file: PathBuf,
        shard: Option<u32>,
        offset: u64,
        len: u64,
        defect: Defect,
    ) -> Finding {
        Finding {
            file,
            shard,
            offset,
            len,
            what: defect.what(),
            expected: defect.expected(),
            found: defect.found(),
            structure: Some(defect.structure().name()),
            defect: Some(defect),
            ordinals: None,
            keys: Vec::new(),
        }
    }

    /// A finding from an error that is not a typed defect.
    fn untyped(
        file: PathBuf,
        shard: Option<u32>,
        offset: u64,
        len: u64,
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Finding {
        Finding {
            file,
            shard,
            offset,
            len,
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
            defect: None,
            structure: None,
            ordinals: None,
            keys: Vec::new(),
        }
    }

    /// The place the finding is about.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            shard: self.shard,
            offset: self.offset,
            len: self.len,
        }
    }

    /// The finding an error describes: its place, and its defect when it is one.
    pub(crate) fn from_error(err: &Error, shard: Option<u32>, len: u64) -> Finding {
        match err.kind() {
            ErrorKind::Corrupt { location, defect } => {
                let len = if len > 0 { len } else { location.len };
                Finding::new(
                    location.file.clone(),
                    shard.or(location.shard),
                    location.offset,
                    len,
                    defect.clone(),
                )
            }
            ErrorKind::UnsupportedVersion {
                location,
                expected,
                got,
            } => Finding::untyped(
                location.file.clone(),
                shard.or(location.shard),
                location.offset,
                len,
                "format version",
                format!("{}.{}", expected.0, expected.1),
                format!("{}.{}", got.0, got.1),
            ),
            ErrorKind::LimitExceeded {
                location,
                limit,
                max,
                got,
            } => Finding::untyped(
                location.file.clone(),
                shard.or(location.shard),
                location.offset,
                len,
                *limit,
                format!("at most {max}"),
                got.to_string(),
            ),
            ErrorKind::Io {
                path,
                op,
                offset,
                source,
            } => Finding::untyped(
                path.clone(),
                shard,
                offset.unwrap_or(0),
                len,
                format!("file ({op})"),
                "readable",
                source.to_string(),
            ),
            _ => Finding::untyped(
                PathBuf::new(),
                shard,
                0,
                len,
                "archive",
                "no error",
                err.to_string(),
            ),
        }
    }
}

impl From<&Error> for Finding {
    fn from(err: &Error) -> Finding {
        Finding::from_error(err, None, 0)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(shard) = self.shard {
            write!(f, " (shard {shard})")?;
        }
        write!(f, " at byte {}", self.offset)?;
        if self.len > 0 {
            write!(f, "..{}", self.offset.saturating_add(self.len))?;
        }
        write!(
            f,
            ": {}: expected {}, found {}",
            self.what, self.expected, self.found
        )?;
        if let Some([a, b]) = self.ordinals {
            write!(f, "; samples {a}..={b}")?;
        }
        if !self.keys.is_empty() {
            write!(f, " ({})", self.keys.join(", "))?;
        }
        Ok(())
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct VerifyReport {
    /// The archive folder.
    pub archive: PathBuf,
    /// The mode used.
    pub mode: VerifyMode,
    /// The root digest from the manifest, if it could be read.
    pub root: Option<String>,
    /// Manifest present and intact, and every shard file present with its manifest size.
    pub complete: bool,
    /// No finding at all.
    pub valid: bool,
    /// Number of shards checked.
    pub shards: u64,
    /// Number of samples according to the manifest.
    pub samples: u64,
    /// Bytes read and checked.
    pub bytes_checked: u64,
    /// Every defect found.
    pub findings: Vec<Finding>,
    /// Files no generation refers to, left by interrupted commands (§11.3). They change
    /// nothing the archive holds, so they do not make it invalid; `gc` removes them.
    pub leftovers: Vec<crate::archive::leftover::Leftover>,
    /// The number of generations checked: the current one and every one before it (0
    /// without a readable manifest).
    pub generations: u64,
    /// With parity: whether `repair` can rebuild every damaged byte (BagIt's
    /// complete/valid, plus recoverable): no volume is missing, every folder holding
    /// protected files has a parity file that loads, and every status is recoverable.
    /// `None` without any parity file or in quick mode.
    pub recoverable: Option<bool>,
    /// With parity: the damage each parity file sees, and the parity repair would need; one
    /// status per folder holding protected files (every present volume of a split archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parity: Option<Vec<crate::ParityStatus>>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}
