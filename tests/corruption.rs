//! Damage to a finished archive: every single-byte change at every position, and every
//! truncation, is reported by `verify` with its place, and reads return errors, never other
//! bytes.

mod common;

use std::path::Path;

use common::*;
use shardpack::{verify, Archive, Compression, Defect, Structure, VerifyMode, VerifyOptions};

/// Reads every sample; each must be an error or exactly the original. Returns how many
/// reads failed.
fn reads_never_lie(path: &Path, original: &[OwnedSample]) -> usize {
    let Ok(archive) = Archive::open(path) else {
        return original.len();
    };
    let mut errors = 0;
    for (ordinal, (key, fields)) in original.iter().enumerate() {
        match archive.get(ordinal as u64) {
            Ok(s) => {
                assert_eq!(s.key(), key, "ordinal {ordinal} returned another key");
                let got: Vec<(String, Vec<u8>)> = s
                    .fields()
                    .map(|(n, d)| (n.to_string(), d.to_vec()))
                    .collect();
                assert_eq!(&got, fields, "ordinal {ordinal} returned other bytes");
            }
            Err(_) => errors += 1,
        }
        // A damaged key index may fail to find a key, but never finds another sample.
        if let Ok(Some(s)) = archive.get_by_key(key) {
            assert_eq!(s.ordinal(), ordinal as u64);
        }
    }
    errors
}

fn exhaustive_single_byte_changes(compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let samples = small_samples();
    write_archive(&path, tiny(compression), &samples);
    let pristine = files(&path);
    let mut checked = 0;
    for (file, bytes) in &pristine {
        let is_manifest = file.ends_with("manifest.json");
        for pos in 0..bytes.len() {
            for change in [0x01u8, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[pos] ^= change;
                std::fs::write(file, &damaged).unwrap();
                let report = verify(&path, &VerifyOptions::default()).unwrap();
                assert!(
                    !report.is_ok(),
                    "{}: change at {pos} not reported",
                    file.display()
                );
                if !is_manifest {
                    let located = report.findings.iter().any(|f| {
                        f.file == *file
                            && !matches!(
                                f.defect,
                                Some(Defect::Digest {
                                    structure: Structure::ShardFile,
                                    ..
                                })
                            )
                            && f.offset <= pos as u64
                            && (pos as u64) < f.offset + f.len.max(1)
                    });
                    assert!(
                        located,
                        "{}: change at {pos} not located: {:#?}",
                        file.display(),
                        report.findings
                    );
                }
                reads_never_lie(&path, &samples);
                checked += 1;
            }
            std::fs::write(file, bytes).unwrap();
        }
    }
    assert!(checked > 1000, "only {checked} changes checked");
}

#[test]
fn every_byte_change_is_found_stored() {
    exhaustive_single_byte_changes(Compression::None);
}

#[test]
fn every_byte_change_is_found_zstd() {
    exhaustive_single_byte_changes(Compression::Zstd { level: 3 });
}

/// A damaged record's own read fails: flip each byte of a stored record's data and read it.
#[test]
fn damaged_record_read_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let samples = small_samples();
    write_archive(&path, tiny(Compression::None), &samples);
    let shard = path.join("shard-000000.shp");
    let pristine = std::fs::read(&shard).unwrap();
    let archive = Archive::open(&path).unwrap();
    // Where the first record's bytes are in the file, found from the zero-copy slice.
    let (start, len) = {
        let s = archive.get(0).unwrap();
        let rec = s.record_bytes();
        let base = std::fs::read(&shard).unwrap();
        let at = base.windows(rec.len()).position(|w| w == rec).unwrap();
        (at, rec.len())
    };
    drop(archive);
    for pos in start..start + len {
        let mut damaged = pristine.clone();
        damaged[pos] ^= 0x10;
        std::fs::write(&shard, &damaged).unwrap();
        let archive = Archive::open(&path).unwrap();
        let err = archive.get(0).unwrap_err();
        let loc = err.location().expect("a located error");
        assert_eq!(loc.shard, Some(0));
        assert!(loc.file.ends_with("shard-000000.shp"));
        assert!(loc.offset as usize <= pos, "{err}");
    }
}

#[test]
fn every_truncation_is_reported_never_a_panic() {
    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let samples = small_samples();
        write_archive(&path, tiny(compression), &samples);
        for (file, bytes) in files(&path) {
            for cut in 0..bytes.len() {
                std::fs::write(&file, &bytes[..cut]).unwrap();
                for mode in [VerifyMode::Quick, VerifyMode::Full] {
                    let report = verify(
                        &path,
                        &VerifyOptions {
                            mode,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    assert!(
                        !report.is_ok(),
                        "{} cut at {cut} not reported ({mode:?})",
                        file.display()
                    );
                    if !file.ends_with("manifest.json") {
                        assert!(!report.complete, "a truncated shard is not complete");
                    }
                }
                reads_never_lie(&path, &samples);
            }
            std::fs::write(&file, &bytes).unwrap();
        }
    }
}

#[test]
fn deleted_swapped_and_extra_shards_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let samples: Vec<OwnedSample> = (0..40)
        .map(|i| (format!("k{i:03}"), vec![("x".into(), noise(i, 90))]))
        .collect();
    write_archive(&a, tiny(Compression::None), &samples);
    write_archive(&b, tiny(Compression::None).archive_id([0x5A; 16]), &samples);
    let shard1 = a.join("shard-000001.shp");
    let original = std::fs::read(&shard1).unwrap();

    std::fs::remove_file(&shard1).unwrap();
    let report = verify(&a, &VerifyOptions::default()).unwrap();
    assert!(!report.complete);
    assert!(
        report.findings.iter().any(|f| f.file == shard1
            && matches!(
                f.defect,
                Some(Defect::Missing {
                    structure: Structure::ShardFile,
                    ..
                })
            )
            && f.ordinals.is_some()),
        "{:#?}",
        report.findings
    );
    assert!(reads_never_lie(&a, &samples) > 0);

    std::fs::copy(b.join("shard-000001.shp"), &shard1).unwrap();
    let report = verify(
        &a,
        &VerifyOptions {
            mode: VerifyMode::Quick,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        report.findings.iter().any(|f| matches!(
            &f.defect,
            Some(Defect::Mismatch {
                structure: Structure::ShardHeader,
                field,
                ..
            }) if field.starts_with("archive id")
        )),
        "{:#?}",
        report.findings
    );
    assert!(reads_never_lie(&a, &samples) > 0);

    std::fs::write(&shard1, &original).unwrap();
    std::fs::copy(&shard1, a.join("shard-000099.shp")).unwrap();
    // A shard file the manifest does not list changes nothing the archive holds: a
    // leftover, listed apart from the findings (format-spec.md §2, §11.3).
    let report = verify(&a, &VerifyOptions::default()).unwrap();
    assert!(report.is_ok(), "{:#?}", report.findings);
    assert!(
        report
            .leftovers
            .iter()
            .any(|l| l.path == a.join("shard-000099.shp")
                && l.kind == shardpack::LeftoverKind::UnlistedShard),
        "{:#?}",
        report.leftovers
    );
}

#[test]
fn expect_root_mismatch_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let m = write_archive(&path, tiny(Compression::None), &small_samples());
    let ok = verify(
        &path,
        &VerifyOptions {
            expect_root: Some(m.root.to_uppercase()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(ok.is_ok());
    let bad = verify(
        &path,
        &VerifyOptions {
            expect_root: Some("00".repeat(32)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bad.findings.len(), 1);
    assert!(
        matches!(
            bad.findings[0].defect,
            Some(Defect::Digest {
                structure: Structure::Manifest,
                ..
            })
        ),
        "{:?}",
        bad.findings
    );
}

/// A shard whose end (index, trailer or digest) is damaged yields its error once, and the
/// shards after it are still read in full by the sequential reader.
#[test]
fn scan_goes_on_after_a_shard_that_fails_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let samples: Vec<OwnedSample> = (0..40)
        .map(|i| (format!("k{i:03}"), vec![("x".into(), noise(i, 90))]))
        .collect();
    write_archive(&path, tiny(Compression::None), &samples);
    let shard0 = path.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard0).unwrap();
    let last = bytes.len() - 200; // in the index or the trailer's padding
    bytes[last] ^= 0x55;
    std::fs::write(&shard0, &bytes).unwrap();
    let archive = Archive::open(&path).unwrap();
    let results: Vec<_> = archive.scan().collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "one error for the damaged shard"
    );
    let first_of_1 = archive.manifest().shards[1].first_ordinal;
    let after: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|s| s.ordinal())
        .filter(|&o| o >= first_of_1)
        .collect();
    assert_eq!(
        after,
        (first_of_1..samples.len() as u64).collect::<Vec<_>>(),
        "every sample after the damaged shard"
    );
}
