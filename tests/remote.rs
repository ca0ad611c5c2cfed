//! Remote archives over HTTP (issue #14): a loopback server started by the test serves an
//! archive folder with ranged GETs; every read over it must equal the local read, and a
//! server that answers with other bytes, fails, or cuts bodies must give an error naming
//! the URL and offset, or be retried, never wrong data.

mod common;
#[path = "support/http_server.rs"]
mod http_server;

use common::*;
use http_server::Server;
use shardpack::{fetch, verify, Archive, Compression, ErrorKind, FetchOptions, VerifyOptions};

/// A few shards of stored and compressed records under `root/ds`, and their samples.
fn archive_in(root: &std::path::Path, compression: Compression) -> Vec<OwnedSample> {
    let samples: Vec<OwnedSample> = (0..60)
        .map(|i| {
            (
                format!("k/{i:04}"),
                vec![
                    ("bin".to_string(), noise(i, 100 + (i as usize * 37) % 400)),
                    ("txt".to_string(), format!("sample {i}").into_bytes()),
                ],
            )
        })
        .collect();
    write_archive(
        &root.join("ds"),
        tiny(compression).shard_size(8 << 10),
        &samples,
    );
    samples
}

#[test]
fn reads_over_http_equal_local_reads() {
    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let root = tempfile::tempdir().unwrap();
        let samples = archive_in(root.path(), compression);
        let server = Server::start(root.path());
        let local = Archive::open(root.path().join("ds")).unwrap();
        let remote = Archive::open(server.url("ds")).unwrap();
        assert!(remote.shard_count() > 2, "several shards");
        assert_eq!(remote.root_digest(), local.root_digest());
        assert_eq!(remote.url(), Some(server.url("ds").as_str()));
        assert_eq!(read_all(&remote), samples);
        for ordinal in [0, 17, 59, 3] {
            let (a, b) = (remote.get(ordinal).unwrap(), local.get(ordinal).unwrap());
            assert_eq!(a.key(), b.key());
            assert_eq!(
                a.fields().collect::<Vec<_>>(),
                b.fields().collect::<Vec<_>>()
            );
        }
        assert_eq!(remote.get_by_key("k/0042").unwrap().unwrap().ordinal(), 42);
        let many: Vec<u64> = vec![5, 50, 6, 7, 33];
        for (got, &ordinal) in remote.get_many(&many).into_iter().zip(&many) {
            assert_eq!(got.unwrap().key(), samples[ordinal as usize].0);
        }
        let scanned: Vec<String> = remote
            .scan()
            .map(|s| s.unwrap().key().to_string())
            .collect();
        let keys: Vec<String> = samples.iter().map(|s| s.0.clone()).collect();
        assert_eq!(scanned, keys);
        let report = verify(server.url("ds"), &VerifyOptions::default()).unwrap();
        assert!(report.is_ok(), "{:#?}", report.findings);
        assert!(report.complete);
        assert_eq!(report.shards, remote.shard_count() as u64);
    }
}

#[test]
fn a_random_read_costs_one_request_once_its_shard_is_open() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    let remote = Archive::open(server.url("ds")).unwrap();
    remote.get(1).unwrap();
    let before = server.gets.load(std::sync::atomic::Ordering::Relaxed);
    remote.get(2).unwrap();
    remote.get(0).unwrap();
    let after = server.gets.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 2, "one GET per record read");
}

#[test]
fn a_flipped_byte_in_transit_is_an_error_naming_the_url_and_offset() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    let remote = Archive::open(server.url("ds")).unwrap();
    let shard = remote.shard(0).unwrap();
    let (start, _) = shard.record_range(3).unwrap();
    server
        .faults()
        .flip
        .insert("shard-000000.shp".into(), (start + 2, 1));
    let err = remote.get(3).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&server.url("ds/shard-000000.shp")), "{text}");
    assert!(err.location().is_some_and(|l| l.offset >= start), "{err:?}");
    // The next read gets the server's true bytes again.
    assert_eq!(remote.get(3).unwrap().key(), "k/0003");
}

#[test]
fn unavailable_answers_and_cut_bodies_are_retried() {
    let root = tempfile::tempdir().unwrap();
    let samples = archive_in(root.path(), Compression::Zstd { level: 3 });
    let server = Server::start(root.path());
    {
        let mut f = server.faults();
        f.unavailable.insert("manifest.json".into(), 2);
        f.unavailable.insert("shard-000001.shp".into(), 1);
        f.cut_after.insert("shard-000000.shp".into(), 10);
    }
    let remote = Archive::open(server.url("ds")).unwrap();
    assert_eq!(read_all(&remote), samples);
}

#[test]
fn missing_objects_and_short_answers_are_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    let err = Archive::open(server.url("nothing-here")).err().unwrap();
    assert!(matches!(err.kind(), ErrorKind::Incomplete { .. }), "{err}");
    // A shard shorter on the server than the manifest says: the read past its end fails
    // with the URL and offset, never with other bytes.
    let remote = Archive::open(server.url("ds")).unwrap();
    let shard = root.path().join("ds/shard-000002.shp");
    let len = std::fs::metadata(&shard).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap();
    f.set_len(len - 100).unwrap();
    let err = remote
        .shard(2)
        .map(|_| ())
        .expect_err("short shard refused");
    match err.kind() {
        ErrorKind::Remote { url, offset, .. } => {
            assert!(url.ends_with("ds/shard-000002.shp"), "{url}");
            assert!(offset.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fetch_copies_the_archive_and_checks_the_root() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::Zstd { level: 3 });
    let server = Server::start(root.path());
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy");
    let root_hex = Archive::open(root.path().join("ds"))
        .unwrap()
        .root_digest()
        .to_string();
    let wrong = FetchOptions {
        expect_root: Some("0".repeat(64)),
        ..FetchOptions::default()
    };
    assert!(fetch(&server.url("ds"), &dest, &wrong, &|_, _| {}).is_err());
    assert!(!dest.join("manifest.json").exists());
    // A flipped byte makes the shard fail its digest: fetched once more, then kept.
    server
        .faults()
        .flip
        .insert("shard-000001.shp".into(), (100, 1));
    let options = FetchOptions {
        expect_root: Some(root_hex),
        ..FetchOptions::default()
    };
    let report = fetch(&server.url("ds"), &dest, &options, &|_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.failed);
    assert_eq!(report.refetched, 1);
    let names = |d: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        files(d)
            .into_iter()
            .map(|(p, b)| (p.file_name().unwrap().to_string_lossy().into_owned(), b))
            .collect()
    };
    assert_eq!(names(&dest), names(&root.path().join("ds")));
    assert!(verify(&dest, &VerifyOptions::default()).unwrap().is_ok());
    // Run again: nothing left to download.
    let again = fetch(&server.url("ds"), &dest, &options, &|_, _| {}).unwrap();
    assert_eq!(again.bytes_fetched, 0);
    assert_eq!(again.already_there, again.shards);
}

#[test]
fn fetch_continues_a_partial_shard_from_its_length() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    let dest = tempfile::tempdir().unwrap();
    let src = root.path().join("ds/shard-000000.shp");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(dest.path().join("shard-000000.shp.partial"), &bytes[..1000]).unwrap();
    let report = fetch(
        &server.url("ds"),
        dest.path(),
        &FetchOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    assert!(report.is_ok());
    assert_eq!(report.resumed, 1);
    assert_eq!(report.bytes_fetched, report.bytes - 1000);
    assert_eq!(
        std::fs::read(dest.path().join("shard-000000.shp")).unwrap(),
        bytes
    );
    assert!(!dest.path().join("shard-000000.shp.partial").exists());
}

#[test]
fn push_uploads_an_archive_that_then_reads_remotely() {
    let root = tempfile::tempdir().unwrap();
    let samples = archive_in(root.path(), Compression::None);
    let served = tempfile::tempdir().unwrap();
    let server = Server::start(served.path());
    shardpack::push(root.path().join("ds"), &server.url("up/ds"), &|_, _| {}).unwrap();
    let remote = Archive::open(server.url("up/ds")).unwrap();
    assert_eq!(read_all(&remote), samples);
}

/// Pushing an archive the remote folder holds already uploads no shard again; a shard
/// whose bytes differ from the remote manifest's (another archive of the same layout) is
/// uploaded, since only the manifest's BLAKE3 says a shard is there.
#[test]
fn push_skips_the_shards_the_remote_manifest_lists_unchanged() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let served = tempfile::tempdir().unwrap();
    let server = Server::start(served.path());
    let url = server.url("up/ds");
    let dir = root.path().join("ds");
    let all: u64 = Archive::open(&dir)
        .unwrap()
        .manifest()
        .shards
        .iter()
        .map(|s| s.size)
        .sum();
    assert_eq!(shardpack::push(&dir, &url, &|_, _| {}).unwrap(), all);
    assert_eq!(shardpack::push(&dir, &url, &|_, _| {}).unwrap(), 0);
    let other = tempfile::tempdir().unwrap();
    let samples: Vec<OwnedSample> = (0..60)
        .map(|i| {
            (
                format!("k/{i:04}"),
                vec![("bin".to_string(), noise(i + 1000, 300))],
            )
        })
        .collect();
    write_archive(
        &other.path().join("ds"),
        tiny(Compression::None).shard_size(8 << 10),
        &samples,
    );
    let other_dir = other.path().join("ds");
    let other_all: u64 = Archive::open(&other_dir)
        .unwrap()
        .manifest()
        .shards
        .iter()
        .map(|s| s.size)
        .sum();
    assert_eq!(
        shardpack::push(&other_dir, &url, &|_, _| {}).unwrap(),
        other_all
    );
    assert_eq!(read_all(&Archive::open(&url).unwrap()), samples);
}

/// `remove_remote` removes a folder, never a whole bucket or server.
#[test]
fn remove_remote_refuses_a_whole_bucket() {
    for url in [
        "s3://bucket",
        "s3://bucket/",
        "https://example.invalid",
        "http://h:80/",
    ] {
        let err = shardpack::remove_remote(url).expect_err(url);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { .. }),
            "{url}: {err}"
        );
    }
    let err = shardpack::remove_remote("/local/folder").expect_err("not remote");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
}

/// A server is hostile: a whole file for a range, another range than asked, a length far
/// beyond what it sends. Each is an error naming the URL and offset (after object_store's
/// retries), never other bytes and never an allocation of the claimed size.
#[test]
fn a_server_answering_other_ranges_is_an_error_never_other_bytes() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    let remote = Archive::open(server.url("ds")).unwrap();
    let shard = "shard-000001.shp".to_string();
    let faults: [&dyn Fn(&mut http_server::Faults); 3] = [
        &|f| {
            f.ignore_range.insert(shard.clone(), 100);
        },
        &|f| {
            f.shift_range.insert(shard.clone(), 100);
        },
        &|f| {
            f.huge_length.insert(shard.clone(), u64::MAX / 2);
        },
    ];
    for (i, fault) in faults.iter().enumerate() {
        fault(&mut server.faults());
        let fresh = Archive::open(server.url("ds")).unwrap();
        let ordinal = fresh.manifest().shards[1].first_ordinal;
        let err = fresh.get(ordinal).expect_err("refused");
        match err.kind() {
            ErrorKind::Remote { url, offset, .. } => {
                assert!(url.ends_with("ds/shard-000001.shp"), "{i}: {url}");
                assert!(offset.is_some(), "{i}: {err}");
            }
            other => panic!("fault {i}: {other:?}"),
        }
        let mut f = server.faults();
        f.ignore_range.clear();
        f.shift_range.clear();
        f.huge_length.clear();
    }
    assert_eq!(remote.len(), 60);
}

/// A shard whose bytes arrive wrong twice is reported, nothing is left under its name, and
/// no manifest is written; the next fetch, with the server's bytes right again, finishes.
#[test]
fn fetch_reports_a_shard_that_fails_its_digest_twice() {
    let root = tempfile::tempdir().unwrap();
    archive_in(root.path(), Compression::None);
    let server = Server::start(root.path());
    server
        .faults()
        .flip
        .insert("shard-000002.shp".into(), (10, 2));
    let dest = tempfile::tempdir().unwrap();
    let url = server.url("ds");
    let report = fetch(&url, dest.path(), &FetchOptions::default(), &|_, _| {}).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.failed.len(), 1);
    let (shard, err) = &report.failed[0];
    assert_eq!(*shard, 2);
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("ds/shard-000002.shp"), "{err}");
    assert!(!dest.path().join("shard-000002.shp").exists());
    assert!(!dest.path().join("shard-000002.shp.partial").exists());
    assert!(!dest.path().join("manifest.json").exists());
    let again = fetch(&url, dest.path(), &FetchOptions::default(), &|_, _| {}).unwrap();
    assert!(again.is_ok(), "{:?}", again.failed);
    assert_eq!(again.already_there, again.shards - 1);
    assert!(verify(dest.path(), &VerifyOptions::default())
        .unwrap()
        .is_ok());
}

/// An archive of 24 samples of 20 KiB noise (seeded by `seed`) in shards of about 200 KiB
/// under `dir`: large enough that a fetch in 64 KiB requests can be cut off mid-shard.
fn noise_archive(dir: &std::path::Path, seed: u64) {
    let samples: Vec<OwnedSample> = (0..24)
        .map(|i| {
            (
                format!("n/{i:03}"),
                vec![("bin".to_string(), noise(seed * 1000 + i, 20 << 10))],
            )
        })
        .collect();
    write_archive(
        dir,
        shardpack::Writer::builder()
            .compression(Compression::None)
            .shard_size(200 << 10)
            .archive_id([0x5A; 16]),
        &samples,
    );
}

/// A fetch cut off in the middle of shard 0 leaves a partial file; while the object is
/// unchanged the next fetch continues it (its GETs pinned to the ETag first seen), and
/// when the archive was replaced on the server in between (the same names, other bytes),
/// the server answers 412 and the shard is downloaded from the start, never stitched.
#[test]
fn fetch_resumes_only_the_version_it_began_with() {
    let options = FetchOptions {
        request_bytes: Some(64 << 10),
        parallel: 1,
        ..FetchOptions::default()
    };
    for replaced in [false, true] {
        let root = tempfile::tempdir().unwrap();
        noise_archive(&root.path().join("ds"), 1);
        let server = Server::start(root.path());
        server
            .faults()
            .gone_from
            .insert("shard-000000.shp".into(), 128 << 10);
        let dest = tempfile::tempdir().unwrap();
        let cut = fetch(&server.url("ds"), dest.path(), &options, &|_, _| {}).unwrap();
        assert_eq!(cut.failed.len(), 1, "{:?}", cut.failed);
        let partial = dest.path().join("shard-000000.shp.partial");
        let kept = std::fs::metadata(&partial).unwrap().len();
        assert_eq!(kept, 128 << 10, "two GETs of 64 KiB written");
        assert!(dest.path().join("shard-000000.shp.etag.partial").exists());
        assert!(!dest.path().join("manifest.json").exists());
        server.faults().gone_from.clear();
        if replaced {
            // Another archive under the same names (a sleep, so that the ETags of length
            // and modification time differ even on a coarse clock).
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::remove_dir_all(root.path().join("ds")).unwrap();
            noise_archive(&root.path().join("ds"), 2);
        }
        let report = fetch(&server.url("ds"), dest.path(), &options, &|_, _| {}).unwrap();
        assert!(report.is_ok(), "{:?}", report.failed);
        assert_eq!(report.refetched, 0, "never stitched, so never a bad digest");
        if replaced {
            // The other shards, under their names, are the old archive's: fetched again.
            assert_eq!((report.resumed, report.restarted), (0, 1));
            assert_eq!(report.bytes_fetched, report.bytes);
        } else {
            let shard_len = std::fs::metadata(root.path().join("ds/shard-000000.shp"))
                .unwrap()
                .len();
            assert_eq!((report.resumed, report.restarted), (1, 0));
            assert_eq!(report.already_there, report.shards - 1);
            assert_eq!(report.bytes_fetched, shard_len - kept);
        }
        assert_eq!(
            files(dest.path())
                .into_iter()
                .map(|(p, b)| (p.file_name().unwrap().to_owned(), b))
                .collect::<Vec<_>>(),
            files(&root.path().join("ds"))
                .into_iter()
                .map(|(p, b)| (p.file_name().unwrap().to_owned(), b))
                .collect::<Vec<_>>(),
        );
        assert!(verify(dest.path(), &VerifyOptions::default())
            .unwrap()
            .is_ok());
    }
}

/// A scan reads each shard ahead in large ranges, the next ones asked for while the current
/// one is checked and decoded: few requests (header, trailer, index, then the shard in
/// ranges of the profile's read size), several in flight at once, and the bytes the local
/// scan gives.
#[test]
fn a_scan_reads_ahead_in_few_large_overlapping_requests() {
    let root = tempfile::tempdir().unwrap();
    let samples: Vec<OwnedSample> = (0..48)
        .map(|i| {
            (
                format!("s/{i:03}"),
                vec![("bin".to_string(), noise(i, 100 << 10))],
            )
        })
        .collect();
    write_archive(
        &root.path().join("ds"),
        shardpack::Writer::builder()
            .compression(Compression::None)
            .shard_size(3 << 20),
        &samples,
    );
    let local = Archive::open(root.path().join("ds")).unwrap();
    let chunk = shardpack::MediaProfile::from_name(&local.manifest().layout.profile)
        .unwrap()
        .read_chunk;
    let server = Server::start(root.path());
    // Slow answers, so that requests asked for together are answered together.
    server.faults().delay = Some(std::time::Duration::from_millis(30));
    let remote = Archive::open(server.url("ds")).unwrap();
    let before = server.gets.load(std::sync::atomic::Ordering::Relaxed);
    server.get_lengths.lock().unwrap().clear();
    server
        .most_active
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let scanned: Vec<(String, Vec<u8>)> = remote
        .scan()
        .map(|s| {
            let s = s.unwrap();
            (s.key().to_string(), s.record_bytes().to_vec())
        })
        .collect();
    let expected: Vec<(String, Vec<u8>)> = local
        .scan()
        .map(|s| {
            let s = s.unwrap();
            (s.key().to_string(), s.record_bytes().to_vec())
        })
        .collect();
    assert_eq!(scanned, expected);
    let gets = server.gets.load(std::sync::atomic::Ordering::Relaxed) - before;
    let bytes: u64 = local.manifest().shards.iter().map(|s| s.size).sum();
    let shards = local.shard_count() as u64;
    // Per shard: header, trailer and index, the shard in ranges of `chunk` (rounded up for
    // each shard), and at most the ranges in flight at its end.
    let most = shards * (3 + 2) + bytes.div_ceil(chunk) + shards;
    assert!(
        gets <= most,
        "{gets} GETs for {bytes} bytes in {shards} shards (at most {most})"
    );
    let lengths = server.get_lengths.lock().unwrap().clone();
    let large = lengths.iter().filter(|&&n| n >= chunk).count();
    assert!(
        large as u64 >= bytes / chunk / 2,
        "ranges of {chunk} bytes: {lengths:?}"
    );
    assert!(
        server.most_active.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the next range was not in flight while the current one was read"
    );
}

/// `get_many` over HTTP asks for a whole batch at once, several GETs in flight, each record
/// once and nothing far from it; the shard's index, kept since the shard opened, is not
/// asked for again, and stays kept for the reads after the batch.
#[test]
fn get_many_fetches_a_whole_batch_together_and_keeps_the_index() {
    const RECORD: usize = 4 << 10;
    const STRIDE: u64 = 20; // records 80 KiB apart: more than the gap that merges two GETs
    let root = tempfile::tempdir().unwrap();
    let samples: Vec<OwnedSample> = (0..2400)
        .map(|i| {
            (
                format!("s/{i:05}"),
                vec![("bin".to_string(), noise(i, RECORD))],
            )
        })
        .collect();
    write_archive(
        &root.path().join("ds"),
        shardpack::Writer::builder()
            .compression(Compression::None)
            .shard_size(64 << 20),
        &samples,
    );
    let server = Server::start(root.path());
    let remote = Archive::open(server.url("ds")).unwrap();
    assert_eq!(remote.shard_count(), 1);
    remote.get(0).unwrap();
    server.faults().delay = Some(std::time::Duration::from_millis(5));
    server
        .most_active
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let gets = || server.gets.load(std::sync::atomic::Ordering::Relaxed);
    let sent = || server.bytes_sent.load(std::sync::atomic::Ordering::Relaxed);
    // A batch far larger than the 32 ranges the cache used to hold, in a shuffled order.
    let batch: Vec<u64> = (1..=119u64).map(|i| (i * 47 % 119 + 1) * STRIDE).collect();
    let (gets_before, sent_before) = (gets(), sent());
    let read = remote.get_many(&batch);
    for (got, &ordinal) in read.into_iter().zip(&batch) {
        let got = got.unwrap();
        assert_eq!(got.key(), samples[ordinal as usize].0);
        assert_eq!(
            got.field("bin").unwrap(),
            &samples[ordinal as usize].1[0].1[..]
        );
    }
    let (batch_gets, batch_sent) = (gets() - gets_before, sent() - sent_before);
    assert_eq!(
        batch_gets,
        batch.len() as u64,
        "one GET per record, none for the index"
    );
    assert!(
        batch_sent <= batch.len() as u64 * RECORD as u64 * 2,
        "{batch_sent} bytes sent for {} records of {RECORD}",
        batch.len()
    );
    assert!(
        server.most_active.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "the batch's GETs run together"
    );
    let before = gets();
    remote.get(7).unwrap();
    assert_eq!(
        gets() - before,
        1,
        "the index is still kept after the batch"
    );
}
