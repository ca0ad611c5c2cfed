//! Hostile input: decompression bombs stop at the configured limit before allocating, and
//! lengths from disk never drive an allocation larger than the limits allow, and a FIFO
//! where a file is expected is refused at once instead of blocking the call.

mod common;

use common::*;
use shardpack::{Archive, Compression, ErrorKind, Limits, Writer};

#[test]
fn a_decompression_bomb_stops_at_the_block_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bomb");
    // 64 MiB of zeros: a few kilobytes once compressed.
    let zeros = vec![0u8; 64 << 20];
    let samples: Vec<OwnedSample> = vec![("bomb".into(), vec![("bin".into(), zeros)])];
    write_archive(
        &dir,
        Writer::builder().compression(Compression::Zstd { level: 3 }),
        &samples,
    );
    let on_disk: u64 = files(&dir).iter().map(|(_, b)| b.len() as u64).sum();
    assert!(on_disk < 1 << 20, "the bomb is small on disk: {on_disk}");
    let mut limits = Limits::default();
    limits.max_block_bytes = 1 << 20;
    let archive = Archive::options().limits(limits).open(&dir).unwrap();
    let err = archive.get(0).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::LimitExceeded { .. }),
        "{err}"
    );
    // With the default limits the same archive reads.
    let archive = Archive::open(&dir).unwrap();
    assert_eq!(
        archive.get(0).unwrap().field("bin").unwrap().len(),
        64 << 20
    );
}

#[test]
fn an_oversized_manifest_is_refused_before_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_archive(&dir, tiny(Compression::None), &small_samples());
    let mut limits = Limits::default();
    limits.max_manifest_bytes = 100;
    let err = Archive::options().limits(limits).open(&dir).err().unwrap();
    assert!(
        matches!(err.kind(), ErrorKind::LimitExceeded { .. }),
        "{err}"
    );
}

/// Sets a block header's stored length and re-seals its CRC, as a crafted file would.
fn forge_stored_len(bytes: &mut [u8], block_at: usize, stored_len: u64) {
    bytes[block_at + 32..block_at + 40].copy_from_slice(&stored_len.to_le_bytes());
    let crc = crc32fast::hash(&bytes[block_at..block_at + 60]);
    bytes[block_at + 60..block_at + 64].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_forged_block_length_in_a_stream_costs_no_memory() {
    let samples = small_samples();
    let sink: Vec<u8> = Vec::new();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(sink));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Writer::builder()
        .align(4096)
        .stream_record(4096)
        .create_stream(Box::new(Shared(shared.clone())), "t")
        .unwrap();
    for (k, f) in &samples {
        let f: Vec<(&str, &[u8])> = f.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        w.append(k, &f).unwrap();
    }
    w.finish().unwrap();
    let mut stream = shared.lock().unwrap().clone();
    // The first shard starts after the 4 KiB start record; its first block after its header.
    forge_stored_len(&mut stream, 4096 + 4096, 1 << 40);
    let reader =
        shardpack::stream::StreamReader::new(stream.as_slice(), "forged", Limits::default())
            .unwrap();
    let last = reader.last().expect("an item");
    assert!(
        last.is_err(),
        "a forged length ends in an error, not an allocation"
    );
}

#[test]
fn a_forged_block_length_near_2_pow_64_does_not_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_archive(&dir, tiny(Compression::None), &small_samples());
    let shard = dir.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    forge_stored_len(&mut bytes, 128, u64::MAX - 10);
    std::fs::write(&shard, &bytes).unwrap();
    let archive = Archive::open(&dir).unwrap();
    assert!(archive.scan().any(|s| s.is_err()));
    // A stored record is read without its block header, and its own CRC holds: the right
    // bytes, or an error, never others.
    if let Ok(s) = archive.get(0) {
        assert_eq!(s.key(), small_samples()[0].0);
    }
    assert!(!shardpack::verify(&dir, &Default::default())
        .unwrap()
        .is_ok());
}

/// Runs `f` on a thread and fails the test if it has not returned within 10 s: a call that
/// blocks for ever (opening a FIFO waits for a writer) fails instead of hanging the suite.
fn returns_soon<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_where_a_file_is_expected_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    write_archive(&archive, tiny(Compression::None), &small_samples());
    let _ = shardpack::protect(&archive, 10.0).unwrap();

    // parity.spp: verify reports it, repair refuses to use it; neither waits.
    std::fs::remove_file(archive.join("parity.spp")).unwrap();
    mkfifo(&archive.join("parity.spp"));
    let a = archive.clone();
    let report = returns_soon("verify", move || {
        shardpack::verify(&a, &Default::default()).unwrap()
    });
    assert!(!report.is_ok(), "a FIFO parity file is a finding");
    let a = archive.clone();
    let repaired = returns_soon("repair", move || shardpack::repair(&a));
    if let Ok(r) = repaired {
        assert!(!r.complete(), "nothing is repaired from a FIFO");
    }

    // manifest.json: opening the archive fails at once.
    std::fs::remove_file(archive.join("manifest.json")).unwrap();
    mkfifo(&archive.join("manifest.json"));
    let a = archive.clone();
    let err = returns_soon("open", move || Archive::open(&a).err().unwrap());
    assert!(err.is_io(), "{err}");
    // A shard: a FIFO named like one is refused, by the reader and the verifier.
    let shard = archive.join("shard-000000.shp");
    std::fs::remove_file(&shard).unwrap();
    mkfifo(&shard);
    let err = returns_soon("shard open", move || {
        shardpack::Shard::open(&shard, Limits::default())
            .err()
            .unwrap()
    });
    assert!(err.is_io(), "{err}");
    let a = archive.clone();
    returns_soon("verify of a FIFO shard", move || {
        let _ = shardpack::verify(&a, &Default::default());
    });
}

/// `protect`, `repair` and `unstream` write their temporary files under names an attacker
/// can plant beforehand (`parity.spp.partial`, `NAME.repair`): a symbolic link there is
/// removed, never written through.
#[test]
fn a_planted_link_under_a_temporary_name_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    write_archive(&archive, tiny(Compression::None), &small_samples());
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"precious").unwrap();
    let plant = |name: &str| {
        let link = archive.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
    };

    plant("parity.spp.partial");
    let _ = shardpack::protect(&archive, 20.0).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    assert!(!archive.join("parity.spp.partial").exists());

    // Damage a shard so that repair writes it back through its temporary name.
    let shard = archive.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    let original = bytes.clone();
    bytes[300] ^= 0xFF;
    std::fs::write(&shard, &bytes).unwrap();
    plant("shard-000000.shp.repair");
    let report = shardpack::repair(&archive).unwrap();
    assert!(report.complete(), "{report:?}");
    assert_eq!(std::fs::read(&shard).unwrap(), original);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
}

/// Two commands that change one archive at once exclude each other: while one holds the
/// archive's lock, `protect` and `repair` fail at once and change nothing; readers and
/// `verify` need no lock.
#[test]
fn protect_and_repair_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    write_archive(&archive, tiny(Compression::None), &small_samples());
    let _ = shardpack::protect(&archive, 10.0).unwrap();
    let parity = std::fs::read(archive.join("parity.spp")).unwrap();

    // Hold the lock as another process would: flock on the folder, from a child that says
    // when it has it.
    let held = dir.path().join("held");
    let mut holder = std::process::Command::new("flock")
        .arg(&archive)
        .arg("-c")
        .arg(format!("touch '{}'; sleep 5", held.display()))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !held.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = shardpack::protect(&archive, 30.0).expect_err("protect refused");
    assert!(
        err.is_io() && err.to_string().contains("another shardpack command"),
        "{err}"
    );
    let err = shardpack::repair(&archive).expect_err("repair refused");
    assert!(
        err.to_string().contains("another shardpack command"),
        "{err}"
    );
    assert_eq!(std::fs::read(archive.join("parity.spp")).unwrap(), parity);
    assert!(
        Archive::open(&archive).unwrap().get(0).is_ok(),
        "readers need no lock"
    );
    assert!(shardpack::verify(&archive, &Default::default())
        .unwrap()
        .is_ok());
    // Once the holder is done, the lock is free again.
    holder.wait().unwrap();
    let _ = shardpack::protect(&archive, 10.0).unwrap();
}

/// A parity header declaring a 512 MiB chunk, with a (sparse) file of the length its
/// geometry implies: a loader holds a chunk in memory, so the header is refused at its
/// geometry (chunks are at most 16 MiB, §17.5 rule 2) before anything is sized from it.
#[test]
fn a_parity_header_declaring_a_huge_chunk_is_refused_before_anything_is_allocated() {
    use shardpack::format::parity::ParityHeader;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    write_archive(&archive, tiny(Compression::None), &small_samples());
    let _ = shardpack::protect(&archive, 10.0).unwrap();
    let path = archive.join("parity.spp");
    let genuine = std::fs::read(&path).unwrap();
    let mut h = ParityHeader::decode(genuine[..128].try_into().unwrap()).unwrap();
    let tables = genuine[h.tables_offset as usize..][..h.tables_len as usize].to_vec();
    let chunk: u64 = 512 << 20;
    h.chunk_bytes = chunk as u32;
    // Layers offset C, one parity layer of L chunks, then the tables twice and the header.
    h.tables_offset = chunk + u64::from(h.parity_layers) * h.layer_chunks * chunk;
    let b = h.encode();
    let len = h.tables_offset + 2 * h.tables_len + 128;
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&b, 0).unwrap();
    file.write_all_at(&tables, h.tables_offset).unwrap();
    file.write_all_at(&tables, h.tables_offset + h.tables_len)
        .unwrap();
    file.write_all_at(&b, len - 128).unwrap();
    drop(file);
    let start = std::time::Instant::now();
    let err = shardpack::parity_status(&archive).expect_err("refused");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Corrupt {
                location,
                defect: shardpack::Defect::Invalid {
                    structure: shardpack::Structure::ParityHeader,
                    field: "geometry",
                    ..
                },
            } if location.file == path && location.offset == 0
        ),
        "{err}"
    );
    let others = || -> Vec<Vec<u8>> {
        ["manifest.json", "shard-000000.shp", "shard-000001.shp"]
            .iter()
            .map(|n| std::fs::read(archive.join(n)).unwrap())
            .collect()
    };
    let before = others();
    let report = shardpack::repair(&archive).unwrap();
    assert!(
        matches!(
            report.status[0].parity_file,
            shardpack::ParityFileState::Unusable { .. }
        ),
        "{report:?}"
    );
    assert_eq!(others(), before, "repair changed nothing");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "refused at once, not after reading 512 MiB chunks: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_parity_header_declaring_more_layers_than_a_writer_writes_is_refused() {
    use shardpack::format::parity::ParityHeader;
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    write_archive(&archive, tiny(Compression::None), &small_samples());
    let _ = shardpack::protect(&archive, 10.0).unwrap();
    let path = archive.join("parity.spp");
    let genuine = std::fs::read(&path).unwrap();
    let mut h = ParityHeader::decode(genuine[..128].try_into().unwrap()).unwrap();
    let tables = genuine[h.tables_offset as usize..][..h.tables_len as usize].to_vec();
    // One data layer and 11 parity layers (1100%): supported by the code and consistent
    // in every length, but more than a writer writes (m ≤ 10 k), so a stripe of such
    // layers is never held in memory.
    let chunk = u64::from(h.chunk_bytes);
    h.data_layers = 1;
    h.layer_chunks = h.data_chunks;
    h.parity_layers = 11;
    let layers_offset = 128u64.div_ceil(chunk) * chunk;
    h.tables_offset = layers_offset + 11 * h.layer_chunks * chunk;
    let len = h.tables_offset + 2 * h.tables_len + 128;
    let b = h.encode();
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(len).unwrap();
    file.write_all_at(&b, 0).unwrap();
    file.write_all_at(&tables, h.tables_offset).unwrap();
    file.write_all_at(&tables, h.tables_offset + h.tables_len)
        .unwrap();
    file.write_all_at(&b, len - 128).unwrap();
    drop(file);
    let err = shardpack::parity_status(&archive).expect_err("refused");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Corrupt {
                defect: shardpack::Defect::Invalid {
                    structure: shardpack::Structure::ParityHeader,
                    field: "geometry",
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}
