//! Verifying a remote archive (`http://`, `https://`, `s3://`): every shard is read whole
//! through ranged GETs and given the checks a local one gets, its BLAKE3 against the
//! manifest's included.
//!
//! The bytes are staged in a temporary folder one shard at a time (so the disk holds at most
//! one shard), checked there by the same code as a local archive, and removed; findings name
//! the URLs, never the staging folder. Listing a remote folder is not possible over plain
//! HTTP, so leftovers are not looked for, and parity is not checked remotely.

use super::*;
use crate::io::range_cache::{CachedShard, CACHE_BLOCK_BYTES};
use crate::io::remote::Remote;

pub(super) fn verify_remote(
    url: &str,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    options.check()?;
    let remote = Remote::open(url)?;
    let shown = remote.as_path();
    let staging = tempfile::Builder::new()
        .prefix(".shardpack-verify-")
        .tempdir()
        .map_err(|e| Error::io(&std::env::temp_dir(), "create a staging folder in", e))?;
    let dir = staging.path();
    let mut v = Verifier {
        findings: Vec::new(),
        leftovers: Vec::new(),
        complete: true,
        mode: options.mode,
        limits: options.limits,
        bytes_checked: 0,
        trace: options.trace.clone(),
        raw_total: Some(0),
        dictionary: None,
        proven: false,
        headers: (0, 0),
    };
    // A missing manifest is the finding check_manifest makes of a missing file.
    match stage(
        &remote,
        MANIFEST_FILE,
        dir,
        options.limits.max_manifest_bytes,
    ) {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    let manifest = v.check_manifest(dir, options);
    if let Some(m) = &manifest {
        for n in 1..m.generation_number() {
            let name = manifest::generation_file_name(n);
            if let Err(e) = stage(&remote, &name, dir, options.limits.max_manifest_bytes) {
                if !is_not_found(&e) {
                    v.push_error(&e, None, 0);
                }
            }
        }
        v.check_generations(dir, m);
        if m.layout.volume_size.is_some() {
            v.push_error(
                &Error::invalid_input(
                    remote.url(),
                    "an archive split into volumes is not verified over the network",
                ),
                None,
                0,
            );
        }
    }
    let shards: Vec<&ShardInfo> = match (&manifest, &manifest.as_ref().map(|m| &m.layout)) {
        (Some(m), Some(layout)) if layout.volume_size.is_none() => m.shards.iter().collect(),
        _ => Vec::new(),
    };
    let total: u64 = shards.iter().map(|s| s.size).sum();
    let chunk = manifest
        .as_ref()
        .and_then(|m| crate::MediaProfile::from_name(&m.layout.profile))
        .unwrap_or_default()
        .read_chunk;
    let disk_cache = options
        .remote_cache
        .as_ref()
        .map(crate::RemoteCache::open)
        .transpose()?;
    let mut done = 0;
    for (i, info) in shards.iter().enumerate() {
        let number = i as u32;
        let path = dir.join(&info.file);
        let cached = disk_cache
            .as_ref()
            .and_then(|c| c.shard(&remote.url_of(&info.file), &info.blake3, info.size));
        let staged = (|| -> Result<()> {
            if let Some(cached) = &cached {
                return stage_cached(cached, &remote, info, &path, chunk);
            }
            let mut file = crate::io::create_new(&path)?;
            remote.copy_to(
                &info.file,
                0..info.size,
                chunk,
                None,
                &mut file,
                &shown.join(&info.file),
                &mut |_| {},
            )
        })();
        let findings_before = v.findings.len();
        match staged {
            Ok(()) => v.check_shard(&path, number, Some(info), manifest.as_ref()),
            Err(e) => {
                v.complete = false;
                v.push_error(&e, Some(number), info.size);
            }
        }
        if v.findings.len() > findings_before {
            // Which blocks hold the damage is not known: none of the shard's are kept.
            if let Some(cached) = &cached {
                cached.forget(0..info.size);
            }
        }
        let _ = std::fs::remove_file(&path);
        done += info.size;
        progress(done, total);
    }
    if let (Some(m), Some(raw)) = (&manifest, v.raw_total) {
        if raw != m.totals.raw_bytes && !shards.is_empty() {
            v.push(
                dir.join(MANIFEST_FILE),
                None,
                0,
                0,
                Defect::mismatch(
                    Structure::Manifest,
                    "totals.raw_bytes",
                    format!("{raw} (sum over the shard trailers)"),
                    m.totals.raw_bytes,
                ),
            );
        }
    }
    // Findings name the URLs the bytes came from, not the staging folder.
    let (staged, url) = (dir.display().to_string(), shown.display().to_string());
    for f in &mut v.findings {
        if let Ok(rest) = f.file.strip_prefix(dir) {
            f.file = shown.join(rest);
        }
        for text in [&mut f.what, &mut f.expected, &mut f.found] {
            if text.contains(&staged) {
                *text = text.replace(&staged, &url);
            }
        }
    }
    let valid = v.findings.is_empty();
    Ok(VerifyReport {
        recoverable: None,
        parity: None,
        archive: shown,
        mode: options.mode,
        root: manifest.as_ref().map(|m| m.root.clone()),
        complete: v.complete && manifest.is_some(),
        valid,
        shards: shards.len() as u64,
        samples: manifest.as_ref().map_or(0, |m| m.totals.samples),
        bytes_checked: v.bytes_checked,
        findings: v.findings,
        leftovers: Vec::new(),
        generations: manifest.as_ref().map_or(0, |m| m.generation_number()),
    })
}

fn is_not_found(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Remote {
            status: Some(404),
            ..
        }
    )
}

/// Copies shard `info` into `path` through the on-disk cache, `chunk` bytes (whole cached
/// blocks) at a time.
fn stage_cached(
    cached: &CachedShard,
    remote: &Remote,
    info: &ShardInfo,
    path: &Path,
    chunk: u64,
) -> Result<()> {
    use std::io::Write;
    let step = chunk.div_ceil(CACHE_BLOCK_BYTES).max(1) * CACHE_BLOCK_BYTES;
    let mut file = crate::io::create_new(path)?;
    let mut at = 0;
    while at < info.size {
        let end = at.saturating_add(step).min(info.size);
        let bytes = cached.read(at..end, &|r| remote.range(&info.file, r))?;
        file.write_all(&bytes)
            .map_err(|e| Error::io_at(path, "write", at, e))?;
        at = end;
    }
    Ok(())
}

/// Copies the small file `name` (at most `max` bytes) into `dir`.
fn stage(remote: &Remote, name: &str, dir: &Path, max: u64) -> Result<()> {
    let bytes = remote.read_capped(name, max, "manifest size")?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, "write", e))
}
