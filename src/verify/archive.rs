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
        let reference =
            manifest::read_capped(&manifest_dir.join(MANIFEST_FILE), max).unwrap_or_default();
        let budget = m.layout.volume_size.unwrap_or(u64::MAX);
        for (number, dir) in set.present() {
            let path = dir.join(MANIFEST_FILE);
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
                        "the same manifest as every volume",
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
