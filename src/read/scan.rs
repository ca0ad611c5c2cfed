//! `Archive::scan`: every sample in file order, on a reader thread that checks and decodes
//! blocks ahead of the caller, through the map or front to back in large reads.

use std::io;
use std::path::Path;
use std::sync::mpsc::SyncSender;

use crate::format::block::BLOCK_HEADER_LEN;
use crate::format::header::{self};
use crate::format::{checksum, Codec};
use crate::io::trace::IoTrace;
use crate::parallel::Ordered;
use crate::read::block::BlockCursor;
use crate::read::sequential::{ScannedShard, ShardScanner, WalkLog};
use crate::read::window::{FileSource, Window};
use crate::read::{BlockBytes, MappedRange};
use crate::{Defect, Error, Location, Result, Structure};

/// Iterator over an archive's samples read sequentially; see [`crate::Archive::scan`].
///
/// A reader thread walks each shard's blocks in order and hands them to one decoder thread
/// per core, which check and decode them, while the caller's thread takes the samples of
/// the blocks handed on in order: reading, checking and decompressing overlap with whatever
/// the caller does with the samples. At most [`BLOCKS_AHEAD`] decoded blocks wait
/// between the two, so memory stays bounded. Untraced, shards are read through their map,
/// stored samples share it (no copy), and every byte is checked by a CRC or as zero padding;
/// traced, front to back in the profile's large reads, with the shard's BLAKE3 compared with
/// the manifest's too.
pub struct Scan {
    archive: crate::Archive,
    events: Option<std::sync::mpsc::Receiver<ScanEvent>>,
    /// True once the end (or a reader thread that never started) has been reported.
    finished: bool,
    reader: Option<std::thread::JoinHandle<()>>,
    block: Option<BlockCursor>,
    /// A shard whose records could not be parsed: its further blocks are passed over.
    abandoned: Option<u32>,
    /// The records taken from blocks that are checked against their index at its end.
    walked: WalkLog,
}

/// Decoded blocks the reader thread may hold ready ahead of the caller.
pub const BLOCKS_AHEAD: usize = 2;

/// What the reader thread hands over: a decoded block, a shard's index after its blocks
/// (when they were not checked against it as they were read), or an error in a shard.
enum ScanEvent {
    Block(BlockCursor),
    Index(u32, ScannedShard),
    Failed(u32, Error),
}

impl crate::Archive {
    /// Iterates over every sample in file order, each shard read front to back through its
    /// map with sequential read-ahead advised, on a reader thread that checks and decodes
    /// blocks ahead of the caller (compressed ones on every core). Every byte is checked by
    /// a CRC or as zero padding before the samples it holds are returned, so damage is an
    /// error, never other bytes; the shards' BLAKE3 digests are [`crate::verify`]'s. After an
    /// error in a shard, the scan goes on with the next shard.
    ///
    /// An archive opened with [`crate::SourceKind::Pread`] is read instead in the profile's large
    /// ascending reads (16 MiB for hdd) with `pread`, and each shard's BLAKE3 is compared
    /// with the manifest once it is read whole (a mismatch is an error after its last
    /// sample).
    ///
    /// A remote archive is read as a map is, each shard's index in one request and its
    /// blocks in ranged GETs of the profile's read size, every byte checked by its CRC.
    pub fn scan(&self) -> Scan {
        Scan::new(self.clone())
    }
}

impl Scan {
    pub(crate) fn new(archive: crate::Archive) -> Self {
        let m = archive.manifest();
        let options = archive.opened_with();
        let reader = ShardReader {
            archive: archive.clone(),
            archive_id: m.archive_id_bytes(),
            archive_hex: m.archive_id.clone(),
            chunk: crate::MediaProfile::from_name(&m.layout.profile)
                .unwrap_or_default()
                .read_chunk as usize,
            max_block: archive.limits().max_block_bytes,
            source: options.source_kind(),
            trace: options.io_trace().cloned(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(BLOCKS_AHEAD);
        let handle = std::thread::Builder::new()
            .name("shardpack-scan".into())
            .spawn(move || reader.run(&tx));
        let (events, reader) = match handle {
            Ok(h) => (Some(rx), Some(h)),
            Err(_) => (None, None),
        };
        Scan {
            archive,
            events,
            finished: false,
            reader,
            block: None,
            abandoned: None,
            walked: WalkLog::default(),
        }
    }

    fn next_sample(&mut self) -> Option<Result<crate::Sample>> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(cursor) = self.block.as_mut() {
                let path = self
                    .archive
                    .shard_path(cursor.shard as usize)
                    .unwrap_or_default();
                match cursor.next_sample(&path) {
                    Ok(Some(s)) => {
                        if !cursor.is_checked() {
                            self.walked.push(cursor, &s);
                        }
                        return Some(Ok(s));
                    }
                    Ok(None) => self.block = None,
                    Err(e) => {
                        // The shard's framing can no longer be trusted: pass over the rest.
                        self.abandoned = Some(cursor.shard);
                        self.block = None;
                        return Some(Err(e));
                    }
                }
            }
            let Some(events) = self.events.as_ref() else {
                // Reported once: the caller's loop must end even if it skips errors.
                self.finished = true;
                return Some(Err(Error::io(
                    self.archive.path(),
                    "start the scan thread for",
                    io::Error::other("thread spawn failed"),
                )));
            };
            match events.recv() {
                Ok(ScanEvent::Block(cursor)) if self.abandoned != Some(cursor.shard) => {
                    self.block = Some(cursor);
                }
                Ok(ScanEvent::Index(shard, scanned)) if self.abandoned != Some(shard) => {
                    let path = self.archive.shard_path(shard as usize).unwrap_or_default();
                    if let Err(e) = self
                        .walked
                        .check(shard, &scanned.index, &scanned.layout, &path)
                    {
                        return Some(Err(e));
                    }
                }
                Ok(ScanEvent::Failed(shard, e)) if self.abandoned != Some(shard) => {
                    return Some(Err(e))
                }
                Ok(_) => {}
                Err(_) => {
                    self.finished = true;
                    return None;
                }
            }
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        // Closing the channel makes the reader thread stop at its next block.
        self.events = None;
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// The reader thread's side of a [`Scan`]: every shard front to back.
struct ShardReader {
    archive: crate::Archive,
    archive_id: [u8; 16],
    archive_hex: String,
    chunk: usize,
    max_block: u64,
    source: crate::SourceKind,
    trace: Option<IoTrace>,
}

impl ShardReader {
    fn run(self, tx: &SyncSender<ScanEvent>) {
        let workers = crate::parallel::cores();
        let spawned = Ordered::spawn(
            "shardpack-decode",
            vec![(); workers],
            workers + 1,
            |(), job: DecodeJob| job(),
        );
        let mut decoders = match spawned {
            Ok(pool) => pool,
            Err(e) => {
                let error = Error::io(self.archive.path(), "start the decoding threads for", e);
                let _ = tx.send(ScanEvent::Failed(0, error));
                return;
            }
        };
        let shards = self.archive.manifest().shards.clone();
        for (number, info) in shards.into_iter().enumerate() {
            let path = self.archive.shard_path(number);
            let number = number as u32;
            let result =
                path.and_then(|path| self.read_shard(number, &path, &info, tx, &mut decoders));
            // The blocks before a defect the reader found are still handed on, then the
            // defect; whatever the pool holds after a defect is dropped.
            let result = match result {
                Err(e) => hand_on(&mut decoders, tx).and(Err(e)),
                ok => ok,
            };
            match result {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    while decoders.next().is_some() {}
                    if tx.send(ScanEvent::Failed(number, e)).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads one shard through its map in block-table order, sending its blocks; false
    /// when the scan was dropped. Stored blocks are not copied: their samples share the
    /// map. Every byte is checked: each block's CRC before it is sent, every padding run
    /// for zeros, the dictionary and the index against their CRCs; header and trailer were
    /// checked when the shard was opened. The BLAKE3 digest is `verify`'s: hashing costs
    /// several times what these CRCs do, and would cap the scan at the hash's speed.
    fn read_mapped(
        &self,
        number: u32,
        path: &Path,
        tx: &SyncSender<ScanEvent>,
        decoders: &mut Decoders,
    ) -> Result<bool> {
        let shard = std::sync::Arc::clone(self.archive.shared_shard(number as usize)?);
        shard.advise(crate::io::AccessPattern::Sequential);
        let source = std::sync::Arc::clone(shard.source());
        let header = shard.header();
        if header.dictionary_len > 0 {
            shard.dictionary()?;
        }
        let zeros = |from: u64, to: u64, structure: Structure| -> Result<()> {
            let run = shard.payload(from..to)?;
            match crate::format::le::first_nonzero(&run) {
                None => Ok(()),
                Some(at) => Err(Error::corrupt(
                    Location::shard(path, number, from + at as u64),
                    Defect::not_zero(structure),
                )),
            }
        };
        let dictionary_end = header.dictionary_offset() + u64::from(header.dictionary_len);
        zeros(
            dictionary_end,
            header.data_offset(),
            Structure::HeaderPadding,
        )?;
        let layout = *shard.layout();
        // The records walked are checked against the record table as they are taken, so
        // the index is checked (and read, in one pass) before the first block.
        shard.check_index()?;
        let mut covered = header.data_offset();
        for b in 0..layout.block_count {
            let entry = shard.block_entry(b)?;
            let h = shard.block_header(b, &entry)?;
            let start = entry.offset + BLOCK_HEADER_LEN as u64;
            let end = start + h.stored_len;
            if entry.offset < covered {
                return Err(Error::corrupt(
                    Location::shard(path, number, layout.block_entry_offset(b)),
                    Defect::invalid(
                        Structure::BlockEntry { block: b },
                        "offset",
                        format!("at least {covered}, after the previous block"),
                        entry.offset,
                    ),
                ));
            }
            zeros(covered, entry.offset, Structure::BlockPadding)?;
            covered = end;
            // The payload's CRC and its decoding run on the decoders, straight from the
            // map: the reader thread only walks the block table. A stored block is only
            // its CRC, cheaper here than handed over to a decoder and back.
            let (shard, source, path) = (shard.clone(), source.clone(), path.to_path_buf());
            let max = self.max_block;
            let stored = h.codec == Codec::Stored;
            let check = move || {
                let payload = shard.payload(start..end)?;
                let crc = checksum::crc32(&payload);
                if crc != h.payload_crc {
                    // A source keeping these bytes fetches them again for the next pass.
                    source.check_failed(start, h.stored_len);
                    return Err(Error::corrupt(
                        Location::shard(&path, number, start).len(h.stored_len),
                        Defect::crc(Structure::BlockPayload { block: b }, h.payload_crc, crc),
                    ));
                }
                let cursor = match (h.codec, payload) {
                    (Codec::Stored, std::borrow::Cow::Borrowed(_)) => {
                        let range = start as usize..end as usize;
                        let data = std::sync::Arc::new(MappedRange(source, range));
                        BlockCursor::new(data, &h, number, entry.offset)
                    }
                    (Codec::Stored, std::borrow::Cow::Owned(copy)) => {
                        let data: BlockBytes = std::sync::Arc::new(copy);
                        BlockCursor::new(data, &h, number, entry.offset)
                    }
                    (_, payload) => {
                        let d = match h.codec {
                            Codec::ZstdDictionary => Some(shard.dictionary()?),
                            _ => None,
                        };
                        BlockCursor::decode(&path, number, entry.offset, &h, &payload, d, max)?
                    }
                };
                Ok(cursor.checked_against(shard))
            };
            let handed = if stored {
                decoders.submit_done(check());
                send_done(decoders, tx)?
            } else {
                hand_over(decoders, Box::new(check), tx)?
            };
            if !handed {
                return Ok(false);
            }
        }
        if !hand_on(decoders, tx)? {
            return Ok(false);
        }
        zeros(covered, layout.index_offset, Structure::BlockPadding)?;
        let index_end = layout.index_offset + layout.index_len;
        zeros(index_end, layout.trailer_offset, Structure::IndexPadding)?;
        Ok(true)
    }

    /// Reads one shard, sending its blocks; false when the scan was dropped.
    fn read_shard(
        &self,
        number: u32,
        path: &Path,
        info: &crate::archive::manifest::ShardInfo,
        tx: &SyncSender<ScanEvent>,
        decoders: &mut Decoders,
    ) -> Result<bool> {
        // A remote shard is read through its source too, which fetches the profile's large
        // ranges ahead once advised sequential.
        if self.source == crate::SourceKind::Map || self.archive.remote().is_some() {
            return self.read_mapped(number, path, tx, decoders);
        }
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        if len != info.size {
            return Err(Error::corrupt(
                Location::shard(path, number, len.min(info.size)),
                crate::error::shard_length(info.size, len),
            ));
        }
        let src = FileSource::open(path, number, self.trace.clone())?;
        let mut win = Window::new(src, self.chunk, path.to_path_buf());
        let mut scanner = ShardScanner::start(&mut win, path.to_path_buf(), Some(info.size), None)?;
        let h = scanner.header();
        if h.shard_number != number
            || h.archive_id != self.archive_id
            || h.first_ordinal != info.first_ordinal
        {
            return Err(Error::corrupt(
                Location::shard(path, number, header::ARCHIVE_ID_OFFSET as u64),
                Defect::mismatch(
                    Structure::ShardHeader,
                    "",
                    format!(
                        "shard {number} of archive {} from ordinal {}",
                        self.archive_hex, info.first_ordinal
                    ),
                    "another shard",
                ),
            ));
        }
        let dictionary = scanner.dictionary().cloned();
        // Blocks are read front to back here and decoded on the decoders, handed on in
        // order.
        while let Some((rel, h, payload)) = scanner.next_block(&mut win)? {
            let (payload, path) = (payload.to_vec(), path.to_path_buf());
            let (dictionary, max) = (dictionary.clone(), self.max_block);
            let job: DecodeJob = Box::new(move || {
                let d = dictionary.as_deref();
                BlockCursor::decode(&path, number, rel, &h, &payload, d, max)
            });
            if !hand_over(decoders, job, tx)? {
                return Ok(false);
            }
        }
        if !hand_on(decoders, tx)? {
            return Ok(false);
        }
        let scanned = scanner.finish(&mut win)?;
        if scanned.blake3 != info.blake3 {
            return Err(Error::corrupt(
                Location::shard(path, number, 0).len(scanned.file_len),
                Defect::digest(Structure::ShardFile, &info.blake3, scanned.blake3),
            ));
        }
        Ok(tx.send(ScanEvent::Index(number, scanned)).is_ok())
    }
}

/// A block to check and decode on a decoder thread.
type DecodeJob = Box<dyn FnOnce() -> Result<BlockCursor> + Send>;
/// The scan's decoders: one per core, results in block order.
type Decoders = Ordered<'static, DecodeJob, Result<BlockCursor>>;

/// Hands `job` to the decoders, then sends on every block decoded, in order; false when
/// the scan was dropped.
fn hand_over(decoders: &mut Decoders, job: DecodeJob, tx: &SyncSender<ScanEvent>) -> Result<bool> {
    decoders.submit(job).map_err(decoder_failed)?;
    send_done(decoders, tx)
}

/// Sends on the blocks decoded so far, in order, without waiting; false when the scan was
/// dropped.
fn send_done(decoders: &mut Decoders, tx: &SyncSender<ScanEvent>) -> Result<bool> {
    while let Some(done) = decoders.try_next() {
        let cursor = done.map_err(decoder_failed)??;
        if tx.send(ScanEvent::Block(cursor)).is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sends on every block handed over, in order, waiting for each; false when the scan was
/// dropped.
fn hand_on(decoders: &mut Decoders, tx: &SyncSender<ScanEvent>) -> Result<bool> {
    while let Some(done) = decoders.next() {
        let cursor = done.map_err(decoder_failed)??;
        if tx.send(ScanEvent::Block(cursor)).is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn decoder_failed(e: io::Error) -> Error {
    Error::io(Path::new("scan"), "decode a block in", e)
}

impl Iterator for Scan {
    type Item = Result<crate::Sample>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan whose reader thread could not start reports it once, then ends: a caller that
    /// skips errors (`filter_map(Result::ok)`) must not loop for ever.
    #[test]
    fn a_scan_without_its_thread_reports_once_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = crate::Writer::builder().create(dir.path()).unwrap();
        writer.append("a", &[("txt", b"x".as_slice())]).unwrap();
        writer.finish().unwrap();
        let archive = crate::Archive::open(dir.path()).unwrap();
        let mut scan = Scan {
            archive,
            events: None,
            finished: false,
            reader: None,
            block: None,
            abandoned: None,
            walked: WalkLog::default(),
        };
        assert!(matches!(scan.next(), Some(Err(e)) if e.is_io()));
        assert!(scan.next().is_none());
        assert!(scan.next().is_none());
    }
}
