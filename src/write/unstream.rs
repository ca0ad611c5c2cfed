//! `unstream`: a tape stream (§16) turned into an archive folder in one pass, as of its last
//! manifest that describes exactly the shards before it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::archive::manifest::{shard_file_name, Manifest, PARTIAL_SUFFIX};
use crate::format::stream::EntryKind;
use crate::read::stream::{manifest_mismatches, StreamItem, StreamReader, StreamShard};
use crate::{Error, Limits, Location, Result};

/// What [`unstream`] did.
#[derive(Debug, Clone, serde::Serialize)]
#[must_use]
#[non_exhaustive]
pub struct UnstreamReport {
    /// Shards written to the archive folder and listed in its manifest.
    pub shards: u64,
    /// Samples in the archive.
    pub samples: u64,
    /// The archive's generation (§11.3): that of the stream's last final manifest, or of
    /// the checkpoint a torn append left after it.
    pub generation: u64,
    /// True when the stream ended with its final manifest; false when the archive is the
    /// last checkpoint of a torn stream.
    pub complete: bool,
    /// Complete shards read after the last manifest of a torn stream; no manifest lists
    /// them, so they were removed.
    pub dropped_shards: u64,
    /// The error that tore the stream, if any.
    pub damage: Option<String>,
}

/// Turns a stream into an archive folder at `dir` (new or empty) in one pass. A stream torn
/// at any point gives the archive as of its last manifest checkpoint; the error is reported
/// in the result, not returned.
///
/// # Errors
/// `dir` cannot be created or written, reading the stream fails with an I/O error, or the
/// stream has no manifest entry at all. What the call wrote is then removed: `dir` itself
/// if it created it, and its contents if it was an empty folder.
pub fn unstream<R: Read>(
    inner: R,
    name: impl Into<PathBuf>,
    dir: &Path,
    limits: Limits,
) -> Result<UnstreamReport> {
    let created = fs::symlink_metadata(dir).is_err();
    let result = unstream_into(inner, name.into(), dir, limits);
    if let Err(e) = &result {
        let refused = matches!(e.kind(), crate::ErrorKind::InvalidInput { .. });
        if created {
            let _ = fs::remove_dir_all(dir);
        } else if !refused {
            // The folder was empty: everything in it is this call's.
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    result
}

fn unstream_into<R: Read>(
    inner: R,
    name: PathBuf,
    dir: &Path,
    limits: Limits,
) -> Result<UnstreamReport> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::invalid_input(
                    dir.display().to_string(),
                    "output folder exists and is not empty; choose a new path",
                ));
            }
        }
        Err(_) => fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create folder", e))?,
    }
    let mut reader = StreamReader::new(inner, name, limits)?;
    reader.copy_shards_to(dir);
    let mut last: Option<(Manifest, EntryKind)> = None;
    // The final manifest of each generation, kept beside the folder's manifest (§11.3).
    let mut finals: Vec<Manifest> = Vec::new();
    let mut damage = None;
    let mut written = 0u32;
    let mut copied: Vec<StreamShard> = Vec::new();
    let stream_name = reader.name().to_path_buf();
    for item in reader.by_ref() {
        match item {
            Ok(StreamItem::Manifest { kind, manifest }) => {
                // A manifest is kept only if it lists exactly the shards copied before it.
                let agrees = manifest_mismatches(&stream_name, kind, &manifest, &copied).is_empty();
                if !agrees {
                    damage = Some(format!("a {kind:?} manifest in the stream does not match the {} shard(s) before it", copied.len()));
                    break;
                }
                if kind == EntryKind::Final {
                    finals.push((*manifest).clone());
                }
                last = Some((*manifest, kind));
            }
            Ok(StreamItem::ShardEnd {
                number,
                size,
                blake3,
                archive_id,
            }) => {
                written += 1;
                copied.push(StreamShard {
                    number,
                    size,
                    blake3,
                    archive_id,
                });
            }
            Ok(_) => {}
            // A read or write that fails here (a full disk, a drive error) is no damage of
            // the stream's: nothing of it is kept.
            Err(e) if e.is_io() => return Err(e),
            Err(e) => {
                damage = Some(e.to_string());
                break;
            }
        }
    }
    let Some((manifest, kind)) = last else {
        // Nothing to keep: no manifest lists any shard.
        for n in 0..=written {
            let name = shard_file_name(n);
            let _ = fs::remove_file(dir.join(&name));
            let _ = fs::remove_file(dir.join(format!("{name}{PARTIAL_SUFFIX}")));
        }
        return Err(Error::corrupt(
            Location::file(reader.name(), 0),
            crate::Defect::invalid(
                crate::Structure::Stream,
                "manifest checkpoints",
                "at least one manifest checkpoint",
                damage.unwrap_or_else(|| "none".into()),
            ),
        ));
    };
    // Shards the manifest does not list (after the last checkpoint) and a partial shard go.
    let listed = manifest.shards.len() as u32;
    for n in listed..=written {
        let name = shard_file_name(n);
        let _ = fs::remove_file(dir.join(&name));
        let _ = fs::remove_file(dir.join(format!("{name}{PARTIAL_SUFFIX}")));
    }
    // Every earlier generation's manifest first, so the chain is whole once manifest.json is.
    for earlier in finals
        .iter()
        .filter(|m| m.generation_number() < manifest.generation_number())
    {
        let kept = crate::archive::manifest::generation_file_name(earlier.generation_number());
        crate::write::output::write_manifest_file_as(dir, earlier, &kept)?;
    }
    crate::write::output::write_manifest_file(dir, &manifest)?;
    Ok(UnstreamReport {
        shards: u64::from(listed),
        samples: manifest.totals.samples,
        generation: manifest.generation_number(),
        complete: kind == EntryKind::Final && damage.is_none(),
        dropped_shards: u64::from(written.saturating_sub(listed)),
        damage,
    })
}
