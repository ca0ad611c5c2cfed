//! Sequential reading (§12.7): a shard read front to back in large ascending reads, its
//! blocks found through their own headers (no index needed), every byte hashed on the way.
//! Serves the HDD read path, tape streams and the verifier's physical walk.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::codec::dictionary::DecodingDictionary;
use crate::format::block::{BlockHeader, BLOCK_HEADER_LEN, BLOCK_SYNC};
use crate::format::header::{ShardHeader, HEADER_LEN};
use crate::format::index::IndexLayout;
use crate::format::record::PayloadItem;
use crate::format::trailer::{Trailer, TRAILER_LEN};
use crate::format::{align_up, checksum, Codec};
use crate::source::trace::{IoKind, IoTrace};
use crate::{Error, Location, Result};

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
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "stat", e))?;
        if !meta.is_file() {
            return Err(Error::io(
                path,
                "read",
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
        crate::source::advise_sequential(&file);
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
        let at = |o: u64| Location {
            file: path.clone(),
            shard: None,
            offset: o,
        };
        let bytes: [u8; HEADER_LEN] = match win.take(HEADER_LEN)? {
            Some(b) => b.try_into().unwrap_or([0; HEADER_LEN]),
            None => {
                return Err(Error::corrupt(
                    at(0),
                    "shard header",
                    format!("{HEADER_LEN} bytes"),
                    "the end of the data",
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
                    "shard dictionary",
                    format!("{dictionary_len} bytes"),
                    "the end of the data",
                ));
            };
            hasher.update(d);
            if let Some(c) = copy.as_mut() {
                c.write_all(d).map_err(|e| Error::io(&path, "copy", e))?;
            }
            let crc = checksum::crc32(d);
            if crc != header.dictionary_crc {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    "shard dictionary",
                    format!("crc32 {:#010x}", header.dictionary_crc),
                    format!("{crc:#010x}"),
                ));
            }
            let prepared = DecodingDictionary::new(d).ok_or_else(|| {
                Error::corrupt(
                    at(HEADER_LEN as u64),
                    "shard dictionary",
                    "a zstd dictionary",
                    "bytes zstd cannot load",
                )
            })?;
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
                    "header padding",
                    "zero bytes",
                    "non-zero bytes",
                ))
            }
            None => {
                return Err(Error::corrupt(
                    at(HEADER_LEN as u64),
                    "header padding",
                    format!("{pad} bytes"),
                    "the end of the data",
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
        self.hasher.update(bytes);
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
                    "block header",
                    format!("{BLOCK_HEADER_LEN} bytes"),
                    "the end of the data",
                ))
            }
        };
        self.consume(&bytes)?;
        let number = self.header.shard_number;
        let h = BlockHeader::decode(&bytes).map_err(|d| d.at(&self.path, Some(number), rel))?;
        let expect = [
            (
                "block shard number",
                u64::from(number),
                u64::from(h.shard_number),
            ),
            (
                "block number",
                u64::from(self.blocks),
                u64::from(h.block_number),
            ),
            ("block first ordinal", self.next_ordinal, h.first_ordinal),
        ];
        if let Some((what, want, got)) = expect.into_iter().find(|(_, w, g)| w != g) {
            return Err(Error::corrupt(self.at(abs), what, want, got));
        }
        let compressed = match self.dictionary {
            Some(_) => Codec::ZstdDictionary,
            None => Codec::Zstd,
        };
        if h.codec != Codec::Stored && h.codec != compressed {
            // A dictionary shard's compressed blocks are all codec 2, no other's are (§5.5).
            return Err(Error::corrupt(
                self.at(abs + 28),
                "block codec",
                format!("0 or {} ({})", compressed.to_byte(), compressed.name()),
                h.codec.to_byte(),
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
                self.at(abs),
                "block length",
                "a payload within the shard",
                h.stored_len,
            ));
        }
        let end = payload_at + h.stored_len;
        let align = u64::from(self.header.align);
        let padded = align_up(end - self.base, align).unwrap_or(u64::MAX) - (end - self.base);
        // Payload and padding are taken together, then checked.
        let total = stored_len.saturating_add(padded as usize);
        let short = Error::corrupt(
            self.at(payload_at),
            "block payload",
            format!("{} bytes", h.stored_len),
            "the end of the data",
        );
        let Some(chunk) = win.take(total)? else {
            return Err(short);
        };
        self.consume(chunk)?;
        let (payload, padding) = chunk.split_at(stored_len.min(chunk.len()));
        let crc = checksum::crc32(payload);
        if crc != h.payload_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, payload_at - self.base),
                format!("block {} payload", h.block_number),
                format!("crc32 {:#010x}", h.payload_crc),
                format!("{crc:#010x}"),
            ));
        }
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, end - self.base),
                "block padding",
                "zero bytes",
                "non-zero bytes",
            ));
        }
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
                    "shard trailer",
                    "a trailer naming this index",
                    "none where the index could end",
                ));
            }
            if tail.len() < need {
                match win.take(need - tail.len())? {
                    Some(b) => tail.extend_from_slice(b),
                    None => {
                        return Err(Error::corrupt(
                            Location::shard(&self.path, number, index_rel + tail.len() as u64),
                            "shard index and trailer",
                            "a trailer after the index",
                            "the end of the data",
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
                        Location::shard(&self.path, number, end - TRAILER_LEN as u64),
                        "trailer index offset and length",
                        format!("{index_rel} and {end}"),
                        format!("{} and {}", t.index_offset, t.file_len),
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
            ("index offset", index_rel, layout.index_offset),
            (
                "block count",
                u64::from(self.blocks),
                u64::from(layout.block_count),
            ),
            ("record count", self.records, u64::from(layout.record_count)),
        ];
        if let Some((what, want, got)) = checks.into_iter().find(|(_, w, g)| w != g) {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, trailer_at),
                format!("trailer {what}"),
                format!("{want} (found by reading the blocks)"),
                got,
            ));
        }
        let index = &tail[..layout.index_len as usize];
        let crc = checksum::crc32(index);
        if crc != trailer.index_crc {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel),
                "index",
                format!("crc32 {:#010x} (trailer)", trailer.index_crc),
                format!("{crc:#010x}"),
            ));
        }
        let index_end = (layout.index_len) as usize;
        if tail[index_end..tail.len() - TRAILER_LEN]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Error::corrupt(
                Location::shard(&self.path, number, index_rel + index_end as u64),
                "index padding",
                "zero bytes",
                "non-zero bytes",
            ));
        }
        Ok(ScannedShard {
            file_len,
            blake3: self.hasher.finalize().to_hex().to_string(),
        })
    }
}

/// Iterator over an archive's samples read sequentially; see [`crate::Archive::scan`].
pub struct Scan<'a> {
    archive: &'a crate::Archive,
    shard: usize,
    trace: Option<IoTrace>,
    current: Option<(Window<FileSource>, ShardScanner)>,
    block: Option<BlockCursor>,
}

/// The records of one decoded block, taken one by one (fillers skipped).
pub(crate) struct BlockCursor {
    data: std::sync::Arc<[u8]>,
    pos: usize,
    ordinal: u64,
    left: u32,
    shard: u32,
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
        let payload_offset = rel + BLOCK_HEADER_LEN as u64;
        let data: std::sync::Arc<[u8]> = match h.codec {
            Codec::Stored => payload.into(),
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
                let decoded = match (h.codec, dictionary) {
                    (Codec::ZstdDictionary, Some(d)) => crate::codec::dictionary::decode_block(
                        payload,
                        h.record_count,
                        h.raw_len,
                        d,
                    ),
                    (Codec::ZstdDictionary, None) => Err(crate::codec::DecodeFailure::Zstd(
                        "a dictionary block in a shard without a dictionary".into(),
                    )),
                    _ => crate::codec::decompress(payload, h.raw_len),
                };
                decoded
                    .map_err(|e| {
                        Error::corrupt(
                            Location::shard(path, shard, payload_offset),
                            format!("block {} zstd frame", h.block_number),
                            format!("{} decoded bytes", h.raw_len),
                            e,
                        )
                    })?
                    .into()
            }
        };
        Ok(BlockCursor {
            data,
            pos: 0,
            ordinal: h.first_ordinal,
            left: h.record_count,
            shard,
            payload_offset,
        })
    }

    /// The next sample, or `None` after the last; checks the block holds exactly as many
    /// records as its header counts.
    pub(crate) fn next_sample(&mut self, path: &Path) -> Result<Option<crate::Sample<'static>>> {
        let at_block = |c: &BlockCursor| Location::shard(path, c.shard, c.payload_offset);
        while self.pos < self.data.len() {
            let at = self.pos;
            match crate::format::record::item_at(&self.data, at)
                .map_err(|d| d.at(path, Some(self.shard), self.payload_offset))?
            {
                PayloadItem::Filler(n) => self.pos += n as usize,
                PayloadItem::Record(n) => {
                    if self.left == 0 {
                        return Err(Error::corrupt(
                            at_block(self),
                            "block records",
                            "as many records as the block header counts",
                            "more",
                        ));
                    }
                    self.pos += n as usize;
                    self.left -= 1;
                    self.ordinal += 1;
                    return crate::Sample::from_block(
                        self.ordinal - 1,
                        self.shard,
                        self.data.clone(),
                        at..at + n as usize,
                    )
                    .map(Some)
                    .map_err(|d| d.at(path, Some(self.shard), self.payload_offset));
                }
            }
        }
        if self.left > 0 {
            return Err(Error::corrupt(
                at_block(self),
                "block records",
                "as many records as the block header counts",
                "fewer",
            ));
        }
        Ok(None)
    }
}

impl<'a> Scan<'a> {
    pub(crate) fn new(archive: &'a crate::Archive, trace: Option<IoTrace>) -> Self {
        Scan {
            archive,
            shard: 0,
            trace,
            current: None,
            block: None,
        }
    }

    fn path(&self, shard: u32) -> PathBuf {
        let m = self.archive.manifest();
        m.shards.get(shard as usize).map_or_else(PathBuf::new, |_| {
            self.archive.shard_path(shard as usize).unwrap_or_default()
        })
    }

    /// Opens the next shard; a shard that cannot be opened is passed over (its error is
    /// returned once).
    fn open_shard(&mut self) -> Result<Option<()>> {
        let opened = self.try_open_shard();
        if opened.is_err() {
            self.shard += 1;
        }
        opened
    }

    fn try_open_shard(&mut self) -> Result<Option<()>> {
        let m = self.archive.manifest();
        let Some(info) = m.shards.get(self.shard) else {
            return Ok(None);
        };
        let number = self.shard as u32;
        let path = self.archive.shard_path(self.shard)?;
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, "stat", e))?
            .len();
        if len != info.size {
            return Err(Error::corrupt(
                Location::shard(&path, number, len.min(info.size)),
                "shard length",
                format!("{} bytes (manifest)", info.size),
                format!("{len} bytes"),
            ));
        }
        let chunk = crate::MediaProfile::from_name(&m.layout.profile)
            .unwrap_or_default()
            .read_chunk;
        let src = FileSource::open(&path, number, self.trace.clone())?;
        let mut win = Window::new(src, chunk as usize, path.clone());
        let scanner = ShardScanner::start(&mut win, path.clone(), Some(info.size), None)?;
        let h = scanner.header();
        if h.shard_number != number
            || h.archive_id != m.archive_id_bytes()
            || h.first_ordinal != info.first_ordinal
        {
            return Err(Error::corrupt(
                Location::shard(&path, number, 16),
                "shard header",
                format!(
                    "shard {number} of archive {} from ordinal {}",
                    m.archive_id, info.first_ordinal
                ),
                "another shard",
            ));
        }
        self.current = Some((win, scanner));
        Ok(Some(()))
    }

    /// Reads the current shard's next block into `self.block`; false after its last.
    fn next_block(&mut self) -> Result<bool> {
        let number = self.shard as u32;
        let path = self.path(number);
        let max = self.archive.limits().max_block_bytes;
        let Some((win, scanner)) = self.current.as_mut() else {
            return Ok(false);
        };
        let Some((rel, h, payload)) = scanner.next_block(win)? else {
            return Ok(false);
        };
        let dictionary = scanner.dictionary().map(|d| &**d);
        self.block = Some(BlockCursor::decode(
            &path, number, rel, &h, payload, dictionary, max,
        )?);
        Ok(true)
    }

    fn finish_shard(&mut self) -> Result<()> {
        let Some((mut win, scanner)) = self.current.take() else {
            return Ok(());
        };
        let number = self.shard as u32;
        self.shard += 1;
        let scanned = scanner.finish(&mut win)?;
        let info = self.archive.manifest().shards.get(number as usize);
        if let Some(info) = info.filter(|i| i.blake3 != scanned.blake3) {
            return Err(Error::corrupt(
                Location::shard(&self.path(number), number, 0),
                "shard digest (BLAKE3)",
                info.blake3.clone(),
                scanned.blake3,
            ));
        }
        Ok(())
    }

    fn next_sample(&mut self) -> Result<Option<crate::Sample<'static>>> {
        loop {
            if let Some(cursor) = self.block.as_mut() {
                let path = self
                    .archive
                    .shard_path(cursor.shard as usize)
                    .unwrap_or_default();
                match cursor.next_sample(&path) {
                    Ok(Some(s)) => return Ok(Some(s)),
                    Ok(None) => self.block = None,
                    Err(e) => {
                        self.block = None;
                        return Err(e);
                    }
                }
            }
            if self.current.is_some() {
                if !self.next_block()? {
                    self.finish_shard()?;
                }
                continue;
            }
            if self.open_shard()?.is_none() {
                return Ok(None);
            }
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<crate::Sample<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_sample() {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => None,
            Err(e) => {
                // Skip the rest of a damaged shard: its framing can no longer be trusted.
                // The shard being read is left behind; a shard that failed to open or to
                // finish has already been passed by open_shard or finish_shard.
                self.block = None;
                if self.current.take().is_some() {
                    self.shard += 1;
                }
                Some(Err(e))
            }
        }
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
            hasher.update(bytes);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}
