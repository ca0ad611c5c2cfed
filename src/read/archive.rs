//! An opened archive: its manifest, its lazily mapped shards, and reads by ordinal or key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::archive::manifest::{Manifest, MANIFEST_FILE};
use crate::archive::volume::{self, Found, VolumeSet};
use crate::io::range_cache::{RangeCache, RemoteCache};
use crate::io::remote::{self, Remote};
use crate::io::{AccessPattern, ReadAt, SourceKind};
use crate::read::order::{EpochOrder, Shuffle};
use crate::read::{Sample, Shard};
use crate::{Error, ErrorKind, IoTrace, Limits, Result};

/// An archive opened for reading. Opening reads and checks the manifest only, so it costs the
/// same whatever the number of samples; shards are mapped read-only on first use.
///
/// `Archive` is `Send + Sync` and cheap to clone: clones share the manifest and the mapped
/// shards, so give each reader thread its own clone, or share one by reference.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    manifest: Manifest,
    shards: Vec<OnceLock<Arc<Shard>>>,
    options: ArchiveOptions,
    /// For an archive split into volumes: where each volume is.
    volumes: Option<VolumeSet>,
    /// For an archive read over the network: its folder's store.
    remote: Option<Arc<Remote>>,
    /// For an archive read over the network with [`ArchiveOptions::remote_cache`].
    disk_cache: Option<Arc<RangeCache>>,
}

/// How to open an [`Archive`]: every option combines with every other.
///
/// ```no_run
/// # fn main() -> shardpack::Result<()> {
/// use shardpack::{Archive, Limits};
/// let archive = Archive::options().limits(Limits::default()).open("dataset.spk")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ArchiveOptions {
    limits: Limits,
    trace: Option<IoTrace>,
    volumes: Option<Vec<PathBuf>>,
    source: SourceKind,
    generation: Option<u64>,
    remote_cache: Option<RemoteCache>,
}

impl ArchiveOptions {
    /// Caps on what hostile bytes may make a read allocate (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Records every access to the shards' bytes (offset and length, as
    /// [`crate::IoKind::MapAccess`]) and every prefetch hint in `trace`. Tracing observes;
    /// it changes neither what is read nor what is checked.
    pub fn trace(mut self, trace: IoTrace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The volume folders of an archive split into volumes (discs mounted anywhere): each
    /// folder's volume is found from the shards it holds, and the manifest from the first
    /// folder that has one. [`ArchiveOptions::open`]'s path then only names the archive.
    /// Missing volumes are named by the reads that need them, and by `verify`.
    pub fn volumes(mut self, folders: &[PathBuf]) -> Self {
        self.volumes = Some(folders.to_vec());
        self
    }

    /// Where shard bytes come from: a memory map (the default, zero-copy) or positioned
    /// reads, for files that may change while read or file systems that map badly.
    pub fn source(mut self, source: SourceKind) -> Self {
        self.source = source;
        self
    }

    /// Opens generation `number` (1 is the archive as first written) instead of the
    /// current one (§11.3). An older generation reads exactly as it did when it was current:
    /// its shards are never changed by later ones.
    pub fn generation(mut self, number: u64) -> Self {
        self.generation = Some(number);
        self
    }

    /// For an archive read over the network: keeps the shard bytes fetched in folder `dir`
    /// (created if missing), at most `max_bytes` of them, so that reading them again (the
    /// next epoch, another process given the same folder) makes no request. Entries are
    /// named by each shard's BLAKE3, checked by a CRC of their own (a damaged one is
    /// fetched again) and then by every check a read makes; the least recently used are
    /// removed first. Several processes may share the folder. Local archives ignore it.
    pub fn remote_cache(mut self, dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        self.remote_cache = Some(RemoteCache::new(dir, max_bytes));
        self
    }

    pub(crate) fn source_kind(&self) -> SourceKind {
        self.source
    }

    pub(crate) fn io_trace(&self) -> Option<&IoTrace> {
        self.trace.as_ref()
    }

    /// Opens the archive at `path`: an archive folder, a folder of volume folders, or one
    /// volume folder (its siblings are found too); or a remote archive folder, named by an
    /// `http://`, `https://` or `s3://` URL (see "Remote archives" in the README: S3
    /// credentials and endpoint come from the usual `AWS_*` environment variables).
    ///
    /// # Errors
    /// A missing manifest ([`ErrorKind::Incomplete`]), a manifest that fails its checks
    /// (including its root digest), an I/O error, or for a URL [`ErrorKind::Remote`].
    pub fn open(self, path: impl AsRef<Path>) -> Result<Archive> {
        if let Some(url) = path.as_ref().to_str().filter(|s| remote::is_remote(s)) {
            return self.open_remote(url);
        }
        let path = path.as_ref().to_path_buf();
        let found = match &self.volumes {
            Some(folders) => mounted_volumes(folders, &self.limits)?,
            None => found_at(&path)?,
        };
        let manifest = match self.generation {
            Some(number) => Manifest::load_generation(&found.manifest_dir, number, &self.limits)?,
            None => Manifest::load(&found.manifest_dir, &self.limits)?,
        };
        let volumes = manifest
            .layout
            .volume_size
            .map(|_| VolumeSet::new(&manifest, &found.volume_dirs));
        let path = match self.volumes {
            Some(_) => found.manifest_dir,
            None => path,
        };
        let shards = manifest.shards.iter().map(|_| OnceLock::new()).collect();
        Ok(Archive {
            inner: Arc::new(Inner {
                path,
                manifest,
                shards,
                options: self,
                volumes,
                remote: None,
                disk_cache: None,
            }),
        })
    }

    fn open_remote(self, url: &str) -> Result<Archive> {
        if self.volumes.is_some() {
            return Err(Error::invalid_input(
                url,
                "volume folders are local: a remote archive is one folder",
            ));
        }
        let remote = Arc::new(Remote::open(url)?);
        let path = remote.as_path();
        let read = |file: &Path, max: u64| -> Result<Vec<u8>> {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(MANIFEST_FILE);
            remote
                .read_capped(name, max, "manifest size")
                .map_err(|e| match e.kind() {
                    ErrorKind::Remote {
                        status: Some(404), ..
                    } => ErrorKind::Incomplete {
                        path: path.clone(),
                        reason: format!("{name} is missing (HTTP 404)"),
                    }
                    .into(),
                    _ => e,
                })
        };
        let manifest = match self.generation {
            Some(number) => Manifest::load_generation_with(&path, number, &self.limits, &read)?,
            None => Manifest::load_with(&path, &self.limits, &read)?,
        };
        if manifest.layout.volume_size.is_some() {
            return Err(Error::invalid_input(
                remote.url(),
                "an archive split into volumes is not read over the network; join its volumes first",
            ));
        }
        let shards = manifest.shards.iter().map(|_| OnceLock::new()).collect();
        let disk_cache = self
            .remote_cache
            .as_ref()
            .map(RemoteCache::open)
            .transpose()?;
        Ok(Archive {
            inner: Arc::new(Inner {
                path,
                manifest,
                shards,
                options: self,
                volumes: None,
                remote: Some(remote),
                disk_cache,
            }),
        })
    }
}

/// The largest index a remote shard fetches whole on first use, so that random reads
/// then cost one request each (the record) instead of one per index entry.
const REMOTE_INDEX_FETCHED_WHOLE_BYTES: u64 = 16 << 20;

/// The manifest folder and volume folders of the archive at `path`.
fn found_at(path: &Path) -> Result<Found> {
    if let Some(found) = volume::find(path).filter(|f| f.manifest_dir != path) {
        return Ok(found);
    }
    if !path.join(MANIFEST_FILE).exists() {
        let reason = if path.is_dir() {
            format!("{MANIFEST_FILE} is missing (was `pack` interrupted?)")
        } else {
            "no such archive folder".to_string()
        };
        return Err(ErrorKind::Incomplete {
            path: path.to_path_buf(),
            reason,
        }
        .into());
    }
    Ok(Found {
        manifest_dir: path.to_path_buf(),
        volume_dirs: volume::find(path)
            .map(|f| f.volume_dirs)
            .unwrap_or_default(),
    })
}

/// The manifest folder among volume folders given one by one: of those that hold a
/// manifest, the first whose manifest is of the latest generation (§2.1 case 3; a volume an
/// append added holds a later generation than the volumes before it).
fn mounted_volumes(folders: &[PathBuf], limits: &Limits) -> Result<Found> {
    let holding: Vec<&PathBuf> = folders
        .iter()
        .filter(|d| d.join(MANIFEST_FILE).exists())
        .collect();
    let generation = |d: &PathBuf| Manifest::load(d, limits).map_or(0, |m| m.generation_number());
    let latest = holding.iter().map(|d| generation(d)).max();
    let Some(manifest_dir) = holding
        .iter()
        .find(|d| Some(generation(d)) == latest)
        .map(|d| (*d).clone())
    else {
        return Err(ErrorKind::Incomplete {
            path: folders.first().cloned().unwrap_or_default(),
            reason: format!("no folder given holds a {MANIFEST_FILE}"),
        }
        .into());
    };
    Ok(Found {
        manifest_dir,
        volume_dirs: folders.iter().map(|d| (None, d.clone())).collect(),
    })
}

impl Archive {
    /// Opens the archive folder at `path` with default options; see [`Archive::options`].
    ///
    /// # Errors
    /// As [`ArchiveOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Archive> {
        ArchiveOptions::default().open(path)
    }

    /// Options for opening an archive: limits, volumes, tracing, the byte source.
    pub fn options() -> ArchiveOptions {
        ArchiveOptions::default()
    }

    /// The path of shard `index`'s file.
    ///
    /// # Errors
    /// `index` out of range, or the shard's volume is missing.
    pub fn shard_path(&self, index: usize) -> Result<PathBuf> {
        match &self.inner.volumes {
            Some(v) => v.shard_path(&self.inner.manifest, index),
            None => {
                let info = self.inner.manifest.shards.get(index).ok_or_else(|| {
                    Error::invalid_input(format!("shard {index}"), "not in the manifest")
                })?;
                Ok(self.inner.path.join(&info.file))
            }
        }
    }

    /// Volumes (1-based) of a split archive that are not present.
    pub fn missing_volumes(&self) -> Vec<u32> {
        self.inner
            .volumes
            .as_ref()
            .map(|v| v.missing())
            .unwrap_or_default()
    }

    /// The archive folder (for a remote archive, its URL as a path).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The URL of a remote archive (without credentials); `None` for a local one.
    pub fn url(&self) -> Option<&str> {
        self.inner.remote.as_deref().map(Remote::url)
    }

    pub(crate) fn remote(&self) -> Option<&Arc<Remote>> {
        self.inner.remote.as_ref()
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The root digest (64 hex digits) to write on the label and check after transport.
    pub fn root_digest(&self) -> &str {
        &self.inner.manifest.root
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.inner.manifest.totals.samples
    }

    /// True when the archive has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Shard `index`, mapped and checked on first use.
    ///
    /// # Errors
    /// `index` out of range, or the shard's file is missing or fails its structural checks.
    pub fn shard(&self, index: usize) -> Result<&Shard> {
        self.shared_shard(index).map(|shard| &**shard)
    }

    /// [`Archive::shard`], as a handle that a reader thread can keep.
    pub(crate) fn shared_shard(&self, index: usize) -> Result<&Arc<Shard>> {
        let inner = &*self.inner;
        let (Some(cell), Some(info)) = (inner.shards.get(index), inner.manifest.shards.get(index))
        else {
            return Err(Error::invalid_input(
                format!("shard {index}"),
                format!("the archive has {} shards", inner.shards.len()),
            ));
        };
        if let Some(shard) = cell.get() {
            return Ok(shard);
        }
        let expected = Some((info, inner.manifest.archive_id_bytes()));
        let shard = match &inner.remote {
            Some(remote) => {
                let chunk = crate::MediaProfile::from_name(&inner.manifest.layout.profile)
                    .unwrap_or_default()
                    .read_chunk;
                let disk = inner.disk_cache.as_ref().and_then(|cache| {
                    cache.shard(&remote.url_of(&info.file), &info.blake3, info.size)
                });
                let file = Arc::new(remote.file(&info.file, info.size, chunk, disk));
                let source: Arc<dyn ReadAt> = match &inner.options.trace {
                    Some(trace) => Arc::new(crate::io::Traced {
                        inner: file.clone(),
                        trace: trace.clone(),
                        number: index as u32,
                    }),
                    None => file.clone(),
                };
                let shard = Shard::open_expected_source(
                    &self.shard_path(index)?,
                    index as u32,
                    source,
                    expected,
                    inner.options.limits,
                )
                .inspect_err(|e| {
                    // Which kept bytes failed is not known: none of the shard's are kept.
                    if e.is_corruption() {
                        file.check_failed(0, info.size);
                    }
                })?;
                let layout = shard.layout();
                if layout.index_len <= REMOTE_INDEX_FETCHED_WHOLE_BYTES {
                    file.will_need(layout.index_offset, layout.index_len);
                }
                shard
            }
            None => Shard::open_expected(
                &self.shard_path(index)?,
                index as u32,
                expected,
                inner.options.limits,
                inner.options.source,
                inner.options.trace.clone(),
            )?,
        };
        // Another thread may have won the race; either shard is equally valid.
        Ok(cell.get_or_init(|| Arc::new(shard)))
    }

    /// The shard and shard-local record number of `ordinal`.
    ///
    /// # Errors
    /// [`ErrorKind::OrdinalOutOfRange`].
    pub fn locate(&self, ordinal: u64) -> Result<(usize, u32)> {
        if ordinal >= self.len() {
            return Err(ErrorKind::OrdinalOutOfRange {
                ordinal,
                len: self.len(),
            }
            .into());
        }
        let shards = &self.inner.manifest.shards;
        let index = shards
            .partition_point(|s| s.first_ordinal <= ordinal)
            .saturating_sub(1);
        let first = shards.get(index).map_or(0, |s| s.first_ordinal);
        Ok((index, (ordinal - first) as u32))
    }

    /// The sample at `ordinal`, its checksum verified.
    ///
    /// # Errors
    /// [`ErrorKind::OrdinalOutOfRange`], or an error naming the damaged place.
    pub fn get(&self, ordinal: u64) -> Result<Sample> {
        let (shard, local) = self.locate(ordinal)?;
        self.shard(shard)?.get(local)
    }

    /// The key of the sample at `ordinal`, read from the index without touching the data.
    ///
    /// # Errors
    /// As [`Archive::get`].
    pub fn key(&self, ordinal: u64) -> Result<std::borrow::Cow<'_, str>> {
        let (shard, local) = self.locate(ordinal)?;
        self.shard(shard)?.key(local)
    }

    /// The sample with `key`, found through the shards' on-disk key index.
    ///
    /// # Errors
    /// An error naming the damaged place; a missing key is `Ok(None)`.
    pub fn get_by_key(&self, key: &str) -> Result<Option<Sample>> {
        for (index, info) in self.inner.manifest.shards.iter().enumerate() {
            if info.min_key.as_str() <= key && key <= info.max_key.as_str() {
                let shard = self.shard(index)?;
                if let Some(local) = shard.find(key.as_bytes())? {
                    return shard.get(local).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Reads many samples at once, in the order asked: the reads are made in file order,
    /// and the byte ranges they need are merged (gaps under 64 KiB) and handed to the
    /// kernel as one prefetch each before any is read, so that a batch costs few device
    /// requests instead of one per sample.
    pub fn get_many(&self, ordinals: &[u64]) -> Vec<Result<Sample>> {
        const MERGE_GAP: u64 = 64 << 10;
        let mut order: Vec<usize> = (0..ordinals.len()).collect();
        order.sort_by_key(|&i| ordinals[i]);
        // Plan: the file range of each record, merged per shard.
        let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
        for &i in &order {
            let Ok((shard, local)) = self.locate(ordinals[i]) else {
                continue;
            };
            let Ok(s) = self.shard(shard) else { continue };
            let Some((start, end)) = s.record_range(local) else {
                continue;
            };
            match ranges.last_mut() {
                Some((sh, _, e)) if *sh == shard && start <= e.saturating_add(MERGE_GAP) => {
                    *e = (*e).max(end)
                }
                _ => ranges.push((shard, start, end)),
            }
        }
        // One hint per shard with all its ranges: a remote shard fetches them together.
        for group in ranges.chunk_by(|a, b| a.0 == b.0) {
            if let Some(s) = group
                .first()
                .and_then(|&(shard, _, _)| self.shard(shard).ok())
            {
                let wanted: Vec<(u64, u64)> = group.iter().map(|&(_, a, b)| (a, b - a)).collect();
                s.prefetch_ranges(&wanted);
            }
        }
        // One handle per shard for the whole batch (see `Shard::batch_handle`).
        let mut handles: Vec<(usize, Arc<dyn crate::ReadAt>)> = Vec::new();
        let mut read: Vec<(usize, Result<Sample>)> = order
            .into_iter()
            .map(|i| {
                let sample = self.locate(ordinals[i]).and_then(|(shard, local)| {
                    let s = self.shard(shard)?;
                    let handle = match handles.iter().find(|(n, _)| *n == shard) {
                        Some((_, h)) => h,
                        None => {
                            handles.push((shard, s.batch_handle()));
                            &handles[handles.len() - 1].1
                        }
                    };
                    s.get_holding(local, handle)
                });
                (i, sample)
            })
            .collect();
        read.sort_unstable_by_key(|(i, _)| *i);
        read.into_iter().map(|(_, sample)| sample).collect()
    }

    /// Iterates over every sample in ordinal (= file) order through the memory map.
    pub fn iter(&self) -> Iter {
        Iter {
            archive: self.clone(),
            shard: 0,
            local: 0,
            ordinal: 0,
        }
    }

    /// The order of `epoch`: file order, or `shuffle` over this archive's shards
    /// (docs/sample-order.md).
    ///
    /// # Errors
    /// As [`EpochOrder::new`].
    pub fn epoch_order(&self, shuffle: Option<Shuffle>, epoch: u64) -> Result<EpochOrder> {
        let samples: Vec<u64> = self
            .inner
            .manifest
            .shards
            .iter()
            .map(|s| s.samples)
            .collect();
        EpochOrder::new(&samples, shuffle, epoch)
    }

    /// The generation this archive was opened at (1 for an archive never appended to).
    pub fn generation(&self) -> u64 {
        self.inner.manifest.generation_number()
    }

    /// The options this archive was opened with.
    pub(crate) fn opened_with(&self) -> &ArchiveOptions {
        &self.inner.options
    }

    /// The on-disk cache remote reads go through ([`ArchiveOptions::remote_cache`]), if one
    /// was asked for.
    pub fn remote_cache(&self) -> Option<&RemoteCache> {
        self.inner.options.remote_cache.as_ref()
    }

    /// The caps this archive was opened with.
    pub fn limits(&self) -> &Limits {
        &self.inner.options.limits
    }
}

/// Iterator over an archive's samples in file order. A damaged sample yields an error and
/// iteration goes on with the next one; a shard that cannot be opened yields one error and
/// is skipped.
pub struct Iter {
    archive: Archive,
    shard: usize,
    local: u32,
    ordinal: u64,
}

impl Iterator for Iter {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Self::Item> {
        let info = self.archive.inner.manifest.shards.get(self.shard)?;
        let item = match self.archive.shard(self.shard) {
            Ok(shard) => {
                if self.local == 0 {
                    shard.advise(AccessPattern::Sequential);
                }
                let item = shard.get(self.local);
                self.local += 1;
                self.ordinal += 1;
                item
            }
            Err(e) => {
                self.ordinal = info.first_ordinal.saturating_add(info.samples);
                self.local = u32::MAX;
                Err(e)
            }
        };
        if u64::from(self.local) >= info.samples {
            self.shard += 1;
            self.local = 0;
        }
        Some(item)
    }

    /// At most one item per sample left: a shard that fails to open yields one error for
    /// all of its samples, so the lower bound counts the shards left instead.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.archive.len().saturating_sub(self.ordinal) as usize;
        let shards_left = self.archive.shard_count().saturating_sub(self.shard);
        (left.min(shards_left), Some(left))
    }
}
