//! Salvage (§13.3): recover every intact sample from damaged shards without trailers,
//! indexes or manifest, by finding blocks through their sync markers; report what is lost.

use crate::codec::dictionary::DecodingDictionary;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN, BLOCK_SYNC};
use crate::format::header::{ShardHeader, HEADER_LEN};
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{checksum, MIN_ALIGN_BYTES};
use crate::io::ShardBytes;
use crate::read::block::BlockCursor;
use crate::{Error, Limits, Manifest, Result, WriterBuilder};

/// Why a [`LostRange`] could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LostKind {
    /// Bytes holding no intact block: whatever samples they held are lost, even when no
    /// ordinal says which.
    NoIntactBlock,
    /// Samples known by their ordinals to be in no intact block.
    MissingSamples,
    /// An intact block whose samples could not be decoded or written.
    UnusableBlock,
    /// A damaged shard header; its blocks were still used, so no sample is lost by it.
    DamagedHeader,
    /// A damaged or missing trailer and index; blocks were found by their sync markers,
    /// so no sample is lost by it.
    DamagedTrailer,
}

/// A byte range of an input that held no intact block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LostRange {
    /// The input file.
    pub file: PathBuf,
    /// First byte of the range.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// Why its bytes could not be used, as a category.
    pub kind: LostKind,
    /// Why its bytes could not be used, for people.
    pub reason: String,
    /// Ordinals of the samples lost there (first and last), when block headers or the
    /// trailer around the range tell them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<[u64; 2]>,
}

impl LostRange {
    /// The range as a [`crate::Location`] (the same type errors and findings use).
    pub fn location(&self) -> crate::Location {
        crate::Location::file(&self.file, self.offset).len(self.len)
    }

    /// True when samples were lost here: the range names lost samples or held bytes in no
    /// intact block. False for damage that cost no sample (a header or trailer whose
    /// blocks were still found).
    #[must_use]
    pub fn loses_samples(&self) -> bool {
        self.ordinals.is_some() || self.kind == LostKind::NoIntactBlock
    }
}

/// What [`salvage`] recovered and lost.
#[derive(Clone, Debug, Serialize)]
#[must_use]
#[non_exhaustive]
pub struct SalvageReport {
    /// Input shard files read.
    pub files: u64,
    /// Intact blocks found.
    pub blocks: u64,
    /// Samples written to the new archive.
    pub samples: u64,
    /// Samples found more than once (duplicated shards) and written once.
    pub duplicates: u64,
    /// Ranges with no intact block, and the samples they held when known.
    pub lost: Vec<LostRange>,
    /// The new archive's manifest root.
    pub root: String,
}

/// Every shard file among `inputs`: files as given, folders searched (with their volume
/// folders) for `shard-*.shp`.
fn shard_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, "stat", e))?;
        if meta.is_file() {
            files.push(input.clone());
            continue;
        }
        let mut stack = vec![input.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "read folder", e))?;
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() && name.starts_with("vol-") {
                    stack.push(p);
                } else if p.is_file()
                    && name.starts_with("shard-")
                    && (name.ends_with(".shp") || name.ends_with(".shp.partial"))
                {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A block found by its sync marker, intact.
struct Found {
    offset: u64,
    header: BlockHeader,
}

impl Found {
    /// The whole block as lost, for `reason`.
    fn lost(&self, path: &Path, reason: impl std::fmt::Display) -> LostRange {
        let first = self.header.first_ordinal;
        LostRange {
            file: path.to_path_buf(),
            offset: self.offset,
            len: BLOCK_HEADER_LEN as u64 + self.header.stored_len,
            kind: LostKind::UnusableBlock,
            reason: reason.to_string(),
            ordinals: Some([first, first + u64::from(self.header.record_count) - 1]),
        }
    }
}

/// The dictionary of a shard file whose header and dictionary are intact (§5.5); without
/// it, the file's dictionary blocks cannot be decoded and are reported lost.
fn file_dictionary(bytes: &[u8]) -> Option<DecodingDictionary> {
    let header = ShardHeader::decode(bytes.get(..HEADER_LEN)?.try_into().ok()?).ok()?;
    let start = header.dictionary_offset() as usize;
    let dictionary = bytes.get(start..start + header.dictionary_len as usize)?;
    (header.dictionary_len > 0)
        .then(|| DecodingDictionary::checked(dictionary, header.dictionary_crc).ok())
        .flatten()
}

/// Finds every intact block of one file by scanning for sync markers on the 64-byte grid
/// every alignment shares; reports the ranges between them that hold no intact block.
fn scan_file(path: &Path, bytes: &[u8], lost: &mut Vec<LostRange>) -> Vec<Found> {
    let len = bytes.len() as u64;
    let header = bytes
        .get(..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .and_then(|b| ShardHeader::decode(b).ok());
    let trailer = len
        .checked_sub(TRAILER_LEN as u64)
        .and_then(|at| bytes.get(at as usize..).and_then(|b| b.try_into().ok()))
        .and_then(|b| Trailer::decode(b).ok());
    let data_end = trailer.as_ref().map_or(len, |t| t.index_offset.min(len));
    let step = u64::from(MIN_ALIGN_BYTES);
    let mut found: Vec<Found> = Vec::new();
    let mut pos = header.as_ref().map_or(0, |h| h.data_offset());
    let mut gap_start: Option<u64> = None;
    while pos + BLOCK_HEADER_LEN as u64 <= data_end {
        let at = pos as usize;
        let intact = (bytes.get(at..at + 8) == Some(&BLOCK_SYNC[..]))
            .then(|| {
                bytes
                    .get(at..at + BLOCK_HEADER_LEN)
                    .and_then(|b| b.try_into().ok())
                    .and_then(|b| BlockHeader::decode(b).ok())
            })
            .flatten()
            .filter(|h| {
                // A block of another shard (an archive stored inside a sample, say) is not
                // one of ours.
                let ours = header.as_ref().is_none_or(|s| {
                    h.shard_number == s.shard_number
                        && h.first_ordinal >= s.first_ordinal
                        && trailer.as_ref().is_none_or(|t| {
                            h.first_ordinal < t.first_ordinal.saturating_add(t.record_count)
                        })
                });
                let start = pos + BLOCK_HEADER_LEN as u64;
                ours && start
                    .checked_add(h.stored_len)
                    .is_some_and(|end| end <= data_end)
                    && bytes
                        .get(start as usize..(start + h.stored_len) as usize)
                        .is_some_and(|p| checksum::crc32(p) == h.payload_crc)
            });
        match intact {
            Some(h) => {
                if let Some(g) = gap_start.take() {
                    lost.push(LostRange {
                        file: path.to_path_buf(),
                        offset: g,
                        len: pos - g,
                        kind: LostKind::NoIntactBlock,
                        reason: "no intact block".into(),
                        ordinals: None,
                    });
                }
                let end = pos + BLOCK_HEADER_LEN as u64 + h.stored_len;
                found.push(Found {
                    offset: pos,
                    header: h,
                });
                pos = end.div_ceil(step) * step;
            }
            None => {
                // Zero padding between blocks is not damage.
                let zero = bytes
                    .get(at..at + step as usize)
                    .is_some_and(|b| b.iter().all(|&x| x == 0));
                if !zero && gap_start.is_none() {
                    gap_start = Some(pos);
                }
                pos += step;
            }
        }
    }
    if let Some(g) = gap_start {
        lost.push(LostRange {
            file: path.to_path_buf(),
            offset: g,
            len: data_end - g,
            kind: LostKind::NoIntactBlock,
            reason: "no intact block".into(),
            ordinals: None,
        });
    }
    if header.is_none() {
        lost.push(LostRange {
            file: path.to_path_buf(),
            offset: 0,
            len: HEADER_LEN as u64,
            kind: LostKind::DamagedHeader,
            reason: "damaged shard header (its blocks were still used)".into(),
            ordinals: None,
        });
    }
    if trailer.is_none() {
        lost.push(LostRange {
            file: path.to_path_buf(),
            offset: len.saturating_sub(TRAILER_LEN as u64),
            len: TRAILER_LEN as u64,
            kind: LostKind::DamagedTrailer,
            reason: "damaged or missing trailer and index (blocks found by their sync markers)"
                .into(),
            ordinals: None,
        });
    }
    // Samples missing between the blocks found, from the ordinals the block headers carry
    // and the shard's range from its header and trailer when they are intact.
    let mut expected = header.as_ref().map(|h| h.first_ordinal);
    for f in &found {
        if let Some(e) = expected.filter(|&e| e < f.header.first_ordinal) {
            lost.push(LostRange {
                file: path.to_path_buf(),
                offset: f.offset,
                len: 0,
                kind: LostKind::MissingSamples,
                reason: "samples before this block are in no intact block".into(),
                ordinals: Some([e, f.header.first_ordinal - 1]),
            });
        }
        expected = Some(f.header.first_ordinal + u64::from(f.header.record_count));
    }
    if let (Some(e), Some(t)) = (expected, &trailer) {
        let end = t.first_ordinal.saturating_add(t.record_count);
        if e < end {
            lost.push(LostRange {
                file: path.to_path_buf(),
                offset: data_end,
                len: 0,
                kind: LostKind::MissingSamples,
                reason: "samples at the end of the shard are in no intact block".into(),
                ordinals: Some([e, end - 1]),
            });
        }
    }
    found
}

/// Recovers every intact sample from `inputs` (shard files, archive folders, even partial
/// shards of an interrupted pack) into a new archive at `output`, written with `options`.
/// Samples keep their order (by shard, then ordinal); a key seen twice is written once.
///
/// # Errors
/// `output` is inside an input folder, an input cannot be read, or the new archive cannot
/// be written; `output` is then removed if this call created it.
pub fn salvage(inputs: &[PathBuf], output: &Path, options: WriterBuilder) -> Result<SalvageReport> {
    for input in inputs {
        if input.is_dir() {
            crate::io::refuse_output_inside(input, output)?;
        }
    }
    let existed = std::fs::symlink_metadata(output).is_ok();
    let result = salvage_into(inputs, output, options);
    if result.is_err() && !existed {
        // A failed salvage leaves nothing behind.
        let _ = std::fs::remove_dir_all(output);
    }
    result
}

fn salvage_into(
    inputs: &[PathBuf],
    output: &Path,
    options: WriterBuilder,
) -> Result<SalvageReport> {
    let files = shard_files(inputs)?;
    let mut lost = Vec::new();
    let mut writer = options.create(output)?;
    let mut seen: HashSet<String> = HashSet::new();
    let (mut blocks, mut samples, mut duplicates) = (0u64, 0u64, 0u64);
    // Shards in order of their number and first ordinal, as far as their headers tell.
    let mut ordered: Vec<(u64, PathBuf, ShardBytes)> = Vec::new();
    for path in &files {
        let bytes = ShardBytes::map(path)?;
        let first = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .and_then(|b| ShardHeader::decode(b).ok())
            .map_or(u64::MAX, |h| h.first_ordinal);
        ordered.push((first, path.clone(), bytes));
    }
    ordered.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (_, path, bytes) in &ordered {
        let dictionary = file_dictionary(bytes);
        for f in scan_file(path, bytes, &mut lost) {
            let payload_at = f.offset as usize + BLOCK_HEADER_LEN;
            let payload = bytes
                .get(payload_at..payload_at + f.header.stored_len as usize)
                .unwrap_or_default();
            let mut cursor = match BlockCursor::decode(
                path,
                f.header.shard_number,
                f.offset,
                &f.header,
                payload,
                dictionary.as_ref(),
                Limits::default().max_block_bytes,
            ) {
                Ok(c) => c,
                Err(e) => {
                    lost.push(f.lost(path, e));
                    continue;
                }
            };
            blocks += 1;
            loop {
                match cursor.next_sample(path) {
                    Ok(Some(s)) => {
                        if !seen.insert(s.key().to_string()) {
                            duplicates += 1;
                            continue;
                        }
                        let fields: Vec<(&str, &[u8])> = s.fields().collect();
                        match writer.append(s.key(), &fields) {
                            Ok(_) => samples += 1,
                            // A sample no writer may write (a crafted key, say) is lost, not fatal.
                            Err(e) if matches!(e.kind(), crate::ErrorKind::InvalidInput { .. }) => {
                                lost.push(LostRange {
                                    file: path.clone(),
                                    offset: f.offset,
                                    len: 0,
                                    kind: LostKind::UnusableBlock,
                                    reason: e.to_string(),
                                    ordinals: Some([s.ordinal(), s.ordinal()]),
                                })
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        lost.push(f.lost(path, e));
                        break;
                    }
                }
            }
        }
    }
    let manifest: Manifest = writer.finish()?;
    Ok(SalvageReport {
        files: files.len() as u64,
        blocks,
        samples,
        duplicates,
        lost,
        root: manifest.root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, Writer};

    /// An archive of 40 samples, one block of stored records per 4 samples.
    fn archive(dir: &Path) -> PathBuf {
        let path = dir.join("a");
        let mut w = Writer::builder()
            .compression(Compression::None)
            .block_size(4 * 1000)
            .align(4096)
            .create(&path)
            .unwrap();
        for i in 0..40u32 {
            w.append(&format!("{i:04}"), &[("bin", &[i as u8; 1000][..])])
                .unwrap();
        }
        w.finish().unwrap();
        path.join("shard-000000.shp")
    }

    #[test]
    fn lost_ranges_say_whether_samples_were_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let shard = archive(tmp.path());
        let mut bytes = std::fs::read(&shard).unwrap();
        // Damage the trailer only: every block is still found.
        let n = bytes.len();
        bytes[n - 8..].fill(0xAA);
        std::fs::write(&shard, &bytes).unwrap();
        let report = salvage(
            std::slice::from_ref(&shard),
            &tmp.path().join("b"),
            WriterBuilder::new(),
        )
        .unwrap();
        assert_eq!(report.samples, 40);
        let trailer = report
            .lost
            .iter()
            .find(|l| l.kind == LostKind::DamagedTrailer)
            .unwrap();
        assert!(!trailer.loses_samples(), "{:?}", report.lost);
        // Damage a block in the middle as well: its bytes hold no intact block.
        bytes[n / 2..n / 2 + 64].fill(0x55);
        std::fs::write(&shard, &bytes).unwrap();
        let report = salvage(&[shard], &tmp.path().join("c"), WriterBuilder::new()).unwrap();
        assert!(report.samples < 40);
        let lost: Vec<&LostRange> = report.lost.iter().filter(|l| l.loses_samples()).collect();
        assert!(
            lost.iter().any(|l| l.kind == LostKind::NoIntactBlock),
            "{lost:?}"
        );
    }
}
