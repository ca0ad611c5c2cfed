//! The writer: one forward pass per shard, never seeking back (§4).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::codec::Compressor;
use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN};
use crate::format::header::{ShardHeader, HEADER_LEN};
use crate::format::index::{BlockEntry, RecordEntry};
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{self, align_up, Codec, MAX_FIELD_NAME_BYTES, MAX_KEY_BYTES};
use crate::manifest::{self, shard_file_name, Layout, Manifest, ShardInfo, Totals, MANIFEST_FILE};
use crate::{Error, Result};

/// How block payloads are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Every block stored raw.
    None,
    /// Each block compressed with zstd at this level, unless that does not make it smaller.
    Zstd {
        /// zstd level, -7 to 22.
        level: i32,
    },
}

/// The name of the writer written into manifests.
pub const WRITER_NAME: &str = concat!("shardpack ", env!("CARGO_PKG_VERSION"));

/// Suffix of a shard file still being written; renamed away when the shard is finished.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Options for a [`Writer`].
#[derive(Clone, Debug)]
pub struct WriterBuilder {
    block_size: u64,
    shard_size: u64,
    align: u32,
    compression: Compression,
    archive_id: Option<[u8; 16]>,
}

impl Default for WriterBuilder {
    fn default() -> Self {
        WriterBuilder {
            block_size: 1 << 20,
            shard_size: 256 << 20,
            align: 4096,
            compression: Compression::Zstd { level: 3 },
            archive_id: None,
        }
    }
}

impl WriterBuilder {
    /// Default options: 1 MiB blocks, 256 MiB shards, 4 KiB alignment, zstd level 3.
    pub fn new() -> Self {
        Self::default()
    }

    /// Target decoded size of a block. A sample larger than this gets a block of its own.
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes;
        self
    }

    /// Target size of a shard file. A shard holds at least one sample, so a sample larger
    /// than this makes a larger shard.
    pub fn shard_size(mut self, bytes: u64) -> Self {
        self.shard_size = bytes;
        self
    }

    /// Alignment of blocks, the index and file lengths: a power of two from 64 to 16 MiB.
    pub fn align(mut self, bytes: u32) -> Self {
        self.align = bytes;
        self
    }

    /// Block compression.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The archive id written in every shard. Without one, an id is derived from the
    /// options, so the output stays deterministic; set one to tell archives apart.
    pub fn archive_id(mut self, id: [u8; 16]) -> Self {
        self.archive_id = Some(id);
        self
    }

    fn layout(&self) -> Layout {
        let (compression, level) = match self.compression {
            Compression::None => ("none", 0),
            Compression::Zstd { level } => ("zstd", level),
        };
        Layout {
            profile: "generic".into(),
            align: self.align,
            block_size: self.block_size,
            shard_size: self.shard_size,
            compression: compression.into(),
            level,
        }
    }

    /// Creates the archive folder `dir` (which must not exist or be empty) and a writer
    /// for it.
    ///
    /// # Errors
    /// Invalid options, a non-empty `dir`, or an I/O error creating it.
    pub fn create(self, dir: impl AsRef<Path>) -> Result<Writer> {
        let dir = dir.as_ref().to_path_buf();
        if !format::is_valid_align(self.align) {
            return Err(Error::invalid_input(
                "align",
                "must be a power of two from 64 to 16777216",
            ));
        }
        if self.block_size == 0 || self.shard_size == 0 {
            return Err(Error::invalid_input(
                "block and shard size",
                "must be at least 1 byte",
            ));
        }
        let compressor = match self.compression {
            Compression::Zstd { level } if (-7..=22).contains(&level) => {
                Some(Compressor::new(level).map_err(|e| Error::io(&dir, "set up zstd for", e))?)
            }
            Compression::Zstd { level } => {
                return Err(Error::invalid_input(
                    format!("zstd level {level}"),
                    "must be from -7 to 22",
                ))
            }
            Compression::None => None,
        };
        match fs::read_dir(&dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::invalid_input(
                        dir.display().to_string(),
                        "output folder exists and is not empty; choose a new path",
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create folder", e))?;
            }
            Err(e) => return Err(Error::io(&dir, "read folder", e)),
        }
        let layout = self.layout();
        let archive_id = self
            .archive_id
            .unwrap_or_else(|| derive_archive_id(&layout));
        Ok(Writer {
            dir,
            options: self,
            layout,
            archive_id,
            compressor,
            shard: None,
            shards: Vec::new(),
            next_ordinal: 0,
            seen_keys: HashSet::new(),
            raw_bytes: 0,
        })
    }
}

/// An archive id that depends only on the layout: deterministic, but the same for archives
/// written with the same options.
fn derive_archive_id(layout: &Layout) -> [u8; 16] {
    let text = serde_json::to_vec(layout).unwrap_or_default();
    let hash = blake3::Hasher::new_derive_key("shardpack archive id v1")
        .update(&text)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.as_bytes()[..16]);
    id
}

/// Writes an archive: append samples in order, then [`Writer::finish`].
///
/// Memory is bounded by one block plus the current shard's index (32 bytes and the key per
/// sample) plus 16 bytes per sample for duplicate-key detection.
/// Dropping a writer without finishing leaves no manifest, so the folder is never taken for
/// a complete archive.
pub struct Writer {
    dir: PathBuf,
    options: WriterBuilder,
    layout: Layout,
    archive_id: [u8; 16],
    compressor: Option<Compressor>,
    shard: Option<ShardWriter>,
    shards: Vec<ShardInfo>,
    next_ordinal: u64,
    seen_keys: HashSet<[u8; 16]>,
    raw_bytes: u64,
}

impl Writer {
    /// A builder with default options.
    pub fn builder() -> WriterBuilder {
        WriterBuilder::new()
    }

    /// Number of samples appended so far.
    pub fn len(&self) -> u64 {
        self.next_ordinal
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.next_ordinal == 0
    }

    /// Appends one sample and returns its ordinal.
    ///
    /// # Errors
    /// An empty or over-long key, a key with NUL, a duplicate key, no fields, an over-long
    /// or duplicate field name, a name with `/` or NUL, a sample too large for a block
    /// (nothing is written for these); or an I/O error (the archive is then unusable).
    pub fn append(&mut self, key: &str, fields: &[(&str, &[u8])]) -> Result<u64> {
        let key_hash = validate_sample(key, fields, &self.seen_keys)?;
        let record_len = format::record::encoded_len(key, fields)
            .filter(|&n| n <= crate::Limits::DEFAULT.max_block_bytes)
            .ok_or_else(|| {
                Error::invalid_input(
                    format!("sample {key:?}"),
                    format!(
                        "is larger than the {} bytes a default reader accepts",
                        crate::Limits::DEFAULT.max_block_bytes
                    ),
                )
            })?;
        if let Some(shard) = &self.shard {
            let projected =
                shard.pos + shard.block_buf.len() as u64 + record_len + shard.index_len();
            if projected > self.options.shard_size || shard.records.len() == u32::MAX as usize {
                self.close_shard()?;
            }
        }
        if self.shard.is_none() {
            self.shard = Some(ShardWriter::create(self, self.shards.len() as u32)?);
        }
        let Some(shard) = self.shard.as_mut() else {
            return Err(Error::invalid_input("writer", "no shard"));
        };
        if !shard.block_buf.is_empty()
            && shard.block_buf.len() as u64 + record_len > self.options.block_size
        {
            shard.flush_block(self.compressor.as_mut())?;
        }
        shard.add_record(key, fields);
        if shard.block_buf.len() as u64 >= self.options.block_size {
            shard.flush_block(self.compressor.as_mut())?;
        }
        self.seen_keys.insert(key_hash);
        self.raw_bytes += record_len;
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        Ok(ordinal)
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some(shard) = self.shard.take() {
            let info = shard.finish(self.compressor.as_mut())?;
            self.shards.push(info);
        }
        Ok(())
    }

    /// Finishes the last shard and writes the manifest (atomically, last), returning it.
    ///
    /// # Errors
    /// An I/O error; the folder then has no manifest and is not a complete archive.
    pub fn finish(mut self) -> Result<Manifest> {
        self.close_shard()?;
        let shards = std::mem::take(&mut self.shards);
        let mut manifest = Manifest {
            format: manifest::MANIFEST_FORMAT.into(),
            format_version: format!("{}.{}", format::FORMAT_VERSION.0, format::FORMAT_VERSION.1),
            writer: WRITER_NAME.into(),
            archive_id: manifest::to_hex(&self.archive_id),
            layout: self.layout.clone(),
            totals: Totals {
                shards: shards.len() as u64,
                samples: self.next_ordinal,
                bytes: shards.iter().map(|s| s.size).sum(),
                raw_bytes: self.raw_bytes,
            },
            shards,
            root: String::new(),
        };
        manifest.root = manifest.compute_root();
        let bytes = manifest.to_canonical_bytes();
        let mut tmp = tempfile::Builder::new()
            .prefix(".manifest.")
            .suffix(PARTIAL_SUFFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, "create a temporary manifest in", e))?;
        let tmp_path = tmp.path().to_path_buf();
        tmp.write_all(&bytes)
            .map_err(|e| Error::io(&tmp_path, "write", e))?;
        // tempfile creates 0600; a manifest is as readable as the shards beside it.
        set_readable(tmp.as_file()).map_err(|e| Error::io(&tmp_path, "set permissions of", e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&tmp_path, "sync", e))?;
        let path = self.dir.join(MANIFEST_FILE);
        tmp.persist(&path)
            .map_err(|e| Error::io(&path, "rename into place", e.error))?;
        sync_dir(&self.dir)?;
        Ok(manifest)
    }
}

#[cfg(unix)]
fn set_readable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Makes a rename durable: fsync the folder that holds it.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "sync folder", e))
}

fn validate_sample(
    key: &str,
    fields: &[(&str, &[u8])],
    seen: &HashSet<[u8; 16]>,
) -> Result<[u8; 16]> {
    let refuse = |reason: String| Err(Error::invalid_input(format!("sample key {key:?}"), reason));
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return refuse(format!(
            "a key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, this one is {}",
            key.len()
        ));
    }
    if key.contains('\0') {
        return refuse("a key must not contain NUL".into());
    }
    if fields.is_empty() || fields.len() > usize::from(u16::MAX) {
        return refuse(format!(
            "a sample needs 1 to {} fields, this one has {}",
            u16::MAX,
            fields.len()
        ));
    }
    let mut names = HashSet::with_capacity(fields.len());
    for (name, _) in fields {
        if name.len() > MAX_FIELD_NAME_BYTES || name.contains(['\0', '/']) {
            return refuse(format!(
                "field name {name:?} must be at most {MAX_FIELD_NAME_BYTES} bytes with no '/' or NUL"
            ));
        }
        if !names.insert(*name) {
            return refuse(format!("field name {name:?} appears twice"));
        }
    }
    let hash = blake3::hash(key.as_bytes());
    let mut key_hash = [0u8; 16];
    key_hash.copy_from_slice(&hash.as_bytes()[..16]);
    if seen.contains(&key_hash) {
        return refuse("duplicate key: every sample's key must be unique".into());
    }
    Ok(key_hash)
}

/// One shard being written.
struct ShardWriter {
    number: u32,
    partial_path: PathBuf,
    final_path: PathBuf,
    file: BufWriter<File>,
    hasher: blake3::Hasher,
    pos: u64,
    header: ShardHeader,
    blocks: Vec<BlockEntry>,
    records: Vec<RecordEntry>,
    key_heap: Vec<u8>,
    block_buf: Vec<u8>,
    block_first_record: u32,
    raw_bytes: u64,
    finished: bool,
}

impl ShardWriter {
    fn create(writer: &Writer, number: u32) -> Result<ShardWriter> {
        let name = shard_file_name(number);
        let final_path = writer.dir.join(&name);
        let partial_path = writer.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial_path)
            .map_err(|e| Error::io(&partial_path, "create", e))?;
        let (codec, level) = match writer.options.compression {
            Compression::None => (Codec::Stored, 0),
            Compression::Zstd { level } => (Codec::Zstd, level as i8),
        };
        let header = ShardHeader {
            archive_id: writer.archive_id,
            shard_number: number,
            first_ordinal: writer.next_ordinal,
            block_bytes: writer.options.block_size,
            shard_bytes: writer.options.shard_size,
            align: writer.options.align,
            codec,
            level,
            profile: 0,
            crc: 0,
        };
        let encoded = header.encode();
        let header =
            ShardHeader::decode(&encoded).map_err(|d| d.at(&partial_path, Some(number), 0))?;
        let mut shard = ShardWriter {
            number,
            partial_path,
            final_path,
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            pos: 0,
            header,
            blocks: Vec::new(),
            records: Vec::new(),
            key_heap: Vec::new(),
            block_buf: Vec::new(),
            block_first_record: 0,
            raw_bytes: 0,
            finished: false,
        };
        shard.write(&encoded)?;
        shard.pad_to(shard.header.data_offset())?;
        debug_assert!(HEADER_LEN as u64 <= shard.pos);
        Ok(shard)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let pos = self.pos;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io_at(&self.partial_path, "write", pos, e))?;
        self.hasher.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, target: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn align(&self) -> u64 {
        u64::from(self.header.align)
    }

    /// Size of the index if the shard were closed now (for the shard-size target).
    fn index_len(&self) -> u64 {
        (self.blocks.len() as u64 + 1) * 32
            + self.records.len() as u64 * 36
            + self.key_heap.len() as u64
            + TRAILER_LEN as u64
    }

    fn add_record(&mut self, key: &str, fields: &[(&str, &[u8])]) {
        let offset = self.block_buf.len();
        format::record::encode(&mut self.block_buf, key, fields);
        let bytes = &self.block_buf[offset..];
        self.records.push(RecordEntry {
            offset: offset as u64,
            len: bytes.len() as u64,
            key_offset: self.key_heap.len() as u64,
            block: self.blocks.len() as u32,
            crc: format::checksum::crc32(bytes),
        });
        self.raw_bytes += bytes.len() as u64;
        self.key_heap.extend_from_slice(key.as_bytes());
    }

    fn flush_block(&mut self, compressor: Option<&mut Compressor>) -> Result<()> {
        if self.block_buf.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.block_buf);
        let compressed = match compressor {
            Some(c) => Some(
                c.compress(&raw)
                    .map_err(|e| Error::io(&self.partial_path, "compress a block of", e))?,
            ),
            None => None,
        };
        let (codec, payload) = match &compressed {
            Some(c) if c.len() < raw.len() => (Codec::Zstd, c.as_slice()),
            _ => (Codec::Stored, raw.as_slice()),
        };
        let record_count = self.records.len() as u32 - self.block_first_record;
        let header = BlockHeader {
            shard_number: self.number,
            block_number: self.blocks.len() as u32,
            first_ordinal: self.header.first_ordinal + u64::from(self.block_first_record),
            record_count,
            codec,
            stored_len: payload.len() as u64,
            raw_len: raw.len() as u64,
            payload_crc: format::checksum::crc32(payload),
        };
        let offset = self.pos;
        self.write(&header.encode())?;
        self.write(payload)?;
        let next = align_up(self.pos, self.align()).unwrap_or(self.pos);
        self.pad_to(next)?;
        self.blocks.push(BlockEntry {
            offset,
            stored_len: header.stored_len,
            raw_len: header.raw_len,
            first_record: self.block_first_record,
            record_count,
        });
        self.block_first_record = self.records.len() as u32;
        let mut raw = raw;
        raw.clear();
        self.block_buf = raw;
        debug_assert!(offset + BLOCK_HEADER_LEN as u64 + header.stored_len <= self.pos);
        Ok(())
    }

    fn key(&self, record: usize) -> &[u8] {
        let start = self.records[record].key_offset as usize;
        let end = self
            .records
            .get(record + 1)
            .map_or(self.key_heap.len(), |r| r.key_offset as usize);
        &self.key_heap[start..end]
    }

    fn finish(mut self, compressor: Option<&mut Compressor>) -> Result<ShardInfo> {
        self.flush_block(compressor)?;
        let index_offset = self.pos;
        let mut crc = crc32fast::Hasher::new();
        let mut index = Vec::with_capacity(self.index_len() as usize);
        for b in &self.blocks {
            index.extend_from_slice(&b.encode());
        }
        for r in &self.records {
            index.extend_from_slice(&r.encode());
        }
        let mut order: Vec<u32> = (0..self.records.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.key(a as usize).cmp(self.key(b as usize)));
        for r in &order {
            index.extend_from_slice(&r.to_le_bytes());
        }
        index.extend_from_slice(&self.key_heap);
        crc.update(&index);
        self.write(&index)?;
        let file_len = align_up(self.pos + TRAILER_LEN as u64, self.align()).unwrap_or(u64::MAX);
        self.pad_to(file_len - TRAILER_LEN as u64)?;
        let trailer = Trailer {
            archive_id: self.header.archive_id,
            shard_number: self.number,
            block_count: self.blocks.len() as u32,
            record_count: self.records.len() as u64,
            first_ordinal: self.header.first_ordinal,
            index_offset,
            index_len: index.len() as u64,
            key_heap_len: self.key_heap.len() as u64,
            file_len,
            index_crc: crc.finalize(),
            header_crc: self.header.crc,
            raw_bytes: self.raw_bytes,
        };
        self.write(&trailer.encode())?;
        self.file
            .flush()
            .map_err(|e| Error::io(&self.partial_path, "write", e))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.partial_path, "sync", e))?;
        fs::rename(&self.partial_path, &self.final_path)
            .map_err(|e| Error::io(&self.final_path, "rename into place", e))?;
        self.finished = true;
        let (min, max) = (order.first(), order.last());
        let key_string = |r: Option<&u32>| {
            r.map(|&r| String::from_utf8_lossy(self.key(r as usize)).into_owned())
                .unwrap_or_default()
        };
        Ok(ShardInfo {
            file: shard_file_name(self.number),
            size: self.pos,
            samples: self.records.len() as u64,
            first_ordinal: self.header.first_ordinal,
            min_key: key_string(min),
            max_key: key_string(max),
            blake3: self.hasher.finalize().to_hex().to_string(),
        })
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.finished {
            // An unfinished shard must not survive: it has no trailer.
            let _ = fs::remove_file(&self.partial_path);
        }
    }
}
