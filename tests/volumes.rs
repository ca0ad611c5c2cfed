//! Archives split into optical volumes: no volume exceeds its budget, every structure is
//! aligned to the medium's ECC block, every volume carries the manifest, and a missing
//! volume is named by the reader and the verifier.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shardpack::{
    verify, Archive, Compression, Defect, ErrorKind, MediaProfile, Structure, VerifyOptions,
    WriterBuilder,
};

const BUDGET: u64 = 6 << 20;

fn optical(budget: u64) -> WriterBuilder {
    WriterBuilder::for_profile(MediaProfile::optical())
        .shard_size(2 << 20)
        .block_size(256 << 10)
        .compression(Compression::None)
        .volume_size(Some(budget))
}

fn dataset() -> Vec<OwnedSample> {
    (0..120)
        .map(|i| {
            (
                format!("img/{i:04}"),
                vec![
                    ("jpg".into(), noise(i, 40_000 + (i as usize * 997) % 60_000)),
                    ("cls".into(), vec![i as u8]),
                ],
            )
        })
        .collect()
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn volume_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn volumes_fit_their_budget_and_everything_is_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    let samples = dataset();
    let manifest = write_archive(&root, optical(BUDGET), &samples);
    let dirs = volume_dirs(&root);
    assert!(dirs.len() >= 2, "the data needs several volumes: {dirs:?}");
    let reference = std::fs::read(dirs[0].join("manifest.json")).unwrap();
    for (i, dir) in dirs.iter().enumerate() {
        assert!(dir.ends_with(format!("vol-{:04}", i + 1)));
        assert!(
            folder_bytes(dir) <= BUDGET,
            "{} holds {} bytes",
            dir.display(),
            folder_bytes(dir)
        );
        assert_eq!(
            std::fs::read(dir.join("manifest.json")).unwrap(),
            reference,
            "every volume has the manifest"
        );
    }
    let align = u64::from(MediaProfile::optical().align);
    for s in &manifest.shards {
        assert_eq!(s.size % align, 0, "{} ends on an ECC block", s.file);
        assert!(s.volume.is_some());
    }
    let archive = Archive::open(&root).unwrap();
    for i in 0..archive.shard_count() {
        let shard = archive.shard(i).unwrap();
        assert_eq!(shard.layout().index_offset % align, 0);
        for b in 0..shard.layout().block_count {
            assert_eq!(
                shard.block_entry(b).unwrap().offset % align,
                0,
                "block {b} of shard {i} starts on an ECC block"
            );
        }
    }
    assert_eq!(read_all(&archive), samples);
    assert!(verify(&root, &VerifyOptions::default()).unwrap().is_ok());
    // A single volume folder finds its siblings.
    assert!(verify(&dirs[1], &VerifyOptions::default()).unwrap().is_ok());
}

#[test]
fn a_missing_volume_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    let samples = dataset();
    let manifest = write_archive(&root, optical(BUDGET), &samples);
    let away = tmp.path().join("in-the-post");
    std::fs::rename(root.join("vol-0002"), &away).unwrap();
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    assert!(!report.complete);
    let finding = report
        .findings
        .iter()
        .find(|f| {
            matches!(
                f.defect,
                Some(Defect::Missing {
                    structure: Structure::Volume { volume: 2, .. },
                    ..
                })
            )
        })
        .expect("missing volume named");
    assert!(finding.ordinals.is_some(), "{finding:?}");
    let archive = Archive::open(&root).unwrap();
    assert_eq!(archive.missing_volumes(), vec![2]);
    let on_two = manifest
        .shards
        .iter()
        .find(|s| s.volume == Some(2))
        .unwrap();
    let err = archive.get(on_two.first_ordinal).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Incomplete { .. }) && err.to_string().contains("volume 2"),
        "{err}"
    );
    assert!(archive.get(0).is_ok(), "volume 1 still reads");

    // Discs mounted anywhere: the set is found from the shards each folder holds.
    let mounted: Vec<PathBuf> = vec![away.clone(), root.join("vol-0001")]
        .into_iter()
        .chain(
            volume_dirs(&root)
                .into_iter()
                .filter(|d| !d.ends_with("vol-0001")),
        )
        .collect();
    let archive = Archive::options()
        .volumes(&mounted)
        .open(&mounted[0])
        .unwrap();
    assert!(archive.missing_volumes().is_empty());
    assert_eq!(read_all(&archive), samples);
}

#[test]
fn a_volume_too_small_for_one_sample_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // 512 KiB beside the manifest's 1 MiB: room for small samples, not this one.
    let mut w = optical((1 << 20) + (512 << 10))
        .create(tmp.path().join("tiny"))
        .unwrap();
    let err = w.append("big", &[("bin", &noise(1, 300_000))]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput { .. }) && err.to_string().contains("volume"),
        "{err}"
    );
}

#[test]
fn media_capacities_are_the_researched_ones() {
    use shardpack::Volume;
    assert_eq!(Volume::Bd25.capacity(), 11_826_176 * 2048);
    assert_eq!(Volume::Dvd.capacity(), 2_295_104 * 2048);
    for v in Volume::ALL {
        let budget = shardpack::volume_budget(v.capacity());
        assert!(
            budget < v.capacity() && budget > v.capacity() / 100 * 98,
            "{v:?}"
        );
        assert_eq!(Volume::from_name(v.name()), Some(v));
    }
}

#[test]
fn every_volume_folder_gets_a_parity_status_and_one_bad_parity_stops_nothing() {
    use shardpack::ParityFileState;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    write_archive(&root, optical(BUDGET), &dataset());
    let dirs = volume_dirs(&root);
    assert!(dirs.len() >= 2);
    assert_eq!(
        shardpack::protect(&root, 15.0).unwrap().folders.len(),
        dirs.len()
    );
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    assert!(report.is_ok(), "{:#?}", report.findings);
    assert_eq!(report.recoverable, Some(true));
    assert_eq!(report.parity.as_ref().unwrap().len(), dirs.len());

    // A volume folder without a parity file: its status says so, and nothing rebuilds it.
    let parity2 = dirs[1].join(shardpack::PARITY_FILE);
    let aside = tmp.path().join("parity2");
    std::fs::rename(&parity2, &aside).unwrap();
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    assert_eq!(report.recoverable, Some(false));
    let status = report.parity.as_ref().unwrap();
    assert_eq!(status.len(), dirs.len());
    assert_eq!(status[1].folder, dirs[1]);
    assert_eq!(status[1].parity_file, ParityFileState::NoParity);
    assert_eq!(status[0].parity_file, ParityFileState::Loaded);
    assert!(
        report.findings.iter().any(|f| f.file == parity2
            && matches!(
                f.defect,
                Some(Defect::Missing {
                    structure: Structure::ParityFile,
                    ..
                })
            )),
        "{:#?}",
        report.findings
    );
    let fixed = shardpack::repair(&root).unwrap();
    assert_eq!(fixed.status[1].parity_file, ParityFileState::NoParity);
    std::fs::rename(&aside, &parity2).unwrap();

    // Volume 1's parity does not load; volume 2 is damaged and still repaired.
    let parity1 = dirs[0].join(shardpack::PARITY_FILE);
    let len = std::fs::metadata(&parity1).unwrap().len() as usize;
    std::fs::write(&parity1, vec![0u8; len]).unwrap();
    let shard = std::fs::read_dir(&dirs[1])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "shp"))
        .min()
        .unwrap();
    let pristine = std::fs::read(&shard).unwrap();
    let mut b = pristine.clone();
    b[3000] ^= 0x40;
    std::fs::write(&shard, &b).unwrap();
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    assert_eq!(report.recoverable, Some(false));
    let status = report.parity.as_ref().unwrap();
    assert!(
        matches!(status[0].parity_file, ParityFileState::Unusable { .. }),
        "{status:#?}"
    );
    assert_eq!(status[1].parity_file, ParityFileState::Loaded);
    assert!(status[1].damaged_chunks >= 1 && status[1].recoverable);
    assert!(
        report.findings.iter().any(|f| f.file == parity1
            && f.offset == 0
            && matches!(
                f.defect,
                Some(Defect::Magic {
                    structure: Structure::ParityHeader,
                    ..
                })
            )),
        "{:#?}",
        report.findings
    );
    let fixed = shardpack::repair(&root).unwrap();
    assert!(!fixed.complete(), "volume 1 could not be checked");
    assert!(matches!(
        fixed.status[0].parity_file,
        ParityFileState::Unusable { .. }
    ));
    assert_eq!(fixed.status[0].folder, dirs[0]);
    assert_eq!(fixed.files_rewritten, vec![shard.clone()]);
    assert_eq!(std::fs::read(&shard).unwrap(), pristine);
}

#[test]
fn a_listed_shard_in_another_volume_and_a_missing_manifest_copy_are_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    let manifest = write_archive(&root, optical(BUDGET), &dataset());
    let dirs = volume_dirs(&root);
    let first = &manifest.shards[0];
    assert_eq!(first.volume, Some(1));
    // Shard 0 (volume 1) copied into volume 2's folder.
    let stray = dirs[1].join(&first.file);
    std::fs::copy(dirs[0].join(&first.file), &stray).unwrap();
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    let f = report
        .findings
        .iter()
        .find(|f| f.file == stray)
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert_eq!(f.shard, Some(0));
    assert!(
        matches!(
            f.defect,
            Some(Defect::Invalid {
                structure: Structure::ShardFile,
                field: "in another volume",
                ..
            })
        ),
        "{f:?}"
    );
    assert!(report.complete, "the shard on its own volume is there");
    std::fs::remove_file(&stray).unwrap();
    assert!(verify(&root, &VerifyOptions::default()).unwrap().is_ok());

    // Volume 2 without its copy of the manifest: not complete.
    let copy = dirs[1].join("manifest.json");
    std::fs::remove_file(&copy).unwrap();
    let report = verify(&root, &VerifyOptions::default()).unwrap();
    assert!(!report.complete);
    let f = report
        .findings
        .iter()
        .find(|f| f.file == copy)
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert!(
        matches!(
            f.defect,
            Some(Defect::Missing {
                structure: Structure::VolumeManifest { volume: 2 },
                ..
            })
        ),
        "{f:?}"
    );
}

#[test]
fn protecting_a_split_archive_without_shards_says_so_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("discs");
    let manifest = write_archive(&root, optical(BUDGET), &[]);
    assert!(manifest.shards.is_empty());
    let before: Vec<PathBuf> = volume_dirs(&root);
    assert_eq!(before.len(), 1, "vol-0001 holds only the manifest");
    let report = shardpack::protect(&root, 15.0).unwrap();
    assert!(report.folders.is_empty());
    assert!(
        report
            .note
            .as_deref()
            .is_some_and(|n| n.contains("without shards")),
        "{report:?}"
    );
    assert_eq!(volume_dirs(&root), before);
    assert_eq!(
        files(&before[0])
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        vec![before[0].join("manifest.json")],
        "no parity file, no partial"
    );
}
