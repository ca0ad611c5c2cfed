//! What a folder's parity sees: damaged chunks, the state of the parity file, and whether
//! the damage is recoverable (§17.6, §13.1).

use super::*;

/// The damage one folder's parity sees.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ParityStatus {
    /// The folder.
    pub folder: PathBuf,
    /// Data chunks whose BLAKE3-64 digest (§17.3) does not match, or that cannot be read.
    pub damaged_chunks: u64,
    /// Parity chunks whose BLAKE3-64 digest (§17.3) does not match, or that cannot be read.
    pub damaged_parity_chunks: u64,
    /// Parity layers (m): the erasures each stripe survives.
    pub parity_layers: u32,
    /// Stripes with more erasures than parity can repair.
    pub unrecoverable_stripes: u64,
    /// Parity layers more that repairing everything would have needed.
    pub more_layers_needed: u32,
    /// True when every damaged chunk can be rebuilt.
    pub recoverable: bool,
    /// Redundant parts of the parity file that are damaged although the file is usable
    /// (§17.5 rule 6); repair rewrites the parity file once the data is whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_parts: Vec<DamagedParityPart>,
    /// Whether the folder has a parity file that loads; the counts above are zero and
    /// `recoverable` is false otherwise.
    pub parity_file: ParityFileState,
}

/// Whether a folder's parity file could be used (§17.5, §17.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParityFileState {
    /// Loaded and belonging to the archive.
    #[default]
    Loaded,
    /// The folder has no parity file (another folder of the archive has one).
    NoParity,
    /// The parity file protects an earlier generation of the archive (§11.3): the archive
    /// was appended to since it was written. It protects nothing of the current one, so it
    /// is not used; `protect` replaces it.
    Stale {
        /// The generation whose root the parity file is bound to.
        generation: u64,
    },
    /// The parity file does not load or does not belong to the archive; it is left as it is.
    Unusable {
        /// Why.
        error: String,
    },
}

impl ParityStatus {
    pub(super) fn without_parity(folder: &Path, state: ParityFileState) -> ParityStatus {
        ParityStatus {
            folder: folder.to_path_buf(),
            parity_file: state,
            ..ParityStatus::default()
        }
    }
}

pub(super) struct Damage {
    pub(super) parity: Parity,
    /// Whether the folder's own manifest checks (§11.1, its root included): inspect has
    /// then bound the parity file to it (root and file table, §17.5 rules 4-5).
    pub(super) manifest_checks: bool,
    pub(super) data: BTreeSet<u64>,
    pub(super) parity_chunks: BTreeSet<u64>,
    pub(super) handles: Vec<Option<File>>,
    pub(super) sizes_differ: Vec<bool>,
}

/// A manifest that checks (§11.1, its root included), with its file's length and BLAKE3.
pub(super) struct CheckedManifest {
    pub(super) manifest: Manifest,
    pub(super) len: u64,
    pub(super) blake3: String,
}

impl CheckedManifest {
    /// `bytes` as the manifest of `path`, if they parse and validate.
    pub(super) fn from_bytes(bytes: &[u8], path: &Path) -> Result<CheckedManifest> {
        Ok(CheckedManifest {
            manifest: Manifest::parse(bytes, path)?,
            len: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        })
    }
}

/// The folder's manifest when it parses and validates (§11.1).
pub(super) fn folder_manifest(folder: &Path) -> Option<CheckedManifest> {
    let path = folder.join(MANIFEST_FILE);
    let bytes =
        crate::archive::manifest::read_capped(&path, Limits::DEFAULT.max_manifest_bytes).ok()?;
    CheckedManifest::from_bytes(&bytes, &path).ok()
}

/// Rule 4 of §17.5: the parity header's root is the manifest's. The root covers every
/// shard's BLAKE3, so a parity file that passes describes this archive's exact contents,
/// whatever archive id two archives share.
pub(super) fn check_root(parity: &Parity, folder: &Path, manifest: &Manifest) -> Result<()> {
    let want = crate::archive::manifest::parse_hex::<32>(&manifest.root);
    if want == Some(parity.header.root) {
        return Ok(());
    }
    Err(Error::corrupt(
        Location::file(
            &folder.join(PARITY_FILE),
            crate::format::parity::ROOT_OFFSET as u64,
        )
        .len(32),
        Defect::mismatch(
            Structure::ParityHeader,
            "root (a parity file of other contents?)",
            format!("{} (the manifest's root)", manifest.root),
            crate::format::hex(&parity.header.root),
        ),
    ))
}

/// The archive id the first shard header of the file table that decodes claims.
pub(super) fn shard_archive_id(folder: &Path, files: &[ProtectedFile]) -> Option<[u8; 16]> {
    files.iter().find_map(|f| {
        let (file, _) = crate::io::open_regular(&folder.join(&f.name)).ok()?;
        let mut b = [0u8; crate::format::header::HEADER_LEN];
        file.read_exact_at(&mut b, 0).ok()?;
        crate::format::header::ShardHeader::decode(&b)
            .ok()
            .map(|h| h.archive_id)
    })
}

/// Rule 5 of §17.5: with a manifest that checks, the file table lists exactly the files
/// §17.2 rule 2 protects, each with the manifest's size and BLAKE3 (for `manifest.json`, its
/// own), so that repair never rewrites a file into one the manifest does not describe.
pub(super) fn check_file_table(
    parity: &Parity,
    folder: &Path,
    checked: &CheckedManifest,
) -> Result<()> {
    let expected: Vec<(&str, u64, &str)> = folder_shards(folder, &checked.manifest)
        .into_iter()
        .map(|s| (s.file.as_str(), s.size, s.blake3.as_str()))
        .chain(std::iter::once((
            MANIFEST_FILE,
            checked.len,
            checked.blake3.as_str(),
        )))
        .collect();
    let path = folder.join(PARITY_FILE);
    let describe =
        |name: &str, size: u64, blake3: &str| format!("{name}, {size} bytes, blake3 {blake3}");
    let count_differs = || {
        Error::corrupt(
            Location::file(&path, parity.header.tables_offset),
            Defect::mismatch(
                Structure::ParityFileTable,
                "entries",
                format!("{} entries (the manifest's files)", expected.len()),
                format!("{} entries", parity.files.len()),
            ),
        )
    };
    for (i, &(name, size, blake3)) in expected.iter().enumerate() {
        let Some(f) = parity.files.get(i) else {
            return Err(count_differs());
        };
        if f.name != name || f.size != size || f.blake3 != blake3 {
            return Err(Error::corrupt(
                Location::file(&path, parity.header.tables_offset + f.table_offset),
                Defect::mismatch(
                    Structure::ParityFileTable,
                    "entry (a parity file of other files?)",
                    format!(
                        "entry {i}: {} (the manifest's)",
                        describe(name, size, blake3)
                    ),
                    describe(&f.name, f.size, &f.blake3),
                ),
            ));
        }
    }
    if parity.files.len() != expected.len() {
        return Err(count_differs());
    }
    Ok(())
}

pub(super) fn inspect(folder: &Path) -> Result<Damage> {
    let parity = load(folder)?;
    let manifest = folder_manifest(folder);
    // A parity file of another archive would "repair" this one into that one.
    let claimed = manifest
        .as_ref()
        .map(|c| c.manifest.archive_id_bytes())
        .or_else(|| shard_archive_id(folder, &parity.files));
    if let Some(id) = claimed {
        if id != parity.header.archive_id {
            return Err(Error::corrupt(
                Location::file(
                    &folder.join(PARITY_FILE),
                    crate::format::parity::ARCHIVE_ID_OFFSET as u64,
                ),
                Defect::mismatch(
                    Structure::ParityHeader,
                    "archive id (a parity file of another archive?)",
                    crate::format::hex(&id),
                    crate::format::hex(&parity.header.archive_id),
                ),
            ));
        }
    }
    if let Some(checked) = &manifest {
        check_root(&parity, folder, &checked.manifest)?;
        check_file_table(&parity, folder, checked)?;
    }
    let chunk = parity.chunk();
    let mut data = BTreeSet::new();
    let mut handles = Vec::new();
    let mut sizes_differ = Vec::new();
    let mut buf = vec![0u8; (chunk as usize).max(1)];
    for f in &parity.files {
        let path = folder.join(&f.name);
        let file = crate::io::open_regular(&path).ok().map(|(file, _)| file);
        let actual = file
            .as_ref()
            .and_then(|h| h.metadata().ok())
            .map(|m| m.len());
        sizes_differ.push(actual != Some(f.size));
        let chunks = f.size.div_ceil(chunk).max(1);
        for c in 0..chunks {
            let i = f.first_chunk + c;
            let off = c * chunk;
            let len = chunk.min(f.size.saturating_sub(off)) as usize;
            buf.fill(0);
            let ok = match &file {
                Some(h) => {
                    h.read_exact_at(&mut buf[..len], off).is_ok()
                        && chunk_digest(&buf) == parity.data_digests[i as usize]
                }
                None => false,
            };
            if !ok {
                data.insert(i);
            }
        }
        handles.push(file);
    }
    let mut parity_chunks = BTreeSet::new();
    let (pfile, _) = crate::io::open_regular(&folder.join(PARITY_FILE))?;
    for (idx, want) in parity.parity_digests.iter().enumerate() {
        let at = parity.layers_offset + idx as u64 * chunk;
        if pfile.read_exact_at(&mut buf, at).is_err() || chunk_digest(&buf) != *want {
            parity_chunks.insert(idx as u64);
        }
    }
    Ok(Damage {
        parity,
        manifest_checks: manifest.is_some(),
        data,
        parity_chunks,
        handles,
        sizes_differ,
    })
}

pub(super) fn status_of(folder: &Path, d: &Damage) -> ParityStatus {
    let layer = d.parity.header.layer_chunks;
    let m = u64::from(d.parity.header.parity_layers);
    let mut per_column: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for &i in &d.data {
        per_column.entry(i % layer).or_default().0 += 1;
    }
    for &p in &d.parity_chunks {
        per_column.entry(p % layer).or_default().1 += 1;
    }
    let mut unrecoverable = 0;
    let mut worst = 0u64;
    for (data, par) in per_column.values() {
        if *data > 0 && data + par > m {
            unrecoverable += 1;
            worst = worst.max(data + par - m);
        }
    }
    ParityStatus {
        folder: folder.to_path_buf(),
        damaged_chunks: d.data.len() as u64,
        damaged_parity_chunks: d.parity_chunks.len() as u64,
        parity_layers: d.parity.header.parity_layers,
        unrecoverable_stripes: unrecoverable,
        more_layers_needed: worst as u32,
        recoverable: unrecoverable == 0,
        damaged_parts: d.parity.damaged.clone(),
        parity_file: ParityFileState::Loaded,
    }
}

/// How far the parity of the archive at `dir` can repair its damage; `None` when the
/// archive has no parity.
///
/// # Errors
/// A parity file exists but cannot be read.
pub fn parity_status(dir: &Path) -> Result<Option<Vec<ParityStatus>>> {
    let mut out = Vec::new();
    for folder in parity_folders(dir) {
        let d = inspect(&folder)?;
        out.push(status_of(&folder, &d));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The parity status of each of `folders` (§13.1 Parity): loaded, without a parity file,
/// or with one that does not load, whose error is returned beside it.
pub(crate) fn folder_statuses(folders: &[PathBuf]) -> Vec<(ParityStatus, Option<Error>)> {
    folders
        .iter()
        .map(|folder| {
            if !folder.join(PARITY_FILE).exists() {
                return (
                    ParityStatus::without_parity(folder, ParityFileState::NoParity),
                    None,
                );
            }
            if let Some(generation) = stale_generation(folder) {
                return (
                    ParityStatus::without_parity(folder, ParityFileState::Stale { generation }),
                    None,
                );
            }
            match inspect(folder) {
                Ok(d) => (status_of(folder, &d), None),
                Err(e) => (
                    ParityStatus::without_parity(
                        folder,
                        ParityFileState::Unusable {
                            error: e.to_string(),
                        },
                    ),
                    Some(e),
                ),
            }
        })
        .collect()
}

/// The folders of `dir` that have volume names (§2.1).
pub(super) fn volume_folders(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(crate::archive::volume::volume_number_of)
                .is_some()
        })
        .map(|e| e.path())
        .filter(|p| p.is_dir())
}

/// Folders under `dir` (itself or its `vol-*` folders) that hold a parity file.
pub(crate) fn parity_folders(dir: &Path) -> Vec<PathBuf> {
    if dir.join(PARITY_FILE).exists() {
        return vec![dir.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join(PARITY_FILE).exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The earlier generation a folder's parity file is bound to, if it is bound to one rather
/// than to the current manifest (§11.3, §17.5): its header checks and its root is the root of
/// a kept manifest of an earlier generation, which the current one descends from.
pub(crate) fn stale_generation(folder: &Path) -> Option<u64> {
    use crate::archive::manifest::{self, Manifest};
    let limits = crate::Limits::default();
    let current = Manifest::load(folder, &limits).ok()?;
    let (file, _) = crate::io::open_regular(&folder.join(PARITY_FILE)).ok()?;
    let mut bytes = [0u8; crate::format::parity::PARITY_HEADER_LEN];
    std::io::Read::read_exact(&mut &file, &mut bytes).ok()?;
    let header = crate::format::parity::ParityHeader::decode(&bytes).ok()?;
    let root = |m: &Manifest| manifest::parse_hex::<32>(&m.root);
    if root(&current) == Some(header.root) {
        return None;
    }
    let mut child = current;
    while let Some(generation) = child.generation.clone() {
        let parent = Manifest::load_generation(folder, generation.number - 1, &limits).ok()?;
        if parent.root != generation.parent {
            return None;
        }
        if root(&parent) == Some(header.root) {
            return Some(parent.generation_number());
        }
        child = parent;
    }
    None
}
