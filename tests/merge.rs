//! Merging archives (§13.5): the output is an ordinary archive that verifies, holds the
//! inputs' samples in order, and differs from the inputs' shards only in the identity bytes
//! the spec lists; bad inputs are refused and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shardpack::{
    merge, Archive, Compression, Defect, ErrorKind, MediaProfile, MergeOptions, Structure,
    VerifyMode, VerifyOptions, WriterBuilder,
};

/// `n` samples under keys `prefix/00000`, ... with a text field and a noise field.
fn samples(prefix: &str, n: usize, seed: u64) -> Vec<OwnedSample> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}/{i:05}"),
                vec![
                    (
                        "json".to_string(),
                        format!(
                            r#"{{"id": {i}, "set": "{prefix}", "text": "the quick brown fox"}}"#
                        )
                        .into_bytes(),
                    ),
                    ("bin".to_string(), noise(seed + i as u64, 20 + (i % 90))),
                ],
            )
        })
        .collect()
}

/// Small text samples under `prefix`, the kind the ssd profile trains dictionaries on.
fn text(prefix: &str, n: usize) -> Vec<OwnedSample> {
    text_samples(n)
        .into_iter()
        .map(|(k, f)| (format!("{prefix}/{k}"), f))
        .collect()
}

/// A name, the options of input `id` and the samples under a prefix.
type Configuration = (
    &'static str,
    fn(u8) -> WriterBuilder,
    fn(&str) -> Vec<OwnedSample>,
);

/// Three option sets the merge must carry through unchanged: stored blocks, zstd blocks,
/// and the ssd profile with dictionaries (codec-2 blocks, 1.1 shards) and page placement.
fn configurations() -> Vec<Configuration> {
    vec![
        (
            "stored",
            |id| tiny(Compression::None).archive_id([id; 16]),
            |p| samples(p, 12, 7),
        ),
        (
            "zstd",
            |id| tiny(Compression::Zstd { level: 3 }).archive_id([id; 16]),
            |p| samples(p, 12, 9),
        ),
        (
            "ssd-dictionary",
            |id| {
                WriterBuilder::for_profile(MediaProfile::ssd())
                    .shard_size(64 << 10)
                    .dictionary(Some(1024))
                    .archive_id([id; 16])
            },
            |p| text(p, 300),
        ),
    ]
}

/// Writes one input per prefix with `builder(id)` (ids 1, 2, ...); returns their folders and
/// all their samples in order.
fn inputs(
    root: &Path,
    builder: fn(u8) -> WriterBuilder,
    make: fn(&str) -> Vec<OwnedSample>,
    prefixes: &[&str],
) -> (Vec<PathBuf>, Vec<OwnedSample>) {
    let mut dirs = Vec::new();
    let mut all = Vec::new();
    for (i, p) in prefixes.iter().enumerate() {
        let dir = root.join(format!("in-{p}"));
        let s = make(p);
        write_archive(&dir, builder(i as u8 + 1), &s);
        all.extend(s);
        dirs.push(dir);
    }
    (dirs, all)
}

fn verify_clean(dir: &Path) {
    for mode in [VerifyMode::Full, VerifyMode::Deep] {
        let report = shardpack::verify(
            dir,
            &VerifyOptions {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            report.is_ok() && report.complete,
            "{} {mode:?}: {:#?}",
            dir.display(),
            report.findings
        );
    }
}

#[test]
fn merging_two_and_three_archives_gives_an_archive_that_verifies_with_the_samples_in_order() {
    for (name, builder, make) in configurations() {
        for prefixes in [&["a", "b"][..], &["c", "a", "b"][..]] {
            let tmp = tempfile::tempdir().unwrap();
            let (dirs, want) = inputs(tmp.path(), builder, make, prefixes);
            let out = tmp.path().join("merged");
            let report = merge(&dirs, &out, &MergeOptions::new()).unwrap();
            verify_clean(&out);
            let archive = Archive::open(&out).unwrap();
            assert_eq!(read_all(&archive), want, "{name} {prefixes:?}");
            let m = archive.manifest();
            assert_eq!(&report.manifest, m);
            let input_shards: u64 = dirs
                .iter()
                .map(|d| Archive::open(d).unwrap().manifest().totals.shards)
                .sum();
            assert_eq!(m.totals.shards, input_shards);
            assert_eq!(
                report.shards_rewritten, input_shards,
                "a new id changes every shard"
            );
            assert_eq!(report.inputs.len(), prefixes.len());
            for key in ["a/00003", "b/text/00002", "c/00011"] {
                if let Some((_, fields)) = want.iter().find(|(k, _)| k == key) {
                    let got = archive.get_by_key(key).unwrap().expect("present");
                    assert_eq!(got.fields().count(), fields.len());
                }
            }
            if name == "ssd-dictionary" {
                assert_eq!(m.format_version, "1.1", "dictionary shards are 1.1");
            } else {
                assert_eq!(m.format_version, "1.0");
            }
        }
    }
}

/// Byte ranges a merge may change in a shard (§13.5), given its block header offsets and
/// its length.
fn identity_bytes(blocks: &[u64], len: u64) -> Vec<std::ops::Range<u64>> {
    let mut ranges = vec![16..48, 124..128];
    for &b in blocks {
        ranges.extend([b + 8..b + 12, b + 16..b + 24, b + 60..b + 64]);
    }
    let t = len - 128;
    ranges.extend([
        t + 16..t + 36,
        t + 48..t + 56,
        t + 92..t + 96,
        t + 124..t + 128,
    ]);
    ranges
}

#[test]
fn merged_shards_differ_from_the_inputs_only_in_identity_bytes() {
    for (name, builder, make) in configurations() {
        let tmp = tempfile::tempdir().unwrap();
        let (dirs, _) = inputs(tmp.path(), builder, make, &["a", "b"]);
        let out = tmp.path().join("merged");
        let _ = merge(&dirs, &out, &MergeOptions::new()).unwrap();
        let merged = Archive::open(&out).unwrap();
        let mut number = 0;
        for dir in &dirs {
            let input = Archive::open(dir).unwrap();
            for i in 0..input.shard_count() {
                let before = std::fs::read(input.shard_path(i).unwrap()).unwrap();
                let after = std::fs::read(merged.shard_path(number).unwrap()).unwrap();
                assert_eq!(before.len(), after.len());
                let shard = merged.shard(number).unwrap();
                let blocks: Vec<u64> = (0..shard.layout().block_count)
                    .map(|b| shard.block_entry(b).unwrap().offset)
                    .collect();
                let allowed = identity_bytes(&blocks, after.len() as u64);
                for (at, (x, y)) in before.iter().zip(&after).enumerate() {
                    if x != y {
                        assert!(
                            allowed.iter().any(|r| r.contains(&(at as u64))),
                            "{name}: shard {number} changed at byte {at}, outside the identity"
                        );
                    }
                }
                // The index region and every payload, byte for byte.
                let l = shard.layout();
                let index = l.index_offset as usize..(l.index_offset + l.index_len) as usize;
                assert_eq!(before[index.clone()], after[index], "{name}: index");
                for b in 0..l.block_count {
                    let e = shard.block_entry(b).unwrap();
                    let payload = (e.offset + 64) as usize..(e.offset + 64 + e.stored_len) as usize;
                    assert_eq!(before[payload.clone()], after[payload], "{name}: payload");
                }
                let header = shard.header();
                assert_eq!(header.shard_number as usize, number);
                assert_eq!(
                    header.first_ordinal,
                    merged.manifest().shards[number].first_ordinal
                );
                assert_eq!(
                    blake3::hash(&after).to_hex().as_str(),
                    merged.manifest().shards[number].blake3
                );
                number += 1;
            }
        }
    }
}

#[test]
fn the_first_inputs_id_keeps_its_shards_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (builder, make) = (configurations()[1].1, configurations()[1].2);
    let (dirs, want) = inputs(tmp.path(), builder, make, &["a", "b"]);
    let first = Archive::open(&dirs[0]).unwrap();
    let id = shardpack::manifest::parse_hex::<16>(&first.manifest().archive_id).unwrap();
    let out = tmp.path().join("merged");
    let report = merge(&dirs, &out, &MergeOptions::new().archive_id(id)).unwrap();
    assert_eq!(report.shards_unchanged, first.manifest().totals.shards);
    for (i, s) in first.manifest().shards.iter().enumerate() {
        assert_eq!(
            std::fs::read(first.shard_path(i).unwrap()).unwrap(),
            std::fs::read(out.join(&s.file)).unwrap()
        );
        assert_eq!(report.manifest.shards[i].blake3, s.blake3);
    }
    verify_clean(&out);
    assert_eq!(read_all(&Archive::open(&out).unwrap()), want);
}

#[test]
fn merging_is_deterministic_and_the_derived_id_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (builder, make) = (configurations()[2].1, configurations()[2].2);
    let (dirs, _) = inputs(tmp.path(), builder, make, &["a", "b"]);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let r1 = merge(&dirs, &one, &MergeOptions::new()).unwrap();
    let r2 = merge(&dirs, &two, &MergeOptions::new()).unwrap();
    assert_eq!(files(&one).len(), files(&two).len());
    for ((_, a), (_, b)) in files(&one).iter().zip(&files(&two)) {
        assert_eq!(a, b);
    }
    assert_eq!(r1.manifest.root, r2.manifest.root);
    for d in &dirs {
        assert_ne!(
            Archive::open(d).unwrap().manifest().archive_id,
            r1.archive_id
        );
    }
    // Another order is another archive, with another id.
    let reversed: Vec<&PathBuf> = dirs.iter().rev().collect();
    let three = tmp.path().join("three");
    let r3 = merge(&reversed, &three, &MergeOptions::new()).unwrap();
    assert_ne!(r3.archive_id, r1.archive_id);
}

#[test]
fn duplicate_keys_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_archive(&a, tiny(Compression::None), &samples("x", 10, 1));
    // One key of `a` among others, in the middle of b's second shard or so.
    let mut s = samples("y", 10, 2);
    s.insert(7, samples("x", 10, 1)[4].clone());
    s.sort_by(|p, q| p.0.cmp(&q.0));
    write_archive(&b, tiny(Compression::None), &s);
    let out = tmp.path().join("merged");
    let err = merge(&[&a, &b], &out, &MergeOptions::new()).unwrap_err();
    match err.kind() {
        ErrorKind::InvalidInput { subject, reason } => {
            assert!(subject.contains("x/00004"), "{subject}");
            assert!(reason.contains(&*a.to_string_lossy()), "{reason}");
            assert!(reason.contains(&*b.to_string_lossy()), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists());
    // The same archive twice is the same keys twice.
    let err = merge(&[&a, &a], &out, &MergeOptions::new()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn different_layouts_are_refused_naming_the_input_and_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    write_archive(&a, tiny(Compression::None), &samples("a", 3, 1));
    let cases: [(&str, WriterBuilder); 4] = [
        ("layout.align", tiny(Compression::None).align(128)),
        ("layout.block_size", tiny(Compression::None).block_size(200)),
        ("layout.compression", tiny(Compression::Zstd { level: 3 })),
        (
            "layout.profile",
            tiny(Compression::None).profile(MediaProfile::hdd()),
        ),
    ];
    for (i, (field, builder)) in cases.into_iter().enumerate() {
        let b = tmp.path().join(format!("b{i}"));
        write_archive(&b, builder, &samples("b", 3, 2));
        let out = tmp.path().join("merged");
        let err = merge(&[&a, &b], &out, &MergeOptions::new()).unwrap_err();
        match err.kind() {
            ErrorKind::InvalidInput { subject, reason } => {
                assert!(subject.contains(&*b.to_string_lossy()), "{subject}");
                assert!(reason.starts_with(field), "{field}: {reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!out.exists());
    }
}

/// A copy of `dir` at `to`.
fn copy_archive(dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (file, bytes) in files(dir) {
        std::fs::write(to.join(file.file_name().unwrap()), bytes).unwrap();
    }
}

#[test]
fn a_damaged_input_is_refused_with_the_file_and_offset_and_the_output_removed() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, builder, make) in configurations() {
        let (dirs, _) = inputs(&tmp.path().join(name), builder, make, &["a", "b"]);
        let b = Archive::open(&dirs[1]).unwrap();
        let last = b.shard_count() - 1;
        let shard = b.shard(last).unwrap();
        let entry = shard.block_entry(0).unwrap();
        let layout = *shard.layout();
        let path = b.shard_path(last).unwrap();
        // A payload byte, a block header byte, an index byte: each flipped in its own copy,
        // and reported within the structure it damaged.
        let payload = entry.offset + 64..entry.offset + 64 + entry.stored_len;
        let places = [
            ("payload", payload.start + entry.stored_len / 2, payload),
            (
                "block header",
                entry.offset + 30,
                entry.offset..entry.offset + 64,
            ),
            (
                "index",
                layout.index_offset + layout.index_len - 1,
                layout.index_offset..layout.index_offset + layout.index_len,
            ),
        ];
        for (what, at, structure) in places {
            let damaged = tmp
                .path()
                .join(format!("{name}-{}", what.replace(' ', "-")));
            copy_archive(&dirs[1], &damaged);
            let file = damaged.join(path.file_name().unwrap());
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[at as usize] ^= 0x10;
            std::fs::write(&file, bytes).unwrap();
            let out = tmp.path().join(format!("{name}-merged"));
            let err = merge(&[&dirs[0], &damaged], &out, &MergeOptions::new()).unwrap_err();
            assert!(err.is_corruption(), "{name} {what}: {err}");
            let location = err.location().expect("located");
            assert_eq!(location.file, file, "{name} {what}");
            assert_eq!(location.shard, Some(last as u32));
            assert!(
                structure.contains(&location.offset)
                    && (location.len == 0 || (location.offset..location.end()).contains(&at)),
                "{name} {what}: flipped {at} in {structure:?}, reported {location}"
            );
            assert!(!out.exists(), "{name} {what}: the output is removed");
        }
    }
}

#[test]
fn a_payload_flip_is_found_by_the_digest_and_then_located() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_archive(&a, tiny(Compression::None), &samples("a", 4, 1));
    write_archive(&b, tiny(Compression::None), &samples("b", 4, 2));
    let file = b.join("shard-000000.shp");
    let archive = Archive::open(&b).unwrap();
    let e = archive.shard(0).unwrap().block_entry(0).unwrap();
    let at = e.offset + 64 + 20;
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[at as usize] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    // An existing empty output folder: kept, emptied again.
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = merge(&[&a, &b], &out, &MergeOptions::new()).unwrap_err();
    match err.kind() {
        ErrorKind::Corrupt { location, defect } => {
            assert_eq!(location.file, file);
            assert!(
                matches!(
                    defect,
                    Defect::Crc {
                        structure: Structure::Record { .. } | Structure::BlockPayload { .. },
                        ..
                    }
                ),
                "{defect:?}"
            );
            assert!(location.offset <= at && at < location.end().max(location.offset + 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(out.is_dir());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn an_output_inside_an_input_and_a_non_empty_output_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_archive(&a, tiny(Compression::None), &samples("a", 3, 1));
    write_archive(&b, tiny(Compression::None), &samples("b", 3, 2));
    for out in [a.join("merged"), b.clone(), b.join("x/../y"), a.join(".")] {
        let err = merge(&[&a, &b], &out, &MergeOptions::new()).unwrap_err();
        match err.kind() {
            ErrorKind::InvalidInput { reason, .. } => {
                assert!(
                    reason.contains("inside the input"),
                    "{}: {reason}",
                    out.display()
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!a.join("merged").exists());
    assert!(!b.join("y").exists());
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let err = merge(&[&a, &b], &full, &MergeOptions::new()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
}

#[test]
fn empty_inputs_add_nothing_and_split_inputs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let empty = tmp.path().join("empty");
    write_archive(&a, tiny(Compression::None), &samples("a", 5, 1));
    write_archive(&empty, tiny(Compression::None), &[]);
    let out = tmp.path().join("merged");
    let _ = merge(&[&empty, &a, &empty], &out, &MergeOptions::new()).unwrap();
    verify_clean(&out);
    assert_eq!(read_all(&Archive::open(&out).unwrap()), samples("a", 5, 1));
    let only_empty = tmp.path().join("only-empty");
    let report = merge(&[&empty], &only_empty, &MergeOptions::new()).unwrap();
    assert_eq!(report.manifest.totals.shards, 0);
    verify_clean(&only_empty);

    let split = tmp.path().join("split");
    write_archive(
        &split,
        tiny(Compression::None).volume_size(Some(2 << 20)),
        &samples("s", 3, 3),
    );
    let err = merge(&[&a, &split], tmp.path().join("m2"), &MergeOptions::new()).unwrap_err();
    match err.kind() {
        ErrorKind::InvalidInput { reason, .. } => assert!(reason.contains("volumes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let none: [&Path; 0] = [];
    assert!(merge(&none, tmp.path().join("m3"), &MergeOptions::new()).is_err());
}

#[test]
fn a_merged_archive_merges_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (builder, make) = (configurations()[0].1, configurations()[0].2);
    let (dirs, want) = inputs(tmp.path(), builder, make, &["a", "b", "c"]);
    let ab = tmp.path().join("ab");
    let _ = merge(&dirs[..2], &ab, &MergeOptions::new()).unwrap();
    let abc = tmp.path().join("abc");
    let _ = merge(&[&ab, &dirs[2]], &abc, &MergeOptions::new()).unwrap();
    verify_clean(&abc);
    assert_eq!(read_all(&Archive::open(&abc).unwrap()), want);
}
