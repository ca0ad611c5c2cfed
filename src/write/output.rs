//! Where a writer's bytes go: shard files in an archive folder, or one tape stream of
//! fixed-size records (§16). Neither ever seeks back.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::archive::manifest::PARTIAL_SUFFIX;
use crate::archive::manifest::{shard_file_name, Manifest, MANIFEST_FILE};
use crate::format::stream::{EntryHeader, EntryKind, ENTRY_HEADER_LEN, NO_PREVIOUS};
use crate::write::stream_append::StreamToAppend;
use crate::{Error, Result};

/// The destination of an archive being written.
pub(crate) enum Output {
    Folder(FolderOutput),
    Stream(RecordStream),
    Volumes(VolumeOutput),
}

impl Output {
    /// Starts shard `number`.
    pub(crate) fn begin_shard(&mut self, number: u32) -> Result<()> {
        match self {
            Output::Folder(f) => f.begin_shard(number),
            Output::Volumes(v) => v.folder.begin_shard(number),
            // Shards start on a record boundary: the previous item was padded.
            Output::Stream(_) => Ok(()),
        }
    }

    /// Appends bytes of the current shard; `offset` is their offset in the shard, for errors.
    pub(crate) fn write(&mut self, bytes: &[u8], offset: u64) -> Result<()> {
        match self {
            Output::Folder(f) => f.write(bytes, offset),
            Output::Volumes(v) => v.folder.write(bytes, offset),
            Output::Stream(s) => s.write(bytes),
        }
    }

    /// Finishes the current shard (of `size` bytes) durably; returns its volume.
    pub(crate) fn end_shard(&mut self, size: u64) -> Result<Option<u32>> {
        match self {
            Output::Folder(f) => f.end_shard().map(|()| None),
            Output::Volumes(v) => {
                v.folder.end_shard()?;
                v.used += size;
                Ok(Some(v.volume))
            }
            Output::Stream(s) => s.pad_to_record().map(|()| None),
        }
    }

    /// Bytes left in the current volume, when the output has volumes.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            // Room is kept in every volume for the manifest written at the end.
            Output::Volumes(v) => Some(
                v.budget
                    .saturating_sub(v.used)
                    .saturating_sub(MANIFEST_RESERVE_BYTES)
                    .saturating_sub(v.kept_bytes()),
            ),
            _ => None,
        }
    }

    /// The budget of a whole volume, when the output has volumes.
    pub(crate) fn volume_budget(&self) -> Option<u64> {
        match self {
            Output::Volumes(v) => Some(
                v.budget
                    .saturating_sub(MANIFEST_RESERVE_BYTES)
                    .saturating_sub(v.kept_bytes()),
            ),
            _ => None,
        }
    }

    /// Fails when a manifest of `len` bytes would not fit beside the shards of a volume
    /// so far (§2.1 rule 4); `shard` names the shard just finished.
    pub(crate) fn check_manifest_fits(&self, len: u64, shard: &str) -> Result<()> {
        match self {
            Output::Volumes(v) => v.check_manifest_fits(len, Some(shard)),
            _ => Ok(()),
        }
    }

    /// Starts the next volume.
    pub(crate) fn next_volume(&mut self) -> Result<()> {
        if let Output::Volumes(v) = self {
            v.start(v.volume + 1)?;
        }
        Ok(())
    }

    /// Writes a manifest: the final one closes the archive; checkpoints go to streams only.
    pub(crate) fn write_manifest(&mut self, manifest: &Manifest, kind: EntryKind) -> Result<()> {
        match self {
            Output::Folder(f) if kind == EntryKind::Final => f.write_manifest(manifest),
            Output::Volumes(v) if kind == EntryKind::Final => v.write_manifest(manifest),
            Output::Folder(_) | Output::Volumes(_) => Ok(()),
            Output::Stream(s) => s.write_manifest(manifest, kind),
        }
    }

    /// The path that names this output in errors.
    pub(crate) fn name(&self, number: u32) -> PathBuf {
        match self {
            Output::Folder(f) => f
                .dir
                .join(format!("{}{PARTIAL_SUFFIX}", shard_file_name(number))),
            Output::Volumes(v) => v
                .folder
                .dir
                .join(format!("{}{PARTIAL_SUFFIX}", shard_file_name(number))),
            Output::Stream(s) => s.name.clone(),
        }
    }
}

/// Shard files in a folder: each written as `NAME.partial`, synced, then renamed; the
/// manifest last, through a temporary file and a rename.
pub(crate) struct FolderOutput {
    pub(crate) dir: PathBuf,
    current: Option<ShardFile>,
}

struct ShardFile {
    file: BufWriter<File>,
    partial: PathBuf,
    done: PathBuf,
    /// Bytes before this offset have been handed to the device's writeback.
    written_back: u64,
}

/// Writeback of a shard being written starts every this many bytes, so that the disk
/// writes while the writer compresses instead of all at the closing fsync.
const WRITEBACK_EVERY: u64 = 32 << 20;

impl Drop for ShardFile {
    fn drop(&mut self) {
        // Reached only when the shard was not finished: it has no trailer, so it goes.
        let _ = fs::remove_file(&self.partial);
    }
}

impl FolderOutput {
    pub(crate) fn new(dir: PathBuf) -> Self {
        FolderOutput { dir, current: None }
    }

    fn begin_shard(&mut self, number: u32) -> Result<()> {
        let name = shard_file_name(number);
        let partial = self.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, "create", e))?;
        self.current = Some(ShardFile {
            file: BufWriter::with_capacity(1 << 20, file),
            partial,
            done: self.dir.join(name),
            written_back: 0,
        });
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], offset: u64) -> Result<()> {
        let Some(f) = self.current.as_mut() else {
            return Ok(());
        };
        f.file
            .write_all(bytes)
            .map_err(|e| Error::io_at(&f.partial, "write", offset, e))?;
        if offset.saturating_sub(f.written_back) >= WRITEBACK_EVERY {
            crate::io::start_writeback(f.file.get_ref(), f.written_back, offset - f.written_back);
            f.written_back = offset;
        }
        Ok(())
    }

    fn end_shard(&mut self) -> Result<()> {
        let Some(mut f) = self.current.take() else {
            return Ok(());
        };
        f.file
            .flush()
            .map_err(|e| Error::io(&f.partial, "write", e))?;
        f.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&f.partial, "sync", e))?;
        fs::rename(&f.partial, &f.done).map_err(|e| Error::io(&f.done, "rename into place", e))?;
        // Renamed: nothing left for Drop to remove.
        f.partial = PathBuf::new();
        Ok(())
    }

    fn write_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        write_manifest_file(&self.dir, manifest)
    }
}

/// Room kept in each volume for `manifest.json` (about 3,000 shards' entries), *K* of §2.1.
pub(crate) const MANIFEST_RESERVE_BYTES: u64 = 1 << 20;

/// An archive split into volume folders `ROOT/vol-0001`, `ROOT/vol-0002`, ..., each filled
/// up to `budget` bytes (shards and manifest) and each given the whole manifest at the end.
pub(crate) struct VolumeOutput {
    root: PathBuf,
    budget: u64,
    volume: u32,
    used: u64,
    folder: FolderOutput,
    /// Bytes used in each finished volume this writer wrote.
    sizes: Vec<u64>,
    /// The first volume this writer writes: 1, or the one after the last of the generation
    /// an append continues (§2.1, appending).
    first: u32,
    /// The manifests of earlier generations, (file name, bytes), that every volume this
    /// writer writes gets beside its manifest; counted in its budget.
    kept: Vec<(String, Vec<u8>)>,
}

impl VolumeOutput {
    pub(crate) fn new(root: PathBuf, budget: u64) -> Result<Self> {
        let mut v = VolumeOutput {
            folder: FolderOutput::new(root.clone()),
            root,
            budget,
            volume: 0,
            used: 0,
            sizes: Vec::new(),
            first: 1,
            kept: Vec::new(),
        };
        v.start(1)?;
        Ok(v)
    }

    /// The volumes of a new generation of a split archive whose last volume is `last`:
    /// from `last + 1` on, never an existing one, each given `kept` (the manifests of
    /// every earlier generation) beside the new manifest.
    pub(crate) fn appending(
        root: PathBuf,
        budget: u64,
        last: u32,
        kept: Vec<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let mut v = VolumeOutput {
            folder: FolderOutput::new(root.clone()),
            root,
            budget,
            volume: 0,
            used: 0,
            sizes: Vec::new(),
            first: last + 1,
            kept,
        };
        v.start(last + 1)?;
        Ok(v)
    }

    /// Bytes every volume of this writer keeps for the earlier generations' manifests.
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The folder of the volume being written.
    pub(crate) fn current_dir(&self) -> &Path {
        &self.folder.dir
    }

    /// Whether no shard was written to any volume of this writer.
    pub(crate) fn is_empty(&self) -> bool {
        self.sizes.is_empty() && self.used == 0
    }

    fn start(&mut self, volume: u32) -> Result<()> {
        if self.volume >= self.first {
            self.sizes.push(self.used);
        }
        let dir = self
            .root
            .join(crate::archive::manifest::volume_folder_name(volume));
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, "create volume folder", e))?;
        self.folder = FolderOutput::new(dir);
        self.volume = volume;
        self.used = 0;
        Ok(())
    }

    /// Fails when a manifest of `len` bytes does not fit beside the shards of some volume.
    fn check_manifest_fits(&self, len: u64, shard: Option<&str>) -> Result<()> {
        let sizes = self.sizes.iter().chain(std::iter::once(&self.used));
        let len = len.saturating_add(self.kept_bytes());
        for (i, used) in sizes.enumerate() {
            if used.saturating_add(len) > self.budget {
                let dir = self.root.join(crate::archive::manifest::volume_folder_name(
                    self.first + i as u32,
                ));
                let when = shard.map_or(String::new(), |s| format!(" once {s} is listed"));
                return Err(Error::invalid_input(
                    dir.display().to_string(),
                    format!(
                        "{used} bytes of shards and a manifest of {len} bytes{when} exceed \
                         the volume budget of {} bytes; use larger shards, shorter keys or a \
                         larger volume",
                        self.budget
                    ),
                ));
            }
        }
        Ok(())
    }

    fn write_manifest(&mut self, manifest: &Manifest) -> Result<()> {
        let len = manifest.to_canonical_bytes().len() as u64;
        // Every volume is checked before any gets its manifest: all or none.
        self.check_manifest_fits(len, None)?;
        for i in 0..=self.sizes.len() {
            let dir = self.root.join(crate::archive::manifest::volume_folder_name(
                self.first + i as u32,
            ));
            // The chain first, so a volume with the new manifest always has it.
            for (name, bytes) in &self.kept {
                write_file_atomically(&dir, name, bytes)?;
            }
            write_manifest_file(&dir, manifest)?;
        }
        Ok(())
    }
}

/// Writes `DIR/manifest.json` atomically: a temporary file, synced, renamed, folder synced.
pub(crate) fn write_manifest_file(dir: &Path, manifest: &Manifest) -> Result<()> {
    write_manifest_file_as(dir, manifest, MANIFEST_FILE)
}

/// Writes `manifest` as `dir/name` through a temporary file, synced and renamed, then syncs
/// the folder.
pub(crate) fn write_manifest_file_as(dir: &Path, manifest: &Manifest, name: &str) -> Result<()> {
    write_file_atomically(dir, name, &manifest.to_canonical_bytes())
}

/// Writes `bytes` as `dir/name` through a temporary file, synced and renamed, then syncs
/// the folder: the name holds either nothing or all of `bytes`.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".manifest.")
        .suffix(PARTIAL_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create a temporary manifest in", e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes)
        .map_err(|e| Error::io(&tmp_path, "write", e))?;
    // tempfile creates 0600; a manifest is as readable as the shards beside it.
    set_readable(tmp.as_file()).map_err(|e| Error::io(&tmp_path, "set permissions of", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(&tmp_path, "sync", e))?;
    let path = dir.join(name);
    tmp.persist(&path)
        .map_err(|e| Error::io(&path, "rename into place", e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "sync folder", e))
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

/// A non-seekable sink written only in whole records of `record_size` bytes: each call to the
/// inner writer's `write_all` is exactly one record, as a tape drive in variable-block mode
/// needs (one `write()` = one physical block).
pub struct RecordStream {
    inner: Box<dyn Write + Send>,
    name: PathBuf,
    record_size: usize,
    buf: Vec<u8>,
    written: u64,
    archive_id: [u8; 16],
    generation: u64,
    previous: u64,
}

impl RecordStream {
    /// A stream over `inner` (a pipe, a tape device, a file) in records of `record_size`
    /// bytes; `name` names it in errors.
    pub(crate) fn new(
        inner: Box<dyn Write + Send>,
        name: PathBuf,
        record_size: u32,
        archive_id: [u8; 16],
    ) -> Result<Self> {
        let mut s = RecordStream {
            inner,
            name,
            record_size: record_size as usize,
            buf: Vec::with_capacity(record_size as usize),
            written: 0,
            archive_id,
            generation: 0,
            previous: NO_PREVIOUS,
        };
        s.write_entry(EntryKind::Start, &[])?;
        Ok(s)
    }

    /// A stream that continues `old` after its last final entry (§16.5): no start entry;
    /// offsets, the entry counter and the back pointer go on from that entry's.
    pub(crate) fn resume(
        inner: Box<dyn Write + Send>,
        name: PathBuf,
        old: &StreamToAppend,
        archive_id: [u8; 16],
    ) -> Self {
        RecordStream {
            inner,
            name,
            record_size: old.record_size as usize,
            buf: Vec::with_capacity(old.record_size as usize),
            written: old.committed.end,
            archive_id,
            generation: old.committed.entry_generation + 1,
            previous: old.committed.entry_offset,
        }
    }

    /// Bytes accepted so far (written or buffered).
    pub(crate) fn position(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = (self.record_size - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.record_size {
                self.flush_record()?;
            }
        }
        Ok(())
    }

    fn flush_record(&mut self) -> Result<()> {
        let offset = self.written;
        self.inner
            .write_all(&self.buf)
            .map_err(|e| Error::io_at(&self.name, "write a record to", offset, e))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn pad_to_record(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.buf.resize(self.record_size, 0);
            self.flush_record()?;
        }
        Ok(())
    }

    fn write_entry(&mut self, kind: EntryKind, manifest: &[u8]) -> Result<()> {
        self.pad_to_record()?;
        let header = EntryHeader {
            record_size: self.record_size as u32,
            kind,
            generation: self.generation,
            manifest_len: manifest.len() as u64,
            self_offset: self.position(),
            previous: self.previous,
            archive_id: self.archive_id,
            digest: *blake3::hash(manifest).as_bytes(),
        };
        self.previous = header.self_offset;
        self.generation += 1;
        let mut first = vec![0u8; self.record_size];
        first[..ENTRY_HEADER_LEN].copy_from_slice(&header.encode());
        self.write(&first)?;
        self.write(manifest)?;
        self.pad_to_record()?;
        self.inner
            .flush()
            .map_err(|e| Error::io_at(&self.name, "flush", self.written, e))
    }

    fn write_manifest(&mut self, manifest: &Manifest, kind: EntryKind) -> Result<()> {
        self.write_entry(kind, &manifest.to_canonical_bytes())
    }
}
