//! The random reader and the sequential reader never disagree about a sample: on crafted
//! shards whose checksums and digests are all consistent, every sample a scan returns is the
//! sample `get` returns for its ordinal, and no ordinal that `get` refuses comes out of a
//! scan (format-spec.md §12.7). Before the scan checked the records it walks against the
//! record table, a table pointing one record at another's bytes read as one key through
//! `get` and as another through `scan`.

mod common;

use std::path::Path;

use common::*;
use shardpack::format::checksum::crc32;
use shardpack::format::index::{RECORD_CRC_OFFSET, RECORD_ENTRY_LEN};
use shardpack::format::trailer::{Trailer, TRAILER_LEN};
use shardpack::manifest::Manifest;
use shardpack::{Archive, Compression, Shard, SourceKind, VerifyMode, VerifyOptions};

/// Recomputes, after an edit of shard `file`'s index, the index CRC in its trailer, the
/// shard's digest in the manifest and the root: what a careful forger would do.
fn reseal(dir: &Path, file: &str) {
    let path = dir.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - TRAILER_LEN;
    let mut trailer = Trailer::decode(bytes[at..].try_into().unwrap()).unwrap();
    let index = trailer.index_offset as usize..(trailer.index_offset + trailer.index_len) as usize;
    trailer.index_crc = crc32(&bytes[index]);
    bytes[at..].copy_from_slice(&trailer.encode());
    std::fs::write(&path, &bytes).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest =
        Manifest::parse(&std::fs::read(&manifest_path).unwrap(), &manifest_path).unwrap();
    for shard in &mut manifest.shards {
        if shard.file == file {
            shard.blake3 = blake3::hash(&bytes).to_hex().to_string();
        }
    }
    manifest.root = manifest.compute_root();
    std::fs::write(&manifest_path, manifest.to_canonical_bytes()).unwrap();
}

/// Edits record entry `local` of shard 0 with `edit(entry bytes)`, then reseals.
fn edit_record_entry(dir: &Path, local: u32, edit: impl FnOnce(&mut [u8])) {
    let file = "shard-000000.shp";
    let path = dir.join(file);
    let shard = Shard::open(&path, Default::default()).unwrap();
    let at = shard.layout().record_entry_offset(local) as usize;
    drop(shard);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes[at..at + RECORD_ENTRY_LEN]);
    std::fs::write(&path, &bytes).unwrap();
    reseal(dir, file);
}

/// Every sample a scan yields is what `get` yields for its ordinal; every ordinal `get`
/// refuses yields no sample from the scan. Returns how many ordinals `get` refused.
fn assert_readers_agree(dir: &Path) -> usize {
    let mut refused = 0;
    for source in [SourceKind::Map, SourceKind::Pread] {
        refused = readers_agree(dir, source);
    }
    refused
}

/// [`assert_readers_agree`] with the scan reading through `source`: through the map it
/// checks each record against the table as it takes it; with `pread`, front to back, it
/// checks them when it reaches the index, after the shard's last sample.
fn readers_agree(dir: &Path, source: SourceKind) -> usize {
    let archive = Archive::open(dir).unwrap();
    let scanning = Archive::options().source(source).open(dir).unwrap();
    let mut scanned = std::collections::HashMap::new();
    let mut scan_errors = 0;
    for sample in scanning.scan() {
        match sample {
            Ok(sample) => {
                scanned.insert(sample.ordinal(), sample.record_bytes().to_vec());
            }
            Err(_) => scan_errors += 1,
        }
    }
    let mut refused = 0;
    for ordinal in 0..archive.len() {
        match archive.get(ordinal) {
            Ok(sample) => {
                if let Some(bytes) = scanned.get(&ordinal) {
                    assert_eq!(bytes, sample.record_bytes(), "ordinal {ordinal} differs");
                }
            }
            Err(e) => {
                assert!(e.is_corruption(), "ordinal {ordinal}: {e}");
                // Through the map the scan never hands the sample out; front to back it
                // may have, and then reports the shard once it reaches the index.
                assert!(
                    source == SourceKind::Pread || !scanned.contains_key(&ordinal),
                    "{source:?}: ordinal {ordinal}: scan returned a sample that get refuses ({e})"
                );
                assert!(
                    scan_errors > 0,
                    "{source:?}: ordinal {ordinal}: scan reported nothing"
                );
                refused += 1;
            }
        }
    }
    refused
}

/// Whether a verification in `mode` reports anything. The crafted shards are sealed, so a
/// Full verification takes each as proven and runs its checks beside the hash (§13.1):
/// what it finds there it must find without the block and record CRCs.
fn verify_reports(dir: &Path, mode: VerifyMode) -> bool {
    let options = VerifyOptions {
        mode,
        ..Default::default()
    };
    !shardpack::verify(dir, &options).unwrap().is_ok()
}

fn stored_archive(dir: &Path) {
    let mut builder = tiny(Compression::None);
    builder = builder.block_size(4096).shard_size(1 << 20);
    write_archive(dir, builder, &small_samples());
}

#[test]
fn a_table_pointing_at_another_record_reads_the_same_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    stored_archive(dir.path());
    // Record 0's entry takes record 1's place, length and CRC: `get(0)` finds record 1's
    // bytes (and refuses them, their key is not key 0), `scan` walks record 0.
    let path = dir.path().join("shard-000000.shp");
    let shard = Shard::open(&path, Default::default()).unwrap();
    let (e0, e1) = (
        shard.layout().record_entry_offset(0) as usize,
        shard.layout().record_entry_offset(1) as usize,
    );
    drop(shard);
    let bytes = std::fs::read(&path).unwrap();
    assert!(e0 < e1);
    let second = bytes[e1..e1 + 16].to_vec();
    let second_crc = bytes[e1 + RECORD_CRC_OFFSET..e1 + RECORD_ENTRY_LEN].to_vec();
    edit_record_entry(dir.path(), 0, |entry| {
        entry[..16].copy_from_slice(&second);
        entry[RECORD_CRC_OFFSET..].copy_from_slice(&second_crc);
    });
    assert!(assert_readers_agree(dir.path()) >= 1);
    // Two entries for one record's bytes: overlapping offsets, and a key that is not the
    // heap's.
    assert!(verify_reports(dir.path(), VerifyMode::Full));
    assert!(verify_reports(dir.path(), VerifyMode::Deep));
}

#[test]
fn a_wrong_record_crc_in_the_table_fails_both_readers() {
    let dir = tempfile::tempdir().unwrap();
    stored_archive(dir.path());
    edit_record_entry(dir.path(), 2, |entry| entry[RECORD_CRC_OFFSET] ^= 1);
    assert!(assert_readers_agree(dir.path()) >= 1);
    // A sealed shard's CRCs are the writer's: Full may take them as matching, Deep
    // recomputes them.
    assert!(verify_reports(dir.path(), VerifyMode::Deep));
}

#[test]
fn a_wrong_key_in_the_heap_fails_both_readers() {
    let dir = tempfile::tempdir().unwrap();
    stored_archive(dir.path());
    let path = dir.path().join("shard-000000.shp");
    let shard = Shard::open(&path, Default::default()).unwrap();
    let heap = shard.layout().key_heap_offset as usize;
    let key0 = shard.key(0).unwrap().into_owned();
    drop(shard);
    let mut bytes = std::fs::read(&path).unwrap();
    // The first key's first byte, to another byte that keeps it UTF-8 and sorts first.
    assert!(key0.as_bytes()[0] > b'!');
    bytes[heap] = b'!';
    std::fs::write(&path, &bytes).unwrap();
    reseal(dir.path(), "shard-000000.shp");
    assert!(assert_readers_agree(dir.path()) >= 1);
    assert!(verify_reports(dir.path(), VerifyMode::Full));
}

#[test]
fn undamaged_archives_agree_on_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    for (name, builder) in [
        ("stored", tiny(Compression::None)),
        ("zstd", tiny(Compression::Zstd { level: 3 })),
        ("dictionary", with_dictionary()),
    ] {
        let path = dir.path().join(name);
        write_archive(&path, builder, &text_samples(300));
        assert_eq!(assert_readers_agree(&path), 0, "{name}");
        assert!(!verify_reports(&path, VerifyMode::Full), "{name}");
        assert!(!verify_reports(&path, VerifyMode::Deep), "{name}");
        let archive = Archive::open(&path).unwrap();
        assert_eq!(
            archive.scan().filter(|s| s.is_ok()).count() as u64,
            archive.len()
        );
    }
}
