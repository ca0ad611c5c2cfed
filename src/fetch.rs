//! Copying whole archives between a remote folder and a local one: [`fetch`] downloads
//! (in parallel, resumable, every shard's BLAKE3 checked before it takes its name, the
//! manifest last), [`push`] uploads (shards first, the manifest last).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::archive::manifest::{self, Manifest, ShardInfo, MANIFEST_FILE, PARTIAL_SUFFIX};
use crate::io::remote::Remote;
use crate::{Defect, Error, ErrorKind, Limits, Location, Result, Structure};

/// How to [`fetch`] an archive.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The root digest the archive must have (64 hex digits, from its label): anything else
    /// is refused before a byte of a shard is fetched.
    pub expect_root: Option<String>,
    /// Shards downloaded at once (each with two ranged GETs in flight).
    pub parallel: usize,
    /// Caps on what the manifest may cost.
    pub limits: Limits,
    /// Bytes asked for by each ranged GET (at least 64 KiB); `None` for the archive's
    /// profile's read size, and at least 4 MiB.
    pub request_bytes: Option<u64>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            expect_root: None,
            parallel: 4,
            limits: Limits::default(),
            request_bytes: None,
        }
    }
}

/// What [`fetch`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct FetchReport {
    /// The archive's root digest.
    pub root: String,
    /// Shards in the archive.
    pub shards: u64,
    /// Bytes of the archive's shards.
    pub bytes: u64,
    /// Bytes downloaded by this run (less than `bytes` when it resumed).
    pub bytes_fetched: u64,
    /// Shards already complete and verified in the folder, not downloaded again.
    pub already_there: u64,
    /// Shards whose download went on from a partial file.
    pub resumed: u64,
    /// Shards that failed their BLAKE3 once and were downloaded again from the start.
    pub refetched: u64,
    /// Shards whose object changed on the server since a partial download of it began
    /// (its ETag is no longer the one the partial file was fetched at): downloaded again
    /// from the start instead of continued, so that no file joins two versions.
    pub restarted: u64,
    /// Shards that could not be fetched intact, with why. The manifest is written only
    /// when this is empty.
    pub failed: Vec<(u32, Error)>,
}

impl FetchReport {
    /// True when every shard is in place, checked, and the manifest written.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Downloads the remote archive at `url` into the folder `dir` (created if need be).
///
/// Shards are downloaded a few at a time, each into `shard-NNNNNN.shp.partial`, and take
/// their name only once the whole file's BLAKE3 equals the manifest's; a partial file left
/// by an interrupted run is continued from its length. A shard that fails its digest is
/// downloaded once more from the start, then reported. Timeouts, cut connections and 5xx
/// answers are retried with backoff. The manifest is written last, so a folder with one is
/// a complete archive. `progress(done, total)` counts shard bytes in place.
///
/// # Errors
/// The manifest cannot be fetched or fails its checks, its root is not `expect_root`, or
/// `dir` holds another archive or cannot be written. Shards that fail are in the report.
pub fn fetch(
    url: &str,
    dir: impl AsRef<Path>,
    options: &FetchOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<FetchReport> {
    let dir = dir.as_ref();
    let remote = Remote::open(url)?;
    let shown = remote.as_path();
    let manifest_bytes = remote.read_capped(
        MANIFEST_FILE,
        options.limits.max_manifest_bytes,
        "manifest size",
    )?;
    let manifest = Manifest::parse(&manifest_bytes, &shown.join(MANIFEST_FILE))?;
    if let Some(want) = &options.expect_root {
        if !want.eq_ignore_ascii_case(&manifest.root) {
            return Err(Error::corrupt(
                Location::file(&shown.join(MANIFEST_FILE), 0),
                Defect::mismatch(
                    Structure::Manifest,
                    "root digest (the one expected)",
                    want.to_ascii_lowercase(),
                    &manifest.root,
                ),
            ));
        }
    }
    if manifest.layout.volume_size.is_some() {
        return Err(Error::invalid_input(
            remote.url(),
            "an archive split into volumes is not fetched over the network",
        ));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    match fs::read(dir.join(MANIFEST_FILE)) {
        Ok(local) if local != manifest_bytes => {
            return Err(Error::invalid_input(
                dir.display().to_string(),
                "the folder holds another archive (or another generation); fetch into a new folder",
            ));
        }
        _ => {}
    }
    let chunk = options.request_bytes.unwrap_or_else(|| {
        crate::MediaProfile::from_name(&manifest.layout.profile)
            .unwrap_or_default()
            .read_chunk
            .max(4 << 20)
    });
    let total: u64 = manifest.shards.iter().map(|s| s.size).sum();
    let done = AtomicU64::new(0);
    let fetched = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let report = Mutex::new(FetchReport {
        root: manifest.root.clone(),
        shards: manifest.shards.len() as u64,
        bytes: total,
        ..FetchReport::default()
    });
    let job = ShardJob {
        remote: &remote,
        dir,
        chunk,
        done: &done,
        fetched: &fetched,
        total,
        progress,
    };
    std::thread::scope(|scope| {
        for _ in 0..options.parallel.clamp(1, 16) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(info) = manifest.shards.get(i) else {
                    return;
                };
                let outcome = job.shard(i as u32, info);
                let mut r = report
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match outcome {
                    Ok(how) => {
                        r.already_there += u64::from(how == How::AlreadyThere);
                        r.resumed += u64::from(how == How::Resumed);
                        r.refetched += u64::from(how == How::Refetched);
                        r.restarted += u64::from(how == How::Restarted);
                    }
                    Err(e) => r.failed.push((i as u32, e)),
                }
            });
        }
    });
    let mut report = report
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    report.failed.sort_by_key(|(n, _)| *n);
    report.bytes_fetched = fetched.load(Ordering::Relaxed);
    if !report.failed.is_empty() {
        return Ok(report);
    }
    // Earlier generations' manifests, then the parity file if there is one, then the
    // manifest: only a folder with every file in place gets it.
    for n in 1..manifest.generation_number() {
        let name = manifest::generation_file_name(n);
        let bytes =
            remote.read_capped(&name, options.limits.max_manifest_bytes, "manifest size")?;
        crate::write::output::write_file_atomically(dir, &name, &bytes)?;
    }
    match remote.len_of(crate::PARITY_FILE) {
        Ok(len) => {
            let path = dir.join(crate::PARITY_FILE);
            let partial = dir.join(format!("{}{PARTIAL_SUFFIX}", crate::PARITY_FILE));
            let mut file = crate::io::create_new(&partial)?;
            remote.copy_to(
                crate::PARITY_FILE,
                0..len,
                chunk,
                None,
                &mut file,
                &partial,
                &mut |_| {},
            )?;
            file.sync_all()
                .map_err(|e| Error::io(&partial, "sync", e))?;
            fs::rename(&partial, &path).map_err(|e| Error::io(&path, "rename into place", e))?;
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Remote {
                    status: Some(404),
                    ..
                }
            ) => {}
        Err(e) => return Err(e),
    }
    crate::write::output::write_file_atomically(dir, MANIFEST_FILE, &manifest_bytes)?;
    Ok(report)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Fetched,
    AlreadyThere,
    Resumed,
    Refetched,
    Restarted,
}

struct ShardJob<'a> {
    remote: &'a Remote,
    dir: &'a Path,
    chunk: u64,
    done: &'a AtomicU64,
    fetched: &'a AtomicU64,
    total: u64,
    progress: &'a (dyn Fn(u64, u64) + Sync),
}

impl ShardJob<'_> {
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (self.progress)(done, self.total);
    }

    /// Puts shard `number` in place under its name, checked; how it got there.
    ///
    /// A download starts by noting the object's ETag beside the partial file, and every
    /// GET of it, then and when it is continued after an interruption, asks for that
    /// version (`If-Match`). An object changed in between is answered 412, and the shard is
    /// downloaded again from the start rather than stitched from two versions; a server
    /// that ignores `If-Match` is still caught by the BLAKE3 check.
    fn shard(&self, number: u32, info: &ShardInfo) -> Result<How> {
        let path = self.dir.join(&info.file);
        let partial = partial_path(&path);
        let version = version_path(&path);
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if meta.is_file()
                && meta.len() == info.size
                && hash(&path, number, self.chunk)? == info.blake3
            {
                let _ = fs::remove_file(&version);
                self.advance(info.size);
                return Ok(How::AlreadyThere);
            }
            // Not this archive's shard: it is fetched again (a name is never trusted).
            fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
        }
        let mut resume = fs::symlink_metadata(&partial)
            .is_ok_and(|m| m.is_file() && m.len() > 0 && m.len() <= info.size);
        let mut how = None;
        let mut digest_failures = 0;
        let mut restarts = 0;
        loop {
            let etag = if resume {
                // A partial file of an earlier version of shardpack has no ETag noted: it
                // is continued unpinned, and its BLAKE3 decides.
                fs::read_to_string(&version).ok()
            } else {
                let etag = self.remote.etag_of(&info.file)?;
                match &etag {
                    Some(tag) => crate::write::output::write_file_atomically(
                        self.dir,
                        &file_name(&version),
                        tag.as_bytes(),
                    )?,
                    None => remove_if_there(&version)?,
                }
                etag
            };
            match self.download(number, info, &partial, resume, etag.as_deref()) {
                Ok(true) => {
                    // The note goes first: a partial file without one is still checked.
                    remove_if_there(&version)?;
                    fs::rename(&partial, &path)
                        .map_err(|e| Error::io(&path, "rename into place", e))?;
                    let kept = if resume { How::Resumed } else { How::Fetched };
                    return Ok(how.unwrap_or(kept));
                }
                Ok(false) => {
                    digest_failures += 1;
                    if digest_failures == 2 {
                        let _ = fs::remove_file(&partial);
                        let _ = fs::remove_file(&version);
                        return Err(Error::corrupt(
                            Location::shard(&self.remote.as_path().join(&info.file), number, 0)
                                .len(info.size),
                            Defect::digest(
                                Structure::ShardFile,
                                &info.blake3,
                                "another digest, twice (the server's copy is damaged?)",
                            ),
                        ));
                    }
                    how = Some(How::Refetched);
                }
                Err(e) if changed_on_server(&e) && restarts < 2 => {
                    restarts += 1;
                    how.get_or_insert(How::Restarted);
                }
                Err(e) => return Err(e),
            }
            fs::remove_file(&partial).map_err(|e| Error::io(&partial, "remove", e))?;
            resume = false;
        }
    }

    /// Downloads into `partial` (continuing it when `resume`), every GET for version
    /// `etag` of the object when given; true when its BLAKE3 is the manifest's.
    fn download(
        &self,
        number: u32,
        info: &ShardInfo,
        partial: &Path,
        resume: bool,
        etag: Option<&str>,
    ) -> Result<bool> {
        let advanced = AtomicU64::new(0);
        let result = (|| {
            let mut file = if resume {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(partial)
                    .map_err(|e| Error::io(partial, "open", e))?
            } else {
                crate::io::create_new(partial)?
            };
            let from = file
                .seek(SeekFrom::End(0))
                .map_err(|e| Error::io(partial, "seek", e))?;
            advanced.fetch_add(from, Ordering::Relaxed);
            self.advance(from);
            self.remote.copy_to(
                &info.file,
                from..info.size,
                self.chunk,
                etag,
                &mut file,
                partial,
                &mut |n| {
                    self.fetched.fetch_add(n, Ordering::Relaxed);
                    advanced.fetch_add(n, Ordering::Relaxed);
                    self.advance(n);
                },
            )?;
            file.sync_all().map_err(|e| Error::io(partial, "sync", e))?;
            drop(file);
            hash(partial, number, self.chunk)
        })();
        let intact = matches!(&result, Ok(digest) if *digest == info.blake3);
        if !intact {
            // Whatever was counted for this attempt is counted again by the next.
            self.done
                .fetch_sub(advanced.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        result.map(|_| intact)
    }
}

/// True when `e` says the object is no longer the version asked for (412 to `If-Match`).
fn changed_on_server(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Remote {
            status: Some(412),
            ..
        }
    )
}

/// Where the ETag of the object a partial shard is fetched from is noted. It ends in
/// `.partial`, so `gc` and `verify` know it as a leftover of an interrupted command.
fn version_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(ETAG_SUFFIX);
    PathBuf::from(name)
}

/// Suffix of the note beside a shard being fetched that holds the object's ETag.
const ETAG_SUFFIX: &str = ".etag.partial";

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, "remove", e)),
        _ => Ok(()),
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

fn hash(path: &Path, number: u32, chunk: u64) -> Result<String> {
    crate::read::window::hash_file(path, number, chunk, None)
}

/// Uploads the local archive folder `dir` to the remote folder `url`: every shard (as a
/// multipart upload of 16 MiB parts when it is larger than that, on S3), earlier
/// generations' manifests and the parity file, then the manifest last, so that a reader
/// never finds a manifest whose shards are not all there. `progress(done, total)` counts
/// shard bytes uploaded; returns how many were.
///
/// A shard that the remote folder's current manifest lists with the same name, size and
/// BLAKE3 is there already and is not uploaded again: pushing an archive with one more
/// generation uploads that generation's shards only.
///
/// # Errors
/// The local archive does not open, a file cannot be read, or [`ErrorKind::Remote`].
pub fn push(dir: impl AsRef<Path>, url: &str, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<u64> {
    let dir = dir.as_ref();
    let archive = crate::Archive::open(dir)?;
    let m = archive.manifest();
    if m.layout.volume_size.is_some() {
        return Err(Error::invalid_input(
            dir.display().to_string(),
            "an archive split into volumes is not pushed; join its volumes first",
        ));
    }
    let remote = Remote::open(url)?;
    let there = shards_there(&remote);
    let shards: Vec<&ShardInfo> = m
        .shards
        .iter()
        .filter(|s| !there.contains(&(s.file.clone(), s.size, s.blake3.clone())))
        .collect();
    let total: u64 = shards.iter().map(|s| s.size).sum();
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(info) = shards.get(i) else { return };
                let path = dir.join(&info.file);
                let result = upload(&remote, &info.file, &path, &|n| {
                    let d = done.fetch_add(n, Ordering::Relaxed) + n;
                    progress(d, total);
                });
                if let Err(e) = result {
                    let mut f = failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    f.get_or_insert(e);
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    return;
                }
            });
        }
    });
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    for n in 1..m.generation_number() {
        let name = manifest::generation_file_name(n);
        upload(&remote, &name, &dir.join(&name), &|_| {})?;
    }
    if dir.join(crate::PARITY_FILE).is_file() {
        upload(
            &remote,
            crate::PARITY_FILE,
            &dir.join(crate::PARITY_FILE),
            &|_| {},
        )?;
    }
    upload(&remote, MANIFEST_FILE, &dir.join(MANIFEST_FILE), &|_| {})?;
    Ok(total)
}

/// The shards the remote folder's current manifest lists, as (file, size, BLAKE3). The
/// manifest is uploaded after its shards, so each is there whole. A folder without a
/// manifest, or with one that does not parse, has none: every shard is then uploaded.
fn shards_there(remote: &Remote) -> HashSet<(String, u64, String)> {
    let listed = remote
        .read_capped(
            MANIFEST_FILE,
            Limits::default().max_manifest_bytes,
            "manifest size",
        )
        .and_then(|bytes| Manifest::parse(&bytes, &remote.as_path().join(MANIFEST_FILE)));
    match listed {
        Ok(m) => m
            .shards
            .into_iter()
            .map(|s| (s.file, s.size, s.blake3))
            .collect(),
        Err(_) => HashSet::new(),
    }
}

/// Removes the remote folder `url` and everything under it (every object whose name
/// starts with the folder's); returns how many objects were deleted. A distributed write
/// into an object store removes its staging folder with it. A URL naming a whole bucket
/// or server is refused.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a URL that is not remote or names no folder, or
/// [`ErrorKind::Remote`] (a store that takes no listing, as a plain HTTP server without
/// WebDAV).
pub fn remove_remote(url: &str) -> Result<u64> {
    Remote::open(url)?.remove_all()
}

/// Part size of a multipart upload, and the size from which one is used.
const PART_BYTES: usize = 16 << 20;

fn upload(remote: &Remote, name: &str, path: &Path, progress: &dyn Fn(u64)) -> Result<()> {
    let (mut file, len) = crate::io::open_regular(path)?;
    if len <= PART_BYTES as u64 || !remote.multipart() {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, "read", e))?;
        remote.put(name, bytes)?;
        progress(len);
        return Ok(());
    }
    let mut upload = remote.start_multipart(name)?;
    let mut offset = 0u64;
    loop {
        let mut part = Vec::with_capacity(PART_BYTES);
        (&mut file)
            .take(PART_BYTES as u64)
            .read_to_end(&mut part)
            .map_err(|e| Error::io_at(path, "read", offset, e))?;
        if part.is_empty() {
            break;
        }
        let n = part.len() as u64;
        if let Err(e) = upload.part(part) {
            upload.abort();
            return Err(e);
        }
        offset += n;
        progress(n);
    }
    upload.complete()
}
