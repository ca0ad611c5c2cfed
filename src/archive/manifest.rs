//! The archive manifest (§11): `manifest.json`, the list of shards with their BLAKE3 digests,
//! bound together by the root digest.
//!
//! The schema, its canonical form, the root digest and the validation rules are one module
//! because each is defined in terms of the others (§11.1–§11.3): the root covers exactly the
//! members the schema has, validation recomputes the root, and the canonical length is
//! computed from the schema's serialization. A third of the file is its tests.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::format::{hex, FORMAT_VERSION, VERSION_1_0, VERSION_1_1, VERSION_1_3};
use crate::{Defect, Error, Limits, Location, Result, Structure};

/// File name of the manifest inside the archive folder: the current generation's.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The file name that keeps generation `number`'s manifest once a later one exists
/// (§11.3): `manifest-000001.json`.
pub fn generation_file_name(number: u64) -> String {
    format!("manifest-{number:06}.json")
}

/// The generation number a file name gives, for `manifest-NNNNNN.json` (six digits or more,
/// no sign, as [`generation_file_name`] writes them).
pub fn generation_of_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("manifest-")?.strip_suffix(".json")?;
    let number: u64 = digits.parse().ok()?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && generation_file_name(number) == name)
        .then_some(number)
}

/// Value of the manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "shardpack";

/// Domain separation prefix of the root digest input (§11.2).
const ROOT_DOMAIN: &[u8] = b"shardpack archive root v1\n";

/// The manifest name of a header's profile byte (§9).
pub fn profile_name(byte: u8) -> &'static str {
    crate::archive::media::MediaProfile::from_code(byte).map_or("unknown", |p| p.name)
}

/// The folder name of volume `number` (1-based) in an archive split into volumes.
pub fn volume_folder_name(number: u32) -> String {
    format!("vol-{number:04}")
}

/// The number of volumes the manifest's shards are on (0 when not split).
pub fn volume_count(manifest: &Manifest) -> u32 {
    manifest
        .shards
        .iter()
        .filter_map(|s| s.volume)
        .max()
        .unwrap_or(0)
}

/// Suffix of a file still being written (a shard, a parity file); renamed away when the
/// file is finished, so that no finished name ever holds a partial file.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The file name of shard `number`: `shard-000000.shp`, six digits or more.
pub fn shard_file_name(number: u32) -> String {
    format!("shard-{number:06}.shp")
}

/// The archive manifest. Field order is the serialization order, which is part of the
/// canonical form (§11.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"shardpack"`.
    pub format: String,
    /// `"MAJOR.MINOR"` of the shard format.
    pub format_version: String,
    /// Name and version of the writing tool, e.g. `"shardpack 0.1.0"`.
    pub writer: String,
    /// 32 lowercase hex digits, equal to every shard header's archive id.
    pub archive_id: String,
    /// The writer parameters.
    #[serde(deserialize_with = "object")]
    pub layout: Layout,
    /// Totals over all shards.
    #[serde(deserialize_with = "object")]
    pub totals: Totals,
    /// Every shard in order.
    #[serde(deserialize_with = "objects")]
    pub shards: Vec<ShardInfo>,
    /// The generation, from the second on (§11.3); absent in an archive's first.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_object"
    )]
    pub generation: Option<Generation>,
    /// BLAKE3 root digest over everything above (§11.2), 64 lowercase hex digits.
    pub root: String,
}

/// What makes a manifest a later generation of an archive (§11.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// The generation's number: 2 for the first append, one more for each after it. The
    /// first generation has none.
    pub number: u64,
    /// The root digest of the generation before, 64 lowercase hex digits.
    pub parent: String,
}

/// Writer parameters recorded in the manifest (and, in binary, in every shard header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Media profile name.
    pub profile: String,
    /// Alignment of blocks, index and file length, in bytes.
    pub align: u32,
    /// Target decoded size of a block.
    pub block_size: u64,
    /// Target size of a shard file.
    pub shard_size: u64,
    /// `"zstd"` or `"none"`.
    pub compression: String,
    /// zstd level (0 for none).
    pub level: i32,
    /// Capacity budget of one volume (optical discs), when the archive is split into
    /// volumes; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<u64>,
}

/// Totals over all shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Number of shards.
    pub shards: u64,
    /// Number of samples.
    pub samples: u64,
    /// Sum of shard file sizes.
    pub bytes: u64,
    /// Sum of record sizes before compression.
    pub raw_bytes: u64,
}

/// One shard's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name within the archive folder; `shard_file_name(number)`.
    pub file: String,
    /// Exact file size in bytes.
    pub size: u64,
    /// Number of samples.
    pub samples: u64,
    /// Global ordinal of the first sample.
    pub first_ordinal: u64,
    /// Sum of the shard's record lengths (equal to its trailer's).
    pub raw_bytes: u64,
    /// Smallest key in the shard (byte order).
    pub min_key: String,
    /// Largest key in the shard (byte order).
    pub max_key: String,
    /// BLAKE3 of the whole file, 64 lowercase hex digits.
    pub blake3: String,
    /// The volume (1-based) holding the shard, when the archive is split into volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u32>,
}

/// Deserializes a struct from a JSON object only. serde's derived `Deserialize` also takes
/// an array of the members' values in declaration order, which §11.1 forbids.
///
/// Deserializing from the bytes (rather than through a `serde_json::Value`) keeps serde's
/// duplicate-member check and the error's position, and allocates nothing but the result.
fn object<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}

/// An optional member that, when present, is a JSON object (`null` is refused).
fn some_object<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    object(deserializer).map(Some)
}

/// A `T` that was a JSON object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        object(d).map(Object)
    }
}

/// Deserializes an array whose every element is a JSON object (§11.1, `shards`).
fn objects<'de, D, T>(deserializer: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let elements = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(elements.into_iter().map(|Object(t)| t).collect())
}

/// Deserializes `T` from `bytes`, which must be one JSON object and nothing else.
fn from_object<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = object(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Indentation of the lines of a `shards` entry in the canonical form: two levels.
const ENTRY_INDENT_BYTES: u64 = 4;

impl ShardInfo {
    /// The bytes this entry takes in the canonical manifest (§11.1), with its indentation
    /// and without the `,` and LF that separate it from the next.
    pub(crate) fn canonical_len(&self) -> u64 {
        let alone = serde_json::to_vec_pretty(self).unwrap_or_default();
        let lines = alone.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        alone.len() as u64 + ENTRY_INDENT_BYTES * lines
    }
}

fn put_str(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

impl Manifest {
    /// Computes the root digest from every other field (§11.2).
    pub fn compute_root(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(ROOT_DOMAIN);
        put_str(&mut h, &self.format);
        put_str(&mut h, &self.format_version);
        put_str(&mut h, &self.writer);
        put_str(&mut h, &self.archive_id);
        let l = &self.layout;
        put_str(&mut h, &l.profile);
        h.update(&u64::from(l.align).to_le_bytes());
        h.update(&l.block_size.to_le_bytes());
        h.update(&l.shard_size.to_le_bytes());
        put_str(&mut h, &l.compression);
        h.update(&i64::from(l.level).to_le_bytes());
        h.update(&l.volume_size.unwrap_or(0).to_le_bytes());
        let t = &self.totals;
        for v in [t.shards, t.samples, t.bytes, t.raw_bytes] {
            h.update(&v.to_le_bytes());
        }
        h.update(&(self.shards.len() as u64).to_le_bytes());
        for s in &self.shards {
            put_str(&mut h, &s.file);
            for v in [s.size, s.samples, s.first_ordinal, s.raw_bytes] {
                h.update(&v.to_le_bytes());
            }
            put_str(&mut h, &s.min_key);
            put_str(&mut h, &s.max_key);
            put_str(&mut h, &s.blake3);
            h.update(&u64::from(s.volume.unwrap_or(0)).to_le_bytes());
        }
        if let Some(g) = &self.generation {
            h.update(&g.number.to_le_bytes());
            put_str(&mut h, &g.parent);
        }
        h.finalize().to_hex().to_string()
    }

    /// The canonical bytes of this manifest: pretty JSON with two-space indent and a final
    /// newline (§11.1).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The length of [`Manifest::to_canonical_bytes`] of this manifest, which lists no
    /// shards, once it lists `count` entries of `entries_len` canonical bytes in all
    /// ([`ShardInfo::canonical_len`]), without serializing them.
    pub(crate) fn canonical_len_with_entries(&self, count: u64, entries_len: u64) -> u64 {
        debug_assert!(self.shards.is_empty());
        let empty = self.to_canonical_bytes().len() as u64;
        match count {
            0 => empty,
            // `[]` becomes `[` LF, the entries separated by `,` LF, then LF, two spaces, `]`.
            n => empty - 2 + 2 + entries_len + 2 * (n - 1) + 4,
        }
    }

    /// Parses manifest bytes and checks every rule of §11 except the canonical form (which
    /// `verify` reports separately): totals, ordinals, file names, hex fields, root.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        // The version first: a later version may add fields that 1.0's strict schema rejects,
        // and must be reported as unsupported rather than as damage. Only a member of a
        // top-level object counts (§10 order of checks); every other member is ignored.
        #[derive(Deserialize)]
        struct VersionProbe {
            format_version: Option<String>,
        }
        if let Ok(VersionProbe {
            format_version: Some(v),
        }) = from_object(bytes)
        {
            if version_string(&v).is_none() {
                return Err(version_error(&v, path));
            }
        }
        let manifest: Manifest = from_object(bytes).map_err(|e| {
            let offset = byte_offset(bytes, e.line(), e.column());
            Error::corrupt(
                Location::file(path, offset),
                Defect::undecodable(Structure::Manifest, "a shardpack manifest (JSON)", e),
            )
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// The archive's format version: 1.1 when a shard has a dictionary, 1.0 otherwise.
    pub fn version(&self) -> (u16, u16) {
        version_string(&self.format_version).unwrap_or(FORMAT_VERSION)
    }

    /// Reads and parses `ARCHIVE/manifest.json`.
    pub fn load(archive: &Path, limits: &Limits) -> Result<Manifest> {
        Manifest::load_with(archive, limits, &read_capped)
    }

    /// [`Manifest::load`], with files read by `read(path, max_len)` (a remote folder's GETs).
    pub(crate) fn load_with(
        archive: &Path,
        limits: &Limits,
        read: &ReadFile<'_>,
    ) -> Result<Manifest> {
        let path = archive.join(MANIFEST_FILE);
        let bytes = read(&path, limits.max_manifest_bytes)?;
        Manifest::parse(&bytes, &path)
    }

    /// Reads and parses generation `number`'s manifest: `manifest.json` when it is the
    /// current one, its `manifest-NNNNNN.json` otherwise (§11.3).
    ///
    /// # Errors
    /// The generation does not exist (`Incomplete`), or its manifest fails to load or
    /// names another number.
    pub fn load_generation(archive: &Path, number: u64, limits: &Limits) -> Result<Manifest> {
        Manifest::load_generation_with(archive, number, limits, &read_capped)
    }

    /// [`Manifest::load_generation`], with files read by `read(path, max_len)`.
    pub(crate) fn load_generation_with(
        archive: &Path,
        number: u64,
        limits: &Limits,
        read: &ReadFile<'_>,
    ) -> Result<Manifest> {
        let current = Manifest::load_with(archive, limits, read)?;
        if current.generation_number() == number {
            return Ok(current);
        }
        if number == 0 || number > current.generation_number() {
            return Err(crate::ErrorKind::Incomplete {
                path: archive.to_path_buf(),
                reason: format!(
                    "no generation {number}: the archive has generations 1 to {}",
                    current.generation_number()
                ),
            }
            .into());
        }
        let path = archive.join(generation_file_name(number));
        let bytes = read(&path, limits.max_manifest_bytes)?;
        let manifest = Manifest::parse(&bytes, &path)?;
        if manifest.generation_number() != number {
            return Err(Error::corrupt(
                Location::file(&path, 0),
                Defect::mismatch(
                    Structure::Manifest,
                    "generation",
                    format!("{number} (its file name)"),
                    manifest.generation_number(),
                ),
            ));
        }
        Ok(manifest)
    }

    /// The generation's number: 1 for an archive never appended to (§11.3).
    pub fn generation_number(&self) -> u64 {
        self.generation.as_ref().map_or(1, |g| g.number)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |structure: Structure, field: &'static str, expected: String, found: String| {
            Err(Error::corrupt(
                Location::file(path, 0),
                Defect::invalid(structure, field, expected, found),
            ))
        };
        if self.format != MANIFEST_FORMAT {
            return bad(
                Structure::Manifest,
                "format",
                MANIFEST_FORMAT.into(),
                self.format.clone(),
            );
        }
        if version_string(&self.format_version).is_none() {
            return Err(version_error(&self.format_version, path));
        }
        let later = format!("{}.{}", VERSION_1_3.0, VERSION_1_3.1);
        match &self.generation {
            Some(_) if self.format_version != later => {
                return bad(
                    Structure::Manifest,
                    "format_version",
                    format!("{later:?} (the manifest has a generation, §11.3)"),
                    format!("{:?}", self.format_version),
                )
            }
            None if self.format_version == later => {
                return bad(
                    Structure::Manifest,
                    "format_version",
                    "\"1.0\" or \"1.1\" (a first generation has no generation member)".into(),
                    format!("{:?}", self.format_version),
                )
            }
            Some(g) if g.number < 2 => {
                return bad(
                    Structure::Manifest,
                    "generation.number",
                    "2 or more (the first generation has no generation member)".into(),
                    g.number.to_string(),
                )
            }
            Some(g) if parse_hex::<32>(&g.parent).is_none() => {
                return bad(
                    Structure::Manifest,
                    "generation.parent",
                    "64 lowercase hex digits".into(),
                    g.parent.clone(),
                )
            }
            _ => {}
        }
        if parse_hex::<16>(&self.archive_id).is_none() {
            return bad(
                Structure::Manifest,
                "archive_id",
                "32 lowercase hex digits".into(),
                self.archive_id.clone(),
            );
        }
        if !crate::format::is_valid_align(self.layout.align) {
            return bad(
                Structure::Manifest,
                "layout.align",
                "a power of two from 64 to 16777216".into(),
                self.layout.align.to_string(),
            );
        }
        for (what, value) in [
            ("layout.block_size", self.layout.block_size),
            ("layout.shard_size", self.layout.shard_size),
        ] {
            if value == 0 {
                return bad(Structure::Manifest, what, "at least 1".into(), "0".into());
            }
        }
        if crate::archive::media::MediaProfile::from_name(&self.layout.profile).is_none() {
            return bad(
                Structure::Manifest,
                "layout.profile",
                "generic, hdd, ssd, tape or optical".into(),
                self.layout.profile.clone(),
            );
        }
        let level_ok = match self.layout.compression.as_str() {
            "zstd" => (-7..=22).contains(&self.layout.level),
            "none" => self.layout.level == 0,
            _ => false,
        };
        if !level_ok {
            return bad(
                Structure::Manifest,
                "layout.compression",
                "zstd with a level from -7 to 22, or none with level 0".into(),
                format!("{} level {}", self.layout.compression, self.layout.level),
            );
        }
        // The sums are exact (rule 12): `None` once one has passed 2^64 - 1, which no
        // u64 in the manifest can then equal.
        let mut ordinal = Some(0u64);
        let mut bytes = Some(0u64);
        let mut raw_bytes = Some(0u64);
        let show = |sum: Option<u64>| {
            sum.map_or("more than 18446744073709551615".into(), |v| v.to_string())
        };
        for (i, s) in self.shards.iter().enumerate() {
            let expected_name = shard_file_name(i as u32);
            if s.file != expected_name {
                return bad(
                    Structure::ManifestShard { shard: i as u32 },
                    "file",
                    expected_name,
                    s.file.clone(),
                );
            }
            if ordinal != Some(s.first_ordinal) {
                return bad(
                    Structure::ManifestShard { shard: i as u32 },
                    "first_ordinal",
                    show(ordinal),
                    s.first_ordinal.to_string(),
                );
            }
            if s.samples == 0 || s.samples > u64::from(u32::MAX) {
                return bad(
                    Structure::ManifestShard { shard: i as u32 },
                    "samples",
                    "1 to 4294967295".into(),
                    s.samples.to_string(),
                );
            }
            if parse_hex::<32>(&s.blake3).is_none() {
                return bad(
                    Structure::ManifestShard { shard: i as u32 },
                    "blake3",
                    "64 lowercase hex digits".into(),
                    s.blake3.clone(),
                );
            }
            ordinal = ordinal.and_then(|v| v.checked_add(s.samples));
            bytes = bytes.and_then(|v| v.checked_add(s.size));
            raw_bytes = raw_bytes.and_then(|v| v.checked_add(s.raw_bytes));
        }
        if self.layout.volume_size == Some(0) {
            return bad(
                Structure::Manifest,
                "layout.volume_size",
                "at least 1 byte, or absent".into(),
                "0".into(),
            );
        }
        let mut volume = 1u32;
        for (i, s) in self.shards.iter().enumerate() {
            match (self.layout.volume_size, s.volume) {
                (None, None) => {}
                (Some(_), Some(v)) if v == volume || (v == volume + 1 && i > 0) => volume = v,
                (Some(_), Some(v)) => {
                    return bad(
                        Structure::ManifestShard { shard: i as u32 },
                        "volume",
                        format!("{volume} or {}", volume + 1),
                        v.to_string(),
                    );
                }
                _ => {
                    return bad(
                        Structure::ManifestShard { shard: i as u32 },
                        "volume",
                        "a volume exactly when layout.volume_size is set".into(),
                        format!("{:?}", s.volume),
                    )
                }
            }
        }
        let t = &self.totals;
        if t.shards != self.shards.len() as u64
            || Some(t.samples) != ordinal
            || Some(t.bytes) != bytes
            || Some(t.raw_bytes) != raw_bytes
        {
            return bad(
                Structure::Manifest,
                "totals",
                format!(
                    "{} shards, {} samples, {} bytes, {} raw_bytes",
                    self.shards.len(),
                    show(ordinal),
                    show(bytes),
                    show(raw_bytes)
                ),
                format!(
                    "{} shards, {} samples, {} bytes, {} raw_bytes",
                    t.shards, t.samples, t.bytes, t.raw_bytes
                ),
            );
        }
        let root = self.compute_root();
        if self.root != root {
            return Err(Error::corrupt(
                Location::file(path, 0),
                Defect::digest(Structure::Manifest, root, &self.root),
            ));
        }
        Ok(())
    }

    /// The archive id as bytes (validated by `parse`).
    pub fn archive_id_bytes(&self) -> [u8; 16] {
        parse_hex::<16>(&self.archive_id).unwrap_or([0; 16])
    }
}

/// How a manifest file is read: `read(path, max_len)`, at most `max_len` bytes.
pub(crate) type ReadFile<'a> = dyn Fn(&Path, u64) -> Result<Vec<u8>> + 'a;

/// Reads a whole regular file of at most `max` bytes: opened once, checked on the open
/// handle (a FIFO or device named like a manifest is refused), and read no further than
/// `max` + 1 bytes even if it grows meanwhile.
pub(crate) fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) = crate::io::open_regular(path)?;
    let too_big = |got| -> Error {
        crate::ErrorKind::LimitExceeded {
            location: Location::file(path, 0),
            limit: "manifest size",
            max,
            got,
        }
        .into()
    };
    if len > max {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "read", e))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The version a manifest's `format_version` names, if this build reads it: exactly
/// `"1.0"`, `"1.1"` or `"1.3"` (§10: one encoding, no leading zeros).
fn version_string(s: &str) -> Option<(u16, u16)> {
    [VERSION_1_0, VERSION_1_1, VERSION_1_3]
        .into_iter()
        .find(|(major, minor)| s == format!("{major}.{minor}"))
}

/// The error for a `format_version` that is not `"1.0"`, `"1.1"` or `"1.3"`: a version this
/// build does not know is unsupported; 1.2, which it knows, defines nothing in a manifest
/// (only the parity header, §10), so a manifest that names it is invalid.
fn version_error(s: &str, path: &Path) -> Error {
    match parse_version(s) {
        Some(v)
            if v.0 == FORMAT_VERSION.0
                && v.1 <= FORMAT_VERSION.1
                && s == format!("{}.{}", v.0, v.1) =>
        {
            Error::corrupt(
                Location::file(path, 0),
                Defect::invalid(
                    Structure::Manifest,
                    "format_version",
                    "\"1.0\", \"1.1\" or \"1.3\" (1.2 changes only the parity header, §10)",
                    format!("{s:?}"),
                ),
            )
        }
        got => crate::ErrorKind::UnsupportedVersion {
            location: Location::file(path, 0),
            expected: FORMAT_VERSION,
            got: got.unwrap_or((u16::MAX, u16::MAX)),
        }
        .into(),
    }
}

fn parse_version(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Decodes exactly `N` bytes of lowercase hex.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

/// serde_json reports 1-based line and column; turn them into a byte offset.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> u64 {
    let mut offset = 0usize;
    for (i, l) in bytes.split(|&b| b == b'\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)) as u64;
        }
        offset += l.len() + 1;
    }
    offset.min(bytes.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn entry(i: u32, first_ordinal: u64, samples: u64) -> ShardInfo {
        ShardInfo {
            file: shard_file_name(i),
            size: 8192,
            samples,
            first_ordinal,
            raw_bytes: 100 * samples,
            min_key: format!("k{i}a"),
            max_key: format!("k{i}z"),
            blake3: "ab".repeat(32),
            volume: None,
        }
    }

    /// A valid manifest of two shards.
    fn manifest() -> Manifest {
        let shards = vec![entry(0, 0, 3), entry(1, 3, 2)];
        let mut m = Manifest {
            format: MANIFEST_FORMAT.into(),
            format_version: "1.0".into(),
            writer: "test".into(),
            archive_id: "0f".repeat(16),
            layout: Layout {
                profile: "generic".into(),
                align: 4096,
                block_size: 1 << 20,
                shard_size: 1 << 28,
                compression: "zstd".into(),
                level: 3,
                volume_size: None,
            },
            totals: Totals {
                shards: 2,
                samples: 5,
                bytes: 16384,
                raw_bytes: 500,
            },
            shards,
            generation: None,
            root: String::new(),
        };
        m.root = m.compute_root();
        m
    }

    fn parse(bytes: &[u8]) -> Result<Manifest> {
        Manifest::parse(bytes, Path::new("manifest.json"))
    }

    /// The error kind and offset of a refused manifest.
    fn refusal(bytes: &[u8]) -> (ErrorKind, u64) {
        let err = parse(bytes).expect_err("refused");
        let offset = err.location().map(|l| l.offset).unwrap_or(u64::MAX);
        (err.into_kind(), offset)
    }

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    /// A struct's members' values as a JSON array, in declaration order: what serde's
    /// derive would also take for the struct.
    fn as_array(members: &[String]) -> String {
        format!("[{}]", members.join(","))
    }

    fn layout_array(l: &Layout) -> String {
        as_array(&[
            json(&l.profile),
            json(&l.align),
            json(&l.block_size),
            json(&l.shard_size),
            json(&l.compression),
            json(&l.level),
        ])
    }

    /// `m` as JSON, with `layout` as an array when `layout_as_array`, and the top level as
    /// an array when `top_as_array`.
    fn spelled(m: &Manifest, top_as_array: bool, layout_as_array: bool) -> Vec<u8> {
        let layout = if layout_as_array {
            layout_array(&m.layout)
        } else {
            json(&m.layout)
        };
        let members = [
            ("format", json(&m.format)),
            ("format_version", json(&m.format_version)),
            ("writer", json(&m.writer)),
            ("archive_id", json(&m.archive_id)),
            ("layout", layout),
            ("totals", json(&m.totals)),
            ("shards", json(&m.shards)),
            ("root", json(&m.root)),
        ];
        let text = if top_as_array {
            as_array(&members.map(|(_, v)| v))
        } else {
            let members = members.map(|(k, v)| format!("{k:?}:{v}"));
            format!("{{{}}}", members.join(","))
        };
        text.into_bytes()
    }

    #[test]
    fn the_test_manifest_is_valid_in_every_spelling_that_uses_objects() {
        let m = manifest();
        assert_eq!(parse(&m.to_canonical_bytes()).unwrap(), m);
        assert_eq!(parse(&spelled(&m, false, false)).unwrap(), m);
    }

    #[test]
    fn arrays_in_place_of_objects_are_corrupt() {
        let m = manifest();
        let top = spelled(&m, true, false);
        assert!(matches!(refusal(&top), (ErrorKind::Corrupt { .. }, 0)));
        let both = spelled(&m, true, true);
        assert!(matches!(refusal(&both), (ErrorKind::Corrupt { .. }, 0)));

        let layout = spelled(&m, false, true);
        let at = layout
            .windows(10)
            .position(|w| w == b"\"layout\":[")
            .unwrap() as u64
            + 9;
        match refusal(&layout) {
            (ErrorKind::Corrupt { .. }, offset) => assert!(
                // serde_json places the error at the `:` or the `[` after it.
                (at - 1..=at).contains(&offset),
                "offset {offset}, layout's array at {at}"
            ),
            other => panic!("{other:?}"),
        }

        let t = &m.totals;
        let totals = json(&[t.shards, t.samples, t.bytes, t.raw_bytes]);
        let text = String::from_utf8(spelled(&m, false, false)).unwrap();
        let with_totals = text.replace(&json(&m.totals), &totals);
        assert_ne!(with_totals, text);
        assert!(matches!(
            refusal(with_totals.as_bytes()),
            (ErrorKind::Corrupt { .. }, _)
        ));

        let s = &m.shards[1];
        let entry = as_array(&[
            json(&s.file),
            json(&s.size),
            json(&s.samples),
            json(&s.first_ordinal),
            json(&s.raw_bytes),
            json(&s.min_key),
            json(&s.max_key),
            json(&s.blake3),
        ]);
        let with_entry = text.replace(&json(s), &entry);
        assert_ne!(with_entry, text);
        assert!(matches!(
            refusal(with_entry.as_bytes()),
            (ErrorKind::Corrupt { .. }, _)
        ));
    }

    #[test]
    fn a_manifest_naming_1_2_is_invalid_and_1_4_unsupported() {
        let mut m = manifest();
        m.format_version = "1.2".into();
        m.root = m.compute_root();
        let bytes = spelled(&m, false, false);
        assert!(
            matches!(refusal(&bytes), (ErrorKind::Corrupt { .. }, 0)),
            "1.2 defines nothing in a manifest"
        );
        m.format_version = "1.4".into();
        m.root = m.compute_root();
        match refusal(&spelled(&m, false, false)) {
            (ErrorKind::UnsupportedVersion { got, .. }, 0) => assert_eq!(got, (1, 4)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_generation_member_goes_with_version_1_3_and_binds_the_parent() {
        let mut m = manifest();
        m.format_version = "1.3".into();
        m.root = m.compute_root();
        assert!(
            matches!(
                refusal(&m.to_canonical_bytes()),
                (ErrorKind::Corrupt { .. }, 0)
            ),
            "1.3 without a generation"
        );
        let parent = "ab".repeat(32);
        m.generation = Some(Generation {
            number: 2,
            parent: parent.clone(),
        });
        m.root = m.compute_root();
        let later = parse(&m.to_canonical_bytes()).expect("a valid second generation");
        assert_eq!(later.generation_number(), 2);
        // The root covers the parent: another parent is another root.
        let mut other = later.clone();
        other.generation = Some(Generation {
            number: 2,
            parent: "cd".repeat(32),
        });
        assert_ne!(other.compute_root(), later.root);
        for bad in [
            Generation {
                number: 1,
                parent: parent.clone(),
            },
            Generation {
                number: 3,
                parent: "AB".repeat(32),
            },
        ] {
            m.generation = Some(bad);
            m.root = m.compute_root();
            assert!(matches!(
                refusal(&m.to_canonical_bytes()),
                (ErrorKind::Corrupt { .. }, 0)
            ));
        }
        m.format_version = "1.0".into();
        m.generation = Some(Generation { number: 2, parent });
        m.root = m.compute_root();
        assert!(matches!(
            refusal(&m.to_canonical_bytes()),
            (ErrorKind::Corrupt { .. }, 0)
        ));
    }

    #[test]
    fn the_version_probe_reads_only_a_top_level_object_member() {
        let mut m = manifest();
        m.format_version = "2.0".into();
        // An array whose first element is "2.0" is not a manifest naming version 2.0.
        let top = spelled(&m, true, false);
        assert!(top.starts_with(b"[\"shardpack\",\"2.0\""));
        assert!(matches!(refusal(&top), (ErrorKind::Corrupt { .. }, 0)));
        let first = b"[\"2.0\", {\"format_version\": \"2.0\"}]";
        assert!(matches!(refusal(first), (ErrorKind::Corrupt { .. }, 0)));
        // In an object, the version is reported whatever the other members hold.
        for bytes in [spelled(&m, false, false), spelled(&m, false, true)] {
            match refusal(&bytes) {
                (ErrorKind::UnsupportedVersion { got, .. }, 0) => assert_eq!(got, (2, 0)),
                other => panic!("{other:?}"),
            }
        }
    }

    /// The `what` of a corrupt-manifest error.
    fn defect(m: &Manifest) -> String {
        match refusal(&m.to_canonical_bytes()) {
            (ErrorKind::Corrupt { defect, .. }, 0) => defect.what(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_canonical_length_is_computed_from_the_entries() {
        let mut m = manifest();
        m.shards[1].min_key = "k\u{1b}\"ü".into();
        m.shards[1].volume = Some(1);
        let entries: Vec<ShardInfo> = std::mem::take(&mut m.shards);
        for n in 0..=entries.len() {
            let listed = &entries[..n];
            let len: u64 = listed.iter().map(ShardInfo::canonical_len).sum();
            let with = Manifest {
                shards: listed.to_vec(),
                ..m.clone()
            };
            assert_eq!(
                m.canonical_len_with_entries(n as u64, len),
                with.to_canonical_bytes().len() as u64,
                "{n} entries"
            );
        }
    }

    #[test]
    fn zero_block_and_shard_sizes_are_corrupt() {
        let mut m = manifest();
        m.layout.block_size = 0;
        m.root = m.compute_root();
        assert_eq!(defect(&m), "manifest layout.block_size");
        let mut m = manifest();
        m.layout.shard_size = 0;
        m.root = m.compute_root();
        assert_eq!(defect(&m), "manifest layout.shard_size");
    }

    #[test]
    fn sums_beyond_u64_are_corrupt_not_saturated() {
        // Each sum saturating at u64::MAX would equal totals of u64::MAX.
        let mut m = manifest();
        m.shards[0].size = u64::MAX;
        m.totals.bytes = u64::MAX;
        m.root = m.compute_root();
        assert_eq!(defect(&m), "manifest totals");

        let mut m = manifest();
        m.shards[0].raw_bytes = u64::MAX;
        m.totals.raw_bytes = u64::MAX;
        m.root = m.compute_root();
        assert_eq!(defect(&m), "manifest totals");

        // raw_bytes alone wrong is reported, and named.
        let mut m = manifest();
        m.totals.raw_bytes += 1;
        m.root = m.compute_root();
        match refusal(&m.to_canonical_bytes()) {
            (
                ErrorKind::Corrupt {
                    defect:
                        crate::Defect::Invalid {
                            structure: crate::Structure::Manifest,
                            field: "totals",
                            expected,
                            found,
                        },
                    ..
                },
                _,
            ) => {
                assert!(expected.contains("500 raw_bytes"), "{expected}");
                assert!(found.contains("501 raw_bytes"), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }
}
