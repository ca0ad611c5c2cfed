//! Archives split into volumes (optical discs, §2.1): finding the volume folders and which
//! volume holds which shard, and naming a missing volume.

use std::fs;
use std::path::{Path, PathBuf};

use crate::archive::manifest::{volume_count, volume_folder_name, Manifest, MANIFEST_FILE};
use crate::{Error, ErrorKind, Result};

/// `vol-NNNN` → NNNN.
pub(crate) fn volume_number_of(name: &str) -> Option<u32> {
    let n: u32 = name.strip_prefix("vol-")?.parse().ok()?;
    (volume_folder_name(n) == name && n >= 1).then_some(n)
}

/// Where an archive's manifest is, and the volume folders found beside it.
pub(crate) struct Found {
    /// The folder holding the manifest to read.
    pub(crate) manifest_dir: PathBuf,
    /// Volume folders found, with their number when their name tells it.
    pub(crate) volume_dirs: Vec<(Option<u32>, PathBuf)>,
}

/// Finds the manifest of the archive at `path`: a plain archive folder, a folder of volume
/// folders (`ROOT/vol-0001`, ...), or one volume folder (its `vol-NNNN` siblings are
/// found too).
pub(crate) fn find(path: &Path) -> Option<Found> {
    let listed = |dir: &Path| -> Vec<(Option<u32>, PathBuf)> {
        let mut v: Vec<(Option<u32>, PathBuf)> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        let n = volume_number_of(&name)?;
                        e.path().is_dir().then(|| (Some(n), e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    if path.join(MANIFEST_FILE).exists() {
        let own = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(volume_number_of);
        let volume_dirs = match (own, path.parent()) {
            (Some(_), Some(parent)) => listed(parent),
            _ => vec![(None, path.to_path_buf())],
        };
        let manifest_dir = match own {
            Some(_) => latest(&volume_dirs).unwrap_or_else(|| path.to_path_buf()),
            None => path.to_path_buf(),
        };
        return Some(Found {
            manifest_dir,
            volume_dirs,
        });
    }
    let volume_dirs = listed(path);
    let manifest_dir = latest(&volume_dirs)?;
    Some(Found {
        manifest_dir,
        volume_dirs,
    })
}

/// The highest-numbered volume folder that holds a manifest: the one an append wrote last,
/// whose manifest is the current generation's (§2.1; every volume has the same manifest in
/// an archive never appended to).
fn latest(volume_dirs: &[(Option<u32>, PathBuf)]) -> Option<PathBuf> {
    volume_dirs
        .iter()
        .rev()
        .map(|(_, d)| d)
        .find(|d| d.join(MANIFEST_FILE).exists())
        .cloned()
}

/// Which folder holds each volume of a split archive.
#[derive(Clone, Debug)]
pub(crate) struct VolumeSet {
    /// Index = volume number − 1.
    dirs: Vec<Option<PathBuf>>,
}

impl VolumeSet {
    /// Assigns each folder its volume: by name (`vol-NNNN`), else by the shards it holds (a
    /// disc mounted anywhere).
    pub(crate) fn new(manifest: &Manifest, folders: &[(Option<u32>, PathBuf)]) -> VolumeSet {
        let count = volume_count(manifest) as usize;
        let mut dirs = vec![None; count];
        for (number, dir) in folders {
            let number = number.or_else(|| {
                manifest
                    .shards
                    .iter()
                    .find(|s| dir.join(&s.file).exists())
                    .and_then(|s| s.volume)
            });
            if let Some(slot) = number.and_then(|n| dirs.get_mut(n as usize - 1)) {
                *slot = Some(dir.clone());
            }
        }
        VolumeSet { dirs }
    }

    /// The path of shard `index`, or an error naming its missing volume.
    pub(crate) fn shard_path(&self, manifest: &Manifest, index: usize) -> Result<PathBuf> {
        let info = manifest
            .shards
            .get(index)
            .ok_or_else(|| Error::invalid_input(format!("shard {index}"), "not in the manifest"))?;
        let volume = info.volume.unwrap_or(1);
        match self.dirs.get(volume as usize - 1) {
            Some(Some(dir)) => Ok(dir.join(&info.file)),
            _ => Err(ErrorKind::Incomplete {
                path: PathBuf::from(volume_folder_name(volume)),
                reason: format!(
                    "shard {index} is on volume {volume} of {}, which is missing: mount or copy it beside the others",
                    self.dirs.len()
                ),
            }
            .into()),
        }
    }

    /// Volumes (1-based) with no folder.
    pub(crate) fn missing(&self) -> Vec<u32> {
        self.dirs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i as u32 + 1)
            .collect()
    }

    /// The folder of every present volume, with its number.
    pub(crate) fn present(&self) -> Vec<(u32, PathBuf)> {
        self.dirs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.clone().map(|d| (i as u32 + 1, d)))
            .collect()
    }
}
