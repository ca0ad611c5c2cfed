//! What appending to a tape stream (§16.5) needs from the stream already written: read in
//! one pass, its last final manifest, where that ends, and the keys of every generation.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::read::stream::{manifest_mismatches, Committed, StreamItem, StreamReader, StreamShard};
use crate::{Defect, EntryKind, Error, Limits, Location, Result};

/// An existing stream, read whole, that a new generation continues.
pub(crate) struct StreamToAppend {
    /// Its current generation: the last final manifest, its entry and its end.
    pub(crate) committed: Committed,
    /// The stream's record size, which the new generation keeps.
    pub(crate) record_size: u32,
    /// The key hash of every sample of every generation.
    pub(crate) keys: HashSet<[u8; 16]>,
    /// Set when bytes follow the last final manifest and the stream ends in them without
    /// another final manifest (an interrupted append): the offset where they start.
    pub(crate) torn_tail: Option<u64>,
}

/// Reads the stream `inner` (named `name`) whole for an append. With `allow_torn_tail`, a
/// stream that ends, torn, after its last final manifest is accepted and reported in
/// `torn_tail`; any other defect, and a stream with no final manifest, is an error.
pub(crate) fn read_stream_for_append<R: Read>(
    inner: R,
    name: &Path,
    allow_torn_tail: bool,
) -> Result<StreamToAppend> {
    let mut reader = StreamReader::new(inner, name, Limits::default())?;
    // Keys become taken when a final manifest lists their samples: an interrupted append's
    // samples after the last one may be written again by the next append.
    let mut keys = HashSet::new();
    let mut pending = Vec::new();
    let mut shards: Vec<StreamShard> = Vec::new();
    let mut failure = None;
    for item in reader.by_ref() {
        match item {
            Ok(StreamItem::Sample(sample)) => {
                pending.push(super::key_hash(sample.key()));
            }
            Ok(StreamItem::ShardEnd {
                number,
                size,
                blake3,
                archive_id,
            }) => shards.push(StreamShard {
                number,
                size,
                blake3,
                archive_id,
            }),
            Ok(StreamItem::Manifest { kind, manifest }) => {
                // As unstream and verify do: a manifest that does not list exactly the
                // shards before it is damage, not a generation to build on.
                if let Some(m) = manifest_mismatches(name, kind, &manifest, &shards)
                    .into_iter()
                    .next()
                {
                    failure = Some(Error::corrupt(Location::file(&m.file, 0), m.defect));
                    break;
                }
                if kind == EntryKind::Final {
                    keys.extend(pending.drain(..));
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let record_size = reader.record_size() as u32;
    let committed = reader.committed().cloned();
    let Some(committed) = committed else {
        return Err(match failure {
            Some(e) if !ends_the_data(&e) => e,
            torn => no_final_manifest(name, torn),
        });
    };
    let torn_tail = match failure {
        None => None,
        Some(e) if allow_torn_tail && ends_the_data(&e) => Some(committed.end),
        Some(e) => return Err(e),
    };
    Ok(StreamToAppend {
        committed,
        record_size,
        keys,
        torn_tail,
    })
}

/// Whether `e` is the end of the data tearing the stream (§16.4 step 5), not a defect of
/// bytes that are there.
fn ends_the_data(e: &Error) -> bool {
    matches!(e.defect(), Some(Defect::StreamEnds { .. }))
}

fn no_final_manifest(name: &Path, torn: Option<Error>) -> Error {
    let how = torn.map_or(String::new(), |e| format!(" ({e})"));
    Error::invalid_input(
        name.display().to_string(),
        format!(
            "the stream has no final manifest{how}, so no generation to append to; unstream \
             it to keep what its checkpoints list"
        ),
    )
}
