//! Reed-Solomon parity and repair (§17): protect an archive folder (or each volume) with
//! recovery layers, find damaged chunks by their BLAKE3-64 digests (§17.3; not CRCs), and
//! rebuild them byte-identically.
//!
//! The protected files (shards, then the manifest), each padded to whole chunks, are cut
//! into `k` data layers of `L` chunks; stripe `j` is chunk `j` of every layer plus chunk `j`
//! of `m` parity layers (dvdisaster's RS03 layout). A run of up to `L` damaged chunks (a
//! burst of bad sectors, a lost 64 KiB block) costs each stripe at most one member, and a
//! whole lost shard, a run of consecutive chunks, costs each stripe at most
//! `⌈size / layer⌉` members (`layer` = `L·C` bytes), so it is rebuilt when that many parity
//! layers are left over by the stripe's other damage.

mod file;
mod inspect;
mod rebuild;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::{Manifest, ShardInfo, MANIFEST_FILE};
use crate::format::parity::{ParityHeader, MAX_TABLES_LEN, PARITY_HEADER_LEN};
use crate::format::{align_up, checksum};
use crate::{Defect, Error, ErrorKind, Limits, Location, Result, Structure};

/// File name of the parity file in an archive (or volume) folder.
pub const PARITY_FILE: &str = "parity.spp";

/// Suffix of the file a repair writes beside the file it replaces, then renames (§17.6).
pub(crate) use crate::archive::leftover::REPAIR_SUFFIX;

/// Data layers when the data has at least this many chunks (dvdisaster uses 255 layers in
/// all, docs/design.md §5).
const DATA_LAYERS: u64 = 200;

/// Bytes of each layer read at once while encoding.
const BATCH_BYTES: u64 = 256 << 10;

/// One protected file, as the parity file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtectedFile {
    /// File name in the folder.
    pub name: String,
    /// Size in bytes when protected.
    pub size: u64,
    /// BLAKE3 of its bytes when protected (hex).
    pub blake3: String,
    /// Global index of its first chunk.
    #[serde(skip)]
    first_chunk: u64,
    /// Offset of its entry in the tables.
    #[serde(skip)]
    table_offset: u64,
}

/// The geometry and tables of a parity file.
#[derive(Clone, Debug)]
struct Parity {
    header: ParityHeader,
    files: Vec<ProtectedFile>,
    data_digests: Vec<u64>,
    parity_digests: Vec<u64>,
    layers_offset: u64,
    /// Redundant parts found damaged although the file is usable (§17.5 rule 6).
    damaged: Vec<DamagedParityPart>,
}

impl Parity {
    fn chunk(&self) -> u64 {
        u64::from(self.header.chunk_bytes)
    }

    /// The file holding global chunk `i`, and the chunk's offset in it.
    fn locate(&self, i: u64) -> Option<(usize, u64)> {
        let f = self
            .files
            .partition_point(|f| f.first_chunk <= i)
            .checked_sub(1)?;
        let file = &self.files[f];
        let off = (i - file.first_chunk) * self.chunk();
        (off < file.size.max(1)).then_some((f, off))
    }

    fn parity_chunk_offset(&self, layer: u64, column: u64) -> u64 {
        self.layers_offset + (layer * self.header.layer_chunks + column) * self.chunk()
    }
}

/// What `protect` wrote.
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct ProtectReport {
    /// Folders protected (the archive, or each volume).
    pub folders: Vec<ProtectedFolder>,
    /// Why nothing was protected, when `folders` is empty: a split archive without shards
    /// has no volume that gets a parity file (§17.2 rule 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One protected folder.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ProtectedFolder {
    /// The folder.
    pub folder: PathBuf,
    /// Bytes protected.
    pub data_bytes: u64,
    /// Size of its parity file.
    pub parity_bytes: u64,
    /// Bytes per chunk.
    pub chunk_bytes: u64,
    /// Data layers (k) and parity layers (m).
    pub layers: (u32, u32),
    /// The longest run of damaged bytes each stripe survives: one layer.
    pub burst_bytes: u64,
}

/// The folders of an archive that get a parity file each, with their volume number (1 for
/// an archive that is not split) and the manifest of their files: the archive, or every
/// volume.
fn folders(dir: &Path) -> Result<Vec<(u32, PathBuf, Manifest)>> {
    let archive = crate::Archive::open(dir)?;
    let manifest = archive.manifest().clone();
    if manifest.layout.volume_size.is_none() {
        return Ok(vec![(1, dir.to_path_buf(), manifest)]);
    }
    let mut out = Vec::new();
    for v in 1..=crate::archive::manifest::volume_count(&manifest) {
        let index = manifest
            .shards
            .iter()
            .position(|s| s.volume == Some(v))
            .unwrap_or(0);
        let path = archive.shard_path(index)?;
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // A volume's files are those of the generation that wrote it, its own manifest
        // among them (§2.1): its parity is bound to that manifest's root.
        let own = Manifest::load(&folder, &crate::Limits::default())
            .ok()
            .filter(|m| m.archive_id == manifest.archive_id)
            .unwrap_or_else(|| manifest.clone());
        out.push((v, folder, own));
    }
    Ok(out)
}

/// The manifest entries of the shards `folder` holds (§17.2 rule 2): every entry of an
/// archive that is not split; for a split archive those of the folder's volume, the number
/// its name gives, else the `volume` of the first listed shard it holds.
fn folder_shards<'a>(folder: &Path, manifest: &'a Manifest) -> Vec<&'a ShardInfo> {
    if manifest.layout.volume_size.is_none() {
        return manifest.shards.iter().collect();
    }
    let volume = folder
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::archive::volume::volume_number_of)
        .or_else(|| {
            manifest
                .shards
                .iter()
                .find(|s| folder.join(&s.file).exists())
                .and_then(|s| s.volume)
        });
    manifest
        .shards
        .iter()
        .filter(|s| volume.is_some() && s.volume == volume)
        .collect()
}

/// The files of `folder` that its parity protects: its shards, then the manifest.
fn protected_names(folder: &Path, manifest: &Manifest) -> Vec<String> {
    folder_shards(folder, manifest)
        .into_iter()
        .map(|s| s.file.clone())
        .chain(std::iter::once(MANIFEST_FILE.to_string()))
        .collect()
}

use file::*;
use inspect::*;
use write::*;

pub use file::{DamagedParityPart, ParityPart};
pub(crate) use inspect::{folder_statuses, parity_folders};
pub use inspect::{parity_status, ParityFileState, ParityStatus};
pub use rebuild::{repair, RefusedFile, RepairReport, RepairedRange};
pub(crate) use write::{check_percent, protect_new_volumes};
pub use write::{protect, protect_with, ProtectOptions, MAX_PARITY_PERCENT};

/// Makes renames in `folder` durable.
fn sync_dir(folder: &Path) -> Result<()> {
    File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(folder, "sync folder", e))
}

/// The parity percentage of the parity file in `dir` (parity layers per data layer, as
/// `protect` would take it to write as many layers again), if it has one whose header reads.
pub(crate) fn percent_of(dir: &Path) -> Option<f64> {
    let (file, _) = crate::io::open_regular(&dir.join(PARITY_FILE)).ok()?;
    let mut bytes = [0u8; crate::format::parity::PARITY_HEADER_LEN];
    std::io::Read::read_exact(&mut &file, &mut bytes).ok()?;
    let header = crate::format::parity::ParityHeader::decode(&bytes).ok()?;
    (header.data_layers > 0)
        .then(|| f64::from(header.parity_layers) * 100.0 / f64::from(header.data_layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_beyond_what_a_loader_accepts_are_refused() {
        let fifteen = |k: u64| ((k as f64 * 15.0 / 100.0).ceil() as u64).max(1);
        // 100 million chunks at 15%: 8·(N + 30·L) + the file table, under 1 GiB.
        let g = geometry_of(100_000_000, 100, &fifteen).unwrap();
        assert_eq!((g.k, g.layer, g.m), (200, 500_000, 30));
        assert_eq!(g.tables_len, 8 * (100_000_000 + 30 * 500_000) + 100);
        // 120 million chunks need 1.104 GB of tables.
        let err = geometry_of(120_000_000, 100, &fifteen).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { .. })
                && err.to_string().contains("tables"),
            "{err}"
        );
        // The bound itself is accepted, one byte more is not.
        let n = 100_000_000;
        let digests = 8 * (n + 30 * 500_000);
        assert!(geometry_of(n, MAX_TABLES_LEN - digests, &fifteen).is_ok());
        assert!(geometry_of(n, MAX_TABLES_LEN - digests + 1, &fifteen).is_err());
        // Overflowing counts are refused, not wrapped.
        assert!(geometry_of(u64::MAX, 0, &fifteen).is_err());
    }
}
