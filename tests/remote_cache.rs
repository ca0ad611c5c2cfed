//! The on-disk cache of remote shard bytes (issue #14): a second read of the same bytes,
//! by the same handle or another one, makes no request; the folder stays within its bound;
//! a damaged entry is never served and never sticks; a planted link is never written
//! through; handles on several threads share one folder.

mod common;
#[path = "support/http_server.rs"]
mod http_server;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::*;
use http_server::Server;
use shardpack::{verify, Archive, Compression, RemoteCache, VerifyOptions};

const SHARD0: &str = "shard-000000.shp";

/// A few small shards under `root/ds`, and their samples.
fn small_archive(root: &Path) -> Vec<OwnedSample> {
    let samples: Vec<OwnedSample> = (0..60)
        .map(|i| {
            (
                format!("k/{i:04}"),
                vec![("bin".to_string(), noise(i, 100 + (i as usize * 37) % 400))],
            )
        })
        .collect();
    write_archive(
        &root.join("ds"),
        tiny(Compression::None).shard_size(8 << 10),
        &samples,
    );
    samples
}

/// `count` samples of one field of `len` random bytes each.
fn noise_samples(count: u64, len: usize) -> Vec<OwnedSample> {
    (0..count)
        .map(|i| {
            (
                format!("k/{i:04}"),
                vec![("bin".to_string(), noise(i, len))],
            )
        })
        .collect()
}

/// The keys a scan of `archive` gives, in order.
fn scan_keys(archive: &Archive) -> Vec<String> {
    archive
        .scan()
        .map(|s| s.unwrap().key().to_string())
        .collect()
}

fn open_cached(url: &str, cache: &Path, max_bytes: u64) -> Archive {
    Archive::options()
        .remote_cache(cache, max_bytes)
        .open(url)
        .unwrap()
}

fn gets(server: &Server) -> u64 {
    server.gets.load(Ordering::Relaxed)
}

fn sample_at(archive: &Archive, ordinal: u64) -> OwnedSample {
    let s = archive.get(ordinal).unwrap();
    let fields = s
        .fields()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect();
    (s.key().to_string(), fields)
}

/// The regular files in the cache folder and the bytes they hold together.
fn cache_files(dir: &Path) -> (Vec<std::path::PathBuf>, u64) {
    let mut found = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_file() {
            total += meta.len();
            found.push(entry.path());
        }
    }
    found.sort();
    (found, total)
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_second_open_reads_its_samples_from_the_cache_with_no_request() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let server = Server::start(root.path());
    let first = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let picked = [3u64, 59, 17, 0, 42];
    for &n in &picked {
        assert_eq!(sample_at(&first, n), samples[n as usize]);
    }
    let batch: Vec<u64> = vec![5, 50, 6, 33];
    let _ = first.get_many(&batch);
    drop(first);

    let second = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    for &n in &picked {
        assert_eq!(sample_at(&second, n), samples[n as usize]);
    }
    for (got, &n) in second.get_many(&batch).into_iter().zip(&batch) {
        assert_eq!(got.unwrap().key(), samples[n as usize].0);
    }
    assert_eq!(gets(&server) - before, 0, "every byte came from the cache");
}

#[test]
fn a_second_scan_is_served_by_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let keys: Vec<String> = samples.iter().map(|s| s.0.clone()).collect();
    let server = Server::start(root.path());
    let first = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    assert_eq!(scan_keys(&first), keys);
    assert_eq!(read_all(&first), samples);
    drop(first);
    let second = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(scan_keys(&second), keys);
    assert_eq!(read_all(&second), samples);
    assert_eq!(
        gets(&server) - before,
        0,
        "the second epoch made no request"
    );
}

#[test]
fn a_scan_read_ahead_in_the_background_is_cached_whole() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    // Shards of several read sizes (1 MiB), so that the scan reads ahead in the background.
    let samples = noise_samples(800, 4096);
    write_archive(
        &root.path().join("ds"),
        tiny(Compression::None)
            .block_size(64 << 10)
            .shard_size(3 << 20),
        &samples,
    );
    let server = Server::start(root.path());
    let keys: Vec<String> = samples.iter().map(|s| s.0.clone()).collect();
    let first = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    assert!(first.manifest().shards[0].size > 2 << 20);
    assert_eq!(scan_keys(&first), keys);
    drop(first);
    let second = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(scan_keys(&second), keys);
    assert_eq!(read_all(&second), samples);
    assert_eq!(gets(&server) - before, 0, "the second scan made no request");
}

#[test]
fn the_cache_folder_stays_within_its_bound() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = noise_samples(300, 4096);
    write_archive(
        &root.path().join("ds"),
        tiny(Compression::None)
            .block_size(64 << 10)
            .shard_size(512 << 10),
        &samples,
    );
    let server = Server::start(root.path());
    let max = 256 << 10;
    let archive = open_cached(&server.url("ds"), cache.path(), max);
    let archive_bytes: u64 = archive.manifest().shards.iter().map(|s| s.size).sum();
    assert!(
        archive_bytes > 4 * max,
        "the workload is larger than the cache"
    );
    for pass in 0..2 {
        for n in (0..300u64).map(|i| (i * 7 + pass) % 300) {
            assert_eq!(sample_at(&archive, n), samples[n as usize]);
            let (_, held) = cache_files(cache.path());
            assert!(
                held <= max,
                "{held} bytes cached after sample {n}, over {max}"
            );
        }
    }
    let (files, _) = cache_files(cache.path());
    assert!(!files.is_empty(), "something is cached");
}

#[test]
fn a_damaged_cache_file_is_fetched_again_never_served() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let server = Server::start(root.path());
    let first = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    assert_eq!(sample_at(&first, 3), samples[3]);
    drop(first);
    let (files, _) = cache_files(cache.path());
    assert!(!files.is_empty());
    for file in &files {
        flip_byte(file, 300);
    }
    // Every entry fails its own CRC: each is fetched again and written anew.
    let second = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(sample_at(&second, 3), samples[3]);
    assert!(
        gets(&server) > before,
        "the damaged entries were fetched again"
    );
    drop(second);
    let third = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(sample_at(&third, 3), samples[3]);
    assert_eq!(
        gets(&server) - before,
        0,
        "the entries written anew are used"
    );
}

#[test]
fn bytes_damaged_in_transit_fail_once_then_are_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let local = Archive::open(root.path().join("ds")).unwrap();
    let (start, _) = local.shard(0).unwrap().record_range(3).unwrap();
    let server = Server::start(root.path());
    server.faults().flip.insert(SHARD0.into(), (start + 2, 1));
    let remote = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    // The damaged bytes were cached as fetched: the record's CRC finds them.
    let err = remote.get(3).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string().contains(&server.url("ds/shard-000000.shp")),
        "{err}"
    );
    assert!(err.location().is_some_and(|l| l.offset >= start), "{err:?}");
    // The failed check gave them up: the next read fetches the server's bytes and keeps
    // those.
    assert_eq!(sample_at(&remote, 3), samples[3]);
    let again = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(sample_at(&again, 3), samples[3]);
    assert_eq!(gets(&server) - before, 0);
}

#[test]
fn a_symlink_planted_in_the_cache_folder_is_never_written_through() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let local = Archive::open(root.path().join("ds")).unwrap();
    let digest = local.manifest().shards[0].blake3.clone();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"not the cache's").unwrap();
    let entry = cache.path().join(format!("{digest}-0"));
    std::os::unix::fs::symlink(&victim, &entry).unwrap();
    let server = Server::start(root.path());
    let remote = open_cached(&server.url("ds"), cache.path(), 64 << 20);
    assert_eq!(sample_at(&remote, 3), samples[3]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not the cache's");
    let meta = std::fs::symlink_metadata(&entry).unwrap();
    assert!(
        meta.is_file(),
        "the link was replaced by an entry, not followed"
    );
}

#[test]
fn handles_on_several_threads_share_a_cache_folder() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let samples = small_archive(root.path());
    let server = Server::start(root.path());
    let url = server.url("ds");
    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let (url, cache, samples) = (&url, cache.path(), &samples);
            scope.spawn(move || {
                let archive = open_cached(url, cache, 64 << 20);
                for round in 0..2 {
                    for n in (0..60u64).map(|i| (i * 11 + t + round) % 60) {
                        assert_eq!(sample_at(&archive, n), samples[n as usize]);
                    }
                    assert_eq!(&read_all(&archive), samples);
                }
            });
        }
    });
    let last = open_cached(&url, cache.path(), 64 << 20);
    let before = gets(&server);
    assert_eq!(read_all(&last), samples);
    assert_eq!(gets(&server) - before, 0);
    let (files, _) = cache_files(cache.path());
    assert!(
        files.iter().all(|f| !f.to_string_lossy().ends_with(".tmp")),
        "no temporary file is left: {files:?}"
    );
}

#[test]
fn verify_through_the_cache_checks_the_bytes_reads_would_get() {
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    small_archive(root.path());
    let server = Server::start(root.path());
    let options = VerifyOptions {
        remote_cache: Some(RemoteCache::new(cache.path(), 64 << 20)),
        ..VerifyOptions::default()
    };
    assert!(verify(server.url("ds"), &options).unwrap().is_ok());
    // Damage at rest in the cache is found by the entries' own CRCs and fetched again.
    for file in cache_files(cache.path()).0 {
        flip_byte(&file, 100);
    }
    let report = verify(server.url("ds"), &options).unwrap();
    assert!(report.is_ok(), "{:#?}", report.findings);
    // Bytes cached damaged (in transit) are found, named by URL, and given up.
    std::fs::remove_dir_all(cache.path()).unwrap();
    server.faults().flip.insert(SHARD0.into(), (500, 1));
    let report = verify(server.url("ds"), &options).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.file.to_string_lossy().ends_with("ds/shard-000000.shp")),
        "{:#?}",
        report.findings
    );
    let before = gets(&server);
    assert!(verify(server.url("ds"), &options).unwrap().is_ok());
    assert!(
        gets(&server) > before,
        "the damaged shard was fetched again"
    );
}
