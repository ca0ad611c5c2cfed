//! `gc`: finds, and on request removes, the files of an archive folder that no generation
//! refers to (§11.3), left by interrupted commands. A file any generation refers to is
//! never touched: only names the tools themselves write are candidates, and the entries of
//! `_staging/` (§11.4) that no running distributed write holds locked.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::leftover::{self, Leftover, LeftoverKind};
use crate::archive::manifest::Manifest;
use crate::{Error, Limits, Result};

/// What [`gc`] found and removed.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct GcReport {
    /// The archive folder.
    pub archive: PathBuf,
    /// Every leftover found.
    pub leftovers: Vec<Leftover>,
    /// Whether they were removed.
    pub deleted: bool,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Lists the leftovers of the archive folder `dir`, and removes them when `delete` is set.
/// Takes the archive's lock, so it never races an `append`, `protect` or `repair`.
///
/// A folder that holds only `_staging/` (the first write into it never committed) has no
/// manifest; only its staging entries are judged there.
///
/// # Errors
/// A folder without a readable current manifest that holds more than `_staging/` (nothing
/// would prove which files are referenced), an archive split into volumes (run it in each
/// volume folder's archive instead), another command holding the lock, or an I/O error.
pub fn gc(dir: &Path, delete: bool) -> Result<GcReport> {
    let _lock = crate::io::ArchiveLock::take(dir)?;
    let mut leftovers = match Manifest::load(dir, &Limits::default()) {
        Ok(manifest) => {
            if manifest.layout.volume_size.is_some() {
                return Err(Error::invalid_input(
                    dir.display().to_string(),
                    "gc works on archive folders, not on archives split into volumes",
                ));
            }
            leftover::in_folder(dir, &manifest)
                .map_err(|e| Error::io(dir, "list archive folder", e))?
        }
        Err(e) if holds_only_staging(dir) => {
            drop(e);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    leftovers.extend(
        leftover::staging(dir, crate::io::ArchiveLock::held_elsewhere)
            .map_err(|e| Error::io(dir, "list staging folder", e))?,
    );
    let mut bytes = 0;
    for found in &leftovers {
        bytes += size_of_tree(&found.path);
    }
    if delete && !leftovers.is_empty() {
        for found in &leftovers {
            if found.kind == LeftoverKind::Staging {
                remove_staging(&found.path)?;
            } else {
                std::fs::remove_file(&found.path)
                    .map_err(|e| Error::io(&found.path, "remove leftover", e))?;
            }
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, "sync folder", e))?;
    }
    Ok(GcReport {
        archive: dir.to_path_buf(),
        leftovers,
        deleted: delete,
        bytes,
    })
}

/// True when the only entry of `dir` is the folder `_staging/` (§11.4).
fn holds_only_staging(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names == [std::ffi::OsStr::new(leftover::STAGING_DIR)]
        && dir.join(leftover::STAGING_DIR).is_dir()
}

/// Removes one entry of `_staging/`, holding its lock while it does, so that a write that
/// took it since it was listed keeps it.
fn remove_staging(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "remove leftover", e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path).map_err(|e| Error::io(path, "remove leftover", e));
    }
    let Some(_lock) = crate::io::ArchiveLock::try_take(path)? else {
        return Ok(());
    };
    std::fs::remove_dir_all(path).map_err(|e| Error::io(path, "remove leftover", e))
}

/// The bytes of the regular files at or below `path`, never following links.
fn size_of_tree(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok())
            .map(|e| size_of_tree(&e.path()))
            .sum()
    })
}
