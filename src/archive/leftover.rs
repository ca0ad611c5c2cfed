//! Files in an archive folder that no generation refers to (§11.3): what interrupted
//! commands leave behind. They never change what the archive holds, so `verify` lists them
//! apart from its findings, and `gc` removes them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::{self, Manifest, PARTIAL_SUFFIX};

/// Suffix of a file `repair` is rebuilding; renamed over the file it replaces.
pub const REPAIR_SUFFIX: &str = ".repair";

/// The folder inside an archive folder where a distributed write stages its tasks' output
/// (§11.4) before it commits them as a generation; a writer never lists anything in it.
pub const STAGING_DIR: &str = "_staging";

/// What a leftover file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeftoverKind {
    /// A file still being written (`*.partial`) by an interrupted `pack`, `append`,
    /// `protect` or `merge`.
    Partial,
    /// A file an interrupted `repair` was rebuilding (`*.repair`).
    Repair,
    /// A shard file that no generation lists (an interrupted `append`).
    UnlistedShard,
    /// The manifest of a generation later than the current one (an interrupted `append`).
    LaterGeneration,
    /// An entry of `_staging/` that no running write holds locked (§11.4): the staged
    /// output of a distributed write that failed, lost to another attempt, or was committed.
    Staging,
}

impl LeftoverKind {
    /// What left it, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            LeftoverKind::Partial => "a partial file (an interrupted pack, append or protect)",
            LeftoverKind::Repair => "a file an interrupted repair was rebuilding",
            LeftoverKind::UnlistedShard => {
                "a shard file no generation lists (an interrupted append)"
            }
            LeftoverKind::LaterGeneration => {
                "the manifest of a generation after the current one (an interrupted append)"
            }
            LeftoverKind::Staging => {
                "the staging folder of a distributed write no running writer holds"
            }
        }
    }
}

/// One leftover file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub kind: LeftoverKind,
}

/// What `name` in an archive folder is, if it is a leftover. `manifest` is the current
/// generation's (none for a folder without one, where shards are not judged); `listed`
/// tells whether a shard file name is one the archive refers to here. Names are tested on
/// their bytes, so a name that is not UTF-8 can still be a leftover.
pub(crate) fn classify(
    name: &OsStr,
    manifest: Option<&Manifest>,
    listed: impl Fn(&str) -> bool,
) -> Option<LeftoverKind> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.ends_with(PARTIAL_SUFFIX.as_bytes()) {
        return Some(LeftoverKind::Partial);
    }
    if bytes.ends_with(REPAIR_SUFFIX.as_bytes()) {
        return Some(LeftoverKind::Repair);
    }
    let (name, manifest) = (name.to_str()?, manifest?);
    if let Some(number) = manifest::generation_of_file_name(name) {
        return (number > manifest.generation_number()).then_some(LeftoverKind::LaterGeneration);
    }
    (is_shard_file_name(name) && !listed(name)).then_some(LeftoverKind::UnlistedShard)
}

/// True for `shard-NNNNNN.shp` as the writer names shards.
pub(crate) fn is_shard_file_name(name: &str) -> bool {
    name.strip_prefix("shard-")
        .and_then(|rest| rest.strip_suffix(".shp"))
        .and_then(|digits| digits.parse::<u32>().ok())
        .is_some_and(|n| manifest::shard_file_name(n) == name)
}

/// The leftovers of the archive folder `dir` (not split into volumes) whose current
/// manifest is `manifest`.
pub(crate) fn in_folder(dir: &Path, manifest: &Manifest) -> std::io::Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        let listed = |n: &str| manifest.shards.iter().any(|s| s.file == n);
        if let Some(kind) = classify(&name, Some(manifest), listed) {
            found.push(Leftover {
                path: dir.join(&name),
                kind,
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The leftovers in `dir/_staging/` (§11.4): every entry except a folder for which
/// `held` says a running write holds it. Only real folders are asked about (never a link,
/// a file or a FIFO, which a lock check would open), so `held` may open what it is given.
pub(crate) fn staging(dir: &Path, held: impl Fn(&Path) -> bool) -> std::io::Result<Vec<Leftover>> {
    let staging = dir.join(STAGING_DIR);
    let entries = match std::fs::read_dir(&staging) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = staging.join(entry.file_name());
        if entry.file_type()?.is_dir() && held(&path) {
            continue;
        }
        found.push(Leftover {
            path,
            kind: LeftoverKind::Staging,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}
