//! The chain of generations (§11.3): every earlier generation's manifest present, intact,
//! and the parent of the next, whose shards extend its own.

use std::path::Path;

use super::Verifier;
use crate::archive::manifest::{self, Manifest};
use crate::{Defect, Structure};

impl Verifier {
    /// Checks the manifests of every generation before `current`, newest first, and that a
    /// kept copy of the current generation, if any, is the current manifest.
    pub(super) fn check_generations(&mut self, dir: &Path, current: &Manifest) {
        let own = dir.join(manifest::generation_file_name(current.generation_number()));
        if own.exists() {
            match self.load(&own) {
                Some(copy) if copy.root == current.root => {}
                Some(copy) => self.push(
                    own,
                    None,
                    0,
                    0,
                    Defect::mismatch(
                        Structure::Manifest,
                        "root",
                        format!("{} (the current manifest.json's)", current.root),
                        copy.root,
                    ),
                ),
                None => {}
            }
        }
        let mut child = current.clone();
        while let Some(generation) = child.generation.clone() {
            let number = generation.number - 1;
            let path = dir.join(manifest::generation_file_name(number));
            if !path.exists() {
                self.complete = false;
                self.push(
                    path,
                    None,
                    0,
                    0,
                    Defect::missing_because(
                        Structure::Manifest,
                        format!("the manifest of generation {number}"),
                        "every generation before the current one is kept (§11.3)",
                    ),
                );
                return;
            }
            let Some(parent) = self.load(&path) else {
                return;
            };
            let mismatch = |field: &'static str, expected: String, found: String| {
                Defect::mismatch(Structure::Manifest, field, expected, found)
            };
            let prefix = child.shards.get(..parent.shards.len()) == Some(&parent.shards[..]);
            let problems = [
                (parent.generation_number() != number).then(|| {
                    mismatch(
                        "generation",
                        format!("{number} (its file name)"),
                        parent.generation_number().to_string(),
                    )
                }),
                (parent.root != generation.parent).then(|| {
                    mismatch(
                        "root",
                        format!(
                            "{} (the parent named by generation {})",
                            generation.parent, generation.number
                        ),
                        parent.root.clone(),
                    )
                }),
                (parent.archive_id != child.archive_id).then(|| {
                    mismatch(
                        "archive_id",
                        child.archive_id.clone(),
                        parent.archive_id.clone(),
                    )
                }),
                (parent.layout != child.layout).then(|| {
                    mismatch(
                        "layout",
                        format!("generation {}'s", generation.number),
                        "another layout".into(),
                    )
                }),
                (!prefix).then(|| {
                    mismatch(
                        "shards",
                        format!(
                            "the first {} entries of generation {}'s",
                            parent.shards.len(),
                            generation.number
                        ),
                        "other entries".into(),
                    )
                }),
            ];
            for defect in problems.into_iter().flatten() {
                self.push(path.clone(), None, 0, 0, defect);
            }
            child = parent;
        }
    }

    fn load(&mut self, path: &Path) -> Option<Manifest> {
        let parsed = manifest::read_capped(path, self.limits.max_manifest_bytes)
            .and_then(|bytes| Manifest::parse(&bytes, path).map(|m| (m, bytes)));
        match parsed {
            Ok((m, bytes)) => {
                self.bytes_checked += bytes.len() as u64;
                if m.to_canonical_bytes() != bytes {
                    self.push(
                        path.to_path_buf(),
                        None,
                        0,
                        0,
                        Defect::invalid(
                            Structure::Manifest,
                            "form",
                            "the canonical form (§11.1)",
                            "other bytes",
                        ),
                    );
                }
                Some(m)
            }
            Err(e) => {
                self.push_error(&e, None, 0);
                None
            }
        }
    }
}
