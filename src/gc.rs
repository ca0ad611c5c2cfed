//! `gc`: finds, and on request removes, the files of an archive folder that no generation
//! refers to (§11.3), left by interrupted commands. A file any generation refers to is
//! never touched: only names the tools themselves write are candidates.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::leftover::{self, Leftover};
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
/// # Errors
/// A folder without a readable current manifest (nothing would prove which files are
/// referenced), an archive split into volumes (run it in each volume folder's archive
/// instead), another command holding the lock, or an I/O error.
pub fn gc(dir: &Path, delete: bool) -> Result<GcReport> {
    let _lock = crate::io::ArchiveLock::take(dir)?;
    let manifest = Manifest::load(dir, &Limits::default())?;
    if manifest.layout.volume_size.is_some() {
        return Err(Error::invalid_input(
            dir.display().to_string(),
            "gc works on archive folders, not on archives split into volumes",
        ));
    }
    let leftovers = leftover::in_folder(dir, &manifest)
        .map_err(|e| Error::io(dir, "list archive folder", e))?;
    let mut bytes = 0;
    for found in &leftovers {
        bytes += std::fs::symlink_metadata(&found.path).map_or(0, |m| m.len());
    }
    if delete && !leftovers.is_empty() {
        for found in &leftovers {
            std::fs::remove_file(&found.path)
                .map_err(|e| Error::io(&found.path, "remove leftover", e))?;
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
