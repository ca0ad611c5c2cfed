//! Seeded fault injection over finished archives of every profile: bit flips anywhere,
//! zeroed 2048-byte sectors and 64 KiB runs, truncations, a deleted, swapped or duplicated
//! shard, a damaged manifest. For every fault: `verify` reports it and names its place,
//! reads return errors or the original bytes (never others), and nothing panics. Prints
//! the matrix of faults injected and detected per kind and profile.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use shardpack::{
    verify, Archive, Compression, Defect, MediaProfile, Structure, VerifyOptions, WriterBuilder,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn dataset() -> Vec<OwnedSample> {
    (0..60)
        .map(|i| {
            let text = format!("caption {i} ")
                .repeat(1 + (i as usize % 40))
                .into_bytes();
            (
                format!("s/{i:03}"),
                vec![
                    ("bin".into(), noise(i, 500 + (i as usize * 313) % 3000)),
                    ("txt".into(), text),
                ],
            )
        })
        .collect()
}

fn builder(profile: MediaProfile, id: u8) -> WriterBuilder {
    // Small shards so that every archive has several; zstd so compressed and stored blocks
    // both occur (the noise stays stored).
    WriterBuilder::for_profile(profile)
        .shard_size(u64::from(profile.align) * 4 + (48 << 10))
        .block_size(24 << 10)
        .compression(Compression::Zstd { level: 1 })
        .archive_id([id; 16])
}

/// Applies one fault to the archive folder; `None` when it would change no byte.
type Fault = Box<dyn Fn(&Path) -> Option<Place>>;

/// What a fault changed, for checking that a finding names its place.
enum Place {
    /// Bytes `start..end` of a file.
    Range(PathBuf, u64, u64),
    /// The file as a whole (deleted, replaced).
    File(PathBuf),
}

/// Reads every sample; each is an error or the original. Also through `scan`.
fn reads_never_lie(dir: &Path, original: &[OwnedSample]) {
    let Ok(archive) = Archive::open(dir) else {
        return;
    };
    for (i, (key, fields)) in original.iter().enumerate() {
        if let Ok(s) = archive.get(i as u64) {
            assert_eq!(s.key(), key);
            let got: Vec<(String, Vec<u8>)> = s
                .fields()
                .map(|(n, d)| (n.to_string(), d.to_vec()))
                .collect();
            assert_eq!(&got, fields, "ordinal {i} returned other bytes");
        }
    }
    for s in archive.scan().take(original.len() + 10).flatten() {
        let (key, fields) = &original[s.ordinal() as usize];
        assert_eq!(s.key(), key);
        let got: Vec<(String, Vec<u8>)> = s
            .fields()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect();
        assert_eq!(
            &got,
            fields,
            "scan returned other bytes at ordinal {}",
            s.ordinal()
        );
    }
}

fn located(report: &shardpack::VerifyReport, place: &Place) -> bool {
    report.findings.iter().any(|f| match place {
        Place::File(p) => f.file == *p,
        Place::Range(p, a, b) => {
            f.file == *p
                && !matches!(
                    f.defect,
                    Some(Defect::Digest {
                        structure: Structure::ShardFile,
                        ..
                    })
                )
                && f.offset < *b
                && *a < f.offset + f.len.max(1)
        }
    })
}

#[test]
fn every_injected_fault_is_detected_located_and_never_read_as_data() {
    let samples = dataset();
    // (injected, detected, repaired, lost)
    let mut matrix: BTreeMap<(&str, &str), (u32, u32, u32, u32)> = BTreeMap::new();
    for profile in MediaProfile::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let other = tmp.path().join("b");
        write_archive(&dir, builder(profile, 0xA1), &samples);
        write_archive(&other, builder(profile, 0xB2), &samples);
        // Parity of 25%: the faults below that stay within it must be repaired.
        let _ = shardpack::protect(&dir, 25.0).unwrap();
        let pristine: Vec<(PathBuf, Vec<u8>)> = files(&dir)
            .into_iter()
            .filter(|(p, _)| !p.ends_with(shardpack::PARITY_FILE))
            .collect();
        let shards: Vec<&PathBuf> = pristine
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.extension().is_some_and(|e| e == "shp"))
            .collect();
        assert!(
            shards.len() >= 3,
            "{}: {} shards",
            profile.name,
            shards.len()
        );
        let mut rng = Rng(0x5eed ^ (u64::from(profile.code) << 32) | 1);

        let parity_bytes = std::fs::read(dir.join(shardpack::PARITY_FILE)).unwrap();
        let mut faults: Vec<(&str, Fault)> = Vec::new();
        for _ in 0..240 {
            let (path, bytes) = pristine[rng.below(pristine.len() as u64) as usize].clone();
            let at = rng.below(bytes.len() as u64);
            let bit = 1u8 << rng.below(8);
            faults.push((
                "bit flip",
                Box::new(move |_| {
                    let mut b = bytes.clone();
                    b[at as usize] ^= bit;
                    std::fs::write(&path, &b).unwrap();
                    // A manifest's defects are semantic (a field, the root): the file is named.
                    if path.ends_with("manifest.json") {
                        return Some(Place::File(path.clone()));
                    }
                    Some(Place::Range(path.clone(), at, at + 1))
                }),
            ));
        }
        for (kind, len, count) in [
            ("zeroed 2048-byte sector", 2048u64, 40),
            ("zeroed 64 KiB run", 64 << 10, 15),
        ] {
            for _ in 0..count {
                let (path, bytes) = shards
                    .iter()
                    .map(|p| pristine.iter().find(|(q, _)| q == *p).unwrap().clone())
                    .nth(rng.below(shards.len() as u64) as usize)
                    .unwrap();
                // Aim at data, not at padding (zeroing zeros changes nothing).
                let mut at = rng.below(bytes.len() as u64) as usize;
                while bytes[at] == 0 {
                    at = (at + 1) % bytes.len();
                }
                let start = at as u64 / 2048 * 2048;
                faults.push((
                    kind,
                    Box::new(move |_| {
                        let end = (start + len).min(bytes.len() as u64);
                        let mut b = bytes.clone();
                        b[start as usize..end as usize].fill(0);
                        // Zeroing padding changes nothing: no fault to find.
                        (b != bytes).then(|| {
                            std::fs::write(&path, &b).unwrap();
                            let first =
                                bytes.iter().zip(&b).position(|(x, y)| x != y).unwrap() as u64;
                            let last =
                                bytes.iter().zip(&b).rposition(|(x, y)| x != y).unwrap() as u64;
                            Place::Range(path.clone(), first, last + 1)
                        })
                    }),
                ));
            }
        }
        for _ in 0..20 {
            let (path, bytes) = pristine[rng.below(pristine.len() as u64) as usize].clone();
            let at = rng.below(bytes.len() as u64);
            faults.push((
                "truncation",
                Box::new(move |_| {
                    std::fs::write(&path, &bytes[..at as usize]).unwrap();
                    Some(Place::File(path.clone()))
                }),
            ));
        }
        for (n, shard) in shards.iter().enumerate() {
            let shard = (*shard).clone();
            let name = shard.file_name().unwrap().to_owned();
            let from_other = other.join(&name);
            let s2 = shard.clone();
            faults.push((
                "deleted shard",
                Box::new(move |_| {
                    std::fs::remove_file(&s2).unwrap();
                    Some(Place::File(s2.clone()))
                }),
            ));
            let s3 = shard.clone();
            faults.push((
                "shard from another archive",
                Box::new(move |_| {
                    std::fs::copy(&from_other, &s3).ok()?;
                    Some(Place::File(s3.clone()))
                }),
            ));
            let next = shards[(n + 1) % shards.len()].clone();
            let s4 = shard.clone();
            faults.push((
                "duplicated shard",
                Box::new(move |_| {
                    std::fs::copy(&next, &s4).unwrap();
                    Some(Place::File(s4.clone()))
                }),
            ));
        }
        let (manifest_path, manifest_bytes) = pristine
            .iter()
            .find(|(p, _)| p.ends_with("manifest.json"))
            .unwrap()
            .clone();
        for _ in 0..20 {
            let at = rng.below(manifest_bytes.len() as u64) as usize;
            let (p, b) = (manifest_path.clone(), manifest_bytes.clone());
            faults.push((
                "damaged manifest",
                Box::new(move |_| {
                    let mut m = b.clone();
                    m[at] = if m[at] == b'7' { b'8' } else { b'7' };
                    std::fs::write(&p, &m).unwrap();
                    Some(Place::File(p.clone()))
                }),
            ));
        }
        for (kind, fault) in &faults {
            let Some(place) = fault(&dir) else { continue };
            let report = verify(&dir, &VerifyOptions::default()).unwrap();
            let entry = matrix.entry((profile.name, kind)).or_default();
            entry.0 += 1;
            assert!(!report.is_ok(), "{}: {kind} not detected", profile.name);
            assert!(
                located(&report, &place),
                "{}: {kind} not located: {:#?}",
                profile.name,
                report.findings
            );
            entry.1 += 1;
            reads_never_lie(&dir, &samples);
            // Repair: within the parity everything comes back byte-identical; beyond it,
            // repair says what is lost and changes no intact file.
            let fixed = shardpack::repair(&dir).unwrap();
            let identical = pristine
                .iter()
                .all(|(p, b)| std::fs::read(p).ok().as_ref() == Some(b));
            if fixed.complete() {
                let differing: Vec<&PathBuf> = pristine
                    .iter()
                    .filter(|(p, b)| std::fs::read(p).ok().as_ref() != Some(b))
                    .map(|(p, _)| p)
                    .collect();
                assert!(identical, "{}: {kind}: repair claimed success but bytes differ in {differing:?}: {fixed:#?}", profile.name);
                assert!(verify(&dir, &VerifyOptions::default()).unwrap().is_ok());
                entry.2 += 1;
            } else {
                assert!(!fixed.lost.is_empty());
                entry.3 += 1;
            }
            // Restore.
            for (p, b) in &pristine {
                std::fs::write(p, b).unwrap();
            }
            std::fs::write(dir.join(shardpack::PARITY_FILE), &parity_bytes).unwrap();
        }
        assert!(
            verify(&dir, &VerifyOptions::default()).unwrap().is_ok(),
            "restored"
        );
    }
    println!(
        "{:<10} {:<28} {:>9} {:>9} {:>9} {:>9}",
        "profile", "fault (25% parity)", "injected", "detected", "repaired", "lost"
    );
    for ((profile, kind), (injected, detected, repaired, lost)) in &matrix {
        println!("{profile:<10} {kind:<28} {injected:>9} {detected:>9} {repaired:>9} {lost:>9}");
    }
    let total: u32 = matrix.values().map(|v| v.0).sum();
    assert!(total >= 1000, "only {total} faults injected");
}
