//! Sequential reading (§12.7): a shard read front to back in large ascending reads, its
//! blocks found through their own headers (no index needed), every byte hashed on the way.
//! Serves the HDD read path, tape streams and the verifier's physical walk.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{self, BlockHeader, BLOCK_HEADER_LEN, BLOCK_SYNC};
use crate::format::header::{self, ShardHeader, HEADER_LEN};
use crate::format::index::{IndexLayout, BLOCK_ENTRY_LEN, RECORD_ENTRY_LEN};
use crate::format::record::PayloadItem;
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{align_up, checksum, Codec};
use crate::io::trace::{IoKind, IoTrace};
use crate::read::{BlockBytes, MappedRange};
use crate::{Defect, Error, Location, Result, Structure};

/// A byte source read strictly front to back.
pub(crate) trait SeqRead {
    /// Reads the next bytes into `buf`; 0 at the end.
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// A file read with `pread` at ascending offsets, with the kernel told the reads are
/// sequential.
pub(crate) struct FileSource {
    file: File,
    offset: u64,
    number: u32,
    trace: Option<IoTrace>,
}

impl FileSource {
    pub(crate) fn open(path: &Path, number: u32, trace: Option<IoTrace>) -> Result<Self> {
        let (file, _) = crate::io::open_regular(path)?;
        crate::io::advise_sequential(&file);
        Ok(FileSource {
            file,
            offset: 0,
            number,
            trace,
        })
    }
}

impl SeqRead for FileSource {
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        if let Some(t) = &self.trace {
            t.record(IoKind::Read, self.number, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Any `Read` (a pipe, standard input, a tape device).
pub(crate) struct StreamSource<R> {
    inner: R,
    offset: u64,
    trace: Option<IoTrace>,
}

impl<R: Read> StreamSource<R> {
    pub(crate) fn new(inner: R, trace: Option<IoTrace>) -> Self {
        StreamSource {
            inner,
            offset: 0,
            trace,
        }
    }
}

impl<R: Read> SeqRead for StreamSource<R> {
    fn read_next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if let Some(t) = &self.trace {
            t.record(IoKind::Read, 0, self.offset, n as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// A sliding window over a [`SeqRead`]: refills in reads of at least `chunk` bytes, never
/// goes back, and drops what the cursor has passed.
pub(crate) struct Window<S> {
    src: S,
    /// Allocated space; bytes `head..end` are the data not yet taken.
    buf: Vec<u8>,
    head: usize,
    end: usize,
    offset: u64,
    chunk: usize,
    eof: bool,
    name: PathBuf,
}

impl<S: SeqRead> Window<S> {
    pub(crate) fn new(src: S, chunk: usize, name: PathBuf) -> Self {
        Window {
            src,
            buf: Vec::new(),
            head: 0,
            end: 0,
            offset: 0,
            chunk: chunk.max(1),
            eof: false,
            name,
        }
    }

    /// Changes the size of later reads.
    pub(crate) fn set_chunk(&mut self, chunk: usize) {
        self.chunk = chunk.max(1);
    }

    /// True once the source has reported its end.
    pub(crate) fn ended(&self) -> bool {
        self.eof
    }

    /// Absolute offset of the cursor.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes `n` bytes after the cursor available; false when the source ends first.
    pub(crate) fn ensure(&mut self, n: usize) -> Result<bool> {
        while self.end - self.head < n && !self.eof {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.end, 0);
                self.end -= self.head;
                self.head = 0;
            }
            // One chunk at a time: the buffer grows only as real bytes arrive, so a hostile
            // length costs no more memory than the data actually there; and every request
            // is a whole chunk (whole tape records). Space is zeroed once, when it grows.
            let want = self.chunk;
            if self.buf.len() < self.end + want {
                self.buf.resize(self.end + want, 0);
            }
            let mut got = 0;
            while got < want {
                let at = self.offset + (self.end + got) as u64;
                let start = self.end + got;
                let read = self
                    .src
                    .read_next(&mut self.buf[start..self.end + want])
                    .map_err(|e| Error::io_at(&self.name, "read", at, e))?;
                if read == 0 {
                    self.eof = true;
                    break;
                }
                got += read;
            }
            self.end += got;
        }
        Ok(self.end - self.head >= n)
    }

    /// The next `n` bytes without moving the cursor, or `None` at the end.
    pub(crate) fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        Ok(if self.ensure(n)? {
            self.buf.get(self.head..self.head + n)
        } else {
            None
        })
    }

    /// The next `n` bytes, moving the cursor past them, or `None` at the end.
    pub(crate) fn take(&mut self, n: usize) -> Result<Option<&[u8]>> {
        if !self.ensure(n)? {
            return Ok(None);
        }
        let start = self.head;
        self.head += n;
        self.offset += n as u64;
        Ok(self.buf.get(start..start + n))
    }

    /// Bytes available after the cursor without reading more.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.head
    }
}

/// The end of a scanned shard.
#[derive(Debug)]
pub(crate) struct ScannedShard {
    pub(crate) file_len: u64,
    pub(crate) blake3: String,
    /// The index region's bytes, CRC checked, and where its tables are.
    pub(crate) index: Vec<u8>,
    pub(crate) layout: IndexLayout,
}

/// The records a sequential reader took from one shard, to be compared with the shard's
/// record table once its index is read (§12.7): a stream hands out a shard's samples before
/// it reaches their index.
#[derive(Default)]
pub(crate) struct WalkLog {
    shard: Option<u32>,
    /// Block, offset in the decoded payload, length and CRC of each record taken.
    records: Vec<(u32, u64, u64, u32)>,
    /// The records' keys, back to back, and where each ends.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
}

impl WalkLog {
    /// Notes a record taken from `cursor`'s block, starting a new log at a new shard.
    pub(crate) fn push(&mut self, cursor: &BlockCursor, sample: &crate::Sample) {
        if self.shard != Some(cursor.shard) {
            *self = WalkLog {
                shard: Some(cursor.shard),
                ..WalkLog::default()
            };
        }
        let record = sample.record_bytes();
        self.records.push((
            cursor.block,
            cursor.last_offset,
            record.len() as u64,
            checksum::crc32(record),
        ));
        self.keys.extend_from_slice(sample.key().as_bytes());
        self.key_ends.push(self.keys.len());
    }

    /// Compares the records taken from shard `number` with its record table: the same
    /// block, place, length, CRC and key for each, so that a sequential read returned what
    /// a random read returns. The log is emptied.
    pub(crate) fn check(
        &mut self,
        number: u32,
        index: &[u8],
        layout: &IndexLayout,
        path: &Path,
    ) -> Result<()> {
        let log = std::mem::take(self);
        let records: &[(u32, u64, u64, u32)] = match log.shard {
            Some(shard) if shard == number => &log.records,
            _ => &[],
        };
        let at = |offset: u64| Location::shard(path, number, offset);
        let entry_at = |offset: u64| -> Option<&[u8]> {
            let start = usize::try_from(offset.checked_sub(layout.index_offset)?).ok()?;
            index.get(start..start.checked_add(crate::format::index::RECORD_ENTRY_LEN)?)
        };
        if records.len() as u64 != u64::from(layout.record_count) {
            return Err(Error::corrupt(
                at(layout.index_offset),
                Defect::mismatch(
                    Structure::RecordTable,
                    "record count",
                    format!("{} records (found by reading the blocks)", records.len()),
                    layout.record_count,
                ),
            ));
        }
        let mut key_start = 0;
        for (local, &(block, offset, len, crc)) in records.iter().enumerate() {
            let local = local as u32;
            let entry_offset = layout.record_entry_offset(local);
            let decode = |local: u32| {
                entry_at(layout.record_entry_offset(local))
                    .and_then(|b| b.try_into().ok())
                    .map(|b| crate::format::index::RecordEntry::decode(&b))
            };
            let Some(entry) = decode(local) else {
                return Err(Error::corrupt(
                    at(entry_offset),
                    Defect::truncated(Structure::RecordTable, RECORD_ENTRY_LEN as u64, None),
                ));
            };
            let found = [
                ("block", u64::from(block), u64::from(entry.block)),
                ("offset", offset, entry.offset),
                ("length", len, entry.len),
                ("crc", u64::from(crc), u64::from(entry.crc)),
            ];
            if let Some((what, walked, listed)) = found.into_iter().find(|(_, w, l)| w != l) {
                return Err(Error::corrupt(
                    at(entry_offset),
                    Defect::mismatch(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        what,
                        format!("{walked} (found by reading the block)"),
                        listed,
                    ),
                ));
            }
            let block_offset = layout.block_entry_offset(block);
            let block_entry = usize::try_from(block_offset - layout.index_offset)
                .ok()
                .and_then(|start| index.get(start..start + crate::format::index::BLOCK_ENTRY_LEN))
                .and_then(|b| b.try_into().ok())
                .map(|b| crate::format::index::BlockEntry::decode(&b));
            let Some(block_entry) = block_entry else {
                return Err(Error::corrupt(
                    at(block_offset),
                    Defect::truncated(
                        Structure::BlockEntry { block },
                        BLOCK_ENTRY_LEN as u64,
                        None,
                    ),
                ));
            };
            layout
                .check_block(block, &block_entry)
                .map_err(|d| d.at(path, Some(number), block_offset))?;
            let next = (local + 1 < layout.record_count)
                .then(|| decode(local + 1).map(|e| e.key_offset))
                .flatten();
            let range = layout
                .check_record(local, &entry, &block_entry, next)
                .map_err(|d| d.at(path, Some(number), entry_offset))?;
            let heap = (layout.key_heap_offset - layout.index_offset) as usize;
            let listed = index
                .get(heap + range.start as usize..heap + range.end as usize)
                .unwrap_or_default();
            let key_end = log
                .key_ends
                .get(local as usize)
                .copied()
                .unwrap_or(key_start);
            let walked = log.keys.get(key_start..key_end).unwrap_or_default();
            key_start = key_end;
            if listed != walked {
                return Err(Error::corrupt(
                    at(layout.key_heap_offset + range.start),
                    Defect::mismatch(
                        Structure::Record {
                            record: Some(u64::from(local)),
                        },
                        "key",
                        format!("{:?} (index)", String::from_utf8_lossy(listed)),
                        format!("{:?}", String::from_utf8_lossy(walked)),
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Reads one shard front to back from a window positioned at its first byte. The window is
/// passed to each call, so that a stream's window outlives its shards.
pub(crate) struct ShardScanner {
    /// The shard's file, for error locations.
    path: PathBuf,
    base: u64,
    header: ShardHeader,
    dictionary: Option<std::sync::Arc<DecodingDictionary>>,
    hasher: blake3::Hasher,
    blocks: u32,
    records: u64,
    /// Each block read, as its block table entry must describe it (§12.7 step 4).
    read: Vec<crate::format::index::BlockEntry>,
    next_ordinal: u64,
    /// The shard's length when known (a file); `None` in a stream.
    known_len: Option<u64>,
    /// Receives a copy of every byte read (to write the shard out while reading a stream).
    copy: Option<Box<dyn std::io::Write>>,
    /// Largest stored block accepted: bounds what a hostile block length can ask for.
    max_block: u64,
}

impl ShardScanner {
    /// Reads and checks the header and its padding.
    pub(crate) fn start<S: SeqRead>(
        win: &mut Window<S>,
        path: PathBuf,
        known_len: Option<u64>,
        mut copy: Option<Box<dyn std::io::Write>>,
    ) -> Result<Self> {
        let base = win.offset();
        let mut hasher = blake3::Hasher::new();
        let at = |o: u64| Location::file(&path, o);
        let bytes: [u8; HEADER_LEN] = match win.take(HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    at(0),
                    Defect::truncated(Structure::ShardHeader, HEADER_LEN as u64, None),
                ))
            }
        };
        hasher.update(&bytes);
        if let Some(c) = copy.as_mut() {
            c.write_all(&bytes)
                .map_err(|e| Error::io(&path, "copy", e))?;
        }
        let header = ShardHeader::decode(&bytes).map_err(|d| d.at(&path, None, 0))?;
        let dictionary_len = header.dictionary_len as usize;
        let dictionary = if dictionary_len > 0 {
            let Some(d) = win.take(dictionary_len)? else {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::truncated(Structure::Dictionary, dictionary_len as u64, None),
                ));
            };
            hasher.update(d);
            if let Some(c) = copy.as_mut() {
                c.write_all(d).map_err(|e| Error::io(&path, "copy", e))?;
            }
            let prepared = DecodingDictionary::checked(d, header.dictionary_crc)
                .map_err(|defect| Error::corrupt(at(HEADER_LEN as u64), defect))?;
            Some(std::sync::Arc::new(prepared))
        } else {
            None
        };
        let pad = (header.data_offset() - HEADER_LEN as u64) as usize - dictionary_len;
        match win.take(pad)? {
            Some(p) if p.iter().all(|&b| b == 0) => {
                hasher.update(p);
                if let Some(c) = copy.as_mut() {
                    c.write_all(p).map_err(|e| Error::io(&path, "copy", e))?;
                }
            }
            Some(_) => {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::not_zero(Structure::HeaderPadding),
                ))
            }
            None => {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    Defect::truncated(Structure::HeaderPadding, pad as u64, None),
                ))
            }
        }
        let next_ordinal = header.first_ordinal;
        Ok(ShardScanner {
            path,
            base,
            header,
            dictionary,
            hasher,
            blocks: 0,
            records: 0,
            read: Vec::new(),
            next_ordinal,
            known_len,
            copy,
            max_block: crate::Limits::DEFAULT.max_block_bytes,
        })
    }

    /// The shard's header.
    pub(crate) fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// The shard's dictionary, checked and prepared, if it has one.
    pub(crate) fn dictionary(&self) -> Option<&std::sync::Arc<DecodingDictionary>> {
        self.dictionary.as_ref()
    }

    /// Hashes (and copies) bytes read, in file order.
    fn consume(&mut self, bytes: &[u8]) -> Result<()> {
        checksum::blake3_update(&mut self.hasher, bytes);
        if let Some(c) = self.copy.as_mut() {
            c.write_all(bytes)
                .map_err(|e| Error::io(&self.path, "copy", e))?;
        }
        Ok(())
    }

    fn at(&self, abs: u64) -> Location {
        Location::shard(&self.path, self.header.shard_number, abs - self.base)
    }

    /// The next block: its offset in the shard, its header and its stored payload; `None`
    /// after the last block. The block's CRC, numbering and padding are checked.
    pub(crate) fn next_block<'w, S: SeqRead>(
        &mut self,
        win: &'w mut Window<S>,
    ) -> Result<Option<(u64, BlockHeader, &'w [u8])>> {
        let abs = win.offset();
        let rel = abs - self.base;
        if self
            .known_len
            .is_some_and(|len| rel + (TRAILER_LEN as u64) >= len)
        {
            return Ok(None);
        }
        match win.peek(8)? {
            Some(sync) if sync == BLOCK_SYNC => {}
            // Not a block: the index starts here (its first entry is a small offset, never
            // the sync marker, §6.1).
            _ => return Ok(None),
        }
        let bytes: [u8; BLOCK_HEADER_LEN] = match win.take(BLOCK_HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; BLOCK_HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    self.at(abs),
                    Defect::truncated(Structure::BlockHeader, BLOCK_HEADER_LEN as u64, None),
                ))
            }
        };
        self.consume(&bytes)?;
        let number = self.header.shard_number;
        let h = BlockHeader::decode(&bytes).map_err(|d| d.at(&self.path, Some(number), rel))?;
        let expect = [
            (
                "shard number",
                block::SHARD_NUMBER_OFFSET,
                u64::from(number),
                u64::from(h.shard_number),
            ),
            (
                "block number",
                block::BLOCK_NUMBER_OFFSET,
                u64::from(self.blocks),
                u64::from(h.block_number),
            ),
            (
                "first ordinal",
                block::FIRST_ORDINAL_OFFSET,
                self.next_ordinal,
                h.first_ordinal,
            ),
        ];
        if let Some((what, field, want, got)) = expect.into_iter().find(|(_, _, w, g)| w != g) {
            return Err(Error::corrupt(
                self.at(abs + field as u64),
                Defect::mismatch(Structure::BlockHeader, what, want, got),
            ));
        }
        let compressed = self.header.compressed_codec();
        if h.codec != Codec::Stored && h.codec != compressed {
            // A dictionary shard's compressed blocks are all codec 2, no other's are (§5.5).
            return Err(Error::corrupt(
                self.at(abs + block::CODEC_OFFSET as u64),
                Defect::invalid(
                    Structure::Block {
                        block: h.block_number,
                    },
                    "codec",
                    format!("0 or {} ({})", compressed.to_byte(), compressed.name()),
                    h.codec.to_byte(),
                ),
            ));
        }
        let payload_at = abs + BLOCK_HEADER_LEN as u64;
        let stored_len = usize::try_from(h.stored_len).unwrap_or(usize::MAX);
        if h.stored_len > self.max_block
            || self.known_len.is_some_and(|len| {
                rel.saturating_add(BLOCK_HEADER_LEN as u64)
                    .saturating_add(h.stored_len)
                    > len
            })
        {
            return Err(Error::corrupt(
                self.at(abs + block::STORED_LEN_OFFSET as u64),
                Defect::invalid(
                    Structure::Block {
                        block: h.block_number,
                    },
                    "length",
                    "a payload within the shard",
                    h.stored_len,
                ),
            ));
        }
        let end = payload_at + h.stored_len;
        let align = u64::from(self.header.align);
        let padded = align_up(end - self.base, align).unwrap_or(u64::MAX) - (end - self.base);
        // Payload and padding are taken together, then checked.
        let total = stored_len.saturating_add(padded as usize);
        let short = Error::corrupt(
            self.at(payload_at),
            Defect::truncated(
                Structure::BlockPayload {
                    block: h.block_number,
                },
                h.stored_len,
                None,
            ),
        );
        let Some(chunk) = win.take(total)? else {
            return Err(short);
        };
        self.consume(chunk)?;
        let (payload, padding) = chunk.split_at(stored_len.min(chunk.len()));
        let crc = checksum::crc32(payload);
        if crc != h.payload_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, payload_at - self.base).len(h.stored_len),
                Defect::crc(
                    Structure::BlockPayload {
                        block: h.block_number,
                    },
                    h.payload_crc,
                    crc,
                ),
            ));
        }
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, end - self.base),
                Defect::not_zero(Structure::BlockPadding),
            ));
        }
        self.read.push(crate::format::index::BlockEntry {
            offset: rel,
            stored_len: h.stored_len,
            raw_len: h.raw_len,
            first_record: (self.next_ordinal - self.header.first_ordinal) as u32,
            record_count: h.record_count,
        });
        self.blocks += 1;
        self.records += u64::from(h.record_count);
        self.next_ordinal += u64::from(h.record_count);
        Ok(Some((rel, h, payload)))
    }

    /// Reads the index, padding and trailer after the last block and checks them against
    /// the blocks read: the shard's length comes from its own trailer, found where the
    /// index geometry puts it (§16.3).
    pub(crate) fn finish<S: SeqRead>(mut self, win: &mut Window<S>) -> Result<ScannedShard> {
        let number = self.header.shard_number;
        let index_abs = win.offset();
        let index_rel = index_abs - self.base;
        let align = u64::from(self.header.align);
        // In a file the length is known. In a stream the trailer ends the first aligned
        // unit after the index whose last bytes are a trailer naming this index; the index
        // can be no longer than the blocks and records read allow (§16.3).
        let longest = index_rel
            .saturating_add(u64::from(self.blocks) * 32)
            .saturating_add(
                self.records
                    .saturating_mul(36 + crate::format::MAX_KEY_BYTES as u64),
            )
            .saturating_add(TRAILER_LEN as u64 + align);
        let mut end = match self.known_len {
            Some(len) => len,
            None => align_up(index_rel + TRAILER_LEN as u64, align).unwrap_or(u64::MAX),
        };
        let mut tail: Vec<u8> = Vec::new();
        let file_len = loop {
            let need = usize::try_from(end.saturating_sub(index_rel)).unwrap_or(usize::MAX);
            if end > longest || need < TRAILER_LEN {
                return Err(Error::corrupt(
                    Location::shard(&self.path, number, index_rel),
                    Defect::missing(Structure::Trailer, "a trailer naming this index"),
                ));
            }
            if tail.len() < need {
                match win.take(need - tail.len())? {
                    Some(b) => tail.extend_from_slice(b),
                    None => {
                        return Err(Error::corrupt(
                            Location::shard(&self.path, number, index_rel + tail.len() as u64),
                            Defect::truncated(Structure::Trailer, TRAILER_LEN as u64, None),
                        ))
                    }
                }
            }
            let t_bytes: [u8; TRAILER_LEN] = tail[need - TRAILER_LEN..need]
                .try_into()
                .unwrap_or([0; TRAILER_LEN]);
            match Trailer::decode(&t_bytes) {
                Ok(t) if t.index_offset == index_rel && t.file_len == end => break end,
                Err(d) if self.known_len.is_some() => {
                    return Err(d.at(&self.path, Some(number), end - TRAILER_LEN as u64))
                }
                Ok(t) if self.known_len.is_some() => {
                    return Err(Error::corrupt(
                        Location::shard(
                            &self.path,
                            number,
                            end - TRAILER_LEN as u64 + Trailer::INDEX_OFFSET_FIELD as u64,
                        ),
                        Defect::mismatch(
                            Structure::Trailer,
                            "index offset and file length",
                            format!("{index_rel} and {end}"),
                            format!("{} and {}", t.index_offset, t.file_len),
                        ),
                    ))
                }
                _ => end += align,
            }
        };
        let tail = &tail[..(file_len - index_rel) as usize];
        self.consume(tail)?;
        if let Some(c) = self.copy.as_mut() {
            c.flush().map_err(|e| Error::io(&self.path, "copy", e))?;
        }
        let t_bytes: [u8; TRAILER_LEN] = tail[tail.len() - TRAILER_LEN..]
            .try_into()
            .unwrap_or([0; TRAILER_LEN]);
        let trailer_at = file_len - TRAILER_LEN as u64;
        let trailer =
            Trailer::decode(&t_bytes).map_err(|d| d.at(&self.path, Some(number), trailer_at))?;
        let layout = IndexLayout::new(&self.header, &trailer, file_len)
            .map_err(|d| d.at(&self.path, Some(number), trailer_at))?;
        let checks = [
            (
                "index offset",
                Trailer::INDEX_OFFSET_FIELD,
                index_rel,
                layout.index_offset,
            ),
            (
                "block count",
                Trailer::BLOCK_COUNT_FIELD,
                u64::from(self.blocks),
                u64::from(layout.block_count),
            ),
            (
                "record count",
                Trailer::RECORD_COUNT_FIELD,
                self.records,
                u64::from(layout.record_count),
            ),
        ];
        if let Some((what, field, want, got)) = checks.into_iter().find(|(_, _, w, g)| w != g) {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, trailer_at + field as u64),
                Defect::mismatch(
                    Structure::Trailer,
                    what,
                    format!("{want} (found by reading the blocks)"),
                    got,
                ),
            ));
        }
        let index = &tail[..layout.index_len as usize];
        let crc = checksum::crc32(index);
        if crc != trailer.index_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel).len(layout.index_len),
                Defect::crc(Structure::Index, trailer.index_crc, crc),
            ));
        }
        for (b, read) in self.read.iter().enumerate() {
            let offset = layout.block_entry_offset(b as u32);
            let listed = usize::try_from(offset - index_rel)
                .ok()
                .and_then(|at| index.get(at..at + crate::format::index::BLOCK_ENTRY_LEN))
                .and_then(|e| e.try_into().ok())
                .map(|e| crate::format::index::BlockEntry::decode(&e));
            if listed.as_ref() != Some(read) {
                return Err(Error::corrupt(
                    Location::shard(&self.path, number, offset),
                    Defect::mismatch(
                        Structure::BlockEntry { block: b as u32 },
                        "",
                        format!("{read:?} (found by reading the blocks)"),
                        format!("{listed:?}"),
                    ),
                ));
            }
        }
        let index_end = (layout.index_len) as usize;
        if tail[index_end..tail.len() - TRAILER_LEN]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel + index_end as u64),
                Defect::not_zero(Structure::IndexPadding),
            ));
        }
        Ok(ScannedShard {
            file_len,
            blake3: self.hasher.finalize().to_hex().to_string(),
            index: index.to_vec(),
            layout,
        })
    }
}

/// Iterator over an archive's samples read sequentially; see [`crate::Archive::scan`].
///
/// A reader thread takes each shard's blocks in order, checks and decodes them (compressed
/// blocks on one thread per core), and hashes the shard, while the caller's thread takes the
/// samples of the blocks it has handed over: reading, hashing and decompressing overlap with
/// whatever the caller does with the samples. At most [`BLOCKS_AHEAD`] decoded blocks wait
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

/// The records of one decoded block, taken one by one (fillers skipped).
pub(crate) struct BlockCursor {
    data: BlockBytes,
    pos: usize,
    ordinal: u64,
    left: u32,
    shard: u32,
    /// The block's number.
    block: u32,
    /// Where in the decoded payload the record taken last starts.
    last_offset: u64,
    /// The shard, opened with its index, when the records walked are to be checked against
    /// the record table as they are taken.
    table: Option<std::sync::Arc<crate::Shard>>,
    /// Shard offset of the block's payload, for error locations.
    payload_offset: u64,
}

impl BlockCursor {
    /// Decodes a block read by a [`ShardScanner`] (at shard offset `rel`).
    pub(crate) fn decode(
        path: &Path,
        shard: u32,
        rel: u64,
        h: &BlockHeader,
        payload: &[u8],
        dictionary: Option<&DecodingDictionary>,
        max: u64,
    ) -> Result<BlockCursor> {
        let data: BlockBytes = match h.codec {
            Codec::Stored => std::sync::Arc::new(payload.to_vec()),
            Codec::Zstd | Codec::ZstdDictionary => {
                if h.raw_len > max {
                    return Err(crate::ErrorKind::LimitExceeded {
                        location: Location::shard(path, shard, rel),
                        limit: "decoded block size",
                        max,
                        got: h.raw_len,
                    }
                    .into());
                }
                let payload_offset = rel + BLOCK_HEADER_LEN as u64;
                crate::codec::decode_block(h.codec, payload, h.record_count, h.raw_len, dictionary)
                    .map_err(|e| {
                        Error::corrupt(
                            Location::shard(path, shard, payload_offset),
                            Defect::undecodable(
                                Structure::BlockFrame {
                                    block: h.block_number,
                                },
                                format!("{} decoded bytes", h.raw_len),
                                e,
                            ),
                        )
                    })
                    .map(std::sync::Arc::new)?
            }
        };
        Ok(BlockCursor::new(data, h, shard, rel))
    }

    /// A cursor over a block's decoded payload `data`, the block at shard offset `rel`.
    pub(crate) fn new(data: BlockBytes, h: &BlockHeader, shard: u32, rel: u64) -> BlockCursor {
        BlockCursor {
            data,
            pos: 0,
            ordinal: h.first_ordinal,
            left: h.record_count,
            shard,
            block: h.block_number,
            last_offset: 0,
            table: None,
            payload_offset: rel + BLOCK_HEADER_LEN as u64,
        }
    }

    /// Checks every record taken against `shard`'s record table as it is taken.
    pub(crate) fn checked_against(mut self, shard: std::sync::Arc<crate::Shard>) -> Self {
        self.table = Some(shard);
        self
    }

    /// True when the records taken are checked against the record table as they are taken;
    /// otherwise the caller logs them in a [`WalkLog`].
    pub(crate) fn is_checked(&self) -> bool {
        self.table.is_some()
    }

    /// The next sample, or `None` after the last; checks the block holds exactly as many
    /// records as its header counts.
    pub(crate) fn next_sample(&mut self, path: &Path) -> Result<Option<crate::Sample>> {
        let at_block = |c: &BlockCursor| Location::shard(path, c.shard, c.payload_offset);
        while self.pos < (*self.data).as_ref().len() {
            let at = self.pos;
            match crate::format::record::item_at((*self.data).as_ref(), at)
                .map_err(|d| d.at(path, Some(self.shard), self.payload_offset))?
            {
                PayloadItem::Filler(n) => self.pos += n as usize,
                PayloadItem::Record(n) => {
                    if self.left == 0 {
                        return Err(Error::corrupt(
                            at_block(self),
                            Defect::mismatch(
                                Structure::Block { block: self.block },
                                "records",
                                "as many records as the block header counts",
                                "more",
                            ),
                        ));
                    }
                    self.pos += n as usize;
                    self.left -= 1;
                    self.ordinal += 1;
                    let sample = crate::Sample::from_block(
                        self.ordinal - 1,
                        self.shard,
                        self.data.clone(),
                        at..at + n as usize,
                    )
                    .map_err(|d| d.at(path, Some(self.shard), self.payload_offset))?;
                    self.last_offset = at as u64;
                    if let Some(shard) = &self.table {
                        let local = (sample.ordinal() - shard.header().first_ordinal) as u32;
                        shard.check_walked(
                            local,
                            self.block,
                            at as u64,
                            sample.record_bytes(),
                            sample.key().as_bytes(),
                        )?;
                    }
                    return Ok(Some(sample));
                }
            }
        }
        if self.left > 0 {
            return Err(Error::corrupt(
                at_block(self),
                Defect::mismatch(
                    Structure::Block { block: self.block },
                    "records",
                    "as many records as the block header counts",
                    "fewer",
                ),
            ));
        }
        Ok(None)
    }
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
        let shards = self.archive.manifest().shards.clone();
        for (number, info) in shards.into_iter().enumerate() {
            let path = self.archive.shard_path(number);
            let number = number as u32;
            let result = path.and_then(|path| self.read_shard(number, &path, &info, tx));
            match result {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
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
    fn read_mapped(&self, number: u32, path: &Path, tx: &SyncSender<ScanEvent>) -> Result<bool> {
        let shard = std::sync::Arc::clone(self.archive.shared_shard(number as usize)?);
        shard.advise(crate::io::AccessPattern::Sequential);
        let source = std::sync::Arc::clone(shard.source());
        let header = shard.header();
        if header.dictionary_len > 0 {
            shard.dictionary()?;
        }
        let zeros = |from: u64, to: u64, structure: Structure| -> Result<()> {
            let run = shard.payload(from..to)?;
            match run.iter().position(|&b| b != 0) {
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
        let mut pending = InOrder::new();
        let mut covered = header.data_offset();
        for b in 0..layout.block_count {
            let entry = shard.block_entry(b)?;
            let h = shard.block_header(b, &entry)?;
            let start = (entry.offset + BLOCK_HEADER_LEN as u64) as usize;
            let end = start + h.stored_len as usize;
            let payload = shard.payload(start as u64..end as u64)?;
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
            covered = end as u64;
            let crc = checksum::crc32(&payload);
            if crc != h.payload_crc {
                return Err(Error::corrupt(
                    Location::shard(path, number, start as u64).len(h.stored_len),
                    Defect::crc(Structure::BlockPayload { block: b }, h.payload_crc, crc),
                ));
            }
            let block = match (h.codec, payload) {
                (Codec::Stored, std::borrow::Cow::Borrowed(_)) => {
                    let data = std::sync::Arc::new(MappedRange(source.clone(), start..end));
                    let cursor = BlockCursor::new(data, &h, number, entry.offset);
                    Decoding::Ready(Ok(cursor.checked_against(shard.clone())))
                }
                (Codec::Stored, std::borrow::Cow::Owned(copy)) => {
                    let data: BlockBytes = std::sync::Arc::new(copy);
                    let cursor = BlockCursor::new(data, &h, number, entry.offset);
                    Decoding::Ready(Ok(cursor.checked_against(shard.clone())))
                }
                (_, payload) => {
                    let payload = payload.into_owned();
                    let (shard, path, max) = (shard.clone(), path.to_path_buf(), self.max_block);
                    Decoding::Running(std::thread::spawn(move || {
                        let d = match h.codec {
                            Codec::ZstdDictionary => Some(shard.dictionary()?),
                            _ => None,
                        };
                        BlockCursor::decode(&path, number, entry.offset, &h, &payload, d, max)
                            .map(|cursor| cursor.checked_against(shard))
                    }))
                }
            };
            if !pending.push(block, tx)? {
                return Ok(false);
            }
        }
        if !pending.drain(tx)? {
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
    ) -> Result<bool> {
        if self.source == crate::SourceKind::Map {
            return self.read_mapped(number, path, tx);
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
        // Compressed blocks decode on threads of their own, one per core at most, and are
        // handed over in order.
        let mut pending = InOrder::new();
        while let Some((rel, h, payload)) = scanner.next_block(&mut win)? {
            let block = if h.codec == Codec::Stored {
                Decoding::Ready(BlockCursor::decode(
                    path,
                    number,
                    rel,
                    &h,
                    payload,
                    None,
                    self.max_block,
                ))
            } else {
                let (payload, path) = (payload.to_vec(), path.to_path_buf());
                let (dictionary, max) = (dictionary.clone(), self.max_block);
                Decoding::Running(std::thread::spawn(move || {
                    let d = dictionary.as_deref();
                    BlockCursor::decode(&path, number, rel, &h, &payload, d, max)
                }))
            };
            if !pending.push(block, tx)? {
                return Ok(false);
            }
        }
        if !pending.drain(tx)? {
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

/// A block being decoded by the reader thread.
enum Decoding {
    Ready(Result<BlockCursor>),
    Running(std::thread::JoinHandle<Result<BlockCursor>>),
}

/// Blocks being decoded, one per core at most, sent on in the order they were read.
struct InOrder {
    pending: std::collections::VecDeque<Decoding>,
    workers: usize,
}

impl InOrder {
    fn new() -> Self {
        InOrder {
            pending: std::collections::VecDeque::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Queues a block, sending on the oldest while every core is busy; false when the
    /// scan was dropped.
    fn push(&mut self, block: Decoding, tx: &SyncSender<ScanEvent>) -> Result<bool> {
        self.pending.push_back(block);
        while self.pending.len() >= self.workers {
            if !self.send_oldest(tx)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends every queued block on; false when the scan was dropped.
    fn drain(&mut self, tx: &SyncSender<ScanEvent>) -> Result<bool> {
        while !self.pending.is_empty() {
            if !self.send_oldest(tx)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn send_oldest(&mut self, tx: &SyncSender<ScanEvent>) -> Result<bool> {
        let cursor = match self.pending.pop_front() {
            None => return Ok(true),
            Some(Decoding::Ready(result)) => result?,
            Some(Decoding::Running(handle)) => handle.join().map_err(|_| {
                Error::io(
                    Path::new("scan"),
                    "decode a block in",
                    io::Error::other("decoder thread panicked"),
                )
            })??,
        };
        Ok(tx.send(ScanEvent::Block(cursor)).is_ok())
    }
}

impl Iterator for Scan {
    type Item = Result<crate::Sample>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_sample()
    }
}

/// BLAKE3 of a whole file, read front to back in reads of `chunk` bytes.
pub(crate) fn hash_file(
    path: &Path,
    number: u32,
    chunk: u64,
    trace: Option<crate::IoTrace>,
) -> Result<String> {
    let src = FileSource::open(path, number, trace)?;
    let mut win = Window::new(src, chunk as usize, path.to_path_buf());
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = win.buffered();
        if n == 0 && !win.ensure(1)? {
            break;
        }
        let n = win.buffered();
        if let Some(bytes) = win.take(n)? {
            checksum::blake3_update(&mut hasher, bytes);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
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
