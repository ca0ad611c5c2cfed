//! Read handles own what they read from: an `Archive` is a cheap clone, a `Sample` outlives
//! the archive and the read that returned it, and shards can be read through any byte
//! source (a map, `pread`, or one a user plugs in) with the same checks and the same answers.

mod common;

use std::io;
use std::sync::Arc;

use common::*;
use shardpack::{Archive, Compression, ReadAt, Shard, SourceKind};

fn owned(sample: &shardpack::Sample) -> OwnedSample {
    (
        sample.key().to_string(),
        sample
            .fields()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect(),
    )
}

#[test]
fn a_sample_outlives_its_archive_and_keeps_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let samples = small_samples();
    write_archive(dir.path(), tiny(Compression::None), &samples);
    let kept: Vec<shardpack::Sample> = {
        let archive = Archive::open(dir.path()).unwrap();
        (0..samples.len() as u64)
            .map(|i| archive.get(i).unwrap())
            .collect()
    };
    for (sample, want) in kept.iter().zip(&samples) {
        assert!(sample.is_zero_copy(), "stored samples borrow from the map");
        assert!(owned(sample) == *want, "{}", sample.key());
    }
    // The samples travel to another thread on their own.
    let keys = std::thread::spawn(move || kept.iter().map(|s| s.key().len()).sum::<usize>())
        .join()
        .unwrap();
    assert!(keys > 0);
}

#[test]
fn clones_share_one_archive_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let samples = text_samples(3000);
    write_archive(dir.path(), with_dictionary(), &samples);
    let archive = Archive::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let archive = archive.clone();
            std::thread::spawn(move || {
                (0..archive.len())
                    .filter(|i| i % 2 == t)
                    .map(|i| (i, owned(&archive.get(i).unwrap())))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = 0;
    for thread in threads {
        for (i, sample) in thread.join().unwrap() {
            assert!(sample == samples[i as usize], "ordinal {i}");
            seen += 1;
        }
    }
    assert_eq!(seen, samples.len());
}

#[test]
fn pread_source_reads_what_the_map_reads() {
    let dir = tempfile::tempdir().unwrap();
    for (name, builder) in [
        ("stored", tiny(Compression::None)),
        ("zstd", tiny(Compression::Zstd { level: 3 })),
    ] {
        let path = dir.path().join(name);
        let samples = small_samples();
        write_archive(&path, builder, &samples);
        let archive = Archive::options()
            .source(SourceKind::Pread)
            .open(&path)
            .unwrap();
        assert!(read_all(&archive) == samples, "{name}: iter");
        let scanned: Vec<OwnedSample> = archive.scan().map(|s| owned(&s.unwrap())).collect();
        assert!(scanned == samples, "{name}: scan");
        let sample = archive.get(0).unwrap();
        assert!(!sample.is_zero_copy(), "{name}: pread copies");
        let key = &samples[samples.len() - 1].0;
        let found = archive.get_by_key(key).unwrap().unwrap();
        assert_eq!(found.key(), key);
    }
}

/// A source that serves a shard from memory through positioned reads only, as a remote
/// object store would, and counts the bytes it served.
struct MemorySource {
    bytes: Vec<u8>,
    served: std::sync::atomic::AtomicU64,
}

impl ReadAt for MemorySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = self
            .bytes
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        self.served
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_user_source_plugs_into_the_shard_reader() {
    let dir = tempfile::tempdir().unwrap();
    let samples = small_samples();
    let manifest = write_archive(dir.path(), tiny(Compression::Zstd { level: 3 }), &samples);
    let mut ordinal = 0usize;
    for info in &manifest.shards {
        let bytes = std::fs::read(dir.path().join(&info.file)).unwrap();
        let file_len = bytes.len() as u64;
        let source = Arc::new(MemorySource {
            bytes,
            served: Default::default(),
        });
        let shard = Shard::from_source(&info.file, source.clone(), Default::default()).unwrap();
        for local in 0..shard.len() {
            let sample = shard.get(local).unwrap();
            assert!(owned(&sample) == samples[ordinal], "ordinal {ordinal}");
            assert_eq!(shard.find(sample.key().as_bytes()).unwrap(), Some(local));
            ordinal += 1;
        }
        let served = source.served.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            served > 0 && served <= 4 * file_len,
            "{served} of {file_len}"
        );
    }
    assert_eq!(ordinal, samples.len());

    // A source that returns other bytes is an error, never other data.
    let info = &manifest.shards[0];
    let mut bytes = std::fs::read(dir.path().join(&info.file)).unwrap();
    let last_block_byte = bytes.len() / 2;
    bytes[last_block_byte] ^= 0x40;
    let source = Arc::new(MemorySource {
        bytes,
        served: Default::default(),
    });
    if let Ok(shard) = Shard::from_source(&info.file, source, Default::default()) {
        for local in 0..shard.len() {
            if let Ok(sample) = shard.get(local) {
                assert!(owned(&sample) == samples[local as usize], "record {local}");
            }
        }
    }
}

#[test]
fn iter_size_hint_holds_when_a_shard_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let samples = small_samples();
    let manifest = write_archive(dir.path(), tiny(Compression::None), &samples);
    assert!(manifest.shards.len() >= 2);
    std::fs::remove_file(dir.path().join(&manifest.shards[0].file)).unwrap();
    let archive = Archive::open(dir.path()).unwrap();
    let iter = archive.iter();
    let (low, high) = iter.size_hint();
    let items = iter.count();
    assert!(
        low <= items && Some(items) <= high,
        "{low}..={high:?} claimed, {items} yielded"
    );
    assert!(items < samples.len(), "the missing shard yields one error");
}
