//! Verifying a tape stream (§16) in one pass, and the one rule that matches a stream's
//! manifest entries with the shards before them, shared with `unstream`.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::manifest::Manifest;
use crate::read::stream::{manifest_mismatches, StreamItem, StreamReader, StreamShard};
use crate::{Defect, EntryKind, Finding, Result, Structure, VerifyOptions};

/// Every way `manifest` fails to list exactly `shards`, the shards the stream held before
/// it (see [`manifest_mismatches`]), as findings. Empty when they agree.
pub(crate) fn manifest_findings(
    name: &Path,
    kind: EntryKind,
    manifest: &Manifest,
    shards: &[StreamShard],
) -> Vec<Finding> {
    manifest_mismatches(name, kind, manifest, shards)
        .into_iter()
        .map(|m| Finding::new(m.file, m.shard, 0, m.len, m.defect))
        .collect()
}

/// The outcome of [`verify_stream`].
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct StreamVerifyReport {
    /// The stream's name, as given.
    pub archive: PathBuf,
    /// The stream ended with a final manifest: no generation after the last one was begun
    /// and left unfinished.
    pub complete: bool,
    /// No finding at all.
    pub valid: bool,
    /// Shards read whole.
    pub shards: u64,
    /// Samples read.
    pub samples: u64,
    /// The root digest of the last final manifest read: the stream's current generation.
    pub root: Option<String>,
    /// The number of that generation (§16.5), 0 when no final manifest was read. Every
    /// generation before it was checked on the way: its manifest names the one before as
    /// parent, and lists its shards first.
    pub generation: u64,
    /// Every defect found. A stream cannot be resynchronised in one pass, so reading stops
    /// at the first damaged byte, which is the last finding.
    pub findings: Vec<Finding>,
}

impl StreamVerifyReport {
    /// True when the stream is complete and nothing is wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.complete && self.findings.is_empty()
    }
}

/// Verifies a stream written by [`crate::WriterBuilder::create_stream`] in one pass from
/// `inner` (standard input, a pipe, a tape device); `name` names it in findings. Every
/// block, index and trailer is checked as it passes, and each manifest entry is matched
/// with the shards before it: their number, sizes, BLAKE3 digests and archive ids, and for
/// the final manifest the number of samples. `options.expect_root` is compared with the
/// final manifest's root and `options.limits` caps allocation; the mode is ignored (a
/// stream is always read whole).
///
/// # Errors
/// Only when the stream does not start with a stream start entry; every later defect is a
/// finding.
pub fn verify_stream<R: Read>(
    inner: R,
    name: impl Into<PathBuf>,
    options: &VerifyOptions,
) -> Result<StreamVerifyReport> {
    let name = name.into();
    options.check()?;
    let reader = StreamReader::with_trace(inner, &name, options.limits, options.trace.clone())?;
    let mut shards: Vec<StreamShard> = Vec::new();
    let mut samples = 0u64;
    let mut findings = Vec::new();
    let mut root = None;
    let mut generation = 0;
    let mut complete = false;
    for item in reader {
        match item {
            Ok(StreamItem::Sample(_)) => samples += 1,
            Ok(StreamItem::ShardEnd {
                number,
                size,
                blake3,
                archive_id,
            }) => {
                // A later generation has begun: the stream is complete again only at its
                // final manifest.
                complete = false;
                shards.push(StreamShard {
                    number,
                    size,
                    blake3,
                    archive_id,
                });
            }
            Ok(StreamItem::Manifest { kind, manifest }) => {
                findings.extend(manifest_findings(&name, kind, &manifest, &shards));
                if kind == EntryKind::Final {
                    complete = true;
                    if manifest.totals.samples != samples {
                        findings.push(Finding::new(
                            name.clone(),
                            None,
                            0,
                            0,
                            Defect::mismatch(
                                Structure::Manifest,
                                "sample count",
                                format!("{samples}, the samples the stream held"),
                                manifest.totals.samples,
                            ),
                        ));
                    }
                    root = Some(manifest.root.clone());
                    generation = manifest.generation_number();
                }
            }
            Err(e) => {
                complete = false;
                findings.push(Finding::from_error(&e, None, 0));
                break;
            }
        }
    }
    if let (Some(want), Some(got)) = (&options.expect_root, &root) {
        if &want.trim().to_ascii_lowercase() != got {
            findings.push(Finding::new(
                name.clone(),
                None,
                0,
                0,
                Defect::digest(
                    Structure::Manifest,
                    format!("{want} (expected by the caller)"),
                    got,
                ),
            ));
        }
    }
    Ok(StreamVerifyReport {
        archive: name,
        complete,
        valid: findings.is_empty(),
        shards: shards.len() as u64,
        samples,
        root,
        generation,
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, WriterBuilder};

    /// A stream of 30 samples in several shards with a checkpoint after each.
    fn stream() -> Vec<u8> {
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = WriterBuilder::new()
            .compression(Compression::None)
            .shard_size(16 << 10)
            .create_stream(Box::new(Sink(bytes.clone())), "test")
            .unwrap();
        for i in 0..30u32 {
            w.append(&format!("{i:03}"), &[("bin", &[i as u8; 2000][..])])
                .unwrap();
        }
        w.finish().unwrap();
        let out = bytes.lock().unwrap().clone();
        out
    }

    #[test]
    fn a_clean_stream_verifies() {
        let bytes = stream();
        let report = verify_stream(&bytes[..], "s", &VerifyOptions::default()).unwrap();
        assert!(report.is_ok(), "{:?}", report.findings);
        assert_eq!(report.samples, 30);
        assert!(report.shards > 1);
        let root = report.root.clone().unwrap();
        let options = VerifyOptions {
            expect_root: Some("00".repeat(32)),
            ..Default::default()
        };
        let report = verify_stream(&bytes[..], "s", &options).unwrap();
        assert_eq!(report.findings.len(), 1);
        assert!(matches!(
            &report.findings[0].defect,
            Some(Defect::Digest {
                structure: Structure::Manifest,
                found,
                ..
            }) if *found == root
        ));
    }

    #[test]
    fn a_torn_stream_is_incomplete_with_a_located_finding() {
        let bytes = stream();
        let report =
            verify_stream(&bytes[..bytes.len() / 2], "s", &VerifyOptions::default()).unwrap();
        assert!(!report.complete && !report.is_ok());
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(report.findings[0].file.starts_with("s"));
    }

    #[test]
    fn manifests_are_matched_with_the_shards_before_them() {
        let bytes = stream();
        let reader = StreamReader::new(&bytes[..], "s", crate::Limits::default()).unwrap();
        let mut shards = Vec::new();
        let mut manifest = None;
        for item in reader {
            match item.unwrap() {
                StreamItem::ShardEnd {
                    number,
                    size,
                    blake3,
                    archive_id,
                } => shards.push(StreamShard {
                    number,
                    size,
                    blake3,
                    archive_id,
                }),
                StreamItem::Manifest { manifest: m, .. } => manifest = Some(*m),
                StreamItem::Sample(_) => {}
            }
        }
        let manifest = manifest.unwrap();
        let name = Path::new("s");
        let kind = EntryKind::Final;
        assert!(manifest_findings(name, kind, &manifest, &shards).is_empty());
        let mut other = shards.clone();
        other[0].size += 1;
        other[1].blake3 = "00".repeat(32);
        other[1].archive_id = [9; 16];
        let f = manifest_findings(name, kind, &manifest, &other);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(f[0].shard, Some(0));
        assert!(matches!(
            f[2].defect,
            Some(Defect::Mismatch {
                field: "archive id",
                ..
            })
        ));
        let f = manifest_findings(name, kind, &manifest, &shards[1..]);
        assert!(
            matches!(
                f[0].defect,
                Some(Defect::Mismatch {
                    structure: Structure::Manifest,
                    field: "shard count",
                    ..
                })
            ),
            "{f:?}"
        );
    }
}
