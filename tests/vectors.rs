//! Golden vectors: the writer's exact output for fixed input is pinned in `tests/vectors/`,
//! and an independent minimal reader written from `format-spec.md` alone reads it back.
//!
//! Regenerate (only when the format changes, in the same commit as the spec) with
//! `SHARDPACK_REGENERATE_VECTORS=1 cargo test --test vectors`, then update the SHA-256s in
//! `tests/vectors/README.md`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shardpack::{Archive, Compression, Defect, ErrorKind, Structure, WriterBuilder};

/// Each vector's name, options and samples: 1.0 stored and zstd, and 1.1 with dictionaries.
fn vectors() -> Vec<(&'static str, WriterBuilder, Vec<OwnedSample>)> {
    vec![
        ("small-stored", tiny(Compression::None), small_samples()),
        (
            "small-zstd",
            tiny(Compression::Zstd { level: 3 }),
            small_samples(),
        ),
        ("small-dictionary", with_dictionary(), text_samples(200)),
    ]
}

fn vector_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

#[test]
fn writer_output_matches_the_vectors() {
    let regenerate = std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some();
    for (name, builder, samples) in vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join(name);
        write_archive(&fresh, builder, &samples);
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
            if let Some(at) = w.iter().zip(g).position(|(a, b)| a != b) {
                panic!(
                    "{}: first difference at byte {at}: vector {:#04x}, writer {:#04x}",
                    wf.display(),
                    w[at],
                    g[at]
                );
            }
            assert_eq!(w.len(), g.len(), "{}: length", wf.display());
        }
    }
}

#[test]
fn vectors_read_back_through_the_library() {
    for (name, _, samples) in vectors() {
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
        for r in 0..records {
            let e = record_table + 32 * r;
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
    for (name, _, samples) in vectors() {
        assert_eq!(minimal_read(&vector_dir(name)), samples, "{name}");
    }
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
