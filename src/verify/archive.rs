//! The archive-level checks: volumes and the manifest (§2.1, §11, §13.1).

use super::*;

impl Verifier {
    /// A split archive: every volume present, each within its budget and holding the same
    /// manifest.
    pub(super) fn check_volumes(
        &mut self,
        set: &crate::archive::volume::VolumeSet,
        m: &Manifest,
        manifest_dir: &Path,
    ) {
        let count = crate::archive::manifest::volume_count(m);
        for missing in set.missing() {
            self.complete = false;
            let on: Vec<&ShardInfo> = m
                .shards
                .iter()
                .filter(|s| s.volume == Some(missing))
                .collect();
            let (first, last) = (
                on.first().map(|s| s.first_ordinal),
                on.last().map(|s| s.first_ordinal + s.samples - 1),
            );
            let files: Vec<&str> = on.iter().map(|s| s.file.as_str()).collect();
            self.push(
                PathBuf::from(crate::archive::manifest::volume_folder_name(missing)),
                None,
                0,
                on.iter().map(|s| s.size).sum(),
                Defect::missing_because(
                    Structure::Volume {
                        volume: missing,
                        of: count,
                    },
                    "present",
                    format!("it holds {}", files.join(", ")),
                ),
            );
            if let (Some(a), Some(b)) = (first, last) {
                self.affects(Some([a, b]), Vec::new());
            }
        }
        let max = self.limits.max_manifest_bytes;
        let written_by = manifests_by_volume(m, manifest_dir, max);
        let budget = m.layout.volume_size.unwrap_or(u64::MAX);
        for (number, dir) in set.present() {
            let path = dir.join(MANIFEST_FILE);
            // §2.1: a volume holds the manifest of the generation that wrote it.
            let (generation, reference) = written_by
                .iter()
                .find(|(last, _, _)| *last >= number)
                .map_or((m.generation_number(), &[][..]), |(_, g, b)| {
                    (*g, b.as_slice())
                });
            match manifest::read_capped(&path, max) {
                Ok(bytes) if bytes == reference => {}
                Ok(_) => self.push(
                    path,
                    None,
                    0,
                    0,
                    Defect::mismatch(
                        Structure::VolumeManifest { volume: number },
                        "",
                        format!("the manifest of generation {generation}, which wrote this volume"),
                        "a different manifest",
                    ),
                ),
                Err(e) => {
                    // Every present volume carries the manifest (§13.1 complete).
                    if !path.exists() {
                        self.complete = false;
                    }
                    self.push(
                        path,
                        None,
                        0,
                        0,
                        Defect::missing_because(
                            Structure::VolumeManifest { volume: number },
                            "present",
                            e,
                        ),
                    )
                }
            }
            let used = volume_bytes(&dir);
            if used > budget {
                self.push(
                    dir.clone(),
                    None,
                    0,
                    used,
                    Defect::invalid(
                        Structure::Volume {
                            volume: number,
                            of: count,
                        },
                        "size",
                        format!("at most {budget} bytes (layout.volume_size)"),
                        format!("{used} bytes"),
                    ),
                );
            }
        }
    }

    pub(super) fn check_manifest(
        &mut self,
        dir: &Path,
        options: &VerifyOptions,
    ) -> Option<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            self.complete = false;
            self.push(
                path,
                None,
                0,
                0,
                Defect::missing_because(
                    Structure::Manifest,
                    "manifest.json (written last by pack)",
                    "the archive is incomplete: interrupted pack?",
                ),
            );
            return None;
        }
        let manifest = manifest::read_capped(&path, self.limits.max_manifest_bytes)
            .and_then(|bytes| Manifest::parse(&bytes, &path).map(|m| (m, bytes)));
        let (manifest, bytes) = match manifest {
            Ok(ok) => ok,
            Err(e) => {
                self.complete = false;
                self.push_error(&e, None, 0);
                return None;
            }
        };
        self.bytes_checked += bytes.len() as u64;
        let canonical = manifest.to_canonical_bytes();
        if canonical != bytes {
            let at = canonical
                .iter()
                .zip(&bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(canonical.len().min(bytes.len()));
            self.push(
                path.clone(),
                None,
                at as u64,
                1,
                Defect::invalid(
                    Structure::Manifest,
                    "canonical form",
                    format!("byte {:?}", canonical.get(at).map(|&b| b as char)),
                    format!("byte {:?}", bytes.get(at).map(|&b| b as char)),
                ),
            );
        }
        if let Some(want) = &options.expect_root {
            let want = want.trim().to_ascii_lowercase();
            if want != manifest.root {
                self.push(
                    path,
                    None,
                    0,
                    0,
                    Defect::digest(
                        Structure::Manifest,
                        format!("{want} (expected by the caller)"),
                        &manifest.root,
                    ),
                );
            }
        }
        Some(manifest)
    }
}

/// For each generation of the split archive whose current manifest is `m` (in
/// `manifest_dir`, with the earlier ones beside it, §11.3), oldest first: the last volume it
/// lists, its number, and its manifest's bytes. Volume *v* was written by the first
/// generation whose last volume is at least *v* (§2.1). A generation whose manifest cannot
/// be read is left out; the chain check reports it.
fn manifests_by_volume(m: &Manifest, manifest_dir: &Path, max: u64) -> Vec<(u32, u64, Vec<u8>)> {
    let current = m.generation_number();
    (1..=current)
        .filter_map(|number| {
            let path = if number == current {
                manifest_dir.join(MANIFEST_FILE)
            } else {
                manifest_dir.join(manifest::generation_file_name(number))
            };
            let bytes = manifest::read_capped(&path, max).ok()?;
            let parsed = Manifest::parse(&bytes, &path).ok()?;
            Some((manifest::volume_count(&parsed), number, bytes))
        })
        .collect()
}
