//! Golden vectors: the writer's exact output for fixed input is pinned in `tests/vectors/`,
//! and an independent minimal reader written from `format-spec.md` alone reads it back.
//!
//! Regenerate (only when the format or a canonical writer rule changes, in the same commit
//! as the spec) with
//! `SHARDPACK_REGENERATE_VECTORS=1 cargo test --test vectors`, then update the SHA-256s in
//! `tests/vectors/README.md`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shardpack::stream::{StreamItem, StreamReader};
use shardpack::{
    Archive, Compression, Defect, ErrorKind, Limits, MediaProfile, Structure, WriterBuilder,
};

/// A folder vector: its name, options, samples and the parity percentage it is protected
/// with (§17), if any.
type Vector = (&'static str, WriterBuilder, Vec<OwnedSample>, Option<f64>);

/// Each vector's name, options and samples: 1.0 stored and zstd, 1.1 with dictionaries, page
/// placement with fillers, parity, and 1.0 and 1.1 shards in one archive.
fn vectors() -> Vec<Vector> {
    vec![
        (
            "small-stored",
            tiny(Compression::None),
            small_samples(),
            None,
        ),
        (
            "small-zstd",
            tiny(Compression::Zstd { level: 3 }),
            small_samples(),
            None,
        ),
        (
            "small-dictionary",
            with_dictionary(),
            text_samples(200),
            None,
        ),
        ("small-ssd-stored", ssd_stored(), page_samples(), None),
        (
            "small-parity",
            tiny(Compression::None),
            small_samples(),
            Some(50.0),
        ),
        (
            "small-dictionary-multi",
            with_dictionary().shard_size(10240),
            text_samples(100),
            None,
        ),
    ]
}

/// The `ssd` profile (4 KiB alignment and record page) with stored blocks (§5.4, §15).
fn ssd_stored() -> WriterBuilder {
    WriterBuilder::for_profile(MediaProfile::ssd())
        .compression(Compression::None)
        .archive_id([0x55; 16])
}

/// The samples of §15's placement example: 3000, 3000 and 100 data bytes under 4-byte keys
/// and a 1-byte field name, so records of 3,023, 3,023 and 123 bytes.
fn page_samples() -> Vec<OwnedSample> {
    [3000usize, 3000, 100]
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            (
                format!("p{i:03}"),
                vec![("d".into(), noise(10 + i as u64, n))],
            )
        })
        .collect()
}

fn vector_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

#[test]
fn writer_output_matches_the_vectors() {
    let regenerate = std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some();
    for (name, builder, samples, parity) in vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join(name);
        write_archive(&fresh, builder, &samples);
        if let Some(percent) = parity {
            let _ = shardpack::protect(&fresh, percent).unwrap();
        }
        let golden = vector_dir(name);
        if regenerate {
            let _ = std::fs::remove_dir_all(&golden);
            std::fs::create_dir_all(&golden).unwrap();
            for (file, bytes) in files(&fresh) {
                std::fs::write(golden.join(file.file_name().unwrap()), bytes).unwrap();
            }
        }
        let (want, got) = (files(&golden), files(&fresh));
        assert_eq!(want.len(), got.len(), "{name}: file count");
        for ((wf, w), (_, g)) in want.iter().zip(&got) {
            assert_same(wf, w, g);
        }
    }
}

/// Panics with the first differing offset unless `got` is `want` byte for byte.
fn assert_same(file: &Path, want: &[u8], got: &[u8]) {
    if let Some(at) = want.iter().zip(got).position(|(a, b)| a != b) {
        panic!(
            "{}: first difference at byte {at}: vector {:#04x}, writer {:#04x}",
            file.display(),
            want[at],
            got[at]
        );
    }
    assert_eq!(want.len(), got.len(), "{}: length", file.display());
}

#[test]
fn vectors_read_back_through_the_library() {
    for (name, _, samples, _) in vectors() {
        let archive = Archive::open(vector_dir(name)).unwrap();
        assert_eq!(read_all(&archive), samples, "{name}");
        assert!(shardpack::verify(vector_dir(name), &Default::default())
            .unwrap()
            .is_ok());
    }
}

// ---- An independent minimal reader, from format-spec.md only (no shardpack types). ----

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn minimal_read(dir: &Path) -> Vec<OwnedSample> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for shard in manifest["shards"].as_array().unwrap() {
        let f = std::fs::read(dir.join(shard["file"].as_str().unwrap())).unwrap();
        assert_eq!(
            blake3::hash(&f).to_hex().as_str(),
            shard["blake3"].as_str().unwrap()
        );
        assert_eq!(&f[..8], b"\x89SHP\r\n\x1a\n");
        assert_eq!(crc32fast::hash(&f[..124]), u32le(&f, 124));
        let t = &f[f.len() - 128..];
        assert_eq!(&t[..8], b"\x89SPE\r\n\x1a\n");
        assert_eq!(crc32fast::hash(&t[..124]), u32le(t, 124));
        // 1.1: a dictionary of dictionary_len bytes follows the header (§5.5).
        let dictionary_len = u32le(&f, 72) as usize;
        let dictionary = &f[128..128 + dictionary_len];
        assert_eq!(crc32fast::hash(dictionary), u32le(&f, 76));
        let expected_minor = u16::from(dictionary_len > 0);
        assert_eq!((u16le(&f, 8), u16le(&f, 10)), (1, expected_minor));
        assert_eq!((u16le(t, 8), u16le(t, 10)), (1, expected_minor));
        let (blocks, records) = (u32le(t, 36) as usize, u64le(t, 40) as usize);
        let (index, index_len, heap_len) = (
            u64le(t, 56) as usize,
            u64le(t, 64) as usize,
            u64le(t, 72) as usize,
        );
        assert_eq!(crc32fast::hash(&f[index..index + index_len]), u32le(t, 88));
        let record_table = index + 32 * blocks;
        let heap = record_table + 36 * records;
        let mut decoded: Vec<Vec<u8>> = Vec::new();
        for b in 0..blocks {
            let e = index + 32 * b;
            let off = u64le(&f, e) as usize;
            let h = &f[off..off + 64];
            assert_eq!(&h[..8], b"\x89SPB\r\n\x1a\n");
            assert_eq!(crc32fast::hash(&h[..60]), u32le(h, 60));
            let (stored, raw) = (u64le(h, 32) as usize, u64le(h, 40) as usize);
            let payload = &f[off + 64..off + 64 + stored];
            assert_eq!(crc32fast::hash(payload), u32le(h, 48));
            decoded.push(match h[28] {
                0 => payload.to_vec(),
                1 => zstd::bulk::decompress(payload, raw).unwrap(),
                2 => {
                    // A frame table of record_count u32 ends, then one frame per record.
                    let count = u32le(h, 24) as usize;
                    let frames = &payload[4 * count..];
                    let mut d = zstd::bulk::Decompressor::with_dictionary(dictionary).unwrap();
                    let mut out = Vec::new();
                    let mut start = 0;
                    for i in 0..count {
                        let end = u32le(payload, 4 * i) as usize;
                        out.extend(d.decompress(&frames[start..end], raw).unwrap());
                        start = end;
                    }
                    assert_eq!(out.len(), raw);
                    out
                }
                c => panic!("codec {c}"),
            });
        }
        // §6.4: each decoded payload parses front to back into records and fillers; the
        // records met are the block's, at the offsets the record table gives.
        let mut walked: Vec<(usize, usize, usize)> = Vec::new();
        for (b, d) in decoded.iter().enumerate() {
            let mut a = 0;
            while a < d.len() {
                assert!(d.len() - a >= 8, "item header past the payload end");
                let (key_len, nfields) = (u16le(d, a) as usize, u16le(d, a + 2) as usize);
                let len = if key_len == 0 && nfields == 0 {
                    let n = u32le(d, a + 4) as usize;
                    assert!(d[a + 8..a + 8 + n].iter().all(|&z| z == 0), "filler bytes");
                    8 + n
                } else {
                    let descriptors = (0..nfields).map(|i| {
                        u64le(d, a + 8 + 10 * i) as usize + u16le(d, a + 16 + 10 * i) as usize
                    });
                    let len = 8 + 10 * nfields + key_len + descriptors.sum::<usize>();
                    walked.push((b, a, len));
                    len
                };
                assert!(len <= d.len() - a, "item past the payload end");
                a += len;
            }
        }
        assert_eq!(walked.len(), records, "records walked");
        for (r, walked) in walked.iter().enumerate() {
            let e = record_table + 32 * r;
            assert_eq!(
                *walked,
                (
                    u32le(&f, e + 24) as usize,
                    u64le(&f, e) as usize,
                    u64le(&f, e + 8) as usize
                ),
                "record {r}: walked against the record table"
            );
            let (offset, len, key_off, block, crc) = (
                u64le(&f, e) as usize,
                u64le(&f, e + 8) as usize,
                u64le(&f, e + 16) as usize,
                u32le(&f, e + 24) as usize,
                u32le(&f, e + 28),
            );
            let key_end = if r + 1 < records {
                u64le(&f, e + 32 + 16) as usize
            } else {
                heap_len
            };
            let rec = &decoded[block][offset..offset + len];
            assert_eq!(crc32fast::hash(rec), crc);
            let (key_len, nfields) = (u16le(rec, 0) as usize, u16le(rec, 2) as usize);
            let mut at = 8 + 10 * nfields;
            let key = std::str::from_utf8(&rec[at..at + key_len])
                .unwrap()
                .to_string();
            assert_eq!(key.as_bytes(), &f[heap + key_off..heap + key_end]);
            at += key_len;
            let mut names = Vec::new();
            for i in 0..nfields {
                let n = u16le(rec, 8 + 10 * i + 8) as usize;
                names.push(String::from_utf8(rec[at..at + n].to_vec()).unwrap());
                at += n;
            }
            let mut fields = Vec::new();
            for (i, name) in names.into_iter().enumerate() {
                let n = u64le(rec, 8 + 10 * i) as usize;
                fields.push((name, rec[at..at + n].to_vec()));
                at += n;
            }
            assert_eq!(at, rec.len());
            out.push((key, fields));
        }
        let order: Vec<usize> = (0..records)
            .map(|i| u32le(&f, heap - 4 * records + 4 * i) as usize)
            .collect();
        let keys: Vec<&str> = order
            .iter()
            .map(|&r| out[out.len() - records + r].0.as_str())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order sorted");
    }
    out
}

#[test]
fn an_independent_reader_reads_the_vectors() {
    for (name, _, samples, _) in vectors() {
        assert_eq!(minimal_read(&vector_dir(name)), samples, "{name}");
    }
}

/// The second input of the `small-merged` vector: two samples whose keys follow
/// `small-stored`'s, written with its options but archive id `b5` x 16.
fn merge_samples() -> Vec<OwnedSample> {
    vec![
        ("c/0001".into(), vec![("txt".into(), b"merged".to_vec())]),
        ("c/0002".into(), vec![("bin".into(), noise(3, 100))]),
    ]
}

/// `small-merged`: the `small-stored` vector and [`merge_samples`] merged (§13.5) with a
/// derived archive id, written into `out`.
fn write_merged(out: &Path) -> shardpack::MergeReport {
    let tmp = tempfile::tempdir().unwrap();
    let second = tmp.path().join("second");
    write_archive(
        &second,
        tiny(Compression::None).archive_id([0xB5; 16]),
        &merge_samples(),
    );
    shardpack::merge(
        &[vector_dir("small-stored"), second],
        out,
        &shardpack::MergeOptions::new(),
    )
    .unwrap()
}

#[test]
fn merger_output_matches_the_merged_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("small-merged");
    let report = write_merged(&fresh);
    let golden = vector_dir("small-merged");
    if std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        std::fs::create_dir_all(&golden).unwrap();
        for (file, bytes) in files(&fresh) {
            std::fs::write(golden.join(file.file_name().unwrap()), bytes).unwrap();
        }
    }
    let (want, got) = (files(&golden), files(&fresh));
    assert_eq!(want.len(), got.len(), "small-merged: file count");
    for ((wf, w), (_, g)) in want.iter().zip(&got) {
        assert_same(wf, w, g);
    }
    // Shards 0 and 1 are small-stored's but for their identity; shard 2 is the second
    // input's shard 0 renumbered; every sample reads back, also with the minimal reader.
    let mut samples = small_samples();
    samples.extend(merge_samples());
    assert_eq!(report.shards_rewritten, 3);
    // §13.5: the derived id, from the number of inputs and their roots.
    let mut id_input = 2u64.to_le_bytes().to_vec();
    for input in &report.inputs {
        id_input.extend(blake3::Hash::from_hex(&input.root).unwrap().as_bytes());
    }
    assert_eq!(
        hex(&blake3::derive_key("shardpack merge archive id v1", &id_input)[..16]),
        report.archive_id
    );
    assert_eq!(report.archive_id, "9794a9a41ec6cbf69c1e8c56e377637d");
    assert_eq!(read_all(&Archive::open(&golden).unwrap()), samples);
    assert_eq!(minimal_read(&golden), samples);
    let deep = shardpack::VerifyOptions {
        mode: shardpack::VerifyMode::Deep,
        ..Default::default()
    };
    assert!(shardpack::verify(&golden, &deep).unwrap().is_ok());
    let stored = std::fs::read(vector_dir("small-stored").join("shard-000000.shp")).unwrap();
    let merged = std::fs::read(golden.join("shard-000000.shp")).unwrap();
    let changed: Vec<usize> = (0..stored.len())
        .filter(|&i| stored[i] != merged[i])
        .collect();
    // Header 16..32 and 124..128; block headers at 128 and 384: 60..64 (their shard number
    // and ordinals are unchanged, 0 and 0/1); trailer 16..32, 92..96, 124..128.
    let allowed = |i: usize| {
        (16..32).contains(&i)
            || (124..128).contains(&i)
            || (128 + 60..128 + 64).contains(&i)
            || (384 + 60..384 + 64).contains(&i)
            || (832 + 16..832 + 32).contains(&i)
            || (832 + 92..832 + 96).contains(&i)
            || (832 + 124..832 + 128).contains(&i)
    };
    assert!(changed.iter().all(|&i| allowed(i)), "{changed:?}");
}

/// `small-generations`: a copy of the `small-stored` vector with [`merge_samples`] appended
/// as generation 2 (§11.3), written into `out`.
fn write_generations(out: &Path) -> shardpack::Manifest {
    std::fs::create_dir_all(out).unwrap();
    for (file, bytes) in files(&vector_dir("small-stored")) {
        std::fs::write(out.join(file.file_name().unwrap()), bytes).unwrap();
    }
    let mut writer = WriterBuilder::new().append(out).unwrap();
    for (key, fields) in merge_samples() {
        let fields: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        writer.append(&key, &fields).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn appended_output_matches_the_generations_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("small-generations");
    let manifest = write_generations(&fresh);
    let golden = vector_dir("small-generations");
    if std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        std::fs::create_dir_all(&golden).unwrap();
        for (file, bytes) in files(&fresh) {
            std::fs::write(golden.join(file.file_name().unwrap()), bytes).unwrap();
        }
    }
    let (want, got) = (files(&golden), files(&fresh));
    assert_eq!(want.len(), got.len(), "small-generations: file count");
    for ((wf, w), (_, g)) in want.iter().zip(&got) {
        assert_same(wf, w, g);
    }
    // Generation 1 is small-stored, byte for byte, kept under its number; generation 2
    // names its root and lists its shards first, unchanged.
    let stored = vector_dir("small-stored");
    assert_eq!(
        std::fs::read(golden.join("manifest-000001.json")).unwrap(),
        std::fs::read(stored.join("manifest.json")).unwrap()
    );
    for shard in ["shard-000000.shp", "shard-000001.shp"] {
        assert_eq!(
            std::fs::read(golden.join(shard)).unwrap(),
            std::fs::read(stored.join(shard)).unwrap()
        );
    }
    let first = Archive::open(&stored).unwrap();
    let generation = manifest.generation.as_ref().unwrap();
    assert_eq!(
        (generation.number, generation.parent.as_str()),
        (2, first.root_digest())
    );
    assert_eq!(manifest.format_version, "1.3");
    let one = Archive::options().generation(1).open(&golden).unwrap();
    assert_eq!(read_all(&one), small_samples());
    let mut samples = small_samples();
    samples.extend(merge_samples());
    assert_eq!(read_all(&Archive::open(&golden).unwrap()), samples);
    assert_eq!(minimal_read(&golden), samples);
    let report = shardpack::verify(&golden, &Default::default()).unwrap();
    assert!(
        report.is_ok() && report.generations == 2,
        "{:?}",
        report.findings
    );
}

#[test]
fn the_crc_is_crc32_iso_hdlc() {
    assert_eq!(
        shardpack::format::checksum::crc32(b"123456789"),
        0xCBF4_3926
    );
}

/// Named bad vectors, each made from a golden one, each mapping to one error kind.
#[test]
fn bad_vectors_map_to_their_error_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    std::fs::create_dir(&dir).unwrap();
    for (file, bytes) in files(&vector_dir("small-stored")) {
        std::fs::write(dir.join(file.file_name().unwrap()), bytes).unwrap();
    }
    let shard = dir.join("shard-000000.shp");
    let good = std::fs::read(&shard).unwrap();
    let fix_crc = |b: &mut Vec<u8>| {
        let crc = crc32fast::hash(&b[..124]);
        b[124..128].copy_from_slice(&crc.to_le_bytes());
    };
    // bad_version: a future major with a correct CRC.
    let mut b = good.clone();
    b[8] = 2;
    fix_crc(&mut b);
    std::fs::write(&shard, &b).unwrap();
    let err = Archive::open(&dir).unwrap().get(0).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnsupportedVersion { got: (2, 0), .. }
        ),
        "{err}"
    );
    // bad_magic
    let mut b = good.clone();
    b[1] = b'X';
    std::fs::write(&shard, &b).unwrap();
    let err = Archive::open(&dir).unwrap().get(0).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Corrupt {
                defect: Defect::Magic {
                    structure: Structure::ShardHeader,
                    ..
                },
                location,
            } if location.offset == 0
        ),
        "{err}"
    );
    // bad_manifest_root
    std::fs::write(&shard, &good).unwrap();
    let m = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let root_at = m.find("\"root\": \"").unwrap() + 9;
    let mut m = m.into_bytes();
    m[root_at] = if m[root_at] == b'0' { b'1' } else { b'0' };
    std::fs::write(dir.join("manifest.json"), &m).unwrap();
    let err = Archive::open(&dir).err().unwrap();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Corrupt {
                defect: Defect::Digest {
                    structure: Structure::Manifest,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
}

// ---- The tape stream vector (§16). ----

/// The stream vector's record size: the smallest a writer may use (§16.1).
const STREAM_RECORD: usize = 4096;

/// `small-stream`: the `small-stored` options and samples as a stream of 4 KiB records, with
/// a checkpoint every two shards.
fn stream_builder() -> WriterBuilder {
    tiny(Compression::None)
        .stream_record(STREAM_RECORD as u32)
        .checkpoint_every(2)
}

fn stream_vector() -> PathBuf {
    vector_dir("small-stream").join("stream.bin")
}

/// A sink that keeps what it is given, shared with the test.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_stream(builder: WriterBuilder, samples: &[OwnedSample]) -> Vec<u8> {
    let sink = Sink::default();
    let mut w = builder
        .create_stream(Box::new(sink.clone()), "small-stream")
        .unwrap();
    for (key, fields) in samples {
        let f: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        w.append(key, &f).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::mem::take(&mut *sink.0.lock().unwrap());
    bytes
}

#[test]
fn writer_output_matches_the_stream_vector() {
    let got = write_stream(stream_builder(), &small_samples());
    let path = stream_vector();
    if std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    assert_same(&path, &std::fs::read(&path).unwrap(), &got);
}

/// An entry header's fields as §16.2 lays them out, its magic, version, length, CRC and
/// reserved bytes checked: (record_size, kind, generation, manifest_len, self_offset,
/// previous, archive_id, digest).
type Entry = (u32, u8, u64, u64, u64, u64, Vec<u8>, Vec<u8>);

fn minimal_entry(b: &[u8]) -> Entry {
    assert_eq!(&b[..8], b"\x89SPM\r\n\x1a\n");
    assert_eq!((u16le(b, 8), u16le(b, 10), u32le(b, 12)), (1, 0, 128));
    assert_eq!(crc32fast::hash(&b[..124]), u32le(b, 124));
    assert!(b[21..24].iter().chain(&b[104..124]).all(|&z| z == 0));
    (
        u32le(b, 16),
        b[20],
        u64le(b, 24),
        u64le(b, 32),
        u64le(b, 40),
        u64le(b, 48),
        b[56..72].to_vec(),
        b[72..104].to_vec(),
    )
}

/// The stream vector, taken apart from §16 alone: a start entry, the `small-stored` shards
/// unchanged (§13.2 rule 3), each padded with zeros to a record boundary, a checkpoint after
/// the second shard and the final entry, each with the `small-stored` manifest; and read
/// back by `StreamReader`.
#[test]
fn the_stream_vector_reads_back() {
    let stream = std::fs::read(stream_vector()).unwrap();
    let r = STREAM_RECORD;
    assert_eq!(stream.len() % r, 0);
    let id = vec![0xA5; 16];
    let empty = blake3::hash(b"").as_bytes().to_vec();
    assert_eq!(
        minimal_entry(&stream[..128]),
        (r as u32, 0, 0, 0, 0, u64::MAX, id.clone(), empty)
    );
    assert!(stream[128..r].iter().all(|&z| z == 0));
    let folder = files(&vector_dir("small-stored"));
    let manifest = &folder[0].1;
    let mut at = r;
    for (_, shard) in &folder[1..] {
        assert_eq!(&stream[at..at + shard.len()], &shard[..]);
        let end = (at + shard.len()).div_ceil(r) * r;
        assert!(stream[at + shard.len()..end].iter().all(|&z| z == 0));
        at = end;
    }
    let mut previous = 0;
    for (generation, kind) in [(1, 1), (2, 2)] {
        let digest = blake3::hash(manifest).as_bytes().to_vec();
        let len = manifest.len() as u64;
        let entry = (
            r as u32,
            kind,
            generation,
            len,
            at as u64,
            previous,
            id.clone(),
            digest,
        );
        assert_eq!(minimal_entry(&stream[at..at + 128]), entry);
        assert!(stream[at + 128..at + r].iter().all(|&z| z == 0));
        assert_eq!(&stream[at + r..at + r + manifest.len()], &manifest[..]);
        let end = (at + r + manifest.len()).div_ceil(r) * r;
        assert!(stream[at + r + manifest.len()..end].iter().all(|&z| z == 0));
        previous = at as u64;
        at = end;
    }
    assert_eq!(at, stream.len(), "nothing after the final entry");

    let reader = StreamReader::new(&stream[..], "small-stream", Limits::default()).unwrap();
    assert_eq!(reader.record_size(), r as u64);
    let (mut samples, mut ends, mut manifests) = (Vec::new(), Vec::new(), Vec::new());
    for item in reader {
        match item.unwrap() {
            StreamItem::Sample(s) => samples.push((
                s.key().to_string(),
                s.fields()
                    .map(|(n, d)| (n.to_string(), d.to_vec()))
                    .collect::<Vec<_>>(),
            )),
            StreamItem::ShardEnd { number, size, .. } => ends.push((number, size)),
            StreamItem::Manifest { kind, manifest } => manifests.push((kind, manifest.root)),
            _ => panic!("unexpected stream item"),
        }
    }
    assert_eq!(samples, small_samples());
    assert_eq!(ends, [(0, 960), (1, 512)]);
    let root = "0dec78a11fda1b222e8ab83dec83205f6efd5cc84b8639a47566ff318b72e734".to_string();
    assert_eq!(
        manifests,
        [
            (shardpack::EntryKind::Checkpoint, root.clone()),
            (shardpack::EntryKind::Final, root)
        ]
    );
}

// ---- The stream vector with a second generation (§16.5). ----

fn stream_generations_vector() -> PathBuf {
    vector_dir("small-stream-generations").join("stream.bin")
}

/// `small-stream-generations`: the `small-stream` vector with [`merge_samples`] appended as
/// generation 2 (§16.5), written into the file `out`.
fn write_stream_generations(out: &Path) -> shardpack::Manifest {
    std::fs::copy(stream_vector(), out).unwrap();
    let mut writer = WriterBuilder::new()
        .checkpoint_every(2)
        .append_stream_file(out)
        .unwrap();
    for (key, fields) in merge_samples() {
        let fields: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        writer.append(&key, &fields).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn appended_stream_matches_the_stream_generations_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("stream.bin");
    write_stream_generations(&fresh);
    let path = stream_generations_vector();
    if std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(&fresh, &path).unwrap();
    }
    assert_same(
        &path,
        &std::fs::read(&path).unwrap(),
        &std::fs::read(&fresh).unwrap(),
    );
}

/// The second generation of a stream, taken apart from §16.5 alone: `small-stream`
/// unchanged, then `small-generations`' new shard 2 and a final entry (entry counter 3,
/// `previous` the first generation's final entry) holding `small-generations`'
/// `manifest.json`; read back by `StreamReader`, and unstreamed into exactly the files of
/// `small-generations`.
#[test]
fn the_stream_generations_vector_reads_back() {
    let stream = std::fs::read(stream_generations_vector()).unwrap();
    let first = std::fs::read(stream_vector()).unwrap();
    let r = STREAM_RECORD;
    assert_eq!(&stream[..first.len()], &first[..], "generation 1 unchanged");
    let generations = vector_dir("small-generations");
    let shard = std::fs::read(generations.join("shard-000002.shp")).unwrap();
    let manifest = std::fs::read(generations.join("manifest.json")).unwrap();
    let mut at = first.len();
    assert_eq!(&stream[at..at + shard.len()], &shard[..]);
    let end = (at + shard.len()).div_ceil(r) * r;
    assert!(stream[at + shard.len()..end].iter().all(|&z| z == 0));
    at = end;
    // small-stream's final entry is at 20480 (§15).
    let previous = 20480;
    assert_eq!(
        stream[previous + 20],
        2,
        "the entry before is generation 1's final one"
    );
    let entry = (
        r as u32,
        2,
        3,
        manifest.len() as u64,
        at as u64,
        previous as u64,
        vec![0xA5; 16],
        blake3::hash(&manifest).as_bytes().to_vec(),
    );
    assert_eq!(minimal_entry(&stream[at..at + 128]), entry);
    assert!(stream[at + 128..at + r].iter().all(|&z| z == 0));
    assert_eq!(&stream[at + r..at + r + manifest.len()], &manifest[..]);
    let end = (at + r + manifest.len()).div_ceil(r) * r;
    assert!(stream[at + r + manifest.len()..end].iter().all(|&z| z == 0));
    assert_eq!(end, stream.len(), "nothing after the last final entry");

    let reader = StreamReader::new(&stream[..], "s", Limits::default()).unwrap();
    let mut samples = Vec::new();
    let mut finals = Vec::new();
    for item in reader {
        match item.unwrap() {
            StreamItem::Sample(s) => samples.push((
                s.key().to_string(),
                s.fields()
                    .map(|(n, d)| (n.to_string(), d.to_vec()))
                    .collect::<Vec<_>>(),
            )),
            StreamItem::Manifest {
                kind: shardpack::EntryKind::Final,
                manifest,
            } => {
                finals.push((manifest.generation_number(), manifest.root));
            }
            _ => {}
        }
    }
    let mut want = small_samples();
    want.extend(merge_samples());
    assert_eq!(samples, want);
    let gen2 = Archive::open(&generations).unwrap().manifest().root.clone();
    let root1 = "0dec78a11fda1b222e8ab83dec83205f6efd5cc84b8639a47566ff318b72e734".to_string();
    assert_eq!(finals, [(1, root1), (2, gen2)]);

    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("u");
    let report = shardpack::stream::unstream(&stream[..], "s", &folder, Limits::default()).unwrap();
    assert!(report.complete);
    let (want, got) = (files(&generations), files(&folder));
    assert_eq!(want.len(), got.len(), "unstreamed: file count");
    for ((wf, w), (_, g)) in want.iter().zip(&got) {
        assert_same(wf, w, g);
    }
}

// ---- The informative values of §15. ----

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The byte string *M* of §11.2, built from the parsed JSON.
fn root_input(m: &serde_json::Value) -> Vec<u8> {
    let mut out = b"shardpack archive root v1\n".to_vec();
    fn s(out: &mut Vec<u8>, v: &serde_json::Value) {
        let t = v.as_str().unwrap();
        out.extend((t.len() as u64).to_le_bytes());
        out.extend(t.as_bytes());
    }
    fn u(out: &mut Vec<u8>, v: &serde_json::Value) {
        out.extend(v.as_u64().unwrap_or(0).to_le_bytes());
    }
    for k in ["format", "format_version", "writer", "archive_id"] {
        s(&mut out, &m[k]);
    }
    let l = &m["layout"];
    s(&mut out, &l["profile"]);
    u(&mut out, &l["align"]);
    u(&mut out, &l["block_size"]);
    u(&mut out, &l["shard_size"]);
    s(&mut out, &l["compression"]);
    out.extend(l["level"].as_i64().unwrap().to_le_bytes());
    u(&mut out, &l["volume_size"]);
    for k in ["shards", "samples", "bytes", "raw_bytes"] {
        u(&mut out, &m["totals"][k]);
    }
    let shards = m["shards"].as_array().unwrap();
    out.extend((shards.len() as u64).to_le_bytes());
    for e in shards {
        s(&mut out, &e["file"]);
        for k in ["size", "samples", "first_ordinal", "raw_bytes"] {
            u(&mut out, &e[k]);
        }
        for k in ["min_key", "max_key", "blake3"] {
            s(&mut out, &e[k]);
        }
        u(&mut out, &e["volume"]);
    }
    out
}

/// The root of the manifest in `dir`, recomputed from §11.2, with the length of *M*.
fn recomputed_root(dir: &Path) -> (usize, String) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let input = root_input(&m);
    let root = blake3::hash(&input).to_hex().to_string();
    assert_eq!(root, m["root"].as_str().unwrap(), "{}", dir.display());
    (input.len(), root)
}

/// The §11.1 example manifest, as the spec text shows it.
fn spec_example_manifest() -> String {
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec.md"))
            .unwrap();
    let from = spec
        .find("Example (informative, §15): the canonical manifest")
        .unwrap();
    let start = from + spec[from..].find("```json\n").unwrap() + 8;
    let end = start + spec[start..].find("\n```").unwrap();
    spec[start..end].to_string()
}

/// Every informative value §15 lists (and §5.4, §6.3, §11.2, §13.2 rule 6, §16.2 and §17
/// give), from the spec text, against what the code computes.
#[test]
fn the_informative_values_of_section_15_hold() {
    // §13.2 rule 6: derived archive ids.
    let layout = br#"{"profile":"generic","align":4096,"block_size":1048576,"shard_size":268435456,"compression":"zstd","level":3}"#;
    assert_eq!(layout.len(), 109);
    assert_eq!(
        hex(&blake3::derive_key("shardpack archive id v1", layout)[..16]),
        "bf0b0d3621b7015d7196ce0bd0bdf208"
    );
    for (profile, id) in [
        (MediaProfile::generic(), "bf0b0d3621b7015d7196ce0bd0bdf208"),
        (MediaProfile::hdd(), "877ed7304dd685119ea9a2b27308c78f"),
        (MediaProfile::ssd(), "7b7dafbe2420f22bc6b52523726bf2f6"),
        (MediaProfile::tape(), "2f253471dba9476933287fbc53126259"),
        (MediaProfile::optical(), "cb74dbaf872ebed61e2d6048f0bcf0ac"),
    ] {
        let derived = WriterBuilder::for_profile(profile).derive_archive_id([]);
        assert_eq!(hex(&derived), id, "{}", profile.name);
    }

    // §11.1 example and §11.2: the empty default archive.
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    write_archive(&empty, WriterBuilder::new(), &[]);
    let written = std::fs::read_to_string(empty.join("manifest.json")).unwrap();
    assert_eq!(written.trim_end_matches('\n'), spec_example_manifest());
    let empty_root = "bba4804e70332d8c699fec497321953cfb1ffaed2686213f6bae9afefca7c236";
    assert_eq!(recomputed_root(&empty), (224, empty_root.to_string()));
    let stored_root = "0dec78a11fda1b222e8ab83dec83205f6efd5cc84b8639a47566ff318b72e734";
    let zstd_root = "5ee87f6ebafaa16e96dea187217696ad3286285df3632f728b084c3ce0ff2905";
    assert_eq!(
        recomputed_root(&vector_dir("small-stored")),
        (568, stored_root.to_string())
    );
    assert_eq!(
        recomputed_root(&vector_dir("small-zstd")),
        (396, zstd_root.to_string())
    );
    for (name, ..) in vectors() {
        recomputed_root(&vector_dir(name));
    }

    // §6.3: the example record and its record_crc.
    let record = tmp.path().join("record");
    let sample = ("a".to_string(), vec![("x".to_string(), b"hi".to_vec())]);
    write_archive(&record, tiny(Compression::None), &[sample]);
    let f = std::fs::read(record.join("shard-000000.shp")).unwrap();
    let example = [
        1, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'a', b'x', b'h', b'i',
    ];
    assert_eq!(&f[128 + 64..128 + 64 + 22], &example);
    assert_eq!(crc32fast::hash(&example), 0xB066_68B3);
    let index = u64le(&f, f.len() - 128 + 56) as usize;
    assert_eq!(
        &f[index + 32 + 28..index + 32 + 32],
        &[0xB3, 0x68, 0x66, 0xB0]
    );

    // §16.2: the start entry's digest.
    let stream = std::fs::read(stream_vector()).unwrap();
    let empty_digest = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
    assert_eq!(hex(&stream[72..104]), empty_digest);
    assert_eq!(blake3::hash(b"").to_hex().as_str(), empty_digest);

    // §5.4: page placement with the ssd profile (the small-ssd-stored vector).
    let f = std::fs::read(vector_dir("small-ssd-stored").join("shard-000000.shp")).unwrap();
    let index = u64le(&f, f.len() - 128 + 56) as usize;
    assert_eq!(u32le(&f, f.len() - 128 + 36), 1, "one block");
    let block = u64le(&f, index) as usize;
    assert_eq!(block, 4096);
    let placed: Vec<(usize, usize)> = (0..3)
        .map(|r| {
            let e = index + 32 + 32 * r;
            (
                block + 64 + u64le(&f, e) as usize,
                u64le(&f, e + 8) as usize,
            )
        })
        .collect();
    assert_eq!(placed, [(4160, 3023), (8192, 3023), (11215, 123)]);
    // The filler before the second record: 8-byte marker and 1,001 zero bytes.
    assert_eq!(&f[7183..7191], &[0, 0, 0, 0, 0xE9, 0x03, 0, 0]);
    assert!(f[7191..8192].iter().all(|&z| z == 0));

    // §17.3: the CRC-32 residue, and chunk 0 of a shard with align 4096.
    for msg in [&b""[..], b"123456789", &f[..124]] {
        let mut m = msg.to_vec();
        m.extend(crc32fast::hash(msg).to_le_bytes());
        assert_eq!(crc32fast::hash(&m), 0x2144_DF1C);
    }
    assert!(f[128..4096].iter().all(|&z| z == 0));
    assert_eq!(crc32fast::hash(&f[..4096]), 0x5D26_DAAD);

    // §15, §17.1: the parity file of the empty default archive, at any percentage up to 100.
    for percent in [1.0, 15.0, 100.0] {
        let dir = tmp.path().join(format!("empty-{percent}"));
        write_archive(&dir, WriterBuilder::new(), &[]);
        let _ = shardpack::protect(&dir, percent).unwrap();
        let p = std::fs::read(dir.join("parity.spp")).unwrap();
        assert_eq!(p.len(), 8462, "{percent}%");
        let header = parity_header(&p);
        assert_eq!(header, (4096, 1, 1, 1, 1, 1, 8192, 71), "{percent}%");
        // The root of §11.1's example manifest, at offset 84 (§17.1).
        assert_eq!(
            hex(&p[84..116]),
            "bba4804e70332d8c699fec497321953cfb1ffaed2686213f6bae9afefca7c236",
            "{percent}%"
        );
    }
}

/// The parity header's geometry (§17.1), its magic, version, CRC and copy checked:
/// (C, k, m, file_count, L, N, tables_offset, tables_len).
fn parity_header(p: &[u8]) -> (u32, u32, u32, u32, u64, u64, u64, u64) {
    assert_eq!(&p[..8], b"\x89SPR\r\n\x1a\n");
    assert_eq!((u16le(p, 8), u16le(p, 10), u32le(p, 12)), (1, 2, 128));
    assert!(p[116..124].iter().all(|&z| z == 0), "reserved");
    assert_eq!(crc32fast::hash(&p[..124]), u32le(p, 124));
    assert_eq!(&p[..128], &p[p.len() - 128..], "header copy");
    (
        u32le(p, 32),
        u32le(p, 36),
        u32le(p, 40),
        u32le(p, 44),
        u64le(p, 48),
        u64le(p, 56),
        u64le(p, 64),
        u64le(p, 72),
    )
}

/// `small-parity`: the parity file's geometry and size follow §17.1 and §17.2 from the
/// protected files' sizes, its two table copies are equal and match `tables_crc`.
#[test]
fn the_parity_vector_follows_the_size_formula() {
    let dir = vector_dir("small-parity");
    let p = std::fs::read(dir.join("parity.spp")).unwrap();
    let (c, k, m, count, l, n, tables_offset, tables_len) = parity_header(&p);
    // The root of the protected archive (small-stored's manifest, §11.2 and §15).
    assert_eq!(
        hex(&p[84..116]),
        "0dec78a11fda1b222e8ab83dec83205f6efd5cc84b8639a47566ff318b72e734"
    );
    let names = ["shard-000000.shp", "shard-000001.shp", "manifest.json"];
    let chunk = u64::from(c);
    assert_eq!(chunk, 4096, "max(align, 4096)");
    let sizes: Vec<u64> = names
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .collect();
    let data_chunks: u64 = sizes.iter().map(|s| s.div_ceil(chunk).max(1)).sum();
    assert_eq!(u64::from(count), names.len() as u64);
    assert_eq!(n, data_chunks);
    assert_eq!(u64::from(k), n.min(200));
    assert_eq!(l, n.div_ceil(u64::from(k)));
    assert_eq!(m, ((f64::from(k) * 50.0 / 100.0).ceil() as u32).max(1));
    assert_eq!((k, m), (3, 2));
    let parity = u64::from(m) * l * chunk;
    assert_eq!(tables_offset, chunk + parity);
    let names_len: u64 = names.iter().map(|f| 42 + f.len() as u64).sum();
    assert_eq!(tables_len, names_len + 8 * (n + u64::from(m) * l));
    assert_eq!(
        p.len() as u64,
        128 + (chunk - 128) + parity + 2 * tables_len + 128
    );
    assert!(p[128..chunk as usize].iter().all(|&z| z == 0));
    let t = tables_offset as usize;
    let tl = tables_len as usize;
    assert_eq!(&p[t..t + tl], &p[t + tl..t + 2 * tl]);
    assert_eq!(crc32fast::hash(&p[t..t + tl]), u32le(&p, 80));
}

/// `small-dictionary-multi`: shards with dictionaries close while held-back records remain
/// (§5.5 writer rule 5), which begin the next shard; the last set is too small to train on,
/// so the archive mixes 1.1 and 1.0 shards.
#[test]
fn the_multi_dictionary_vector_mixes_versions() {
    let dir = vector_dir("small-dictionary-multi");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format_version"], "1.1");
    let shards: Vec<(u64, u64, u32, u16)> = manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = std::fs::read(dir.join(e["file"].as_str().unwrap())).unwrap();
            (
                e["first_ordinal"].as_u64().unwrap(),
                e["samples"].as_u64().unwrap(),
                u32le(&f, 72),
                u16le(&f, 10),
            )
        })
        .collect();
    assert!(shards.len() >= 3, "{shards:?}");
    let (last, with_dictionary) = shards.split_last().unwrap();
    assert!(
        with_dictionary.iter().all(|s| s.2 > 0 && s.3 == 1),
        "{shards:?}"
    );
    // Rule 5: each dictionary shard after the first trained on the records the one before
    // it left, 64 or more; the last set had fewer than 64.
    assert!(shards[1..].iter().all(|s| s.0 > 0));
    assert_eq!((last.2, last.3), (0, 0), "{shards:?}");
    assert!(last.1 < 64, "{shards:?}");
}

// ---- Malformed vectors: copies of `small-stored` with one defect each. ----

/// Which reader operation must report a malformed vector's defect.
#[derive(Clone, Copy, Debug)]
enum By {
    /// `Archive::open(..)?.get(0)` fails with it.
    Get,
    /// A deep `verify` reports it among its findings.
    Verify,
}

/// A malformed vector: its name, the operation that must report it, and the defect (kind
/// name, structure) at the file offset it must name. The table in `tests/vectors/README.md`
/// and in format-spec.md §15 lists the same.
struct BadVector {
    name: &'static str,
    by: By,
    kind: &'static str,
    structure: Structure,
    offset: u64,
    make: fn(&mut Vec<u8>, &mut Vec<u8>),
}

const SHARD: &str = "shard-000000.shp";

/// The offset of a shard file's trailer (§8).
fn trailer_at(shard: &[u8]) -> usize {
    shard.len() - 128
}

/// The end of the first block payload followed by padding, walking the blocks (§4, §5.1).
fn first_block_padding(shard: &[u8]) -> usize {
    let index = u64le(shard, trailer_at(shard) + 56) as usize;
    let mut pos = 128;
    while pos < index {
        let end = pos + 64 + u64le(shard, pos + 32) as usize;
        let next = end.div_ceil(64) * 64;
        if next > end {
            return end;
        }
        pos = next;
    }
    panic!("no block of small-stored/{SHARD} is followed by padding");
}

/// Recomputes the manifest's digests of the shards, its totals and its root, so that the
/// only defect left is the one put in.
fn reseal(manifest: &mut Vec<u8>, shard: &[u8]) {
    let mut m = shardpack::manifest::Manifest::parse(manifest, Path::new("manifest.json")).unwrap();
    m.shards[0].blake3 = blake3::hash(shard).to_hex().to_string();
    m.root = m.compute_root();
    *manifest = m.to_canonical_bytes();
}

fn bad_vectors() -> Vec<BadVector> {
    vec![
        BadVector {
            name: "bad_header_crc",
            by: By::Get,
            kind: "crc",
            structure: Structure::ShardHeader,
            offset: 124,
            make: |shard, manifest| {
                shard[124] ^= 0xff;
                reseal(manifest, shard);
            },
        },
        BadVector {
            name: "bad_block_payload_crc",
            by: By::Verify,
            kind: "crc",
            structure: Structure::BlockPayload { block: 0 },
            offset: 192,
            make: |shard, manifest| {
                shard[192 + 10] ^= 0x20;
                reseal(manifest, shard);
            },
        },
        BadVector {
            name: "bad_block_padding",
            by: By::Verify,
            kind: "not_zero",
            structure: Structure::BlockPadding,
            offset: BLOCK_PADDING_AT,
            make: |shard, manifest| {
                let at = first_block_padding(shard);
                shard[at] = 0x5a;
                reseal(manifest, shard);
            },
        },
        BadVector {
            name: "bad_truncated_shard",
            by: By::Get,
            kind: "truncated",
            structure: Structure::ShardFile,
            offset: TRUNCATED_LEN,
            make: |shard, _| {
                shard.truncate(shard.len() - 64);
            },
        },
        BadVector {
            name: "bad_shard_digest",
            by: By::Verify,
            kind: "digest",
            structure: Structure::ShardFile,
            offset: 0,
            make: |_, manifest| {
                let mut m =
                    shardpack::manifest::Manifest::parse(manifest, Path::new("manifest.json"))
                        .unwrap();
                m.shards[0].blake3 = "5a".repeat(32);
                m.root = m.compute_root();
                *manifest = m.to_canonical_bytes();
            },
        },
        BadVector {
            name: "bad_record_crc",
            by: By::Get,
            kind: "crc",
            structure: Structure::Record { record: Some(0) },
            offset: 192,
            make: |shard, manifest| {
                let t = trailer_at(shard);
                let blocks = u32le(shard, t + 36) as usize;
                let (index, index_len) =
                    (u64le(shard, t + 56) as usize, u64le(shard, t + 64) as usize);
                // Record 0's CRC in the record table (§6.2), then the index CRC in the
                // trailer and the trailer's own CRC, so that only the record CRC is wrong.
                let crc_at = index + 32 * blocks + shardpack::format::index::RECORD_CRC_OFFSET;
                shard[crc_at] ^= 0x01;
                let index_crc = crc32fast::hash(&shard[index..index + index_len]);
                shard[t + 88..t + 92].copy_from_slice(&index_crc.to_le_bytes());
                let trailer_crc = crc32fast::hash(&shard[t..t + 124]);
                shard[t + 124..t + 128].copy_from_slice(&trailer_crc.to_le_bytes());
                reseal(manifest, shard);
            },
        },
    ]
}

/// Where `bad_block_padding`'s non-zero padding byte is.
const BLOCK_PADDING_AT: u64 = 321;
/// `bad_truncated_shard`'s length: small-stored's first shard less 64 bytes.
const TRUNCATED_LEN: u64 = 960 - 64;

#[test]
fn malformed_vectors_report_their_typed_defect() {
    let regenerate = std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some();
    let good = vector_dir("small-stored");
    for v in bad_vectors() {
        let mut shard = std::fs::read(good.join(SHARD)).unwrap();
        let mut manifest = std::fs::read(good.join("manifest.json")).unwrap();
        (v.make)(&mut shard, &mut manifest);
        let dir = vector_dir(v.name);
        if regenerate {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, _) in files(&good) {
                let name = file.file_name().unwrap();
                std::fs::copy(&file, dir.join(name)).unwrap();
            }
            std::fs::write(dir.join(SHARD), &shard).unwrap();
            std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
        }
        assert_eq!(std::fs::read(dir.join(SHARD)).unwrap(), shard, "{}", v.name);
        assert_eq!(
            std::fs::read(dir.join("manifest.json")).unwrap(),
            manifest,
            "{}",
            v.name
        );
        let named = |d: &Defect| d.name() == v.kind && d.structure() == v.structure;
        match v.by {
            By::Get => {
                let err = Archive::open(&dir)
                    .and_then(|a| a.get(0).map(|_| ()))
                    .expect_err(v.name);
                let (Some(defect), Some(location)) = (err.defect(), err.location()) else {
                    panic!("{}: {err:?}", v.name);
                };
                assert!(named(defect), "{}: {err}", v.name);
                assert_eq!(location.offset, v.offset, "{}: {err}", v.name);
                assert_eq!(location.file, dir.join(SHARD), "{}", v.name);
            }
            By::Verify => {
                let options = shardpack::VerifyOptions {
                    mode: shardpack::VerifyMode::Deep,
                    ..Default::default()
                };
                let report = shardpack::verify(&dir, &options).unwrap();
                assert!(
                    report.findings.iter().any(|f| f.file == dir.join(SHARD)
                        && f.offset == v.offset
                        && f.defect.as_ref().is_some_and(named)),
                    "{}: {:#?}",
                    v.name,
                    report.findings
                );
            }
        }
    }
}
