//! Write → read → verify round trips, on fixed and on random samples.

mod common;

use common::*;
use proptest::prelude::*;
use shardpack::{verify, Archive, Compression, ErrorKind, VerifyMode, VerifyOptions, Writer};

fn check_roundtrip(samples: &[OwnedSample], builder: shardpack::WriterBuilder) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let manifest = write_archive(&path, builder, samples);
    assert_eq!(manifest.totals.samples, samples.len() as u64);
    let archive = Archive::open(&path).unwrap();
    assert_eq!(archive.len(), samples.len() as u64);
    assert_eq!(read_all(&archive), samples);
    for (ordinal, (key, fields)) in samples.iter().enumerate() {
        let by_ordinal = archive.get(ordinal as u64).unwrap();
        assert_eq!(by_ordinal.key(), key);
        assert_eq!(archive.key(ordinal as u64).unwrap(), key.as_str());
        let by_key = archive.get_by_key(key).unwrap().expect("key found");
        assert_eq!(by_key.ordinal(), ordinal as u64);
        for (name, data) in fields {
            assert_eq!(by_key.field(name), Some(data.as_slice()));
        }
    }
    assert!(archive.get_by_key("no such key").unwrap().is_none());
    for mode in [VerifyMode::Quick, VerifyMode::Full, VerifyMode::Deep] {
        let report = verify(
            &path,
            &VerifyOptions {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(report.is_ok(), "{mode:?}: {:#?}", report.findings);
        assert!(report.complete);
    }
}

#[test]
fn small_archive_roundtrips_in_every_codec() {
    check_roundtrip(&small_samples(), tiny(Compression::None));
    check_roundtrip(&small_samples(), tiny(Compression::Zstd { level: 3 }));
    check_roundtrip(&small_samples(), Writer::builder());
}

#[test]
fn many_shards_and_blocks() {
    let samples: Vec<OwnedSample> = (0..500)
        .map(|i| {
            (
                format!("k{:05}", (i * 7919) % 500),
                vec![
                    ("bin".into(), noise(i, (i as usize * 37) % 700)),
                    (
                        "txt".into(),
                        format!("sample {i}").repeat(i as usize % 9).into_bytes(),
                    ),
                ],
            )
        })
        .collect();
    let builder = Writer::builder()
        .align(64)
        .block_size(2048)
        .shard_size(16 << 10);
    check_roundtrip(&samples, builder.clone());
    check_roundtrip(&samples, builder.compression(Compression::None));
}

#[test]
fn stored_fields_are_zero_copy_and_compressed_ones_decode_once() {
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("stored");
    write_archive(&stored, tiny(Compression::None), &small_samples());
    let archive = Archive::open(&stored).unwrap();
    assert!(archive.iter().all(|s| s.unwrap().is_zero_copy()));
    let zstd = dir.path().join("zstd");
    write_archive(
        &zstd,
        tiny(Compression::Zstd { level: 3 }),
        &small_samples(),
    );
    let archive = Archive::open(&zstd).unwrap();
    assert!(
        archive.iter().any(|s| !s.unwrap().is_zero_copy()),
        "the text block should compress"
    );
}

#[test]
fn writer_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let a = dir.path().join(format!("a{compression:?}"));
        let b = dir.path().join(format!("b{compression:?}"));
        write_archive(&a, tiny(compression), &small_samples());
        write_archive(&b, tiny(compression), &small_samples());
        let (fa, fb) = (files(&a), files(&b));
        assert_eq!(fa.len(), fb.len());
        for ((_, x), (_, y)) in fa.iter().zip(&fb) {
            assert_eq!(x, y);
        }
    }
}

#[test]
fn large_sample_gets_its_own_block() {
    // 24 MiB: above the eager-allocation cap of the decoder, so the streaming path runs.
    let big = noise(9, 24 << 20);
    let mut text = Vec::new();
    while text.len() < 20 << 20 {
        text.extend_from_slice(b"the quick brown fox jumps over the lazy dog ");
    }
    let samples: Vec<OwnedSample> = vec![
        ("big".into(), vec![("bin".into(), big)]),
        ("small".into(), vec![("txt".into(), b"x".to_vec())]),
        ("text".into(), vec![("txt".into(), text)]),
    ];
    check_roundtrip(&samples, Writer::builder());
}

#[test]
fn bad_samples_are_refused_and_leave_the_writer_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::builder().create(dir.path().join("a")).unwrap();
    let too_long = "k".repeat(4097);
    type Fields<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: Vec<(&str, Fields)> = vec![
        ("", vec![("x", b"1")]),
        (&too_long, vec![("x", b"1")]),
        ("nul\0", vec![("x", b"1")]),
        ("nofields", vec![]),
        ("slash", vec![("a/b", b"1")]),
        ("twice", vec![("x", b"1"), ("x", b"2")]),
    ];
    for (key, fields) in &cases {
        let err = w.append(key, fields).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { .. }),
            "{key:?}: {err}"
        );
    }
    w.append("ok", &[("x", b"1")]).unwrap();
    let err = w.append("ok", &[("x", b"2")]).unwrap_err();
    assert!(err.to_string().contains("duplicate key"), "{err}");
    w.append("ok2", &[("x", b"2")]).unwrap();
    let m = w.finish().unwrap();
    assert_eq!(m.totals.samples, 2);
}

#[test]
fn output_folder_must_be_new_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"1").unwrap();
    let err = Writer::builder().create(dir.path()).err().unwrap();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn unfinished_writer_leaves_no_manifest_and_verify_says_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    {
        let mut w = tiny(Compression::None).create(&path).unwrap();
        for i in 0..50 {
            w.append(&format!("k{i}"), &[("x", &noise(i, 100))])
                .unwrap();
        }
        // dropped without finish()
    }
    assert!(matches!(
        Archive::open(&path).err().unwrap().kind(),
        ErrorKind::Incomplete { .. }
    ));
    let report = verify(&path, &VerifyOptions::default()).unwrap();
    assert!(!report.complete);
    assert!(!report.is_ok());
    assert!(!path.join("manifest.json").exists());
}

#[test]
fn empty_archive_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let m = Writer::builder().create(&path).unwrap().finish().unwrap();
    assert_eq!(m.totals.samples, 0);
    let archive = Archive::open(&path).unwrap();
    assert!(archive.is_empty());
    assert!(matches!(
        archive.get(0).unwrap_err().kind(),
        ErrorKind::OrdinalOutOfRange { .. }
    ));
    assert!(verify(&path, &VerifyOptions::default()).unwrap().is_ok());
}

fn sample_strategy() -> impl Strategy<Value = Vec<OwnedSample>> {
    let field = ("[a-z0-9.]{0,6}", prop::collection::vec(any::<u8>(), 0..300));
    let sample = (
        "[a-zA-Z0-9 ._/ü-]{1,24}",
        prop::collection::btree_map(field.0, field.1, 1..4),
    );
    prop::collection::btree_map(sample.0, sample.1, 0..40).prop_map(|m| {
        m.into_iter()
            .map(|(k, f)| (k, f.into_iter().collect()))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_samples_roundtrip(samples in sample_strategy(), stored in any::<bool>(), block in 64u64..2048) {
        let compression = if stored { Compression::None } else { Compression::Zstd { level: 1 } };
        let builder = Writer::builder().align(64).block_size(block).shard_size(4096).compression(compression);
        check_roundtrip(&samples, builder);
    }
}

#[test]
fn output_is_the_same_bytes_whatever_the_number_of_threads() {
    let samples: Vec<OwnedSample> = (0..400)
        .map(|i| {
            (
                format!("t/{i:04}"),
                vec![
                    (
                        "txt".into(),
                        format!("sample {i} ")
                            .repeat(20 + i as usize % 50)
                            .into_bytes(),
                    ),
                    ("bin".into(), noise(i, (i as usize * 131) % 3000)),
                ],
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut reference: Option<Vec<(std::path::PathBuf, Vec<u8>)>> = None;
    for threads in [1, 2, 3, 8] {
        let path = dir.path().join(format!("t{threads}"));
        let builder = Writer::builder()
            .align(64)
            .block_size(4096)
            .shard_size(48 << 10)
            .threads(threads);
        write_archive(&path, builder, &samples);
        let got: Vec<_> = files(&path)
            .into_iter()
            .map(|(p, b)| (p.file_name().unwrap().into(), b))
            .collect();
        assert!(got.len() > 3, "several shards");
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got, "{threads} threads wrote other bytes"),
        }
    }
}
