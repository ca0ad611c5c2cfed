//! Shard dictionaries (format 1.1, §5.5): small records compressed one frame each with a
//! dictionary trained per shard, read one by one, scanned, streamed, verified, and damage
//! found and located.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use shardpack::{
    Archive, Compression, Defect, Limits, Structure, VerifyMode, VerifyOptions, Writer,
};

fn verify(dir: &std::path::Path, mode: VerifyMode) -> shardpack::VerifyReport {
    shardpack::verify(
        dir,
        &VerifyOptions {
            mode,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A shard's header fields that say whether it has a dictionary: (minor version, length).
fn dictionary_of(shard: &[u8]) -> (u16, u32) {
    (
        u16::from_le_bytes([shard[10], shard[11]]),
        u32::from_le_bytes(shard[72..76].try_into().unwrap()),
    )
}

#[test]
fn small_records_get_a_dictionary_and_read_back_every_way() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let samples = text_samples(1500);
    // Shards of 16 KiB hold a few hundred records: the held-back records of the first
    // shard spill into the next ones, which train their own dictionaries.
    let manifest = write_archive(&dir, with_dictionary().shard_size(16 << 10), &samples);
    assert_eq!(manifest.format_version, "1.1");
    assert!(
        manifest.shards.len() >= 3,
        "{} shards",
        manifest.shards.len()
    );
    let mut with = 0;
    for info in &manifest.shards {
        let bytes = std::fs::read(dir.join(&info.file)).unwrap();
        let (minor, len) = dictionary_of(&bytes);
        assert_eq!(minor, u16::from(len > 0), "{}", info.file);
        with += usize::from(len > 0);
    }
    assert!(with >= 2, "{with} shards with a dictionary");

    let archive = Archive::open(&dir).unwrap();
    assert_eq!(read_all(&archive), samples, "in order");
    let scanned: Vec<OwnedSample> = archive
        .scan()
        .map(|s| {
            let s = s.unwrap();
            let fields = s.fields().map(|(n, d)| (n.to_string(), d.to_vec()));
            (s.key().to_string(), fields.collect())
        })
        .collect();
    assert_eq!(scanned, samples, "scanned");
    for i in [0u64, 1, 63, 64, 700, 1499] {
        let s = archive.get(i).unwrap();
        assert_eq!(s.key(), samples[i as usize].0);
        assert!(!s.is_zero_copy());
        let by_key = archive.get_by_key(&samples[i as usize].0).unwrap().unwrap();
        assert_eq!(by_key.ordinal(), i);
    }
    for mode in [VerifyMode::Quick, VerifyMode::Full, VerifyMode::Deep] {
        let report = verify(&dir, mode);
        assert!(report.is_ok(), "{mode:?}: {:?}", report.findings);
    }
}

#[test]
fn a_dictionary_beats_compressing_each_record_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = text_samples(3000);
    let size = |block_size: u64, dictionary: Option<u32>| {
        let dir = tmp.path().join(format!("{block_size}-{dictionary:?}"));
        let builder = Writer::builder()
            .block_size(block_size)
            .record_page(None)
            .dictionary(dictionary);
        write_archive(&dir, builder, &samples).totals.bytes
    };
    // Both decode one record per random read: blocks of one record each, or one frame
    // per record with the shard's dictionary.
    let (alone, dictionary) = (size(1, None), size(1 << 20, Some(4096)));
    assert!(dictionary * 2 < alone, "{dictionary} vs {alone}");
}

#[test]
fn output_is_the_same_whatever_the_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = text_samples(900);
    let mut outputs = Vec::new();
    for threads in [1, 3] {
        let dir = tmp.path().join(format!("t{threads}"));
        write_archive(
            &dir,
            with_dictionary().shard_size(24 << 10).threads(threads),
            &samples,
        );
        outputs.push(files(&dir));
    }
    assert_eq!(outputs[0].len(), outputs[1].len(), "file count");
    for ((name, a), (_, b)) in outputs[0].iter().zip(&outputs[1]) {
        let at = a.iter().zip(b).position(|(x, y)| x != y);
        assert!(
            at.is_none() && a.len() == b.len(),
            "{}: first difference at {at:?}, lengths {} and {}",
            name.display(),
            a.len(),
            b.len()
        );
    }
}

#[test]
fn large_records_and_stored_archives_get_none_and_stay_version_1_0() {
    let tmp = tempfile::tempdir().unwrap();
    let big: Vec<OwnedSample> = (0..100)
        .map(|i| (format!("b/{i:03}"), vec![("bin".into(), noise(i, 20_000))]))
        .collect();
    let m = write_archive(&tmp.path().join("big"), with_dictionary(), &big);
    assert_eq!(m.format_version, "1.0");
    let stored = with_dictionary().compression(Compression::None);
    let m = write_archive(&tmp.path().join("stored"), stored, &text_samples(300));
    assert_eq!(m.format_version, "1.0");
    let few = write_archive(
        &tmp.path().join("few"),
        with_dictionary(),
        &text_samples(10),
    );
    assert_eq!(few.format_version, "1.0", "too few records to train on");
}

#[test]
fn a_sample_too_large_for_a_volume_is_refused_when_appended_not_later() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = with_dictionary()
        .volume_size(Some(8 << 20))
        .create(tmp.path().join("v"))
        .unwrap();
    for (key, fields) in &text_samples(10) {
        let f: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        w.append(key, &f).unwrap();
    }
    let big = noise(1, 9 << 20);
    let err = w.append("big", &[("bin", &big)]).unwrap_err();
    assert!(err.to_string().contains("volume"), "{err}");
    assert_eq!(w.len(), 10);
    let m = w.finish().unwrap();
    assert_eq!(m.totals.samples, 10);
}

#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stream_with_dictionaries_reads_back_and_unstreams() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = text_samples(800);
    let sink = SharedSink::default();
    let mut w = with_dictionary()
        .align(4096)
        .shard_size(64 << 10)
        .create_stream(Box::new(sink.clone()), "tape")
        .unwrap();
    for (key, fields) in &samples {
        let f: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        w.append(key, &f).unwrap();
    }
    w.finish().unwrap();
    let stream = sink.0.lock().unwrap().clone();
    let dir = tmp.path().join("out");
    let _ = shardpack::stream::unstream(&stream[..], "tape", &dir, Limits::default()).unwrap();
    assert_eq!(read_all(&Archive::open(&dir).unwrap()), samples);
    assert!(verify(&dir, VerifyMode::Deep).is_ok());
}

/// Writes a one-shard dictionary archive and returns its folder and shard bytes.
fn one_shard(tmp: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let dir = tmp.join("one");
    write_archive(&dir, with_dictionary(), &text_samples(300));
    let shard = dir.join("shard-000000.shp");
    let bytes = std::fs::read(&shard).unwrap();
    assert!(dictionary_of(&bytes).1 > 0);
    (dir, shard, bytes)
}

#[test]
fn a_damaged_dictionary_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, shard, mut bytes) = one_shard(tmp.path());
    let len = dictionary_of(&bytes).1 as u64;
    bytes[128 + 100] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let err = Archive::open(&dir).unwrap().get(5).unwrap_err();
    assert!(
        matches!(
            err.defect(),
            Some(Defect::Crc {
                structure: Structure::Dictionary,
                ..
            })
        ),
        "{err}"
    );
    for mode in [VerifyMode::Full, VerifyMode::Deep] {
        let report = verify(&dir, mode);
        let f = report
            .findings
            .iter()
            .find(|f| {
                matches!(
                    f.defect,
                    Some(Defect::Crc {
                        structure: Structure::Dictionary,
                        ..
                    })
                )
            })
            .unwrap_or_else(|| panic!("{mode:?}: {:?}", report.findings));
        assert_eq!((f.offset, f.len), (128, len));
    }
}

#[test]
fn a_damaged_frame_fails_its_record_only_and_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, shard, mut bytes) = one_shard(tmp.path());
    let archive = Archive::open(&dir).unwrap();
    let (start, end) = archive.shard(0).unwrap().record_range(10).unwrap();
    drop(archive);
    // The frame table follows the block header; record 10's frame lies after it. Damage
    // the middle of the block payload, then find which records it hits.
    let at = ((start + end) / 2) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let archive = Archive::open(&dir).unwrap();
    let results: Vec<bool> = (0..300).map(|i| archive.get(i).is_ok()).collect();
    let failed = results.iter().filter(|ok| !**ok).count();
    assert!((1..=2).contains(&failed), "{failed} records failed");
    for (i, ok) in results.iter().enumerate() {
        if *ok {
            assert_eq!(read_one(&archive, i as u64), text_samples(300)[i]);
        }
    }
    let report = verify(&dir, VerifyMode::Full);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.offset <= at as u64 && at as u64 <= f.offset + f.len),
        "{:?}",
        report.findings
    );
}

fn read_one(archive: &Archive, ordinal: u64) -> OwnedSample {
    let s = archive.get(ordinal).unwrap();
    let fields = s.fields().map(|(n, d)| (n.to_string(), d.to_vec()));
    (s.key().to_string(), fields.collect())
}

#[test]
fn a_1_1_manifest_without_a_dictionary_shard_is_a_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut m = write_archive(&dir, tiny(Compression::Zstd { level: 3 }), &small_samples());
    assert_eq!(m.format_version, "1.0");
    assert!(verify(&dir, VerifyMode::Quick).is_ok());
    // A consistent manifest (root recomputed) that claims 1.1 for 1.0 shards.
    m.format_version = "1.1".into();
    m.root = m.compute_root();
    std::fs::write(dir.join("manifest.json"), m.to_canonical_bytes()).unwrap();
    let report = verify(&dir, VerifyMode::Quick);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert!(
        matches!(
            report.findings[0].defect,
            Some(Defect::Invalid {
                structure: Structure::Manifest,
                field: "format_version",
                ..
            })
        ),
        "{:?}",
        report.findings
    );
}
