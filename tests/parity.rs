//! Reed-Solomon parity: damage within the budget is repaired byte-identically (bit flips,
//! zeroed sectors, a lost 64 KiB block, a whole deleted shard); damage beyond it is
//! reported precisely, with the parity that would have been needed; the root digest is
//! unchanged by protecting.

mod common;

use std::path::Path;

use common::*;
use shardpack::{
    protect, repair, verify, Compression, Defect, MediaProfile, Structure, VerifyOptions,
    WriterBuilder,
};

fn archive(dir: &Path) -> (Vec<OwnedSample>, shardpack::Manifest) {
    let samples: Vec<OwnedSample> = (0..90)
        .map(|i| {
            (
                format!("k/{i:03}"),
                vec![
                    ("bin".into(), noise(i, 2_000 + (i as usize * 997) % 9_000)),
                    ("txt".into(), format!("label {i}").into_bytes()),
                ],
            )
        })
        .collect();
    let builder = WriterBuilder::for_profile(MediaProfile::ssd())
        .shard_size(200 << 10)
        .compression(Compression::None);
    let m = write_archive(dir, builder, &samples);
    (samples, m)
}

fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|(p, _)| !p.ends_with(shardpack::PARITY_FILE))
        .collect()
}

fn assert_restored(dir: &Path, before: &[(std::path::PathBuf, Vec<u8>)]) {
    let after = snapshot(dir);
    assert_eq!(after.len(), before.len());
    for ((p, a), (_, b)) in after.iter().zip(before) {
        assert!(a == b, "{} differs after repair", p.display());
    }
    assert!(verify(dir, &VerifyOptions::default()).unwrap().is_ok());
}

#[test]
fn damage_within_the_budget_is_repaired_byte_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let (samples, manifest) = archive(&dir);
    // 20%: the damage below reaches 19 of about 160 chunks in one stripe.
    let report = protect(&dir, 20.0).unwrap();
    assert_eq!(report.folders.len(), 1);
    assert_eq!(
        shardpack::Archive::open(&dir).unwrap().root_digest(),
        manifest.root,
        "protecting leaves the root alone"
    );
    let pristine = snapshot(&dir);
    let shards: Vec<_> = pristine
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "shp"))
        .cloned()
        .collect();
    assert!(shards.len() >= 3);

    // Bit flips in several shards and in the manifest.
    for (n, (path, bytes)) in shards.iter().enumerate() {
        let mut b = bytes.clone();
        let at = (n * 7919) % b.len();
        b[at] ^= 0x20;
        std::fs::write(path, &b).unwrap();
    }
    let (mpath, mbytes) = pristine
        .iter()
        .find(|(p, _)| p.ends_with("manifest.json"))
        .unwrap();
    let mut m = mbytes.clone();
    m[40] ^= 0x01;
    std::fs::write(mpath, &m).unwrap();
    let status = shardpack::parity_status(&dir).unwrap().unwrap();
    assert!(
        status[0].recoverable && status[0].damaged_chunks >= 4,
        "{status:?}"
    );
    let fixed = repair(&dir).unwrap();
    assert!(fixed.complete() && fixed.repaired.len() >= 4, "{fixed:#?}");
    assert_restored(&dir, &pristine);

    // A zeroed 64 KiB run and scattered 2048-byte sectors.
    let (path, bytes) = &shards[1];
    let mut b = bytes.clone();
    let start = b.len() / 3;
    let end = start + (64 << 10).min(b.len() - start);
    b[start..end].fill(0);
    std::fs::write(path, &b).unwrap();
    let (path2, bytes2) = &shards[0];
    let mut b2 = bytes2.clone();
    for s in [0usize, 5, 9] {
        let len = b2.len();
        let at = (s * 2048) % len;
        b2[at..(at + 2048).min(len)].fill(0xAA);
    }
    std::fs::write(path2, &b2).unwrap();
    assert!(!verify(&dir, &VerifyOptions::default()).unwrap().is_ok());
    let fixed = repair(&dir).unwrap();
    assert!(fixed.complete(), "{fixed:#?}");
    assert_restored(&dir, &pristine);
    assert_eq!(read_all(&shardpack::Archive::open(&dir).unwrap()), samples);
}

#[test]
fn a_whole_lost_shard_is_rebuilt_when_the_budget_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let _ = protect(&dir, 60.0).unwrap();
    let pristine = snapshot(&dir);
    let shard = pristine
        .iter()
        .find(|(p, _)| p.ends_with("shard-000001.shp"))
        .unwrap()
        .0
        .clone();
    std::fs::remove_file(&shard).unwrap();
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(!report.complete);
    assert_eq!(report.recoverable, Some(true), "{report:#?}");
    let fixed = repair(&dir).unwrap();
    assert!(fixed.complete(), "{fixed:#?}");
    assert_restored(&dir, &pristine);
}

#[test]
fn damage_beyond_the_budget_is_reported_with_what_was_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let _ = protect(&dir, 3.0).unwrap();
    let before = snapshot(&dir);
    let shard = before
        .iter()
        .find(|(p, _)| p.ends_with("shard-000001.shp"))
        .unwrap()
        .0
        .clone();
    std::fs::remove_file(&shard).unwrap();
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert_eq!(report.recoverable, Some(false));
    let result = repair(&dir).unwrap();
    assert!(!result.complete());
    assert!(result.lost.iter().any(|r| r.file == shard), "{result:#?}");
    assert!(result.status[0].more_layers_needed > 0);
    assert!(!shard.exists(), "nothing half-rebuilt is left behind");
    // Other files were not touched.
    for (p, b) in &before {
        if *p != shard {
            assert_eq!(&std::fs::read(p).unwrap(), b);
        }
    }
}

#[test]
fn damaged_parity_is_an_erasure_not_a_disaster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let _ = protect(&dir, 10.0).unwrap();
    let pristine = snapshot(&dir);
    let parity = dir.join(shardpack::PARITY_FILE);
    let mut p = std::fs::read(&parity).unwrap();
    // The header at the start is lost: the copy at the end is used.
    p[..128].fill(0);
    let mid = p.len() / 2;
    p[mid] ^= 0xFF;
    std::fs::write(&parity, &p).unwrap();
    let (path, bytes) = pristine
        .iter()
        .find(|(p, _)| p.ends_with("shard-000000.shp"))
        .unwrap();
    let mut b = bytes.clone();
    b[5000] ^= 1;
    std::fs::write(path, &b).unwrap();
    let status = shardpack::parity_status(&dir).unwrap().unwrap();
    assert!(status[0].damaged_parity_chunks >= 1);
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    let f = report
        .findings
        .iter()
        .find(|f| {
            f.file == parity
                && f.defect.as_ref().map(Defect::structure) == Some(Structure::ParityChunks)
        })
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert!(f.expected.contains("BLAKE3-64 digest"), "{f:?}");
    assert!(repair(&dir).unwrap().complete());
    assert_restored(&dir, &pristine);
}

#[test]
fn lost_ranges_name_the_samples_they_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let (_, manifest) = archive(&dir);
    let _ = protect(&dir, 3.0).unwrap();
    // Far more damage than 3% can repair, in the middle of shard 1's data: its header,
    // trailer and index still read, so the lost samples are named.
    let shard = dir.join("shard-000001.shp");
    let mut b = std::fs::read(&shard).unwrap();
    let len = b.len();
    b[len / 4..len / 2].fill(0xEE);
    std::fs::write(&shard, &b).unwrap();
    let result = repair(&dir).unwrap();
    assert!(!result.complete());
    let first = manifest.shards[1].first_ordinal;
    let last = first + manifest.shards[1].samples - 1;
    let named = result
        .lost
        .iter()
        .filter(|r| r.file == shard)
        .filter_map(|r| r.ordinals)
        .collect::<Vec<_>>();
    assert!(!named.is_empty(), "{result:#?}");
    for [a, z] in named {
        assert!(
            first <= a && a <= z && z <= last,
            "{a}..={z} outside shard 1's {first}..={last}"
        );
    }
}

#[test]
fn a_parity_file_of_another_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    archive(&a);
    let samples: Vec<OwnedSample> = (0..90)
        .map(|i| {
            (
                format!("k/{i:03}"),
                vec![("bin".into(), noise(i + 1000, 5000))],
            )
        })
        .collect();
    write_archive(
        &b,
        WriterBuilder::for_profile(MediaProfile::ssd())
            .shard_size(200 << 10)
            .compression(Compression::None)
            .archive_id([0xBB; 16]),
        &samples,
    );
    let _ = protect(&b, 100.0).unwrap();
    let pristine = snapshot(&a);
    std::fs::copy(
        b.join(shardpack::PARITY_FILE),
        a.join(shardpack::PARITY_FILE),
    )
    .unwrap();
    let report = repair(&a).unwrap();
    assert!(!report.complete());
    match &report.status[0].parity_file {
        shardpack::ParityFileState::Unusable { error } => {
            assert!(error.contains("another archive"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    for (p, bytes) in &pristine {
        assert_eq!(
            &std::fs::read(p).unwrap(),
            bytes,
            "{} was changed",
            p.display()
        );
    }
}

#[test]
fn parity_for_a_few_hundred_chunks_reads_back() {
    // k·(L − 1) < N ≤ k·L with N between 201 and 398: the geometry a loader must accept.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let samples: Vec<OwnedSample> = (0..300)
        .map(|i| (format!("s{i:04}"), vec![("bin".into(), noise(i, 4000))]))
        .collect();
    write_archive(
        &dir,
        WriterBuilder::for_profile(MediaProfile::ssd()).compression(Compression::None),
        &samples,
    );
    let _ = protect(&dir, 10.0).unwrap();
    let status = shardpack::parity_status(&dir).unwrap().unwrap();
    assert!(status[0].recoverable && status[0].damaged_chunks == 0);
    // One table copy damaged: the other is used.
    let parity = dir.join(shardpack::PARITY_FILE);
    let mut p = std::fs::read(&parity).unwrap();
    let len = p.len();
    let tables_offset = u64::from_le_bytes(p[64..72].try_into().unwrap()) as usize;
    let tables_len = u64::from_le_bytes(p[72..80].try_into().unwrap()) as usize;
    assert_eq!(
        tables_offset + 2 * tables_len + 128,
        len,
        "two copies of the tables, then the header"
    );
    p[tables_offset + 3] ^= 0xFF;
    std::fs::write(&parity, &p).unwrap();
    assert!(
        shardpack::parity_status(&dir).unwrap().is_some(),
        "the second copy is used"
    );
    p[tables_offset + tables_len + 3] ^= 0xFF;
    std::fs::write(&parity, &p).unwrap();
    assert!(
        shardpack::parity_status(&dir).is_err(),
        "with both copies damaged the parity is unusable"
    );
}

/// The parity file's fields this test needs: `(tables_offset, tables_len)`.
fn tables_of(parity: &[u8]) -> (usize, usize) {
    let h =
        shardpack::format::parity::ParityHeader::decode(parity[..128].try_into().unwrap()).unwrap();
    (h.tables_offset as usize, h.tables_len as usize)
}

#[test]
fn damaged_redundant_parts_of_the_parity_file_are_reported_and_repaired() {
    use shardpack::format::parity::ParityHeader;
    use shardpack::ParityPart;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let _ = protect(&dir, 10.0).unwrap();
    let path = dir.join(shardpack::PARITY_FILE);
    let pristine = std::fs::read(&path).unwrap();
    let len = pristine.len();
    let (tables_offset, tables_len) = tables_of(&pristine);
    // A trailing header copy that decodes but names another root: not byte-identical.
    let mut other = ParityHeader::decode(pristine[..128].try_into().unwrap()).unwrap();
    other.root[0] ^= 0xFF;
    let other = other.encode();
    assert!(ParityHeader::decode(&other).is_ok());
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, ParityPart, u64, u64)> = vec![
        (
            "a flipped byte in the header copy",
            Box::new(move |p: &mut Vec<u8>| p[len - 100] ^= 0x10),
            ParityPart::HeaderCopy,
            (len - 128) as u64,
            128,
        ),
        (
            "a header copy that decodes but differs",
            Box::new(move |p: &mut Vec<u8>| p[len - 128..].copy_from_slice(&other)),
            ParityPart::HeaderCopy,
            (len - 128) as u64,
            128,
        ),
        (
            "a non-zero byte in the gap",
            Box::new(|p: &mut Vec<u8>| p[1000] = 7),
            ParityPart::ZeroGap,
            1000,
            4096 - 1000,
        ),
        (
            "a flipped byte in the second tables copy",
            Box::new(move |p: &mut Vec<u8>| p[tables_offset + tables_len + 5] ^= 0x01),
            ParityPart::TablesCopy,
            (tables_offset + tables_len) as u64,
            tables_len as u64,
        ),
        (
            "a flipped byte in the first tables copy",
            Box::new(move |p: &mut Vec<u8>| p[tables_offset + 5] ^= 0x01),
            ParityPart::Tables,
            tables_offset as u64,
            tables_len as u64,
        ),
    ];
    for (name, damage, part, offset, part_len) in cases {
        let mut p = pristine.clone();
        damage(&mut p);
        std::fs::write(&path, &p).unwrap();
        let report = verify(&dir, &VerifyOptions::default()).unwrap();
        let found: Vec<_> = report.findings.iter().collect();
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        let f = found[0];
        assert_eq!(
            (
                f.file.as_path(),
                f.offset,
                f.len,
                f.defect.as_ref().map(Defect::structure)
            ),
            (path.as_path(), offset, part_len, Some(part.structure())),
            "{name}"
        );
        assert!(report.complete, "{name}");
        assert_eq!(report.recoverable, Some(true), "{name}");
        assert_eq!(
            report.parity.as_ref().unwrap()[0].damaged_parts[0].part,
            part,
            "{name}"
        );
        // The data is whole: repair rewrites the parity file, and only it.
        let fixed = repair(&dir).unwrap();
        assert_eq!(fixed.files_rewritten, vec![path.clone()], "{name}");
        assert_eq!(std::fs::read(&path).unwrap(), pristine, "{name}");
    }
}

/// Two archives with the same id and the same sizes but other bytes: without the root and
/// file table checks, 100% parity would "repair" every file of `a` into `b`'s.
fn twins(
    tmp: &Path,
) -> (
    std::path::PathBuf,
    shardpack::Manifest,
    std::path::PathBuf,
    shardpack::Manifest,
) {
    let a = tmp.join("a");
    let b = tmp.join("b");
    let builder = || {
        WriterBuilder::for_profile(MediaProfile::ssd())
            .shard_size(200 << 10)
            .compression(Compression::None)
            .archive_id([0xAA; 16])
    };
    let samples = |seed: u64| -> Vec<OwnedSample> {
        (0..60)
            .map(|i| {
                (
                    format!("k/{i:03}"),
                    vec![("bin".into(), noise(seed + i, 5000))],
                )
            })
            .collect()
    };
    let ma = write_archive(&a, builder(), &samples(0));
    let mb = write_archive(&b, builder(), &samples(1000));
    assert_eq!(ma.archive_id, mb.archive_id);
    assert_eq!(ma.shards[0].size, mb.shards[0].size);
    assert_ne!(ma.shards[0].blake3, mb.shards[0].blake3);
    (a, ma, b, mb)
}

#[test]
fn a_parity_file_of_other_contents_with_the_same_archive_id_is_refused_by_its_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, ma, b, mb) = twins(tmp.path());
    let _ = protect(&b, 100.0).unwrap();
    std::fs::copy(
        b.join(shardpack::PARITY_FILE),
        a.join(shardpack::PARITY_FILE),
    )
    .unwrap();
    // Damage in `a` that `b`'s parity would "repair" into `b`'s bytes.
    let shard = a.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let pristine = files(&a);
    let parity = a.join(shardpack::PARITY_FILE);
    let fixed = repair(&a).unwrap();
    assert!(!fixed.complete() && fixed.files_rewritten.is_empty());
    assert!(
        matches!(
            &fixed.status[0].parity_file,
            shardpack::ParityFileState::Unusable { error } if error.contains("other contents")
        ),
        "{fixed:#?}"
    );
    assert_eq!(files(&a), pristine, "repair changed nothing");
    let report = verify(&a, &VerifyOptions::default()).unwrap();
    assert_eq!(
        report.recoverable,
        Some(false),
        "a parity file that does not load"
    );
    let f = report
        .findings
        .iter()
        .find(|f| f.file == parity)
        .expect("the parity file is a finding");
    assert_eq!((f.offset, f.len), (84, 32), "at the header's root");
    assert!(
        matches!(
            &f.defect,
            Some(Defect::Mismatch {
                structure: Structure::ParityHeader,
                field,
                ..
            }) if field.starts_with("root")
        ),
        "{f:?}"
    );
    assert!(f.expected.contains(&ma.root), "{f:?}");
    assert!(f.found.contains(&mb.root), "{f:?}");
}

/// Rewrites both copies of the parity header of `path` through `change`, resealed.
fn reseal_header(path: &Path, change: impl Fn(&mut shardpack::format::parity::ParityHeader)) {
    use shardpack::format::parity::ParityHeader;
    let mut p = std::fs::read(path).unwrap();
    let mut h = ParityHeader::decode(p[..128].try_into().unwrap()).unwrap();
    change(&mut h);
    let b = h.encode();
    let len = p.len();
    p[..128].copy_from_slice(&b);
    p[len - 128..].copy_from_slice(&b);
    std::fs::write(path, &p).unwrap();
}

/// Rewrites both copies of the tables of `path` through `change`, with `tables_crc` and
/// both header copies resealed.
fn reseal_tables(path: &Path, change: impl Fn(&mut [u8])) {
    let mut p = std::fs::read(path).unwrap();
    let (t, tl) = tables_of(&p);
    let mut tables = p[t..t + tl].to_vec();
    change(&mut tables);
    p[t..t + tl].copy_from_slice(&tables);
    p[t + tl..t + 2 * tl].copy_from_slice(&tables);
    std::fs::write(path, &p).unwrap();
    let crc = shardpack::format::checksum::crc32(&tables);
    reseal_header(path, |h| h.tables_crc = crc);
}

#[test]
fn a_parity_file_of_other_files_with_the_right_root_is_refused_by_its_file_table() {
    // `b` is `a` with shard 0 zeroed (the same manifest, so the same root), protected as it
    // is: its parity describes shard 0 as zeros.
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let (_, manifest) = archive(&a);
    let b = tmp.path().join("b");
    std::fs::create_dir(&b).unwrap();
    for (p, bytes) in files(&a) {
        std::fs::write(b.join(p.file_name().unwrap()), bytes).unwrap();
    }
    let zeroed = vec![0u8; manifest.shards[0].size as usize];
    std::fs::write(b.join("shard-000000.shp"), &zeroed).unwrap();
    let _ =
        shardpack::protect_with(&b, &shardpack::ProtectOptions::new(100.0).as_is(true)).unwrap();
    std::fs::copy(
        b.join(shardpack::PARITY_FILE),
        a.join(shardpack::PARITY_FILE),
    )
    .unwrap();
    let pristine = files(&a);
    let fixed = repair(&a).unwrap();
    assert!(!fixed.complete() && fixed.files_rewritten.is_empty());
    assert!(
        matches!(
            &fixed.status[0].parity_file,
            shardpack::ParityFileState::Unusable { error } if error.contains("other files")
        ),
        "{fixed:#?}"
    );
    assert_eq!(files(&a), pristine, "repair changed nothing");
}

#[test]
fn a_forged_parity_file_that_describes_a_shard_as_zeros_overwrites_nothing() {
    // The forgery keeps every file table entry (so the root and the file table check), but
    // its chunk digests and parity describe shard 0 as zeros: repair finds shard 0 damaged
    // and rebuilds zeros, whose BLAKE3 is not the one binding the shard.
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let (_, manifest) = archive(&a);
    let _ = protect(&a, 100.0).unwrap();
    let genuine = std::fs::read(a.join(shardpack::PARITY_FILE)).unwrap();
    let b = tmp.path().join("b");
    std::fs::create_dir(&b).unwrap();
    for (p, bytes) in files(&a) {
        std::fs::write(b.join(p.file_name().unwrap()), bytes).unwrap();
    }
    std::fs::write(
        b.join("shard-000000.shp"),
        vec![0u8; manifest.shards[0].size as usize],
    )
    .unwrap();
    let _ =
        shardpack::protect_with(&b, &shardpack::ProtectOptions::new(100.0).as_is(true)).unwrap();
    let forged = a.join(shardpack::PARITY_FILE);
    std::fs::copy(b.join(shardpack::PARITY_FILE), &forged).unwrap();
    // The genuine file table (names, sizes, BLAKE3s) in front of the zeros' digests.
    let (t, _) = tables_of(&genuine);
    let table_len: usize = files(&a)
        .iter()
        .filter(|(p, _)| !p.ends_with(shardpack::PARITY_FILE))
        .map(|(p, _)| 42 + p.file_name().unwrap().len())
        .sum();
    let genuine_table = genuine[t..t + table_len].to_vec();
    reseal_tables(&forged, |tables| {
        tables[..table_len].copy_from_slice(&genuine_table)
    });
    let before = files(&a);
    let status = shardpack::parity_status(&a).unwrap().unwrap();
    assert!(
        status[0].damaged_chunks > 0,
        "shard 0 looks damaged: {status:?}"
    );
    let fixed = repair(&a).unwrap();
    assert!(!fixed.complete(), "{fixed:#?}");
    assert!(fixed.files_rewritten.is_empty(), "{fixed:#?}");
    let shard = a.join("shard-000000.shp");
    assert!(
        fixed
            .refused
            .iter()
            .any(|r| r.file == shard && r.reason.contains("BLAKE3")),
        "{fixed:#?}"
    );
    assert_eq!(files(&a), before, "nothing overwritten");
    let leftovers: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".repair"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_manifest_is_written_back_only_if_it_hashes_to_the_parity_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let _ = protect(&dir, 20.0).unwrap();
    let pristine = snapshot(&dir);
    let parity = dir.join(shardpack::PARITY_FILE);
    let genuine = std::fs::read(&parity).unwrap();
    let damage = || {
        for (name, at) in [("manifest.json", 40), ("shard-000001.shp", 7000)] {
            let path = dir.join(name);
            let mut b = std::fs::read(&path).unwrap();
            b[at] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
        }
    };
    // A parity header naming another root: with the manifest damaged nothing compares it
    // up front, so the rebuilt manifest is checked against it, and fails; then no shard is
    // bound by a manifest whose root checks, and none is written either.
    damage();
    reseal_header(&parity, |h| h.root[0] ^= 0xFF);
    let damaged = files(&dir);
    let fixed = repair(&dir).unwrap();
    assert!(
        !fixed.complete() && fixed.files_rewritten.is_empty(),
        "{fixed:#?}"
    );
    let reasons: Vec<(&Path, &str)> = fixed
        .refused
        .iter()
        .map(|r| (r.file.as_path(), r.reason.as_str()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(f, r)| f.ends_with("manifest.json") && r.contains("root")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(f, r)| f.ends_with("shard-000001.shp")
                && r.contains("no manifest whose root checks")),
        "{reasons:?}"
    );
    assert_eq!(files(&dir), damaged, "nothing written");
    // With the genuine parity file the same damage is repaired, manifest included.
    std::fs::write(&parity, &genuine).unwrap();
    let fixed = repair(&dir).unwrap();
    assert!(fixed.complete() && fixed.refused.is_empty(), "{fixed:#?}");
    assert_eq!(fixed.files_rewritten.len(), 2, "{fixed:#?}");
    assert_restored(&dir, &pristine);
}

#[test]
fn protect_refuses_a_damaged_archive_unless_told_to_protect_it_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let shard = dir.join("shard-000001.shp");
    let mut b = std::fs::read(&shard).unwrap();
    b[6000] ^= 0x08;
    std::fs::write(&shard, &b).unwrap();
    let err = protect(&dir, 10.0).expect_err("a damaged archive is refused");
    assert!(err.is_corruption(), "{err}");
    let at = err.location().expect("located");
    assert_eq!(at.file, shard, "{err}");
    assert!(!dir.join(shardpack::PARITY_FILE).exists());
    assert!(!dir.join("parity.spp.partial").exists());
    // As it is: the parity records the damaged bytes, which no longer match the manifest,
    // so the parity file cannot be used on this archive (§17.5 rule 5).
    let report =
        shardpack::protect_with(&dir, &shardpack::ProtectOptions::new(10.0).as_is(true)).unwrap();
    assert_eq!(report.folders.len(), 1);
    assert!(dir.join(shardpack::PARITY_FILE).exists());
    // Findings about the parity file being replaced, and leftovers of protect and repair,
    // do not make protect refuse.
    std::fs::write(&shard, {
        b[6000] ^= 0x08;
        &b
    })
    .unwrap();
    std::fs::write(dir.join("parity.spp.partial"), b"left over").unwrap();
    std::fs::write(dir.join("shard-000000.shp.repair"), b"left over").unwrap();
    let _ = protect(&dir, 10.0).unwrap();
    std::fs::remove_file(dir.join("shard-000000.shp.repair")).unwrap();
    assert!(verify(&dir, &VerifyOptions::default()).unwrap().is_ok());
}

#[test]
fn leftovers_of_protect_and_repair_are_listed_apart_including_names_that_are_not_utf8() {
    use shardpack::LeftoverKind;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    archive(&dir);
    let quick = VerifyOptions {
        mode: shardpack::VerifyMode::Quick,
        ..VerifyOptions::default()
    };
    // What interrupted commands leave is listed, and changes nothing the archive holds: it
    // stays valid and complete (format-spec.md §2, §11.3).
    let cases: [(&[u8], LeftoverKind); 5] = [
        (b"parity.spp.partial", LeftoverKind::Partial),
        (b"shard-000000.shp.repair", LeftoverKind::Repair),
        (b"manifest.json.repair", LeftoverKind::Repair),
        (b"shard-000001.shp\xff.partial", LeftoverKind::Partial),
        (b"\xfe\xffx.repair", LeftoverKind::Repair),
    ];
    for (name, kind) in cases {
        let path = dir.join(OsStr::from_bytes(name));
        std::fs::write(&path, b"left over").unwrap();
        for options in [&quick, &VerifyOptions::default()] {
            let report = verify(&dir, options).unwrap();
            assert!(
                report.findings.is_empty(),
                "{name:?}: {:#?}",
                report.findings
            );
            assert!(report.is_ok() && report.complete, "{name:?}");
            assert_eq!(report.leftovers.len(), 1, "{name:?}");
            assert_eq!(report.leftovers[0].path, path, "{name:?}");
            assert_eq!(report.leftovers[0].kind, kind, "{name:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert!(verify(&dir, &quick).unwrap().leftovers.is_empty());
}
