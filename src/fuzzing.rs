//! The bodies of the fuzz targets, here so that `fuzz/` and the regression replay in
//! `tests/regressions.rs` run the very same code. Each returns normally on any input; a
//! panic is a bug.

use crate::{Limits, Manifest, Shard};

/// Opens `data` as a shard and reads every record and every key, and looks each key up.
pub fn read_shard(data: &[u8]) {
    let Ok(shard) = Shard::from_vec("fuzz.shp", data.to_vec(), Limits::default()) else {
        return;
    };
    for local in 0..shard.len().min(10_000) {
        let _ = shard
            .get(local)
            .map(|s| s.fields().map(|(_, d)| d.len()).sum::<usize>());
        if let Ok(key) = shard.key(local) {
            let key = key.to_string();
            let _ = shard.find(key.as_bytes());
        }
    }
}

/// Parses `data` as a manifest.
pub fn parse_manifest(data: &[u8]) {
    if let Ok(m) = Manifest::parse(data, std::path::Path::new("manifest.json")) {
        let _ = m.to_canonical_bytes();
    }
}

/// Writes `data` as `shard-000000.shp` of a manifest-less archive and verifies it deeply.
pub fn verify_shard(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(
        dir.path()
            .join(crate::archive::manifest::shard_file_name(0)),
        data,
    )
    .is_err()
    {
        return;
    }
    let options = crate::VerifyOptions {
        mode: crate::VerifyMode::Deep,
        ..Default::default()
    };
    let _ = crate::verify(dir.path(), &options);
}

/// Reads `data` as a tape stream, front to back, item by item.
pub fn read_stream(data: &[u8]) {
    let Ok(reader) = crate::read::stream::StreamReader::new(data, "fuzz-stream", Limits::default())
    else {
        return;
    };
    for item in reader.take(100_000) {
        if let Ok(crate::read::stream::StreamItem::Sample(s)) = item {
            let _ = s.fields().map(|(_, d)| d.len()).sum::<usize>();
        }
    }
}

/// Writes a small valid archive with `data` as its parity file, then runs repair: a
/// hostile parity file must give an error or a report, never a panic or a wrong repair.
pub fn repair(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("a");
    let Ok(mut w) = crate::Writer::builder()
        .align(64)
        .block_size(256)
        .create(&path)
    else {
        return;
    };
    for i in 0..8u8 {
        let _ = w.append(&format!("k{i}"), &[("x", &[i; 100][..])]);
    }
    if w.finish().is_err() || std::fs::write(path.join(crate::PARITY_FILE), data).is_err() {
        return;
    }
    let before =
        std::fs::read(path.join(crate::archive::manifest::shard_file_name(0))).unwrap_or_default();
    let _ = crate::repair(&path);
    // The archive was intact: whatever the parity file says, repair must not change it.
    let after =
        std::fs::read(path.join(crate::archive::manifest::shard_file_name(0))).unwrap_or_default();
    assert_eq!(before, after, "repair changed an intact shard");
}

/// Opens `data` as the only shard of an archive whose manifest agrees with its header and
/// trailer, then reads it both ways: by ordinal through the index, and by a scan through the
/// map and with `pread`. Panics if a scan hands out a sample that differs from what `get`
/// returns for its ordinal, or one that `get` refuses, where the scan checks records before
/// handing them out (through the map).
pub fn readers_agree(data: &[u8]) {
    use crate::archive::manifest::{Layout, ShardInfo, Totals};
    let Ok(shard) = Shard::from_vec("fuzz.shp", data.to_vec(), Limits::default()) else {
        return;
    };
    let header = shard.header().clone();
    let layout = *shard.layout();
    if header.first_ordinal != 0 || header.shard_number != 0 {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let file = crate::archive::manifest::shard_file_name(0);
    if std::fs::write(dir.path().join(&file), data).is_err() {
        return;
    }
    let keys: Vec<String> = (0..shard.len().min(10_000))
        .filter_map(|local| shard.key(local).ok().map(|k| k.into_owned()))
        .collect();
    let mut manifest = Manifest {
        format: "shardpack".into(),
        format_version: if header.dictionary_len > 0 {
            "1.1"
        } else {
            "1.0"
        }
        .into(),
        writer: "fuzz".into(),
        archive_id: crate::archive::manifest::to_hex(&header.archive_id),
        layout: Layout {
            profile: crate::archive::manifest::profile_name(header.profile).into(),
            align: header.align,
            block_size: header.block_bytes,
            shard_size: header.shard_bytes,
            compression: if header.codec == crate::format::Codec::Stored {
                "none"
            } else {
                "zstd"
            }
            .into(),
            level: i32::from(header.level),
            volume_size: None,
        },
        totals: Totals {
            shards: 1,
            samples: u64::from(layout.record_count),
            bytes: data.len() as u64,
            raw_bytes: 0,
        },
        shards: vec![ShardInfo {
            file,
            size: data.len() as u64,
            samples: u64::from(layout.record_count),
            first_ordinal: 0,
            raw_bytes: 0,
            min_key: keys.iter().min().cloned().unwrap_or_default(),
            max_key: keys.iter().max().cloned().unwrap_or_default(),
            blake3: blake3::hash(data).to_hex().to_string(),
            volume: None,
        }],
        generation: None,
        root: String::new(),
    };
    manifest.root = manifest.compute_root();
    let manifest_path = dir.path().join(crate::archive::manifest::MANIFEST_FILE);
    if std::fs::write(&manifest_path, manifest.to_canonical_bytes()).is_err() {
        return;
    }
    for source in [crate::SourceKind::Map, crate::SourceKind::Pread] {
        let Ok(archive) = crate::Archive::options().source(source).open(dir.path()) else {
            return;
        };
        for sample in archive.scan().take(100_000).flatten() {
            match archive.get(sample.ordinal()) {
                Ok(got) => assert_eq!(
                    got.record_bytes(),
                    sample.record_bytes(),
                    "ordinal {}",
                    sample.ordinal()
                ),
                Err(e) => assert!(
                    source == crate::SourceKind::Pread,
                    "ordinal {}: scan returned a sample that get refuses: {e}",
                    sample.ordinal()
                ),
            }
        }
    }
}
