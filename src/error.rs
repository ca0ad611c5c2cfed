//! Errors: every one names the file, the shard and the byte offset where it applies.
//!
//! One module, long because it is a catalogue: the error kinds, the typed defects and the
//! structures they are found in, each with its message. Every layer depends on it and it
//! depends on none, so it cannot be split by layer; split by kind, each part would import
//! the others' types for its messages.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from reading, writing or checking an archive.
///
/// Boxed so that `Result<T>` stays one word wide on the happy path.
pub struct Error(Box<ErrorKind>);

/// Where in an archive an error or a finding applies: a file, the shard it is, and a byte
/// offset or range in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The file (shard or manifest) concerned.
    pub file: PathBuf,
    /// The shard number, when the file is a shard.
    pub shard: Option<u32>,
    /// The byte offset in `file`.
    pub offset: u64,
    /// The length of the byte range starting at `offset`; 0 for a point.
    #[serde(default)]
    pub len: u64,
}

impl Location {
    /// A location in a shard file.
    pub fn shard(file: &Path, shard: u32, offset: u64) -> Self {
        Location {
            file: file.to_path_buf(),
            shard: Some(shard),
            offset,
            len: 0,
        }
    }

    /// A location in a file that is not a shard (the manifest, an input file).
    pub fn file(file: &Path, offset: u64) -> Self {
        Location {
            file: file.to_path_buf(),
            shard: None,
            offset,
            len: 0,
        }
    }

    /// The same place, as a range of `len` bytes.
    #[must_use]
    pub fn len(mut self, len: u64) -> Self {
        self.len = len;
        self
    }

    /// The same place in a file whose shard number is `shard`, when it is known.
    #[must_use]
    pub fn in_shard(mut self, shard: Option<u32>) -> Self {
        if shard.is_some() {
            self.shard = shard;
        }
        self
    }

    /// The byte just past the range (`offset` for a point).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(shard) = self.shard {
            write!(f, " (shard {shard})")?;
        }
        write!(f, " at byte {}", self.offset)?;
        if self.len > 0 {
            write!(f, "..{}", self.end())?;
        }
        Ok(())
    }
}

/// The part of an archive, stream or parity file that a [`Defect`] is in. New variants may
/// be added in minor releases.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Structure {
    /// A shard file as a whole (its length, its BLAKE3 digest, its presence).
    ShardFile,
    /// The shard header (§3).
    ShardHeader,
    /// The zero padding after the header and dictionary.
    HeaderPadding,
    /// The shard dictionary (§5.5).
    Dictionary,
    /// A block header (§5.1), before its number is known.
    BlockHeader,
    /// A block, by number: its place, codec or records.
    Block {
        /// The block number in the shard.
        block: u32,
    },
    /// A block's payload.
    BlockPayload {
        /// The block number in the shard.
        block: u32,
    },
    /// A zstd frame of a block's payload.
    BlockFrame {
        /// The block number in the shard.
        block: u32,
    },
    /// The zero padding after a block.
    BlockPadding,
    /// A record or filler inside a decoded block (§5.4).
    Record {
        /// The record number in the shard, when known.
        record: Option<u64>,
    },
    /// A filler between records (§5.4).
    Filler,
    /// The record table of the index (§7).
    RecordTable,
    /// A block table entry of the index.
    BlockEntry {
        /// The block number in the shard.
        block: u32,
    },
    /// The key-order table of the index.
    KeyOrder,
    /// An entry of the key-order table, by rank.
    KeyOrderEntry {
        /// The entry's rank (its position in the table).
        rank: u32,
    },
    /// The key heap of the index.
    KeyHeap,
    /// The index as a whole (its CRC, its geometry).
    Index,
    /// The zero padding after the index.
    IndexPadding,
    /// The shard trailer (§8).
    Trailer,
    /// The manifest (§9).
    Manifest,
    /// A shard's entry in the manifest.
    ManifestShard {
        /// The shard number.
        shard: u32,
    },
    /// A volume of a split archive (§16).
    Volume {
        /// The volume number, from 1.
        volume: u32,
        /// The number of volumes.
        of: u32,
    },
    /// The copy of the manifest in a volume's folder.
    VolumeManifest {
        /// The volume number, from 1.
        volume: u32,
    },
    /// A file left behind in an archive folder by an interrupted pack, protect or repair.
    LeftoverFile,
    /// The start of a stream (§12).
    Stream,
    /// A stream entry header.
    StreamEntry,
    /// The zero padding of a stream.
    StreamPadding,
    /// The parity file header (§17).
    ParityHeader,
    /// The copy of the parity header at the end of the parity file.
    ParityHeaderCopy,
    /// The zero bytes between the parity header and the first parity layer.
    ParityZeroGap,
    /// The parity file's tables.
    ParityTables,
    /// The second copy of the parity file's tables.
    ParityTablesCopy,
    /// The parity file's table of protected files.
    ParityFileTable,
    /// A parity file as a whole.
    ParityFile,
    /// The parity chunks and their digests.
    ParityChunks,
    /// A parity stripe.
    ParityStripe,
}

impl Structure {
    /// A short, stable, machine-readable name: "shard_header", "block_payload", ...
    pub fn name(self) -> &'static str {
        match self {
            Structure::ShardFile => "shard_file",
            Structure::ShardHeader => "shard_header",
            Structure::HeaderPadding => "header_padding",
            Structure::Dictionary => "dictionary",
            Structure::BlockHeader => "block_header",
            Structure::Block { .. } => "block",
            Structure::BlockPayload { .. } => "block_payload",
            Structure::BlockFrame { .. } => "block_frame",
            Structure::BlockPadding => "block_padding",
            Structure::Record { .. } => "record",
            Structure::Filler => "filler",
            Structure::RecordTable => "record_table",
            Structure::BlockEntry { .. } => "block_entry",
            Structure::KeyOrder => "key_order",
            Structure::KeyOrderEntry { .. } => "key_order_entry",
            Structure::KeyHeap => "key_heap",
            Structure::Index => "index",
            Structure::IndexPadding => "index_padding",
            Structure::Trailer => "trailer",
            Structure::Manifest => "manifest",
            Structure::ManifestShard { .. } => "manifest_shard",
            Structure::Volume { .. } => "volume",
            Structure::VolumeManifest { .. } => "volume_manifest",
            Structure::LeftoverFile => "leftover_file",
            Structure::Stream => "stream",
            Structure::StreamEntry => "stream_entry",
            Structure::StreamPadding => "stream_padding",
            Structure::ParityHeader => "parity_header",
            Structure::ParityHeaderCopy => "parity_header_copy",
            Structure::ParityZeroGap => "parity_zero_gap",
            Structure::ParityTables => "parity_tables",
            Structure::ParityTablesCopy => "parity_tables_copy",
            Structure::ParityFileTable => "parity_file_table",
            Structure::ParityFile => "parity_file",
            Structure::ParityChunks => "parity_chunks",
            Structure::ParityStripe => "parity_stripe",
        }
    }
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::ShardFile => f.write_str("shard file"),
            Structure::ShardHeader => f.write_str("shard header"),
            Structure::HeaderPadding => f.write_str("header padding"),
            Structure::Dictionary => f.write_str("shard dictionary"),
            Structure::BlockHeader => f.write_str("block header"),
            Structure::Block { block } => write!(f, "block {block}"),
            Structure::BlockPayload { block } => write!(f, "block {block} payload"),
            Structure::BlockFrame { block } => write!(f, "block {block} zstd frame"),
            Structure::BlockPadding => f.write_str("block padding"),
            Structure::Record { record: None } => f.write_str("record"),
            Structure::Record { record: Some(n) } => write!(f, "record {n}"),
            Structure::Filler => f.write_str("filler"),
            Structure::RecordTable => f.write_str("record table"),
            Structure::BlockEntry { block } => write!(f, "block {block} entry"),
            Structure::KeyOrder => f.write_str("key order"),
            Structure::KeyOrderEntry { rank } => write!(f, "key order entry {rank}"),
            Structure::KeyHeap => f.write_str("key heap"),
            Structure::Index => f.write_str("index"),
            Structure::IndexPadding => f.write_str("index padding"),
            Structure::Trailer => f.write_str("trailer"),
            Structure::Manifest => f.write_str("manifest"),
            Structure::ManifestShard { shard } => write!(f, "manifest entry of shard {shard}"),
            Structure::Volume { volume, of } => write!(f, "volume {volume} of {of}"),
            Structure::VolumeManifest { volume } => write!(f, "manifest of volume {volume}"),
            Structure::LeftoverFile => f.write_str("leftover"),
            Structure::Stream => f.write_str("stream"),
            Structure::StreamEntry => f.write_str("stream entry"),
            Structure::StreamPadding => f.write_str("stream padding"),
            Structure::ParityHeader => f.write_str("parity header"),
            Structure::ParityHeaderCopy => f.write_str("parity header copy"),
            Structure::ParityZeroGap => f.write_str("parity zero gap"),
            Structure::ParityTables => f.write_str("parity tables"),
            Structure::ParityTablesCopy => f.write_str("parity tables copy"),
            Structure::ParityFileTable => f.write_str("parity file table"),
            Structure::ParityFile => f.write_str("parity file"),
            Structure::ParityChunks => f.write_str("parity chunks"),
            Structure::ParityStripe => f.write_str("parity stripe"),
        }
    }
}

/// What is wrong with stored bytes, typed so that callers can match on it. `Display` gives
/// the sentence `verify` prints ("block 3 payload: expected crc32 0x…, found 0x…"). New
/// variants may be added in minor releases.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// A CRC-32 does not match the bytes it covers.
    Crc {
        /// The structure the CRC covers.
        structure: Structure,
        /// The CRC recorded for the bytes (the stored CRC field, or its copy in the header
        /// or the index).
        expected: u32,
        /// The CRC of the bytes read.
        found: u32,
    },
    /// A BLAKE3 digest does not match (hex).
    Digest {
        /// What the digest covers.
        structure: Structure,
        /// The digest recorded (manifest, header, parity file).
        expected: String,
        /// The digest of the bytes read.
        found: String,
    },
    /// A structure does not start with its magic bytes (hex).
    Magic {
        /// The structure.
        structure: Structure,
        /// The magic the format requires (hex), or what may start there.
        expected: String,
        /// The bytes found.
        found: String,
    },
    /// Bytes the format requires to be zero (padding, reserved fields) are not.
    NotZero {
        /// The padding or structure with reserved bytes.
        structure: Structure,
    },
    /// The data ends before the structure does.
    Truncated {
        /// The structure cut short.
        structure: Structure,
        /// Bytes the structure needs from its start.
        expected_bytes: u64,
        /// Bytes there, when known.
        found_bytes: Option<u64>,
    },
    /// A stream ends before the structure does (a torn tape or pipe).
    StreamEnds {
        /// The structure being read.
        structure: Structure,
        /// The stream offset of the end.
        end: u64,
        /// True when the end is not on a record boundary.
        mid_record: bool,
    },
    /// The file or structure is not there at all.
    Missing {
        /// What is missing.
        structure: Structure,
        /// What should be there.
        expected: String,
        /// Why it is missing or what follows, when known (empty otherwise).
        detail: String,
    },
    /// A field disagrees with another record of the same fact: the manifest, the index, the
    /// header or the blocks as read.
    Mismatch {
        /// The structure holding the field.
        structure: Structure,
        /// The field ("record count", "archive id", ...); empty for the structure itself.
        field: &'static str,
        /// The value the other record gives.
        expected: String,
        /// The value found.
        found: String,
    },
    /// A field holds a value the format forbids.
    Invalid {
        /// The structure holding the field.
        structure: Structure,
        /// The field ("codec", "alignment", ...); empty for the structure itself.
        field: &'static str,
        /// What the format allows.
        expected: String,
        /// What was found.
        found: String,
    },
    /// Compressed or encoded data does not decode.
    Undecodable {
        /// The structure.
        structure: Structure,
        /// What it should have decoded to.
        expected: String,
        /// The decoder's complaint.
        reason: String,
    },
}

impl Defect {
    pub(crate) fn crc(structure: Structure, expected: u32, found: u32) -> Self {
        Defect::Crc {
            structure,
            expected,
            found,
        }
    }

    pub(crate) fn digest(
        structure: Structure,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        Defect::Digest {
            structure,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    pub(crate) fn magic(structure: Structure, expected: &[u8], found: &[u8]) -> Self {
        Defect::Magic {
            structure,
            expected: hex(expected),
            found: hex(found),
        }
    }

    pub(crate) fn not_zero(structure: Structure) -> Self {
        Defect::NotZero { structure }
    }

    pub(crate) fn truncated(
        structure: Structure,
        expected_bytes: u64,
        found_bytes: Option<u64>,
    ) -> Self {
        Defect::Truncated {
            structure,
            expected_bytes,
            found_bytes,
        }
    }

    pub(crate) fn missing(structure: Structure, expected: impl fmt::Display) -> Self {
        Defect::Missing {
            structure,
            expected: expected.to_string(),
            detail: String::new(),
        }
    }

    pub(crate) fn missing_because(
        structure: Structure,
        expected: impl fmt::Display,
        detail: impl fmt::Display,
    ) -> Self {
        Defect::Missing {
            structure,
            expected: expected.to_string(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn mismatch(
        structure: Structure,
        field: &'static str,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        Defect::Mismatch {
            structure,
            field,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    pub(crate) fn invalid(
        structure: Structure,
        field: &'static str,
        expected: impl fmt::Display,
        found: impl fmt::Display,
    ) -> Self {
        Defect::Invalid {
            structure,
            field,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    pub(crate) fn undecodable(
        structure: Structure,
        expected: impl fmt::Display,
        reason: impl fmt::Display,
    ) -> Self {
        Defect::Undecodable {
            structure,
            expected: expected.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The structure the defect is in.
    pub fn structure(&self) -> Structure {
        match self {
            Defect::Crc { structure, .. }
            | Defect::Digest { structure, .. }
            | Defect::Magic { structure, .. }
            | Defect::NotZero { structure }
            | Defect::Truncated { structure, .. }
            | Defect::StreamEnds { structure, .. }
            | Defect::Missing { structure, .. }
            | Defect::Mismatch { structure, .. }
            | Defect::Invalid { structure, .. }
            | Defect::Undecodable { structure, .. } => *structure,
        }
    }

    /// The same defect, said of `structure` instead (a record decoded without knowing its
    /// number, once the number is known).
    #[must_use]
    pub(crate) fn of(mut self, to: Structure) -> Self {
        match &mut self {
            Defect::Crc { structure, .. }
            | Defect::Digest { structure, .. }
            | Defect::Magic { structure, .. }
            | Defect::NotZero { structure }
            | Defect::Truncated { structure, .. }
            | Defect::StreamEnds { structure, .. }
            | Defect::Missing { structure, .. }
            | Defect::Mismatch { structure, .. }
            | Defect::Invalid { structure, .. }
            | Defect::Undecodable { structure, .. } => *structure = to,
        }
        self
    }

    /// A short, stable, machine-readable name of the kind: "crc", "digest", "magic",
    /// "not_zero", "truncated", "stream_ends", "missing", "mismatch", "invalid",
    /// "undecodable".
    pub fn name(&self) -> &'static str {
        match self {
            Defect::Crc { .. } => "crc",
            Defect::Digest { .. } => "digest",
            Defect::Magic { .. } => "magic",
            Defect::NotZero { .. } => "not_zero",
            Defect::Truncated { .. } => "truncated",
            Defect::StreamEnds { .. } => "stream_ends",
            Defect::Missing { .. } => "missing",
            Defect::Mismatch { .. } => "mismatch",
            Defect::Invalid { .. } => "invalid",
            Defect::Undecodable { .. } => "undecodable",
        }
    }

    /// What is damaged, for people: "block 3 payload", "trailer record count".
    pub fn what(&self) -> String {
        let with_field = |structure: &Structure, field: &str| {
            if field.is_empty() {
                structure.to_string()
            } else {
                format!("{structure} {field}")
            }
        };
        match self {
            Defect::Crc { structure, .. }
            | Defect::NotZero { structure }
            | Defect::Truncated { structure, .. }
            | Defect::StreamEnds { structure, .. }
            | Defect::Missing { structure, .. }
            | Defect::Undecodable { structure, .. } => structure.to_string(),
            Defect::Digest {
                structure: Structure::ShardFile,
                ..
            } => "shard digest (BLAKE3)".to_string(),
            Defect::Digest {
                structure: Structure::Manifest,
                ..
            } => "manifest root digest".to_string(),
            Defect::Digest { structure, .. } => with_field(structure, "digest (BLAKE3)"),
            Defect::Magic { structure, .. } => with_field(structure, "magic"),
            Defect::Mismatch {
                structure, field, ..
            }
            | Defect::Invalid {
                structure, field, ..
            } => with_field(structure, field),
        }
    }

    /// What the format or another record requires, for people.
    pub fn expected(&self) -> String {
        match self {
            Defect::Crc { expected, .. } => format!("crc32 {expected:#010x}"),
            Defect::NotZero { .. } => "zero bytes".to_string(),
            Defect::Truncated { expected_bytes, .. } => format!("{expected_bytes} bytes"),
            Defect::StreamEnds { .. } => "more records".to_string(),
            Defect::Digest { expected, .. }
            | Defect::Magic { expected, .. }
            | Defect::Missing { expected, .. }
            | Defect::Mismatch { expected, .. }
            | Defect::Invalid { expected, .. }
            | Defect::Undecodable { expected, .. } => expected.clone(),
        }
    }

    /// What was found, for people.
    pub fn found(&self) -> String {
        match self {
            Defect::Crc { found, .. } => format!("{found:#010x}"),
            Defect::NotZero { .. } => "non-zero bytes".to_string(),
            Defect::Truncated {
                found_bytes: None, ..
            } => "the end of the data".to_string(),
            Defect::Truncated {
                found_bytes: Some(n),
                ..
            } => format!("{n} bytes"),
            Defect::StreamEnds {
                end,
                mid_record: true,
                ..
            } => format!("the stream ends mid-record at byte {end}"),
            Defect::StreamEnds { end, .. } => format!("the stream ends at byte {end}"),
            Defect::Missing { detail, .. } if detail.is_empty() => "missing".to_string(),
            Defect::Missing { detail, .. } => format!("missing ({detail})"),
            Defect::Undecodable { reason, .. } => reason.clone(),
            Defect::Digest { found, .. }
            | Defect::Magic { found, .. }
            | Defect::Mismatch { found, .. }
            | Defect::Invalid { found, .. } => found.clone(),
        }
    }
}

/// A shard file of `found` bytes where the manifest lists `expected`: cut short, or longer.
pub(crate) fn shard_length(expected: u64, found: u64) -> Defect {
    if found < expected {
        Defect::truncated(Structure::ShardFile, expected, Some(found))
    } else {
        Defect::mismatch(
            Structure::ShardFile,
            "length",
            format!("{expected} bytes (manifest)"),
            format!("{found} bytes"),
        )
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.what(),
            self.expected(),
            self.found()
        )
    }
}

/// Where in a tar file (a WebDataset shard being imported) an error applies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TarLocation {
    /// The tar file (`<stdin>` for standard input).
    pub file: PathBuf,
    /// The member concerned, as named in the tar, when its header could be read.
    pub member: Option<String>,
    /// The member read before the damage, when the damaged header has no readable name.
    pub after: Option<String>,
    /// The byte offset of the member's header (or of the damage) in the tar stream, after
    /// decompression for a compressed tar.
    pub offset: u64,
}

impl TarLocation {
    /// A place in `file` at `offset`, in no particular member.
    pub fn new(file: &Path, offset: u64) -> Self {
        TarLocation {
            file: file.to_path_buf(),
            member: None,
            after: None,
            offset,
        }
    }

    /// The same place, in the member `name`.
    #[must_use]
    pub fn member(mut self, name: impl Into<String>) -> Self {
        self.member = Some(name.into());
        self
    }

    /// The same place, just after the member `name`.
    #[must_use]
    pub fn after(mut self, name: Option<&str>) -> Self {
        self.after = name.map(str::to_owned);
        self
    }
}

impl fmt::Display for TarLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.file.display(), self.offset)?;
        match (&self.member, &self.after) {
            (Some(member), _) => write!(f, ", member {member:?}"),
            (None, Some(after)) => write!(f, ", after member {after:?}"),
            (None, None) => Ok(()),
        }
    }
}

/// What is wrong with a tar file or one of its members. New variants may be added in
/// minor releases.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarProblem {
    /// The bytes are not a valid tar, or its gzip or zstd compression does not decode (a
    /// header checksum, a number field, a pax record, a compressed frame). Re-fetch the
    /// file.
    Damaged {
        /// The tar reader's or decompressor's complaint.
        reason: String,
    },
    /// The tar ends inside a header, a member or a compressed frame, or before its
    /// end-of-archive marker (two zero blocks). Re-fetch the file.
    Truncated {
        /// What was cut short.
        reason: String,
    },
    /// The file is compressed in a way that is not read (bzip2, xz): decompress it first.
    Unsupported {
        /// What was found.
        reason: String,
    },
    /// A symbolic or hard link, a device, a FIFO or a member of an unknown type: only
    /// regular files become fields. Skip such members with `skip_special`.
    Special {
        /// What the member is ("a symbolic link", ...).
        kind: String,
    },
    /// The member's name cannot become a key and field name: not UTF-8, absolute, with an
    /// empty, `.` or `..` component, a NUL or a line break, or too long.
    BadName {
        /// Why.
        reason: String,
    },
    /// Two members of one sample have the same field name (webdataset refuses this too).
    DuplicateField {
        /// The sample's key.
        key: String,
        /// The field name.
        field: String,
    },
    /// The key was used by an earlier sample: a tar's members must be grouped by key (a
    /// key's members next to each other), and keys must be unique across the tars.
    KeyReused {
        /// The key.
        key: String,
    },
    /// The writer refused the sample (too large, too many fields).
    Refused {
        /// Why.
        reason: String,
    },
}

impl TarProblem {
    /// A short, stable, machine-readable name: "damaged", "truncated", "unsupported",
    /// "special", "bad_name", "duplicate_field", "key_reused", "refused".
    pub fn name(&self) -> &'static str {
        match self {
            TarProblem::Damaged { .. } => "damaged",
            TarProblem::Truncated { .. } => "truncated",
            TarProblem::Unsupported { .. } => "unsupported",
            TarProblem::Special { .. } => "special",
            TarProblem::BadName { .. } => "bad_name",
            TarProblem::DuplicateField { .. } => "duplicate_field",
            TarProblem::KeyReused { .. } => "key_reused",
            TarProblem::Refused { .. } => "refused",
        }
    }
}

impl fmt::Display for TarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarProblem::Damaged { reason } => write!(f, "damaged tar: {reason}"),
            TarProblem::Truncated { reason } => write!(f, "truncated tar: {reason}"),
            TarProblem::Unsupported { reason } => write!(f, "unsupported input: {reason}"),
            TarProblem::Special { kind } => write!(
                f,
                "the member is {kind}; only regular files are imported (skip_special skips it)"
            ),
            TarProblem::BadName { reason } => write!(f, "unusable member name: {reason}"),
            TarProblem::DuplicateField { key, field } => write!(
                f,
                "sample {key:?} has two members with the field name {field:?}"
            ),
            TarProblem::KeyReused { key } => write!(
                f,
                "key {key:?} was used by an earlier sample: a key's members must be next to \
                 each other, and keys unique across the tars"
            ),
            TarProblem::Refused { reason } => write!(f, "sample refused: {reason}"),
        }
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
        /// What is wrong there.
        defect: Defect,
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
    /// A file being read into an archive is not what it was when it was listed or opened:
    /// it grew, shrank, changed between two reads, or was replaced by something that is not
    /// a regular file (which is never followed). Nothing of the sample was kept; pack again
    /// once the folder has stopped changing.
    InputChanged {
        /// The file.
        path: PathBuf,
        /// Where in the file the change was seen.
        offset: u64,
        /// What changed.
        change: InputChange,
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
    /// A tar file being imported is damaged, cut short or compressed in a way not read, or
    /// holds a member that cannot become a sample field. A failed import removes the
    /// archive folder it created.
    Tar {
        /// The tar file, member and offset.
        location: TarLocation,
        /// What is wrong there.
        problem: TarProblem,
    },
    /// A remote archive's server failed a request or answered with other than what was
    /// asked (a wrong length, a missing object, an error status). Bytes a server returns
    /// are checked as a local file's are, so wrong bytes are [`ErrorKind::Corrupt`] instead.
    /// Retry later, or check the URL and the credentials in the environment (which are
    /// never shown here).
    Remote {
        /// The object's URL, without credentials.
        url: String,
        /// The byte offset asked for, when the request was for a range.
        offset: Option<u64>,
        /// The HTTP status of the answer, when one was received.
        status: Option<u16>,
        /// What was asked for, e.g. "4096 bytes".
        expected: String,
        /// What went wrong.
        reason: String,
    },
}

/// How a file being read into an archive was found to have changed (see
/// [`ErrorKind::InputChanged`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputChange {
    /// Its size when opened is not the size taken before (when the folder was walked, or
    /// the length the caller gave).
    Size {
        /// The size taken before.
        expected: u64,
        /// Its size when opened.
        found: u64,
    },
    /// It ended before its `expected` length, at the offset of the error.
    Shrank {
        /// The length it should have.
        expected: u64,
    },
    /// It has more bytes than its `expected` length.
    Grew {
        /// The length it should have.
        expected: u64,
    },
    /// Its bytes differ between the two reads of a sample too large to hold in memory.
    Contents,
    /// It is no longer a regular file (it was replaced, for instance by a symbolic link).
    NotRegular {
        /// What it is now, e.g. "a symbolic link".
        now: &'static str,
    },
}

impl fmt::Display for InputChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputChange::Size { expected, found } => write!(
                f,
                "it is {found} bytes long, not the {expected} bytes it had when listed"
            ),
            InputChange::Shrank { expected } => {
                write!(f, "it ended before its {expected} bytes")
            }
            InputChange::Grew { expected } => write!(f, "it grew beyond its {expected} bytes"),
            InputChange::Contents => f.write_str("its bytes changed between two reads"),
            InputChange::NotRegular { now } => {
                write!(f, "it is now {now}, not a regular file (never followed)")
            }
        }
    }
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
        // A remote source's failure comes through `ReadAt` as an I/O error: its kind is kept.
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            if let Some(Ok(err)) = source.into_inner().map(|e| e.downcast::<Error>()) {
                return *err;
            }
            return ErrorKind::Io {
                path: path.to_path_buf(),
                op,
                offset: Some(offset),
                source: io::Error::other("remote read failed"),
            }
            .into();
        }
        ErrorKind::Io {
            path: path.to_path_buf(),
            op,
            offset: Some(offset),
            source,
        }
        .into()
    }

    pub(crate) fn input_changed(path: &Path, offset: u64, change: InputChange) -> Self {
        ErrorKind::InputChanged {
            path: path.to_path_buf(),
            offset,
            change,
        }
        .into()
    }

    pub(crate) fn corrupt(location: Location, defect: Defect) -> Self {
        ErrorKind::Corrupt { location, defect }.into()
    }

    /// The defect, when this is a [`ErrorKind::Corrupt`] error.
    pub fn defect(&self) -> Option<&Defect> {
        match &*self.0 {
            ErrorKind::Corrupt { defect, .. } => Some(defect),
            _ => None,
        }
    }

    pub(crate) fn tar(location: TarLocation, problem: TarProblem) -> Self {
        ErrorKind::Tar { location, problem }.into()
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
            ErrorKind::Corrupt { location, defect } => write!(
                f,
                "corrupt {} in {location}: expected {}, found {}",
                defect.what(),
                defect.expected(),
                defect.found()
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
            ErrorKind::InputChanged {
                path,
                offset,
                change,
            } => write!(
                f,
                "{} changed while being read (at byte {offset}): {change}",
                path.display()
            ),
            ErrorKind::LimitExceeded {
                location,
                limit,
                max,
                got,
            } => write!(
                f,
                "{limit} exceeded in {location}: limit {max}, found {got}"
            ),
            ErrorKind::Tar { location, problem } => write!(f, "{location}: {problem}"),
            ErrorKind::Remote {
                url,
                offset,
                status,
                expected,
                reason,
            } => {
                write!(f, "remote read of {url}")?;
                if let Some(offset) = offset {
                    write!(f, " at byte {offset}")?;
                }
                write!(f, " failed")?;
                if let Some(status) = status {
                    write!(f, " (HTTP {status})")?;
                }
                write!(f, ": expected {expected}: {reason}")
            }
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
            ErrorKind::InvalidInput { .. } | ErrorKind::InputChanged { .. } => {
                io::ErrorKind::InvalidInput
            }
            ErrorKind::Incomplete { .. } => io::ErrorKind::InvalidData,
            ErrorKind::Tar {
                problem: TarProblem::Unsupported { .. },
                ..
            } => io::ErrorKind::Unsupported,
            ErrorKind::Tar {
                problem: TarProblem::Damaged { .. } | TarProblem::Truncated { .. },
                ..
            } => io::ErrorKind::InvalidData,
            ErrorKind::Tar { .. } => io::ErrorKind::InvalidInput,
            ErrorKind::Remote {
                status: Some(404), ..
            } => io::ErrorKind::NotFound,
            ErrorKind::Remote { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// Lowercase hex of `bytes`, as digests and ids are written in messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
