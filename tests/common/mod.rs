//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use shardpack::{Compression, Writer, WriterBuilder};

/// A sample as the tests hold it: key and (name, data) fields.
pub type OwnedSample = (String, Vec<(String, Vec<u8>)>);

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A few small samples: compressible text, incompressible bytes, an empty field, unicode.
pub fn small_samples() -> Vec<OwnedSample> {
    vec![
        (
            "a/0001".into(),
            vec![
                (
                    "json".into(),
                    br#"{"label": 1, "text": "aaaaaaaaaaaaaaaaaaaaaaaa"}"#.to_vec(),
                ),
                ("jpg".into(), noise(1, 40)),
            ],
        ),
        (
            "a/0002".into(),
            vec![
                (
                    "json".into(),
                    br#"{"label": 2, "text": "aaaaaaaaaaaaaaaaaaaaaaaa"}"#.to_vec(),
                ),
                ("jpg".into(), noise(2, 40)),
            ],
        ),
        ("b/ünï cödé".into(), vec![("".into(), Vec::new())]),
    ]
}

/// Writes `samples` to `dir` with `builder`.
pub fn write_archive(
    dir: &Path,
    builder: WriterBuilder,
    samples: &[OwnedSample],
) -> shardpack::Manifest {
    let mut w = builder.create(dir).expect("create");
    for (key, fields) in samples {
        let f: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        w.append(key, &f).expect("append");
    }
    w.finish().expect("finish")
}

/// The smallest layout: 64-byte alignment and tiny blocks, so that small archives have
/// several blocks and few padding bytes.
pub fn tiny(compression: Compression) -> WriterBuilder {
    Writer::builder()
        .align(64)
        .block_size(160)
        .shard_size(1200)
        .compression(compression)
        .archive_id([0xA5; 16])
}

/// Every file in `dir` with its bytes, sorted by name.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Reads every sample back as owned data.
pub fn read_all(archive: &shardpack::Archive) -> Vec<OwnedSample> {
    archive
        .iter()
        .map(|s| {
            let s = s.expect("read");
            (
                s.key().to_string(),
                s.fields()
                    .map(|(n, d)| (n.to_string(), d.to_vec()))
                    .collect(),
            )
        })
        .collect()
}

/// `n` small text samples (JSON labels and sentences from a small vocabulary), the kind a
/// shard dictionary is for.
pub fn text_samples(n: usize) -> Vec<OwnedSample> {
    const WORDS: [&str; 16] = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "archive", "shard",
        "block", "record", "tape", "disk", "label", "sample",
    ];
    let pick = noise(42, n * 24);
    (0..n)
        .map(|i| {
            let words: Vec<&str> = pick[i * 24..i * 24 + 12 + (i % 12)]
                .iter()
                .map(|&b| WORDS[usize::from(b) % WORDS.len()])
                .collect();
            (
                format!("text/{i:05}"),
                vec![
                    (
                        "json".to_string(),
                        format!(
                            r#"{{"id": {i}, "lang": "en", "source": "corpus-{}"}}"#,
                            i % 7
                        )
                        .into_bytes(),
                    ),
                    ("txt".to_string(), words.join(" ").into_bytes()),
                ],
            )
        })
        .collect()
}

/// Options for a small archive whose shards get dictionaries.
pub fn with_dictionary() -> WriterBuilder {
    Writer::builder()
        .align(64)
        .block_size(512)
        .shard_size(64 << 10)
        .compression(Compression::Zstd { level: 3 })
        .dictionary(Some(1024))
        .archive_id([0xD1; 16])
}
