//! Generations of an archive split into volumes (format-spec.md §2.1, appending): each
//! append adds new volumes and never writes a finished one, every generation reads and
//! verifies (from the root, from one volume folder, from folders mounted anywhere), a key
//! repeating is refused, and an interrupted append leaves the previous generation current.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::noise;
use shardpack::{Archive, Compression, ErrorKind, MediaProfile, VerifyOptions, WriterBuilder};

const BUDGET: u64 = 4 << 20;

fn optical() -> WriterBuilder {
    WriterBuilder::for_profile(MediaProfile::optical())
        .shard_size(1 << 20)
        .block_size(256 << 10)
        .compression(Compression::None)
        .volume_size(Some(BUDGET))
}

fn key(generation: u32, i: u32) -> String {
    format!("g{generation}/{i:04}")
}

fn data(generation: u32, i: u32) -> Vec<u8> {
    noise(
        u64::from(generation) * 1000 + u64::from(i),
        50_000 + (i as usize * 997) % 40_000,
    )
}

fn count(generation: u32) -> u32 {
    if generation == 1 {
        60
    } else {
        30
    }
}

fn expected(up_to: u32) -> Vec<(String, Vec<u8>)> {
    (1..=up_to)
        .flat_map(|g| (0..count(g)).map(move |i| (key(g, i), data(g, i))))
        .collect()
}

fn samples_of(archive: &Archive) -> Vec<(String, Vec<u8>)> {
    archive
        .iter()
        .map(|s| {
            let s = s.unwrap();
            (s.key().to_owned(), s.field("bin").unwrap().to_vec())
        })
        .collect()
}

fn append(root: &Path, generation: u32) -> shardpack::Manifest {
    let mut writer = WriterBuilder::new().append(root).unwrap();
    for i in 0..count(generation) {
        writer
            .append(&key(generation, i), &[("bin", &data(generation, i))])
            .unwrap();
    }
    writer.finish().unwrap()
}

/// Every file of every volume folder, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for volume in fs::read_dir(root).unwrap() {
        let volume = volume.unwrap().path();
        for file in fs::read_dir(&volume).unwrap() {
            let file = file.unwrap().path();
            out.insert(file.clone(), fs::read(&file).unwrap());
        }
    }
    out
}

fn verify(path: &Path) -> shardpack::VerifyReport {
    shardpack::verify(path, &VerifyOptions::default()).unwrap()
}

fn first_generation(root: &Path) {
    let mut writer = optical().create(root).unwrap();
    for i in 0..count(1) {
        writer.append(&key(1, i), &[("bin", &data(1, i))]).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn appends_add_volumes_and_every_generation_reads_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    first_generation(&root);
    let mut volumes = vec![fs::read_dir(&root).unwrap().count()];
    assert!(volumes[0] >= 2, "generation 1 spans volumes");
    for generation in 2..=3 {
        let before = snapshot(&root);
        let manifest = append(&root, generation);
        assert_eq!(manifest.generation_number(), u64::from(generation));
        let after = snapshot(&root);
        // No file of a finished volume was written, added or removed.
        for (path, bytes) in &before {
            assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
        }
        let old_volumes: Vec<PathBuf> = before
            .keys()
            .filter_map(|p| p.parent())
            .map(Path::to_path_buf)
            .collect();
        assert!(after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .all(|p| !old_volumes.contains(&p.parent().unwrap().to_path_buf())));
        volumes.push(fs::read_dir(&root).unwrap().count());
        assert!(volumes[volumes.len() - 1] > volumes[volumes.len() - 2]);
        // The new volumes hold the chain.
        let last = root.join(format!("vol-{:04}", volumes[volumes.len() - 1]));
        for g in 1..u64::from(generation) {
            assert!(last.join(format!("manifest-{g:06}.json")).exists());
        }
        let report = verify(&root);
        assert!(
            report.is_ok(),
            "generation {generation}: {:?}",
            report.findings
        );
    }
    for generation in 1..=3u32 {
        let archive = Archive::options()
            .generation(u64::from(generation))
            .open(&root)
            .unwrap();
        assert_eq!(samples_of(&archive), expected(generation));
    }
    let current = Archive::open(&root).unwrap();
    assert_eq!(current.generation(), 3);
    // From the first volume's folder, and from folders mounted anywhere in any order, the
    // latest generation is found.
    assert_eq!(
        Archive::open(root.join("vol-0001")).unwrap().generation(),
        3
    );
    let mut mounted: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    mounted.sort();
    mounted.reverse();
    let archive = Archive::options().volumes(&mounted).open(&root).unwrap();
    assert_eq!(archive.generation(), 3);
    assert_eq!(samples_of(&archive), expected(3));
}

#[test]
fn a_repeated_key_is_refused_and_an_interrupted_append_leaves_the_previous_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    first_generation(&root);
    let before = snapshot(&root);
    let volumes = fs::read_dir(&root).unwrap().count();

    let mut writer = WriterBuilder::new().append(&root).unwrap();
    let err = writer
        .append(&key(1, 3), &[("bin", b"again")])
        .expect_err("a key of generation 1");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }),
        "{err}"
    );
    drop(writer);

    // An append interrupted after some of its shards: the writer is dropped unfinished.
    let mut writer = WriterBuilder::new().append(&root).unwrap();
    for i in 0..count(2) {
        writer.append(&key(2, i), &[("bin", &data(2, i))]).unwrap();
    }
    drop(writer);
    assert!(
        fs::read_dir(&root).unwrap().count() > volumes,
        "it left a volume"
    );
    let archive = Archive::open(&root).unwrap();
    assert_eq!(archive.generation(), 1);
    assert_eq!(samples_of(&archive), expected(1));
    let report = verify(&root);
    assert!(report.is_ok(), "{:?}", report.findings);
    for (path, bytes) in &before {
        assert_eq!(&fs::read(path).unwrap(), bytes);
    }

    // The next append replaces what the interrupted one left.
    append(&root, 2);
    let report = verify(&root);
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(samples_of(&Archive::open(&root).unwrap()), expected(2));

    // An append of nothing adds no volume.
    let volumes = fs::read_dir(&root).unwrap().count();
    let writer = WriterBuilder::new().append(&root).unwrap();
    assert!(writer.finish().is_err());
    assert_eq!(fs::read_dir(&root).unwrap().count(), volumes);
    assert_eq!(Archive::open(&root).unwrap().generation(), 2);
}
