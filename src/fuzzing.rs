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
