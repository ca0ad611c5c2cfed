//! Generations (format-spec.md §11.3): appending, reading and verifying every generation,
//! the chain, leftovers and gc, and a parity file that an append makes stale.

mod common;

use std::path::Path;

use shardpack::{Archive, ErrorKind, LeftoverKind, VerifyOptions, WriterBuilder};

fn key(generation: u32, i: u32) -> String {
    format!("g{generation}/{i:04}")
}

fn data(generation: u32, i: u32) -> Vec<u8> {
    common::noise(
        u64::from(generation) * 1000 + u64::from(i),
        300 + (i as usize % 7) * 50,
    )
}

/// Writes generation 1 with `builder`, then appends generations 2 and 3.
fn three_generations(dir: &Path, builder: WriterBuilder) {
    let mut writer = builder.create(dir).unwrap();
    for i in 0..40 {
        writer.append(&key(1, i), &[("bin", &data(1, i))]).unwrap();
    }
    writer.finish().unwrap();
    for generation in 2..=3 {
        let mut writer = WriterBuilder::new().append(dir).unwrap();
        for i in 0..25 {
            writer
                .append(&key(generation, i), &[("bin", &data(generation, i))])
                .unwrap();
        }
        let manifest = writer.finish().unwrap();
        assert_eq!(manifest.generation_number(), u64::from(generation));
    }
}

fn samples_of(archive: &Archive) -> Vec<(String, Vec<u8>)> {
    archive
        .iter()
        .map(|s| {
            let s = s.unwrap();
            (s.key().to_string(), s.field("bin").unwrap().to_vec())
        })
        .collect()
}

fn expected(up_to: u32) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = (0..40).map(|i| (key(1, i), data(1, i))).collect();
    for generation in 2..=up_to {
        out.extend((0..25).map(|i| (key(generation, i), data(generation, i))));
    }
    out
}

fn verify(dir: &Path) -> shardpack::VerifyReport {
    shardpack::verify(dir, &VerifyOptions::default()).unwrap()
}

#[test]
fn every_generation_reads_and_the_chain_verifies() {
    for builder in [
        WriterBuilder::new().shard_size(8 << 10),
        WriterBuilder::new()
            .shard_size(8 << 10)
            .compression(shardpack::Compression::None),
        WriterBuilder::for_profile(shardpack::MediaProfile::ssd()).shard_size(16 << 10),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        three_generations(&path, builder);
        for generation in 1..=3u32 {
            let archive = Archive::options()
                .generation(u64::from(generation))
                .open(&path)
                .unwrap();
            assert_eq!(archive.generation(), u64::from(generation));
            assert_eq!(samples_of(&archive), expected(generation));
        }
        let current = Archive::open(&path).unwrap();
        assert_eq!(current.generation(), 3);
        let report = verify(&path);
        assert!(report.valid, "{:?}", report.findings);
        assert_eq!(report.generations, 3);
        let deep = shardpack::verify(
            &path,
            &VerifyOptions {
                mode: shardpack::VerifyMode::Deep,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert!(deep.valid, "{:?}", deep.findings);
        // Generation 2's manifest names generation 1's root, and so on.
        let one = shardpack::Manifest::load_generation(&path, 1, &Default::default()).unwrap();
        let two = shardpack::Manifest::load_generation(&path, 2, &Default::default()).unwrap();
        assert_eq!(two.generation.as_ref().unwrap().parent, one.root);
        assert_eq!(
            current.manifest().generation.as_ref().unwrap().parent,
            two.root
        );
        assert!(matches!(
            Archive::options()
                .generation(4)
                .open(&path)
                .err()
                .unwrap()
                .kind(),
            ErrorKind::Incomplete { .. }
        ));
    }
}

#[test]
fn a_key_of_an_earlier_generation_is_refused_and_the_archive_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    three_generations(&path, WriterBuilder::new().shard_size(8 << 10));
    let root = Archive::open(&path).unwrap().root_digest().to_string();
    let mut writer = WriterBuilder::new().append(&path).unwrap();
    writer.append("new/0", &[("bin", b"x")]).unwrap();
    let err = writer.append(&key(1, 7), &[("bin", b"y")]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
    drop(writer);
    assert_eq!(Archive::open(&path).unwrap().root_digest(), root);
    assert!(verify(&path).valid);
}

#[test]
fn a_damaged_or_missing_earlier_generation_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    three_generations(&path, WriterBuilder::new().shard_size(8 << 10));
    let kept = path.join("manifest-000001.json");
    let original = std::fs::read(&kept).unwrap();
    // Another generation 1 (one sample fewer): valid alone, but not the parent named.
    let mut other = shardpack::Manifest::parse(&original, &kept).unwrap();
    other.shards.pop();
    other.totals.shards -= 1;
    other.totals.samples = other.shards.iter().map(|s| s.samples).sum();
    other.totals.bytes = other.shards.iter().map(|s| s.size).sum();
    other.totals.raw_bytes = other.shards.iter().map(|s| s.raw_bytes).sum();
    other.root = other.compute_root();
    std::fs::write(&kept, other.to_canonical_bytes()).unwrap();
    let report = verify(&path);
    assert!(!report.valid);
    assert!(
        report.findings.iter().any(|f| f.file == kept),
        "{:?}",
        report.findings
    );
    std::fs::remove_file(&kept).unwrap();
    let report = verify(&path);
    assert!(!report.valid && !report.complete);
    assert!(report.findings.iter().any(|f| f.file == kept));
    std::fs::write(&kept, &original).unwrap();
    assert!(verify(&path).valid);
}

#[test]
fn leftovers_do_not_make_an_archive_invalid_and_gc_removes_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    three_generations(&path, WriterBuilder::new().shard_size(8 << 10));
    let before: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let shards = Archive::open(&path).unwrap().shard_count();
    let leftovers = [
        (
            format!("shard-{shards:06}.shp.partial"),
            LeftoverKind::Partial,
        ),
        (
            format!("shard-{:06}.shp", shards + 1),
            LeftoverKind::UnlistedShard,
        ),
        (
            "manifest-000004.json".to_string(),
            LeftoverKind::LaterGeneration,
        ),
        ("shard-000001.shp.repair".to_string(), LeftoverKind::Repair),
    ];
    for (name, _) in &leftovers {
        std::fs::write(path.join(name), b"left").unwrap();
    }
    std::fs::write(path.join("notes.txt"), b"the user's").unwrap();
    let report = verify(&path);
    assert!(report.valid, "{:?}", report.findings);
    let mut found: Vec<_> = report
        .leftovers
        .iter()
        .map(|l| {
            (
                l.path.file_name().unwrap().to_string_lossy().into_owned(),
                l.kind,
            )
        })
        .collect();
    found.sort();
    let mut want = leftovers.to_vec();
    want.sort();
    assert_eq!(found, want);
    let listed = shardpack::gc(&path, false).unwrap();
    assert_eq!(listed.leftovers.len(), 4);
    assert!(path.join("manifest-000004.json").exists());
    let removed = shardpack::gc(&path, true).unwrap();
    assert!(removed.deleted);
    let mut after: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "notes.txt")
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before);
    assert!(verify(&path).valid);
}

#[test]
fn an_append_makes_parity_stale_and_protecting_again_makes_it_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let mut writer = WriterBuilder::new()
        .shard_size(8 << 10)
        .create(&path)
        .unwrap();
    for i in 0..30 {
        writer.append(&key(1, i), &[("bin", &data(1, i))]).unwrap();
    }
    writer.finish().unwrap();
    let _ = shardpack::protect(&path, 10.0).unwrap();
    let mut writer = WriterBuilder::new().append(&path).unwrap();
    writer.append("g2/0", &[("bin", b"more")]).unwrap();
    writer.finish().unwrap();
    let report = verify(&path);
    assert!(report.valid, "{:?}", report.findings);
    assert_eq!(report.recoverable, Some(false));
    let status = &report.parity.as_ref().unwrap()[0];
    assert_eq!(
        status.parity_file,
        shardpack::ParityFileState::Stale { generation: 1 }
    );
    let manifest = std::fs::read(path.join("manifest.json")).unwrap();
    // A stale parity file is not used: nothing is rewritten (generation 1's manifest would
    // undo the append).
    if let Ok(repaired) = shardpack::repair(&path) {
        assert!(repaired.files_rewritten.is_empty(), "{repaired:?}");
    }
    assert_eq!(std::fs::read(path.join("manifest.json")).unwrap(), manifest);
    let _ = shardpack::protect(&path, 10.0).unwrap();
    let report = verify(&path);
    assert!(report.valid && report.recoverable == Some(true));
}

#[test]
fn appending_is_refused_to_what_cannot_take_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    assert!(WriterBuilder::new()
        .append(dir.path().join("none"))
        .is_err());
    let path = dir.path().join("a");
    let mut writer = WriterBuilder::new().create(&path).unwrap();
    writer.append("k", &[("bin", b"x")]).unwrap();
    writer.finish().unwrap();
    let first = WriterBuilder::new().append(&path).unwrap();
    // A second writer is refused while the first holds the archive.
    assert!(WriterBuilder::new().append(&path).is_err());
    drop(first);
    assert!(WriterBuilder::new().append(&path).is_ok());
}

#[test]
fn staging_folders_are_leftovers_unless_a_running_write_holds_them() {
    // §11.4: a distributed write stages into `_staging/<write>/` of the target folder, which
    // may not hold an archive yet; gc removes what no running write holds locked.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let staged = path
        .join("_staging")
        .join("w1")
        .join("task-000000-attempt-0");
    let mut writer = WriterBuilder::new().create(&staged).unwrap();
    writer.append("k", &[("bin", b"x")]).unwrap();
    writer.finish().unwrap();
    // Before any archive exists gc judges only `_staging`: here nothing holds `w1`.
    let listed = shardpack::gc(&path, false).unwrap();
    assert_eq!(listed.leftovers.len(), 1);
    assert_eq!(listed.leftovers[0].kind, LeftoverKind::Staging);
    std::fs::write(path.join("notes.txt"), b"the user's").unwrap();
    assert!(shardpack::gc(&path, false).is_err());
    std::fs::remove_file(path.join("notes.txt")).unwrap();
    // A target holding only `_staging` is empty enough to create an archive in.
    three_generations(&path, WriterBuilder::new());
    std::fs::write(path.join("_staging").join("stray"), b"left").unwrap();
    // A write that is running holds its folder's lock; an append writer takes the same one.
    let live = path.join("_staging").join("w2");
    let mut running = WriterBuilder::new().create(&live).unwrap();
    running.append("k", &[("bin", b"y")]).unwrap();
    running.finish().unwrap();
    let lock = WriterBuilder::new().append(&live).unwrap();
    let report = verify(&path);
    assert!(report.valid, "{:?}", report.findings);
    let mut found: Vec<_> = report
        .leftovers
        .iter()
        .map(|l| (l.path.strip_prefix(&path).unwrap().to_path_buf(), l.kind))
        .collect();
    found.sort();
    let want = vec![
        (
            Path::new("_staging/stray").to_path_buf(),
            LeftoverKind::Staging,
        ),
        (
            Path::new("_staging/w1").to_path_buf(),
            LeftoverKind::Staging,
        ),
    ];
    assert_eq!(found, want);
    let removed = shardpack::gc(&path, true).unwrap();
    assert_eq!(removed.leftovers.len(), 2);
    assert!(removed.bytes > 4);
    assert!(!path.join("_staging/w1").exists() && !path.join("_staging/stray").exists());
    assert!(live.join("manifest.json").exists());
    drop(lock);
    let removed = shardpack::gc(&path, true).unwrap();
    assert_eq!(removed.leftovers.len(), 1);
    assert!(!live.exists());
    assert!(verify(&path).valid && verify(&path).leftovers.is_empty());
}
