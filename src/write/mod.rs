//! The writer: one forward pass per shard, never seeking back (§4).
//!
//! One module for the builder, the writer and the shard being written, on purpose: the
//! builder's options are checked against the layout the shard writer needs (a volume budget
//! against the smallest shard it can write), the writer opens, fills and closes shards, and
//! a shard's dictionary training holds back the writer's records; splitting them would put
//! each half of those calls in another file. What stands alone is apart: the compression
//! threads (`pipeline`), where bytes go (`output`), sources read in pieces (`source`), and
//! `unstream`.

pub(crate) mod output;
pub(crate) mod pipeline;
mod source;
mod stream_append;
pub(crate) mod unstream;

pub(crate) use source::read_whole;
pub use source::FieldData;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::archive::manifest::{self, shard_file_name, Layout, Manifest, ShardInfo, Totals};
use crate::archive::media::MediaProfile;
use crate::codec::dictionary;
use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN};
use crate::format::header::{ShardHeader, HEADER_LEN, MAX_DICTIONARY_BYTES};
use crate::format::index::{BlockEntry, RecordEntry};
use crate::format::record::FILLER_MARKER_LEN;
use crate::format::stream::EntryKind;
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{self, align_up, Codec, MAX_FIELD_NAME_BYTES, MAX_KEY_BYTES};
use crate::write::output::{
    FolderOutput, Output, RecordStream, VolumeOutput, MANIFEST_RESERVE_BYTES,
};
use crate::write::pipeline::{BlockCoder, BlockJob, ShardDictionary};
use crate::write::source::{RecordBytes, RecordSources};
use crate::write::stream_append::{read_stream_for_append, StreamToAppend};
use crate::{Error, Result};

/// How block payloads are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Every block stored raw.
    None,
    /// Each block compressed with zstd at this level, unless that does not make it smaller.
    Zstd {
        /// zstd level, -7 to 22.
        level: i32,
    },
}

/// The level libzstd uses for level 0, and the one every profile writes (§9.1).
const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// Smallest dictionary the writer trains: zstd's trainer needs room for its tables.
pub const MIN_DICTIONARY_BYTES: u32 = 1024;

/// A record larger than this and than the block target is written straight from its
/// sources to the shard in two passes (one to learn its checksum and compressed size, one to
/// write it), so that memory stays bounded whatever the sample's size (§5.3 rule 4: such a
/// record has a block of its own).
pub const LARGE_RECORD_BYTES: u64 = 16 << 20;

/// The name of the writer written into manifests.
pub const WRITER_NAME: &str = concat!("shardpack ", env!("CARGO_PKG_VERSION"));

pub use crate::archive::manifest::PARTIAL_SUFFIX;

/// Options for a [`Writer`]. Start from a media profile; every parameter can then be set
/// on its own.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `create` or `create_stream`"]
pub struct WriterBuilder {
    profile: MediaProfile,
    block_size: u64,
    shard_size: u64,
    align: u32,
    compression: Compression,
    archive_id: Option<[u8; 16]>,
    record_page: Option<u32>,
    dictionary: Option<u32>,
    stream_record: u32,
    checkpoint_every: u32,
    volume_size: Option<u64>,
    threads: Option<usize>,
    /// Records larger than this and the block target are written by `add_large`; tests
    /// raise it to compare with the in-memory path.
    large_from: u64,
}

impl Default for WriterBuilder {
    fn default() -> Self {
        WriterBuilder::for_profile(MediaProfile::generic())
    }
}

impl WriterBuilder {
    /// Default options: the generic profile (1 MiB blocks, 256 MiB shards, 4 KiB
    /// alignment), zstd level 3.
    pub fn new() -> Self {
        Self::default()
    }

    /// The options of a media profile (see [`MediaProfile`]), zstd level 3.
    pub fn for_profile(profile: MediaProfile) -> Self {
        WriterBuilder {
            profile,
            block_size: profile.block_size,
            shard_size: profile.shard_size,
            align: profile.align,
            compression: Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            archive_id: None,
            record_page: profile.record_page,
            dictionary: profile.dictionary,
            stream_record: profile.stream_record,
            checkpoint_every: 1,
            volume_size: None,
            threads: None,
            large_from: LARGE_RECORD_BYTES,
        }
    }

    /// Switches to `profile`'s parameters, keeping compression and archive id.
    pub fn profile(self, profile: MediaProfile) -> Self {
        WriterBuilder {
            compression: self.compression,
            archive_id: self.archive_id,
            threads: self.threads,
            ..Self::for_profile(profile)
        }
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

    /// Block compression. zstd level 0, which libzstd takes as its default, compresses at
    /// and records level 3, since a recorded 0 means stored (§3 `level`).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = match compression {
            Compression::Zstd { level: 0 } => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            other => other,
        };
        self
    }

    /// The archive id written in every shard. Without one, the writer uses
    /// [`derive_archive_id`](Self::derive_archive_id) of its options and no contents, so
    /// the output stays deterministic; set one (for instance the derivation over the
    /// contents, as [`crate::pack::FolderListing`] does) to tell archives apart.
    pub fn archive_id(mut self, id: [u8; 16]) -> Self {
        self.archive_id = Some(id);
        self
    }

    /// The archive id set with [`archive_id`](Self::archive_id), if any.
    pub(crate) fn explicit_archive_id(&self) -> Option<[u8; 16]> {
        self.archive_id
    }

    /// The media profile these options started from.
    pub(crate) fn media_profile(&self) -> MediaProfile {
        self.profile
    }

    /// The one archive-id derivation: the first 16 bytes of BLAKE3 in key-derivation mode
    /// (context `"shardpack archive id v1"`) over the manifest's `layout` object of these
    /// options as JSON, then, for each `(key, field name, size in bytes)` of `contents` in
    /// the order given, the key, the field name (each as a little-endian `u64` length and
    /// its UTF-8 bytes) and the size as a little-endian `u64`.
    ///
    /// A caller that knows the contents in advance (a folder's listing, in sorted key then
    /// field order) passes them, so that different contents get different ids and the same
    /// contents with the same options the same id. A [`Writer`] given samples one by one
    /// cannot know them, so without an explicit id it uses this derivation with no
    /// contents: the id then depends on the options alone.
    #[must_use]
    pub fn derive_archive_id<'a>(
        &self,
        contents: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) -> [u8; 16] {
        derive_archive_id(&self.layout(), contents)
    }

    /// Page placement (§5.4): records of at most `page` bytes never straddle a page
    /// boundary of the file. `None` turns it off.
    pub fn record_page(mut self, page: Option<u32>) -> Self {
        self.record_page = page;
        self
    }

    /// Record size of a stream written by [`WriterBuilder::create_stream`]: a power of two
    /// from 4 KiB to 8 MiB ([`crate::MIN_STREAM_RECORD`], [`crate::MAX_STREAM_RECORD`]), and
    /// at least the alignment.
    pub fn stream_record(mut self, bytes: u32) -> Self {
        self.stream_record = bytes;
        self
    }

    /// Splits the archive into volume folders `vol-0001`, `vol-0002`, ... of at most `bytes`
    /// each (shards and manifest), for discs: see [`crate::Volume`] for media capacities.
    /// Every volume gets the whole manifest.
    pub fn volume_size(mut self, bytes: Option<u64>) -> Self {
        self.volume_size = bytes;
        self
    }

    /// Train a zstd dictionary of at most `bytes` for each shard whose first records are
    /// small, and compress its records one by one with it, so that a random read decodes
    /// one record (§5.5); `None` turns this off. Only used with zstd compression; the
    /// `ssd` profile sets 256 KiB. Shards with a dictionary are format version 1.1.
    pub fn dictionary(mut self, bytes: Option<u32>) -> Self {
        self.dictionary = bytes;
        self
    }

    /// The dictionary size to train, when dictionaries are on and blocks compressed.
    fn dictionary_size(&self) -> Option<u32> {
        self.zstd_level().and(self.dictionary)
    }

    /// The zstd level blocks are compressed at, when they are.
    fn zstd_level(&self) -> Option<i32> {
        match self.compression {
            Compression::Zstd { level } => Some(level),
            Compression::None => None,
        }
    }

    /// A stream gets a manifest checkpoint after every `shards` shards (at least 1).
    pub fn checkpoint_every(mut self, shards: u32) -> Self {
        self.checkpoint_every = shards.max(1);
        self
    }

    fn layout(&self) -> Layout {
        let (compression, level) = match self.compression {
            Compression::None => ("none", 0),
            Compression::Zstd { level } => ("zstd", level),
        };
        Layout {
            profile: self.profile.name.into(),
            align: self.align,
            block_size: self.block_size,
            shard_size: self.shard_size,
            compression: compression.into(),
            level,
            volume_size: self.volume_size,
        }
    }

    /// Checks every option against the format's rules (§9.1) without creating anything:
    /// what [`create`](Self::create) would refuse, so that a front end can refuse bad
    /// arguments before it walks a folder. The stream record size is checked by
    /// [`create_stream`](Self::create_stream) only, as it applies to streams only.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the option and its allowed range.
    pub fn validate(&self) -> Result<()> {
        self.check_options()?;
        if let Some(budget) = self.volume_size {
            self.check_volume_budget(budget)?;
        }
        Ok(())
    }

    fn check(&self) -> Result<BlockCoder> {
        self.check_options()?;
        let level = self.zstd_level();
        // One core: compress on the writer's own thread; more: one worker per core.
        let threads = match self.threads.unwrap_or_else(BlockCoder::default_threads) {
            1 => 0,
            n => n,
        };
        BlockCoder::new(level, threads).map_err(|e| Error::io(Path::new("zstd"), "set up", e))
    }

    fn check_options(&self) -> Result<()> {
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
        let max_block = crate::Limits::DEFAULT.max_block_bytes;
        if self.block_size > max_block {
            return Err(Error::invalid_input(
                format!("block size {}", self.block_size),
                format!(
                    "must be at most {max_block} bytes, the largest block a default reader accepts"
                ),
            ));
        }
        if let Some(size) = self.dictionary {
            if !(MIN_DICTIONARY_BYTES..=MAX_DICTIONARY_BYTES).contains(&size) {
                return Err(Error::invalid_input(
                    format!("dictionary size {size}"),
                    format!("must be from {MIN_DICTIONARY_BYTES} to {MAX_DICTIONARY_BYTES} bytes"),
                ));
            }
        }
        if let Some(page) = self.record_page {
            if !page.is_power_of_two() || page < 64 || page > self.align {
                return Err(Error::invalid_input(
                    format!("record page {page}"),
                    "must be a power of two from 64 to the alignment",
                ));
            }
        }
        if let Compression::Zstd { level } = self.compression {
            if !(-7..=22).contains(&level) {
                return Err(Error::invalid_input(
                    format!("zstd level {level}"),
                    "must be from -7 to 22",
                ));
            }
        }
        Ok(())
    }

    /// Refuses a volume budget that cannot hold the smallest shard beside the manifest's
    /// room (§2.1 writing rule 1): every sample would be refused.
    fn check_volume_budget(&self, budget: u64) -> Result<()> {
        let key = "k";
        let fields: [(&str, &[u8]); 1] = [("", &[])];
        let record_len = format::record::encoded_len(key, &fields).unwrap_or(u64::MAX);
        let need = ShardWriter::size_alone(record_len, key.len(), 0, self);
        let least = need.saturating_add(MANIFEST_RESERVE_BYTES);
        if budget < least {
            return Err(Error::invalid_input(
                format!("volume budget {budget}"),
                format!(
                    "the bytes of a volume for shards and manifest (after room for its file \
                     system and parity) must be at least {least}: {MANIFEST_RESERVE_BYTES} kept \
                     for the manifest and {need} for the smallest shard with this alignment"
                ),
            ));
        }
        Ok(())
    }

    /// Holds every record in memory up to `bytes` (tests: the path written before large
    /// records were streamed).
    #[cfg(test)]
    pub(crate) fn large_from(mut self, bytes: u64) -> Self {
        self.large_from = bytes;
        self
    }

    /// Threads compressing blocks: by default one per core; 1 compresses on the writer's
    /// own thread. The output is the same bytes whatever the number.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Creates the archive folder `dir` (which must not exist, or be empty but for the
    /// `_staging` folder of a distributed write, §11.4) and a writer for it.
    ///
    /// # Errors
    /// Invalid options, a non-empty `dir`, or an I/O error creating it.
    pub fn create(self, dir: impl AsRef<Path>) -> Result<Writer> {
        let dir = dir.as_ref().to_path_buf();
        let coder = self.check()?;
        if let Some(budget) = self.volume_size {
            self.check_volume_budget(budget)?;
        }
        match fs::read_dir(&dir) {
            Ok(entries) => {
                let staging = std::ffi::OsStr::new(crate::archive::leftover::STAGING_DIR);
                let mut others = entries.filter(|e| {
                    e.as_ref().map_or(true, |e| {
                        e.file_name() != staging || self.volume_size.is_some()
                    })
                });
                if others.next().is_some() {
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
        let output = match self.volume_size {
            Some(budget) => Output::Volumes(VolumeOutput::new(dir, budget)?),
            None => Output::Folder(FolderOutput::new(dir)),
        };
        Ok(Writer::new(self, output, coder))
    }

    /// A writer that adds a generation to the archive folder `dir` (§11.3): its samples
    /// go into new shards after the last one, with the archive's id and layout (which
    /// replace this builder's profile, sizes, alignment and compression), and
    /// [`Writer::finish`] makes them the current generation. Until then the archive stays
    /// as it was, readable and valid; an interrupted append leaves only leftovers, which
    /// this removes before it starts. The archive is locked against other writers until the
    /// writer is dropped. A parity file the archive had becomes stale; protect it again.
    ///
    /// # Errors
    /// No readable manifest, an archive split into volumes, another writer holding the
    /// lock, keys that cannot be read, or an I/O error.
    pub fn append(self, dir: impl AsRef<Path>) -> Result<Writer> {
        let dir = dir.as_ref().to_path_buf();
        let lock = crate::io::ArchiveLock::take(&dir)?;
        if !dir.join(manifest::MANIFEST_FILE).exists() {
            if let Some(found) = crate::archive::volume::find(&dir) {
                return self.append_volumes(dir, found.manifest_dir, lock);
            }
        }
        let parent = Manifest::load(&dir, &crate::Limits::default())?;
        if parent.layout.volume_size.is_some() {
            return Err(Error::invalid_input(
                dir.display().to_string(),
                "this is one volume of a split archive: append to the folder that holds \
                 its volume folders",
            ));
        }
        let (builder, coder) = self.continuing(&parent)?;
        for leftover in crate::archive::leftover::in_folder(&dir, &parent)
            .map_err(|e| Error::io(&dir, "list archive folder", e))?
        {
            fs::remove_file(&leftover.path)
                .map_err(|e| Error::io(&leftover.path, "remove leftover", e))?;
        }
        // Step 1 of §11.3: the parent's manifest is kept before anything new is written.
        let kept = manifest::generation_file_name(parent.generation_number());
        if !dir.join(&kept).exists() {
            output::write_manifest_file_as(&dir, &parent, &kept)?;
        }
        let seen_keys = keys_of(&dir, &parent)?;
        let output = Output::Folder(FolderOutput::new(dir));
        Ok(Writer::continuing(
            builder,
            output,
            coder,
            parent,
            seen_keys,
            Some(lock),
        ))
    }

    /// [`append`](Self::append) to the split archive whose volume folders are in `root`,
    /// the latest generation's manifest in `latest` (§2.1, appending): the new shards go
    /// into new volumes after the last one, which get the new manifest and every earlier
    /// one; no existing volume is written.
    fn append_volumes(
        self,
        root: PathBuf,
        latest: PathBuf,
        lock: crate::io::ArchiveLock,
    ) -> Result<Writer> {
        let parent = Manifest::load(&latest, &crate::Limits::default())?;
        let Some(budget) = parent.layout.volume_size else {
            return Err(Error::invalid_input(
                latest.display().to_string(),
                "a volume folder whose manifest has no volume size",
            ));
        };
        let (builder, coder) = self.continuing(&parent)?;
        let last = manifest::volume_count(&parent);
        remove_unfinished_volumes(&root, last)?;
        // Every generation's manifest goes into the new volumes, so that the last volume
        // alone holds the whole chain (§11.3).
        let mut kept = Vec::new();
        for number in 1..=parent.generation_number() {
            let name = manifest::generation_file_name(number);
            let path = if number == parent.generation_number() {
                latest.join(manifest::MANIFEST_FILE)
            } else {
                latest.join(&name)
            };
            let bytes = manifest::read_capped(&path, crate::Limits::default().max_manifest_bytes)?;
            kept.push((name, bytes));
        }
        let seen_keys = keys_of(&root, &parent)?;
        let output = Output::Volumes(VolumeOutput::appending(root, budget, last, kept)?);
        Ok(Writer::continuing(
            builder,
            output,
            coder,
            parent,
            seen_keys,
            Some(lock),
        ))
    }

    /// A writer that adds a generation to the stream file `path` (§16.5): the file is read
    /// whole in one pass (every check of [`crate::verify_stream`]; the keys of every
    /// generation are kept to refuse a repeat), then the new shards, their checkpoints and
    /// a final manifest naming the last final manifest's root as parent are written after
    /// its end, never before. The archive's id, layout and the stream's record size
    /// replace this builder's; the checkpoint interval and threads are this builder's.
    /// Until [`Writer::finish`] the stream's current generation stays the one it had.
    ///
    /// Bytes after the last final manifest that end the file without another final
    /// manifest (what an interrupted append leaves) are cut off first: no generation
    /// lists them. The file is locked against other writers until the writer is dropped.
    ///
    /// # Errors
    /// A file that is not a stream, a stream with no final manifest, damage anywhere in
    /// the stream (the reader's error, naming the file and offset), another writer holding
    /// the lock, or an I/O error.
    pub fn append_stream_file(self, path: impl AsRef<Path>) -> Result<Writer> {
        let path = path.as_ref().to_path_buf();
        let lock = crate::io::ArchiveLock::take(&path)?;
        let mut file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "open stream", e))?;
        let old = read_stream_for_append(&file, &path, true)?;
        if let Some(tail) = old.torn_tail {
            // Nothing lists these bytes; a one-pass reader could not read past them.
            file.set_len(old.committed.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io_at(&path, "cut the unfinished append at", tail, e))?;
        }
        let end = old.committed.end;
        file.seek(std::io::SeekFrom::Start(end))
            .map_err(|e| Error::io_at(&path, "seek", end, e))?;
        let mut writer = self.continue_stream(old, Box::new(file), path.clone(), Some(lock))?;
        if let Some(appending) = writer.appending.as_mut() {
            appending.restore = Some((path, end));
        }
        Ok(writer)
    }

    /// A writer that adds a generation to the stream `old` (read whole, from its first
    /// byte), writing to `sink`, which must receive its bytes just after `old`'s last
    /// record: the same file opened for appending, or a tape drive positioned at the end
    /// of the stream's data (docs/design.md §7b). As
    /// [`append_stream_file`](Self::append_stream_file), but a stream that does not end
    /// with its final manifest is refused (a sink cannot be cut back). `name` names the
    /// stream in errors.
    ///
    /// # Errors
    /// As [`append_stream_file`](Self::append_stream_file), and a stream with bytes after
    /// its last final manifest.
    pub fn append_stream<R: Read>(
        self,
        old: R,
        sink: Box<dyn Write + Send>,
        name: impl Into<PathBuf>,
    ) -> Result<Writer> {
        let name = name.into();
        let old = read_stream_for_append(old, &name, false)?;
        self.continue_stream(old, sink, name, None)
    }

    fn continue_stream(
        self,
        old: StreamToAppend,
        sink: Box<dyn Write + Send>,
        name: PathBuf,
        lock: Option<crate::io::ArchiveLock>,
    ) -> Result<Writer> {
        let parent = old.committed.manifest.clone();
        let (mut builder, coder) = self.continuing(&parent)?;
        builder.stream_record = old.record_size;
        let stream = RecordStream::resume(sink, name, &old, parent.archive_id_bytes());
        let output = Output::Stream(stream);
        Ok(Writer::continuing(
            builder, output, coder, parent, old.keys, lock,
        ))
    }

    /// The builder that writes the next generation of `parent`: its id and layout, this
    /// builder's threads and checkpoint interval.
    fn continuing(&self, parent: &Manifest) -> Result<(WriterBuilder, BlockCoder)> {
        let layout = &parent.layout;
        let profile = MediaProfile::from_name(&layout.profile).ok_or_else(|| {
            Error::invalid_input(
                format!("profile {:?}", layout.profile),
                "not a profile this build knows",
            )
        })?;
        let mut builder = WriterBuilder::for_profile(profile);
        builder.threads = self.threads;
        builder.checkpoint_every = self.checkpoint_every;
        builder.align = layout.align;
        builder.block_size = layout.block_size;
        builder.shard_size = layout.shard_size;
        builder.volume_size = layout.volume_size;
        builder.compression = match layout.compression.as_str() {
            "none" => Compression::None,
            _ => Compression::Zstd {
                level: layout.level,
            },
        };
        builder.archive_id = Some(parent.archive_id_bytes());
        let coder = builder.check()?;
        Ok((builder, coder))
    }

    /// A writer that sends the whole archive as one stream of fixed-size records to `sink`
    /// (a pipe, a tape device), never seeking (§16). Shards follow one another, a manifest
    /// checkpoint follows every [`checkpoint_every`](Self::checkpoint_every) shards, and
    /// the final manifest closes the stream. `name` names the sink in errors.
    ///
    /// # Errors
    /// Invalid options, or an I/O error writing the stream's first record.
    pub fn create_stream(
        self,
        sink: Box<dyn Write + Send>,
        name: impl Into<PathBuf>,
    ) -> Result<Writer> {
        let coder = self.check()?;
        if self.volume_size.is_some() {
            return Err(Error::invalid_input(
                "volume size",
                "volumes are folders; a stream has none",
            ));
        }
        let (min, max) = (
            crate::archive::media::MIN_STREAM_RECORD,
            crate::archive::media::MAX_STREAM_RECORD,
        );
        let r = self.stream_record;
        if !r.is_power_of_two() || !(min..=max).contains(&r) || r < self.align {
            return Err(Error::invalid_input(
                format!("stream record size {r}"),
                format!(
                    "must be a power of two from {min} (LTFS's minimum) to {max} (the largest under \
                     the 16 MiB - 1 that LTO drives accept), and at least the alignment {}",
                    self.align
                ),
            ));
        }
        let id = self
            .archive_id
            .unwrap_or_else(|| self.derive_archive_id([]));
        let stream = RecordStream::new(sink, name.into(), self.stream_record, id)?;
        Ok(Writer::new(self, Output::Stream(stream), coder))
    }
}

/// See [`WriterBuilder::derive_archive_id`].
fn derive_archive_id<'a>(
    layout: &Layout,
    contents: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
) -> [u8; 16] {
    let text = serde_json::to_vec(layout).unwrap_or_default();
    let mut hasher = blake3::Hasher::new_derive_key("shardpack archive id v1");
    hasher.update(&text);
    for (key, field, size) in contents {
        hasher
            .update(&(key.len() as u64).to_le_bytes())
            .update(key.as_bytes())
            .update(&(field.len() as u64).to_le_bytes())
            .update(field.as_bytes())
            .update(&size.to_le_bytes());
    }
    let hash = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.as_bytes()[..16]);
    id
}

/// Writes an archive: append samples in order, then [`Writer::finish`].
///
/// Memory is bounded by the blocks being built and compressed plus the current shard's index
/// (32 bytes and the key per sample) plus 16 bytes per sample for duplicate-key detection:
/// a sample larger than the block target and [`LARGE_RECORD_BYTES`] is copied from its
/// sources in pieces of 1 MiB, never held whole ([`Writer::append_from`]).
/// Dropping a writer without finishing leaves no manifest, so the folder is never taken for
/// a complete archive.
#[must_use = "call `finish`, or the folder has no manifest"]
pub struct Writer {
    options: WriterBuilder,
    layout: Layout,
    archive_id: [u8; 16],
    coder: BlockCoder,
    output: Output,
    shard: Option<ShardWriter>,
    shards: Vec<ShardInfo>,
    next_ordinal: u64,
    /// The ordinal of the next record to go into a shard: behind `next_ordinal` while
    /// records wait for a dictionary to be trained.
    placed_ordinal: u64,
    /// Records held back while a new shard's dictionary waits for enough of them.
    training: Training,
    /// Whether a shard so far has a dictionary, which makes the archive version 1.1.
    uses_dictionary: bool,
    seen_keys: HashSet<[u8; 16]>,
    raw_bytes: u64,
    /// The canonical length of the finished shards' manifest entries.
    manifest_entries_len: u64,
    /// Set when an error left part of a sample in the output: the archive is unusable.
    failed: bool,
    /// Set when the writer adds a generation to an existing archive.
    appending: Option<Appending>,
}

/// What a writer adding a generation holds: its parent, and the archive's lock.
struct Appending {
    /// The parent generation's number and root.
    parent: (u64, String),
    /// `None` for a sink the writer cannot lock.
    _lock: Option<crate::io::ArchiveLock>,
    /// A stream file and its length before the append: an append that does not finish
    /// cuts the file back to it, so a failed command leaves the stream as it was.
    restore: Option<(PathBuf, u64)>,
}

impl Drop for Appending {
    fn drop(&mut self) {
        // Runs before the lock is released, and after the writer's output was closed
        // (`output` is declared before `appending` in `Writer`).
        if let Some((path, len)) = self.restore.take() {
            let _ = File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()));
        }
    }
}

/// The first records of a shard with dictionaries on, encoded, until there are enough to
/// train its dictionary on. Bounded by [`dictionary::TRAINING_RECORDS`] and
/// [`dictionary::TRAINING_BYTES`] (plus one record).
#[derive(Default)]
struct Training {
    records: Vec<u8>,
    lens: Vec<usize>,
    keys: Vec<String>,
}

impl Training {
    /// Holds back a record, reading its sources; on an error nothing is held.
    fn push(&mut self, key: &str, record: RecordBytes<'_>) -> Result<()> {
        let start = self.records.len();
        record.append_to(&mut self.records)?;
        self.lens.push(self.records.len() - start);
        self.keys.push(key.to_owned());
        Ok(())
    }

    /// Whether §5.5 rule 3 would skip training on the set with one more record of
    /// `record_len` bytes in it, decided from lengths alone.
    fn skips_training_with(&self, record_len: u64) -> bool {
        let n = self.lens.len() as u64 + 1;
        let total = self.records.len() as u64 + record_len;
        n < dictionary::MIN_TRAINING_RECORDS as u64
            || total >= dictionary::MAX_MEAN_RECORD as u64 * n
    }

    fn push_encoded(&mut self, key: &str, record: &[u8]) {
        self.records.extend_from_slice(record);
        self.lens.push(record.len());
        self.keys.push(key.to_owned());
    }

    fn is_full(&self) -> bool {
        self.lens.len() >= dictionary::TRAINING_RECORDS
            || self.records.len() >= dictionary::TRAINING_BYTES
    }

    fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

impl Writer {
    fn new(options: WriterBuilder, output: Output, coder: BlockCoder) -> Writer {
        let layout = options.layout();
        let archive_id = options
            .archive_id
            .unwrap_or_else(|| derive_archive_id(&layout, []));
        Writer {
            options,
            layout,
            archive_id,
            coder,
            output,
            shard: None,
            shards: Vec::new(),
            next_ordinal: 0,
            placed_ordinal: 0,
            training: Training::default(),
            uses_dictionary: false,
            seen_keys: HashSet::new(),
            raw_bytes: 0,
            manifest_entries_len: 0,
            failed: false,
            appending: None,
        }
    }

    /// A writer that continues `parent`'s shards, ordinals and keys as its next generation.
    fn continuing(
        builder: WriterBuilder,
        output: Output,
        coder: BlockCoder,
        parent: Manifest,
        seen_keys: HashSet<[u8; 16]>,
        lock: Option<crate::io::ArchiveLock>,
    ) -> Writer {
        let mut writer = Writer::new(builder, output, coder);
        writer.next_ordinal = parent.totals.samples;
        writer.placed_ordinal = parent.totals.samples;
        writer.raw_bytes = parent.totals.raw_bytes;
        writer.manifest_entries_len = parent.shards.iter().map(|s| s.canonical_len()).sum();
        writer.uses_dictionary = parent.format_version != "1.0";
        writer.seen_keys = seen_keys;
        writer.appending = Some(Appending {
            parent: (parent.generation_number(), parent.root),
            _lock: lock,
            restore: None,
        });
        writer.shards = parent.shards;
        writer
    }

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

    /// True when a sample with `key` was appended (by the same 16-byte hash that
    /// [`append`](Self::append) refuses duplicates with).
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.seen_keys.contains(&key_hash(key))
    }

    /// Appends one sample and returns its ordinal.
    ///
    /// # Errors
    /// An empty or over-long key, a key with NUL, a duplicate key, no fields, an over-long
    /// or duplicate field name, a name with `/` or NUL, a sample too large for a block
    /// (nothing is written for these); or an I/O error (the archive is then unusable).
    pub fn append(&mut self, key: &str, fields: &[(&str, &[u8])]) -> Result<u64> {
        let fields: Vec<(&str, FieldData<'_>)> = fields
            .iter()
            .map(|(name, data)| (*name, FieldData::Bytes(data)))
            .collect();
        self.append_from(key, &fields)
    }

    /// Appends one sample whose fields are in memory or in open files, and returns its
    /// ordinal. Each file must have exactly the length given: this is checked from its
    /// metadata before anything is read, and again as it is read. Files are copied in
    /// pieces of at most 1 MiB straight into the block being built; a sample larger than
    /// the block target and [`LARGE_RECORD_BYTES`] is written straight to the shard
    /// (read twice: once for its checksum and compressed size, once to write it), so
    /// memory stays bounded whatever the files' sizes. The archive is the same bytes as
    /// [`append`](Self::append) of the same contents would give.
    ///
    /// # Errors
    /// As [`append`](Self::append), checked before anything is read; a file that cannot be
    /// read; [`crate::ErrorKind::InputChanged`] for a file that is not the length given or
    /// changes while it is read. Nothing of the sample is kept, and the writer can go on,
    /// except when a large sample changes between its two reads: its first bytes are
    /// then written and the archive is unusable (every later call fails).
    pub fn append_from(&mut self, key: &str, fields: &[(&str, FieldData<'_>)]) -> Result<u64> {
        self.refuse_if_failed()?;
        let key_hash = validate_sample(key, fields, &self.seen_keys)?;
        let max = crate::Limits::DEFAULT.max_block_bytes;
        let lens: Vec<(&str, u64)> = fields.iter().map(|(n, d)| (*n, d.len())).collect();
        let record_len = format::record::encoded_len_of(key, &lens)
            .filter(|&n| n <= max)
            .ok_or_else(|| {
                let file = fields.iter().find_map(|(_, f)| match f {
                    FieldData::File { path, .. } => Some(format!(" ({})", path.display())),
                    FieldData::Bytes(_) => None,
                });
                Error::invalid_input(
                    format!("sample {key:?}{}", file.unwrap_or_default()),
                    format!(
                        "is larger than the {max} bytes a default reader accepts (§13.2 rule 2); \
                         refused before reading"
                    ),
                )
            })?;
        let sources = RecordSources::new(key, fields, record_len);
        sources.check_sizes()?;
        let record = RecordBytes::Sources(&sources);
        let result = self.place(key, record, record_len);
        if result.is_err() && self.output_moved() {
            self.failed = true;
        }
        result?;
        self.seen_keys.insert(key_hash);
        self.raw_bytes += record_len;
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        Ok(ordinal)
    }

    /// Refuses to go on after an error that left part of a sample in the output.
    fn refuse_if_failed(&self) -> Result<()> {
        if self.failed {
            return Err(Error::invalid_input(
                "writer",
                "an earlier error left part of a sample in the archive; it is unusable",
            ));
        }
        Ok(())
    }

    /// True when the open shard has bytes of a record that was not completed: set by
    /// [`ShardWriter::add_large`] while it writes.
    fn output_moved(&self) -> bool {
        self.shard.as_ref().is_some_and(|s| s.writing_large)
    }

    /// Puts a validated record in its shard, or holds it back for a dictionary (§5.5).
    fn place(&mut self, key: &str, record: RecordBytes<'_>, record_len: u64) -> Result<()> {
        self.close_if_full(key.len(), record_len)?;
        if let Some(size) = self
            .options
            .dictionary_size()
            .filter(|_| self.shard.is_none())
        {
            // Refuse now what could not be placed later, when it is held back no more.
            self.check_fits_volume(key, record_len, u64::from(size))?;
            if self.is_large(record_len) {
                return self.hold_back_large(key, record, record_len);
            }
            // A new shard's dictionary is trained on its first records, and its header,
            // which holds the dictionary, comes before them: hold them back until then.
            self.training.push(key, record)?;
            if self.training.is_full() {
                self.open_trained_shard(false)?;
            }
            Ok(())
        } else {
            if self.shard.is_none() {
                self.open_shard(key, record_len, None)?;
            }
            self.add_to_shard(key, record, record_len)
        }
    }

    /// True for a record written straight from its sources ([`LARGE_RECORD_BYTES`]).
    fn is_large(&self, record_len: u64) -> bool {
        record_len > self.options.block_size.max(self.options.large_from)
    }

    /// Places a large record that arrives while a shard's first records are held back,
    /// without holding it in memory: it always fills the training set (it is larger than
    /// 4 MiB, §5.5 rule 2), and when the set with it in is not trained on (rule 3, decided
    /// from lengths), the set is placed in a shard without a dictionary and the record after
    /// it, as if it had been held back. Only a set of at least 64 records whose mean length
    /// stays below 16 KiB with this one in it trains on its bytes; it is then held.
    fn hold_back_large(
        &mut self,
        key: &str,
        record: RecordBytes<'_>,
        record_len: u64,
    ) -> Result<()> {
        loop {
            if self.training.is_empty() {
                // A set of this record alone is too small to train on.
                if self.shard.is_none() {
                    self.open_shard(key, record_len, None)?;
                }
                return self.add_to_shard(key, record, record_len);
            }
            if !self.training.skips_training_with(record_len) {
                self.training.push(key, record)?;
                return self.open_trained_shard(false);
            }
            self.open_trained_shard(true)?;
            if self.shard.is_some() && self.training.is_empty() {
                self.close_if_full(key.len(), record_len)?;
                if self.shard.is_some() {
                    return self.add_to_shard(key, record, record_len);
                }
            }
        }
    }

    /// Closes the open shard if a record of `record_len` bytes with a key of `key_len`
    /// bytes might not fit it (§5.3 rule 1).
    fn close_if_full(&mut self, key_len: usize, record_len: u64) -> Result<()> {
        // A shard holds at least one record, however large (§5.3).
        if let Some(shard) = self.shard.as_mut().filter(|s| !s.records.is_empty()) {
            let mut full = shard.size_with(record_len, key_len, &self.options) > shard.cap;
            if full && !shard.pending.is_empty() {
                // The bound counts blocks still being compressed at their raw size. Before
                // closing on it, write them all and decide on the exact size: then where a
                // shard ends never depends on threads or timing.
                shard.write_ready(&mut self.output, &mut self.coder, true)?;
                full = shard.size_with(record_len, key_len, &self.options) > shard.cap;
            }
            if full || shard.records.len() == u32::MAX as usize {
                self.close_shard()?;
            }
        }
        Ok(())
    }

    /// Opens the next shard, whose first record is `key`'s, with `dictionary` if any.
    fn open_shard(
        &mut self,
        key: &str,
        record_len: u64,
        dictionary: Option<Vec<u8>>,
    ) -> Result<()> {
        let number = self.shards.len() as u32;
        let dictionary_len = dictionary.as_ref().map_or(0, |d| d.len() as u64);
        let cap = self.place_shard(key, record_len, dictionary_len)?;
        self.output.begin_shard(number)?;
        let dictionary = dictionary.map(|bytes| {
            self.uses_dictionary = true;
            std::sync::Arc::new(ShardDictionary {
                shard: number,
                bytes,
            })
        });
        self.shard = Some(ShardWriter::create(self, number, cap, dictionary)?);
        Ok(())
    }

    /// Trains a dictionary on the held-back records, opens a shard with it (or without, if
    /// the records are too few or too large to profit), and adds them to it.
    /// With `untrained`, §5.5 rule 3 has already decided to skip training.
    fn open_trained_shard(&mut self, untrained: bool) -> Result<()> {
        let batch = std::mem::take(&mut self.training);
        let (Some(first_key), Some(&first_len), Some(size), Some(level)) = (
            batch.keys.first(),
            batch.lens.first(),
            self.options.dictionary_size(),
            self.options.zstd_level(),
        ) else {
            return Ok(());
        };
        let trained = if untrained {
            None
        } else {
            dictionary::train(&batch.records, &batch.lens, size, level)
        };
        self.open_shard(first_key, first_len as u64, trained)?;
        let mut at = 0;
        for (key, &len) in batch.keys.iter().zip(&batch.lens) {
            let record = &batch.records[at..at + len];
            at += len;
            self.close_if_full(key.len(), len as u64)?;
            if self.shard.is_none() {
                // The shard filled up with held-back records: the rest start the next
                // one, which trains its own dictionary.
                self.training.push_encoded(key, record);
                if self.training.is_full() {
                    self.open_trained_shard(false)?;
                }
                continue;
            }
            self.add_to_shard(key, RecordBytes::Encoded(record), len as u64)?;
        }
        Ok(())
    }

    /// Adds a record to the open shard, flushing blocks as §5.3 rules 3 and 5 say.
    fn add_to_shard(&mut self, key: &str, record: RecordBytes<'_>, record_len: u64) -> Result<()> {
        let large = self.is_large(record_len);
        let Some(shard) = self.shard.as_mut() else {
            return Err(Error::invalid_input("writer", "no shard"));
        };
        if large {
            // A block of its own (§5.3 rule 4), stored in a shard with a dictionary, whose
            // frames hold at most 16 MiB (§5.5).
            let level = match (self.options.compression, &shard.dictionary) {
                (Compression::Zstd { level }, None) => Some(level),
                _ => None,
            };
            shard.add_large(&mut self.output, &mut self.coder, key, record, level)?;
            self.placed_ordinal += 1;
            return Ok(());
        }
        let output = &mut self.output;
        let (block_size, page) = match shard.dictionary {
            // Records compressed one by one have no place in a page to keep, and a read
            // decodes one whatever the block's size (§5.5).
            Some(_) => (
                self.options.block_size.max(dictionary::MIN_BLOCK_BYTES),
                None,
            ),
            None => (self.options.block_size, self.options.record_page),
        };
        if !shard.block_buf.is_empty() && shard.block_buf.len() as u64 + record_len > block_size {
            shard.flush_block(output, &mut self.coder)?;
        }
        shard.add_record(key, record, record_len, page)?;
        if shard.block_buf.len() as u64 >= block_size {
            shard.flush_block(output, &mut self.coder)?;
        }
        self.placed_ordinal += 1;
        Ok(())
    }

    /// Chooses where a new shard starting with this record goes (the next volume when the
    /// current one is too full for it) and returns the size the shard may reach.
    fn place_shard(&mut self, key: &str, record_len: u64, dictionary_len: u64) -> Result<u64> {
        let Some(need) = self.check_fits_volume(key, record_len, dictionary_len)? else {
            return Ok(self.options.shard_size);
        };
        if self.output.remaining().is_some_and(|left| left < need) {
            self.output.next_volume()?;
        }
        Ok(self
            .options
            .shard_size
            .min(self.output.remaining().unwrap_or(u64::MAX)))
    }

    /// Refuses a sample that would not fit a whole volume in a shard of its own; returns
    /// the size such a shard may reach, when the archive has volumes.
    fn check_fits_volume(
        &self,
        key: &str,
        record_len: u64,
        dictionary_len: u64,
    ) -> Result<Option<u64>> {
        let Some(budget) = self.output.volume_budget() else {
            return Ok(None);
        };
        let need = ShardWriter::size_alone(record_len, key.len(), dictionary_len, &self.options);
        if need > budget {
            return Err(Error::invalid_input(
                format!("sample {key:?}"),
                format!("needs a shard of up to {need} bytes, more than a whole volume ({budget} bytes usable); use a larger volume"),
            ));
        }
        Ok(Some(need))
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some(shard) = self.shard.take() {
            let mut info = shard.finish(&mut self.output, &mut self.coder)?;
            info.volume = self.output.end_shard(info.size)?;
            let has_volumes = self.output.volume_budget().is_some();
            let file = has_volumes.then(|| info.file.clone());
            if has_volumes {
                self.manifest_entries_len += info.canonical_len();
            }
            self.shards.push(info);
            if let Some(file) = file {
                // The final manifest lists at least these shards: if it already does not
                // fit beside a volume's shards, say so now, not at the end (§2.1 rule 4).
                let len = self.manifest_of(Vec::new()).canonical_len_with_entries(
                    self.shards.len() as u64,
                    self.manifest_entries_len,
                );
                self.output.check_manifest_fits(len, &file)?;
            }
            if self.shards.len() % self.options.checkpoint_every as usize == 0 {
                let manifest = self.manifest();
                self.output
                    .write_manifest(&manifest, EntryKind::Checkpoint)?;
            }
        }
        Ok(())
    }

    /// The manifest of every finished shard.
    fn manifest(&self) -> Manifest {
        self.manifest_of(self.shards.clone())
    }

    /// The manifest of every finished shard, listing `shards` (all of them, or none to
    /// measure the rest).
    fn manifest_of(&self, shards: Vec<ShardInfo>) -> Manifest {
        let all = &self.shards;
        let samples = all.last().map_or(0, |s| s.first_ordinal + s.samples);
        let mut manifest = Manifest {
            format: manifest::MANIFEST_FORMAT.into(),
            format_version: {
                let (major, minor) = if self.appending.is_some() {
                    format::VERSION_1_3
                } else if self.uses_dictionary {
                    format::VERSION_1_1
                } else {
                    format::VERSION_1_0
                };
                format!("{major}.{minor}")
            },
            writer: WRITER_NAME.into(),
            archive_id: manifest::to_hex(&self.archive_id),
            layout: self.layout.clone(),
            totals: Totals {
                shards: all.len() as u64,
                samples,
                bytes: all.iter().map(|s| s.size).sum(),
                raw_bytes: all.iter().map(|s| s.raw_bytes).sum(),
            },
            shards,
            generation: self.appending.as_ref().map(|a| manifest::Generation {
                number: a.parent.0 + 1,
                parent: a.parent.1.clone(),
            }),
            root: String::new(),
        };
        manifest.root = manifest.compute_root();
        manifest
    }

    /// Finishes the last shard and writes the manifest (atomically, last), returning it.
    ///
    /// # Errors
    /// An I/O error; the folder then has no manifest and is not a complete archive.
    pub fn finish(mut self) -> Result<Manifest> {
        // Each round places at least one held-back record, so this ends.
        self.refuse_if_failed()?;
        while !self.training.is_empty() {
            self.open_trained_shard(false)?;
        }
        self.close_shard()?;
        if let (Output::Volumes(v), Some(_)) = (&self.output, &self.appending) {
            if v.is_empty() {
                // The new volume would hold no shard (§2.1): nothing to append.
                let _ = fs::remove_dir(v.current_dir());
                return Err(Error::invalid_input(
                    "append",
                    "no sample to add: a generation of a split archive adds at least one \
                     shard, in a new volume",
                ));
            }
        }
        let manifest = self.manifest();
        debug_assert_eq!(manifest.totals.samples, self.next_ordinal);
        debug_assert_eq!(manifest.totals.raw_bytes, self.raw_bytes);
        self.output.write_manifest(&manifest, EntryKind::Final)?;
        if let Some(appending) = self.appending.as_mut() {
            // The new generation is whole: nothing to cut back.
            appending.restore = None;
        }
        Ok(manifest)
    }
}

/// What one pass over a large record saw.
#[derive(PartialEq, Eq)]
struct Pass {
    raw_crc: u32,
    z_len: u64,
    z_crc: u32,
}

/// One pass over a large record: its CRC, and with `stream` its compressed length and CRC;
/// `payload` gets the bytes a block stores (compressed with `stream`, else raw).
fn pass(
    record: &RecordBytes<'_>,
    buf: &mut Vec<u8>,
    mut stream: Option<&mut crate::codec::StreamCompressor>,
    payload: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<Pass> {
    let mut raw = crc32fast::Hasher::new();
    let mut z = crc32fast::Hasher::new();
    let mut z_len = 0u64;
    if let Some(s) = stream.as_deref_mut() {
        s.begin(record.len())
            .map_err(|e| Error::io(Path::new("zstd"), "compress", e))?;
    }
    record.pieces(buf, &mut |piece, last| {
        raw.update(piece);
        match stream.as_deref_mut() {
            Some(s) => s.feed(piece, last, &mut |frame| {
                z.update(frame);
                z_len += frame.len() as u64;
                payload(frame)
            }),
            None => payload(piece),
        }
    })?;
    Ok(Pass {
        raw_crc: raw.finalize(),
        z_len,
        z_crc: z.finalize(),
    })
}

/// Removes what an interrupted or failed append left in the split archive `root`: the
/// volume folders after the current generation's last volume (see
/// [`remove_unfinished_volumes`]).
pub(crate) fn discard_unfinished_volumes(root: &Path) -> Result<()> {
    let Some(found) = crate::archive::volume::find(root) else {
        return Ok(());
    };
    let current = Manifest::load(&found.manifest_dir, &crate::Limits::default())?;
    remove_unfinished_volumes(root, manifest::volume_count(&current))
}

/// Removes the volume folders after `last` in `root` that hold no manifest: what an
/// interrupted append to a split archive left (shard files, partial files). A folder with
/// any other file, or with a manifest, is refused rather than touched.
fn remove_unfinished_volumes(root: &Path, last: u32) -> Result<()> {
    let entries = fs::read_dir(root).map_err(|e| Error::io(root, "list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(crate::archive::volume::volume_number_of)
        else {
            continue;
        };
        if number <= last {
            continue;
        }
        let dir = entry.path();
        let files: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, "list", e))?
            .flatten()
            .map(|e| e.path())
            .collect();
        let ours = |p: &PathBuf| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file()
                && name != manifest::MANIFEST_FILE
                && ((name.starts_with("shard-") && name.contains(".shp"))
                    || name.ends_with(manifest::PARTIAL_SUFFIX)
                    || name.starts_with("manifest-"))
        };
        if let Some(other) = files.iter().find(|p| !ours(p)) {
            return Err(Error::invalid_input(
                dir.display().to_string(),
                format!(
                    "a volume folder after the archive's last volume ({last}) holds {}; \
                     an interrupted append leaves only shard and partial files there",
                    other.display()
                ),
            ));
        }
        for file in &files {
            fs::remove_file(file).map_err(|e| Error::io(file, "remove leftover", e))?;
        }
        fs::remove_dir(&dir).map_err(|e| Error::io(&dir, "remove leftover volume folder", e))?;
    }
    Ok(())
}

/// The first 16 bytes of the key's BLAKE3 hash, by which duplicate keys are found.
/// The hashes of every key the archive at `path` holds, as of generation `parent`: what a
/// new generation may not repeat.
fn keys_of(path: &Path, parent: &Manifest) -> Result<HashSet<[u8; 16]>> {
    let mut keys = HashSet::with_capacity(parent.totals.samples as usize);
    let archive = crate::read::Archive::open(path)?;
    for (index, info) in parent.shards.iter().enumerate() {
        let shard = archive.shard(index)?;
        for local in 0..info.samples as u32 {
            keys.insert(key_hash(&shard.key(local)?));
        }
    }
    Ok(keys)
}

fn key_hash(key: &str) -> [u8; 16] {
    let hash = blake3::hash(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

fn validate_sample(
    key: &str,
    fields: &[(&str, FieldData<'_>)],
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
    let key_hash = key_hash(key);
    if seen.contains(&key_hash) {
        return refuse("duplicate key: every sample's key must be unique".into());
    }
    Ok(key_hash)
}

/// One shard being written. Its bytes go to the writer's [`Output`]; it hashes them as they
/// go, so the BLAKE3 digest needs no second read.
struct ShardWriter {
    number: u32,
    /// Names the shard in errors.
    name: PathBuf,
    hasher: blake3::Hasher,
    pos: u64,
    header: ShardHeader,
    blocks: Vec<BlockEntry>,
    records: Vec<RecordEntry>,
    key_heap: Vec<u8>,
    block_buf: Vec<u8>,
    block_first_record: u32,
    raw_bytes: u64,
    /// The size this shard may not exceed unless one sample alone does.
    cap: u64,
    /// Blocks handed to the coder and not written yet, in order.
    pending: std::collections::VecDeque<PendingBlock>,
    /// An upper bound on the bytes the pending blocks will take.
    pending_bytes: u64,
    /// The number the next block gets.
    next_block: u32,
    /// The shard's dictionary: its records are then compressed one by one (§5.5).
    dictionary: Option<std::sync::Arc<ShardDictionary>>,
    /// True while a large record is being written: an error then leaves part of it in the
    /// shard.
    writing_large: bool,
}

/// A block being compressed: what its header needs once it comes back.
struct PendingBlock {
    first_record: u32,
    record_count: u32,
    /// Bytes reserved for it in `pending_bytes`.
    reserved: u64,
}

impl ShardWriter {
    /// An upper bound on the size of a shard holding only this record.
    fn size_alone(
        record_len: u64,
        key_len: usize,
        dictionary_len: u64,
        options: &WriterBuilder,
    ) -> u64 {
        let align = u64::from(options.align);
        let data_offset = align_up(HEADER_LEN as u64 + dictionary_len, align).unwrap_or(u64::MAX);
        let page = options.record_page.map_or(0, u64::from);
        data_offset
            + record_len
            + 2 * page
            + 2 * (BLOCK_HEADER_LEN as u64 + align)
            + 2 * 32
            + 36
            + key_len as u64
            + TRAILER_LEN as u64
            + align
    }

    fn create(
        writer: &mut Writer,
        number: u32,
        cap: u64,
        dictionary: Option<std::sync::Arc<ShardDictionary>>,
    ) -> Result<ShardWriter> {
        let (codec, level) = match writer.options.compression {
            Compression::None => (Codec::Stored, 0),
            Compression::Zstd { level } => (Codec::Zstd, level as i8),
        };
        let header = ShardHeader {
            archive_id: writer.archive_id,
            shard_number: number,
            first_ordinal: writer.placed_ordinal,
            block_bytes: writer.options.block_size,
            shard_bytes: writer.options.shard_size,
            align: writer.options.align,
            codec,
            level,
            profile: writer.options.profile.code,
            dictionary_len: dictionary.as_ref().map_or(0, |d| d.bytes.len() as u32),
            dictionary_crc: dictionary
                .as_ref()
                .map_or(0, |d| format::checksum::crc32(&d.bytes)),
            crc: 0,
        };
        let name = writer.output.name(number);
        let encoded = header.encode();
        let header = ShardHeader::decode(&encoded).map_err(|d| d.at(&name, Some(number), 0))?;
        let mut shard = ShardWriter {
            number,
            name,
            hasher: blake3::Hasher::new(),
            pos: 0,
            header,
            blocks: Vec::new(),
            records: Vec::new(),
            key_heap: Vec::new(),
            block_buf: Vec::new(),
            block_first_record: 0,
            raw_bytes: 0,
            cap,
            pending: std::collections::VecDeque::new(),
            pending_bytes: 0,
            next_block: 0,
            dictionary,
            writing_large: false,
        };
        shard.write(&mut writer.output, &encoded)?;
        if let Some(d) = shard.dictionary.clone() {
            shard.write(&mut writer.output, &d.bytes)?;
        }
        shard.pad_to(&mut writer.output, shard.header.data_offset())?;
        debug_assert!(HEADER_LEN as u64 <= shard.pos);
        Ok(shard)
    }

    fn write(&mut self, out: &mut Output, bytes: &[u8]) -> Result<()> {
        out.write(bytes, self.pos)?;
        format::checksum::blake3_update(&mut self.hasher, bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, out: &mut Output, target: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(out, &ZEROS[..n])?;
        }
        Ok(())
    }

    fn align(&self) -> u64 {
        u64::from(self.header.align)
    }

    /// An upper bound on the shard's size if a record of `record_len` bytes with a key of
    /// `key_len` bytes were added now and the shard then closed, so that a shard only
    /// exceeds its target when one sample alone does.
    fn size_with(&self, record_len: u64, key_len: usize, options: &WriterBuilder) -> u64 {
        let align = self.align();
        let page = match self.dictionary {
            Some(_) => 0,
            None => options.record_page.map_or(0, u64::from),
        };
        // Worst case: the pending block is closed, the record starts a new block, page
        // placement pads it by up to two pages, and every structure pads to the alignment.
        let blocks = self.block_buf.len() as u64
            + record_len
            + 2 * page
            + 2 * (BLOCK_HEADER_LEN as u64 + align);
        let index = (u64::from(self.next_block) + 2) * 32
            + (self.records.len() as u64 + 1) * 36
            + (self.key_heap.len() + key_len) as u64;
        self.pos + self.pending_bytes + blocks + index + TRAILER_LEN as u64 + align
    }

    fn add_record(
        &mut self,
        key: &str,
        record: RecordBytes<'_>,
        record_len: u64,
        page: Option<u32>,
    ) -> Result<()> {
        let before = self.block_buf.len();
        if let Some(page) = page.map(u64::from) {
            // Blocks start on the alignment, a multiple of the page, so where the record
            // falls in a page depends only on where it is in its block.
            let at = BLOCK_HEADER_LEN as u64 + self.block_buf.len() as u64;
            if record_len <= page && at / page != (at + record_len - 1) / page {
                let mut gap = page - at % page;
                if gap < FILLER_MARKER_LEN as u64 {
                    // Too short for a filler marker: skip to the page after.
                    gap += page;
                }
                format::record::encode_filler(&mut self.block_buf, gap as usize);
            }
        }
        let offset = self.block_buf.len();
        if let Err(e) = record.append_to(&mut self.block_buf) {
            self.block_buf.truncate(before);
            return Err(e);
        }
        let bytes = &self.block_buf[offset..];
        self.records.push(RecordEntry {
            offset: offset as u64,
            len: bytes.len() as u64,
            key_offset: self.key_heap.len() as u64,
            block: self.next_block,
            crc: format::checksum::crc32(bytes),
        });
        self.raw_bytes += bytes.len() as u64;
        self.key_heap.extend_from_slice(key.as_bytes());
        Ok(())
    }

    /// Writes a record larger than the block target in a block of its own straight from
    /// `record`'s sources, in two passes over them: the first computes its CRC and, when
    /// `level` asks for zstd and a sample of the record does not look incompressible, its
    /// compressed length and CRC; the second writes the block header, then the payload. A
    /// source whose bytes differ between the passes is an
    /// [`InputChange::Contents`](crate::InputChange::Contents) error. The block is the one the
    /// pipeline would give for the record, except that a compressed one is a streamed zstd
    /// frame (see [`crate::codec::StreamCompressor`]).
    fn add_large(
        &mut self,
        out: &mut Output,
        coder: &mut BlockCoder,
        key: &str,
        record: RecordBytes<'_>,
        level: Option<i32>,
    ) -> Result<()> {
        self.flush_block(out, coder)?;
        self.write_ready(out, coder, true)?;
        let len = record.len();
        let mut stream = match level {
            Some(level) => {
                let mut sample = Vec::new();
                for range in pipeline::sample_ranges(len) {
                    let mut piece = vec![0u8; (range.end - range.start) as usize];
                    record.read_at(range.start, &mut piece)?;
                    sample.extend_from_slice(&piece);
                }
                let zstd = |e| Error::io(Path::new("zstd"), "compress", e);
                let mut compressor = crate::codec::Compressor::new(level).map_err(zstd)?;
                if pipeline::sample_says_incompressible(&mut compressor, &sample).map_err(zstd)? {
                    None
                } else {
                    Some(crate::codec::StreamCompressor::new(level).map_err(zstd)?)
                }
            }
            None => None,
        };
        let mut buf = Vec::new();
        // Pass 1: the record's CRC, and its compressed length and CRC.
        let first = pass(&record, &mut buf, stream.as_mut(), &mut |_| Ok(()))?;
        let compressed = stream.is_some() && first.z_len < len;
        if !compressed {
            stream = None;
        }
        let (codec, stored_len, payload_crc) = if compressed {
            (Codec::Zstd, first.z_len, first.z_crc)
        } else {
            (Codec::Stored, len, first.raw_crc)
        };
        let first_record = self.records.len() as u32;
        let header = BlockHeader {
            shard_number: self.number,
            block_number: self.blocks.len() as u32,
            first_ordinal: self.header.first_ordinal + u64::from(first_record),
            record_count: 1,
            codec,
            stored_len,
            raw_len: len,
            payload_crc,
        };
        self.writing_large = true;
        let offset = self.pos;
        self.write(out, &header.encode())?;
        // Pass 2: the same bytes again, written as they come.
        let second = pass(&record, &mut buf, stream.as_mut(), &mut |piece| {
            self.write(out, piece)
        })?;
        if second != first {
            return Err(Error::input_changed(
                Path::new(&record.name()),
                0,
                crate::InputChange::Contents,
            ));
        }
        let next = align_up(self.pos, self.align()).unwrap_or(self.pos);
        self.pad_to(out, next)?;
        self.writing_large = false;
        self.blocks.push(BlockEntry {
            offset,
            stored_len,
            raw_len: len,
            first_record,
            record_count: 1,
        });
        self.records.push(RecordEntry {
            offset: 0,
            len,
            key_offset: self.key_heap.len() as u64,
            block: self.next_block,
            crc: first.raw_crc,
        });
        self.raw_bytes += len;
        self.key_heap.extend_from_slice(key.as_bytes());
        self.next_block += 1;
        self.block_first_record = self.records.len() as u32;
        Ok(())
    }

    /// Hands the block being filled to the coder, then writes every block that is ready.
    fn flush_block(&mut self, out: &mut Output, coder: &mut BlockCoder) -> Result<()> {
        if self.block_buf.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.block_buf);
        let reserved = raw.len() as u64 + BLOCK_HEADER_LEN as u64 + self.align();
        let record_count = self.records.len() as u32 - self.block_first_record;
        let dictionary = self.dictionary.as_ref().map(|d| {
            let lens = self.records[self.block_first_record as usize..]
                .iter()
                .map(|r| r.len as u32)
                .collect();
            (std::sync::Arc::clone(d), lens)
        });
        coder
            .submit(BlockJob { raw, dictionary })
            .map_err(|e| Error::io(&self.name, "compress a block of", e))?;
        self.pending.push_back(PendingBlock {
            first_record: self.block_first_record,
            record_count,
            reserved,
        });
        self.pending_bytes += reserved;
        self.next_block += 1;
        self.block_first_record = self.records.len() as u32;
        self.write_ready(out, coder, false)
    }

    /// Writes the pending blocks that are coded, in order; with `wait`, all of them.
    fn write_ready(&mut self, out: &mut Output, coder: &mut BlockCoder, wait: bool) -> Result<()> {
        while !self.pending.is_empty() {
            let Some(coded) = coder
                .take(wait)
                .map_err(|e| Error::io(&self.name, "compress a block of", e))?
            else {
                break;
            };
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= p.reserved;
            let (codec, payload) = match &coded.compressed {
                Some((codec, z)) => (*codec, z.as_slice()),
                None => (Codec::Stored, coded.raw.as_slice()),
            };
            let header = BlockHeader {
                shard_number: self.number,
                block_number: self.blocks.len() as u32,
                first_ordinal: self.header.first_ordinal + u64::from(p.first_record),
                record_count: p.record_count,
                codec,
                stored_len: payload.len() as u64,
                raw_len: coded.raw.len() as u64,
                payload_crc: coded.payload_crc,
            };
            let offset = self.pos;
            self.write(out, &header.encode())?;
            self.write(out, payload)?;
            let next = align_up(self.pos, self.align()).unwrap_or(self.pos);
            self.pad_to(out, next)?;
            self.blocks.push(BlockEntry {
                offset,
                stored_len: header.stored_len,
                raw_len: header.raw_len,
                first_record: p.first_record,
                record_count: p.record_count,
            });
            if self.block_buf.capacity() == 0 {
                // Reuse the buffer rather than allocate a new one per block.
                let mut raw = coded.raw;
                raw.clear();
                self.block_buf = raw;
            }
        }
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

    fn finish(mut self, out: &mut Output, coder: &mut BlockCoder) -> Result<ShardInfo> {
        self.flush_block(out, coder)?;
        self.write_ready(out, coder, true)?;
        let index_offset = self.pos;
        let mut index = Vec::with_capacity(
            self.blocks.len() * 32 + self.records.len() * 36 + self.key_heap.len(),
        );
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
        let index_crc = format::checksum::crc32(&index);
        self.write(out, &index)?;
        let file_len = align_up(self.pos + TRAILER_LEN as u64, self.align()).unwrap_or(u64::MAX);
        self.pad_to(out, file_len - TRAILER_LEN as u64)?;
        let trailer = Trailer {
            version: self.header.version(),
            archive_id: self.header.archive_id,
            shard_number: self.number,
            block_count: self.blocks.len() as u32,
            record_count: self.records.len() as u64,
            first_ordinal: self.header.first_ordinal,
            index_offset,
            index_len: index.len() as u64,
            key_heap_len: self.key_heap.len() as u64,
            file_len,
            index_crc,
            header_crc: self.header.crc,
            raw_bytes: self.raw_bytes,
        };
        self.write(out, &trailer.encode())?;
        let key_string = |r: Option<&u32>| {
            r.map(|&r| String::from_utf8_lossy(self.key(r as usize)).into_owned())
                .unwrap_or_default()
        };
        Ok(ShardInfo {
            file: shard_file_name(self.number),
            size: self.pos,
            samples: self.records.len() as u64,
            first_ordinal: self.header.first_ordinal,
            raw_bytes: self.raw_bytes,
            volume: None,
            min_key: key_string(order.first()),
            max_key: key_string(order.last()),
            blake3: self.hasher.finalize().to_hex().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::header::LEVEL_OFFSET;

    #[test]
    fn zstd_level_0_is_written_and_recorded_as_level_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut w = WriterBuilder::new()
            .compression(Compression::Zstd { level: 0 })
            .threads(1)
            .create(&path)
            .unwrap();
        w.append("k", &[("text", &[b'a'; 10_000][..])]).unwrap();
        let manifest = w.finish().unwrap();
        assert_eq!(manifest.layout.compression, "zstd");
        assert_eq!(manifest.layout.level, 3);
        let shard = fs::read(path.join(shard_file_name(0))).unwrap();
        assert_eq!(shard[LEVEL_OFFSET] as i8, 3);
        // The same bytes as asking for level 3.
        let path3 = dir.path().join("b");
        let mut w = WriterBuilder::new()
            .compression(Compression::Zstd { level: 3 })
            .threads(1)
            .create(&path3)
            .unwrap();
        w.append("k", &[("text", &[b'a'; 10_000][..])]).unwrap();
        w.finish().unwrap();
        assert_eq!(fs::read(path3.join(shard_file_name(0))).unwrap(), shard);
        let report = crate::verify(&path, &crate::VerifyOptions::default()).unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
}

#[cfg(test)]
mod large_tests {
    use super::*;

    fn archive_bytes(dir: &Path, name: &str, builder: WriterBuilder, data: &[u8]) -> Vec<u8> {
        let path = dir.join(name);
        let mut w = builder.create(&path).unwrap();
        w.append("small", &[("a", b"x".as_slice())]).unwrap();
        let file_path = dir.join(format!("{name}.input"));
        fs::File::create(&file_path)
            .unwrap()
            .write_all(data)
            .unwrap();
        let file = fs::File::open(&file_path).unwrap();
        let len = data.len() as u64;
        w.append_from("big", &[("bin", FieldData::file(&file, len, &file_path))])
            .unwrap();
        w.append("tail", &[("a", b"y".as_slice())]).unwrap();
        w.finish().unwrap();
        let report = crate::verify(&path, &crate::VerifyOptions::default()).unwrap();
        assert!(report.is_ok(), "{report:?}");
        let archive = crate::Archive::open(&path).unwrap();
        let big = archive.get_by_key("big").unwrap().unwrap();
        assert!(big.field("bin") == Some(data), "{name}: read back");
        fs::read(path.join(shard_file_name(0))).unwrap()
    }

    /// A stored large record (no compression, or zstd on bytes that do not compress) is
    /// written straight from its file as the same bytes the in-memory path gives, on any
    /// number of threads.
    #[test]
    fn a_large_stored_record_is_the_same_bytes_as_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let len = LARGE_RECORD_BYTES as usize + 123_457;
        let mut noise = Vec::with_capacity(len);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while noise.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        noise.truncate(len);
        for (i, compression) in [Compression::None, Compression::Zstd { level: 3 }]
            .into_iter()
            .enumerate()
        {
            let b = || {
                WriterBuilder::new()
                    .block_size(1 << 20)
                    .compression(compression)
            };
            let memory = archive_bytes(
                dir.path(),
                &format!("m{i}"),
                b().large_from(u64::MAX),
                &noise,
            );
            for threads in [1, 3] {
                let streamed = archive_bytes(
                    dir.path(),
                    &format!("s{i}{threads}"),
                    b().threads(threads),
                    &noise,
                );
                assert!(streamed == memory, "{compression:?}, {threads} threads");
            }
        }
    }

    /// A compressible large record is a streamed zstd frame: the same bytes on any number of
    /// threads, and readable.
    #[test]
    fn a_large_compressible_record_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..LARGE_RECORD_BYTES + 4097)
            .map(|i| b"the quick brown fox "[(i % 20) as usize] ^ ((i >> 16) as u8 & 1))
            .collect();
        let one = archive_bytes(dir.path(), "t1", WriterBuilder::new().threads(1), &text);
        let three = archive_bytes(dir.path(), "t3", WriterBuilder::new().threads(3), &text);
        assert!(one == three);
        assert!(one.len() < text.len() / 4, "compressed: {}", one.len());
    }
}

#[cfg(test)]
mod volume_tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_budget_too_small_for_one_shard_and_the_manifest_is_refused_at_create() {
        let dir = tempfile::tempdir().unwrap();
        for budget in [0, 1, MANIFEST_RESERVE_BYTES, MANIFEST_RESERVE_BYTES + 4096] {
            let path = dir.path().join(format!("v{budget}"));
            let err = WriterBuilder::new()
                .volume_size(Some(budget))
                .create(&path)
                .err()
                .unwrap_or_else(|| panic!("budget {budget} accepted"));
            assert!(
                matches!(err.kind(), ErrorKind::InvalidInput { subject, .. } if subject.contains("volume budget")),
                "{err}"
            );
            assert!(!path.exists(), "budget {budget} left {}", path.display());
        }
        // The smallest budget accepted holds a shard of the smallest sample.
        let align = 64;
        let least = {
            let b = WriterBuilder::new().align(align).record_page(None);
            let record_len = format::record::encoded_len("k", &[("", &[])]).unwrap();
            ShardWriter::size_alone(record_len, 1, 0, &b) + MANIFEST_RESERVE_BYTES
        };
        let path = dir.path().join("least");
        let builder = || {
            WriterBuilder::new()
                .align(align)
                .record_page(None)
                .compression(Compression::None)
        };
        assert!(builder()
            .volume_size(Some(least - 1))
            .create(&path)
            .is_err());
        assert!(!path.exists());
        let mut w = builder().volume_size(Some(least)).create(&path).unwrap();
        w.append("k", &[("", &[])]).unwrap();
        w.finish().unwrap();
        crate::Archive::open(&path).unwrap();
    }

    /// One sample per shard, each with a 4000-byte key: the manifest grows by about 8 KB
    /// per shard while the shards grow the volume by about as much.
    fn long_key_samples(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{i:04}{}", "k".repeat(3996)))
            .collect()
    }

    /// Shards of one sample in volumes of 1 MiB beside the manifest's room.
    fn create(path: &Path) -> Result<Writer> {
        WriterBuilder::new()
            .align(64)
            .record_page(None)
            .shard_size(1)
            .compression(Compression::None)
            .threads(1)
            .volume_size(Some(MANIFEST_RESERVE_BYTES + (1 << 20)))
            .create(path)
    }

    fn write(path: &Path, keys: &[String]) -> Result<Manifest> {
        let mut w = create(path)?;
        for key in keys {
            w.append(key, &[("x", b"1")])?;
        }
        w.finish()
    }

    #[test]
    fn a_manifest_that_no_longer_fits_fails_at_its_shard_not_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let keys = long_key_samples(400);
        let mut w = create(&dir.path().join("all")).unwrap();
        // Appending sample i closes shard i - 1, whose entry is then known.
        let failed = keys
            .iter()
            .position(|key| w.append(key, &[("x", b"1")]).is_err())
            .expect("an append fails before finish");
        assert!(failed > 1 && failed < keys.len() - 1, "{failed}");
        let shard = shard_file_name(failed as u32 - 1);
        // The shard before is the last whose entry fits: an archive ending there is whole,
        // and one that also holds the failing shard fails at finish.
        let ok = write(&dir.path().join("ok"), &keys[..failed - 1]).unwrap();
        assert_eq!(ok.shards.len(), failed - 1);
        let err = write(&dir.path().join("over"), &keys[..failed]).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { reason, .. } if reason.contains("manifest")),
            "{err}"
        );
        let mut w2 = create(&dir.path().join("again")).unwrap();
        for key in &keys[..failed] {
            w2.append(key, &[("x", b"1")]).unwrap();
        }
        let err = w2.append(&keys[failed], &[("x", b"1")]).unwrap_err();
        match err.kind() {
            ErrorKind::InvalidInput { reason, .. } => {
                assert!(
                    reason.contains(&format!("once {shard} is listed")),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
