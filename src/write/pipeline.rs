//! The writer's compression pipeline: blocks are compressed on worker threads while the
//! writer goes on, and come back in submission order, so the output is the same bytes
//! whatever the number of threads (zstd is deterministic for a given level and input).
//! Memory is bounded: at most two blocks per worker are in flight.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use crate::codec::dictionary::DictionaryCompressor;
use crate::codec::Compressor;
use crate::format::Codec;
use crate::parallel::Ordered;

/// A block back from the pipeline: its raw bytes, and its compressed payload with the codec
/// that made it when that is smaller.
pub(crate) struct CodedBlock {
    pub(crate) raw: Vec<u8>,
    pub(crate) compressed: Option<(Codec, Vec<u8>)>,
    /// The CRC-32C of the payload written: the compressed bytes, or else the raw ones.
    pub(crate) payload_crc: u32,
}

impl CodedBlock {
    fn new(raw: Vec<u8>, compressed: Option<(Codec, Vec<u8>)>) -> Self {
        let payload = compressed
            .as_ref()
            .map_or(raw.as_slice(), |(_, z)| z.as_slice());
        let payload_crc = crate::format::checksum::crc32(payload);
        CodedBlock {
            raw,
            compressed,
            payload_crc,
        }
    }
}

/// A shard's dictionary, shared by the workers compressing its blocks.
pub(crate) struct ShardDictionary {
    /// The shard's number: tells a worker when to load a new dictionary.
    pub(crate) shard: u32,
    pub(crate) bytes: Vec<u8>,
}

/// A block to code: its raw bytes, and for a shard with a dictionary, the dictionary and
/// the lengths of the records laid end to end in `raw`.
pub(crate) struct BlockJob {
    pub(crate) raw: Vec<u8>,
    pub(crate) dictionary: Option<(Arc<ShardDictionary>, Vec<u32>)>,
}

type Coded = io::Result<Option<(Codec, Vec<u8>)>>;

/// What one thread compresses with: a context for whole blocks, and one loaded with the
/// current shard's dictionary.
struct Coder {
    level: i32,
    blocks: Compressor,
    dictionary: Option<(u32, DictionaryCompressor)>,
}

/// A block larger than this is sampled before it is compressed…
const SAMPLE_FROM: usize = 256 << 10;
/// …in this many pieces spread evenly over it…
const SAMPLE_PIECES: usize = 16;
/// …of this many bytes each.
const SAMPLE_PIECE: usize = 4 << 10;

/// The pieces of a block of `len` bytes that are compressed to guess whether it is worth
/// compressing: none below 256 KiB (such a block is always compressed), else 16 pieces of
/// 4 KiB spread evenly over it.
pub(crate) fn sample_ranges(len: u64) -> Vec<std::ops::Range<u64>> {
    if len < SAMPLE_FROM as u64 {
        return Vec::new();
    }
    let step = len / SAMPLE_PIECES as u64;
    (0..SAMPLE_PIECES as u64)
        .map(|i| i * step)
        .filter(|at| at + SAMPLE_PIECE as u64 <= len)
        .map(|at| at..at + SAMPLE_PIECE as u64)
        .collect()
}

/// True when the pieces of [`sample_ranges`], laid end to end in `sample`, do not shrink by
/// 2%; false for an empty sample.
pub(crate) fn sample_says_incompressible(
    compressor: &mut Compressor,
    sample: &[u8],
) -> io::Result<bool> {
    if sample.is_empty() {
        return Ok(false);
    }
    let z = compressor.compress(sample)?;
    Ok(z.len() * 50 >= sample.len() * 49)
}

impl Coder {
    /// True when a large block's sample does not shrink by 2%: JPEG, video or already
    /// compressed data, which zstd would spend a full pass on to gain nothing. The pieces
    /// are spread over the block so that a compressible part anywhere shows (§5.2).
    fn looks_incompressible(&mut self, raw: &[u8]) -> io::Result<bool> {
        let mut sample = Vec::with_capacity(SAMPLE_PIECES * SAMPLE_PIECE);
        for range in sample_ranges(raw.len() as u64) {
            let range = range.start as usize..range.end as usize;
            sample.extend_from_slice(raw.get(range).unwrap_or_default());
        }
        sample_says_incompressible(&mut self.blocks, &sample)
    }

    fn new(level: i32) -> io::Result<Self> {
        Ok(Coder {
            level,
            blocks: Compressor::new(level)?,
            dictionary: None,
        })
    }

    fn code_block(&mut self, job: BlockJob) -> io::Result<CodedBlock> {
        let compressed = self.code(&job)?;
        Ok(CodedBlock::new(job.raw, compressed))
    }

    fn code(&mut self, job: &BlockJob) -> Coded {
        let raw = &job.raw;
        let Some((dictionary, lens)) = &job.dictionary else {
            if self.looks_incompressible(raw)? {
                return Ok(None);
            }
            let z = self.blocks.compress(raw)?;
            return Ok((z.len() < raw.len()).then_some((Codec::Zstd, z)));
        };
        if self
            .dictionary
            .as_ref()
            .is_none_or(|(shard, _)| *shard != dictionary.shard)
        {
            let loaded = DictionaryCompressor::new(self.level, &dictionary.bytes)?;
            self.dictionary = Some((dictionary.shard, loaded));
        }
        let Some((_, compressor)) = self.dictionary.as_mut() else {
            return Ok(None);
        };
        Ok(compressor
            .compress(raw, lens)?
            .map(|payload| (Codec::ZstdDictionary, payload)))
    }
}

/// Compresses blocks, in parallel when there are cores to spare, and hands them back in
/// submission order with their payload CRCs taken, so the writer's thread only writes.
pub(crate) struct BlockCoder {
    mode: Mode,
}

enum Mode {
    /// No compression: blocks come back as they went in.
    Store(VecDeque<CodedBlock>),
    /// Compression on the caller's thread (one core).
    Inline(Box<Coder>, VecDeque<io::Result<CodedBlock>>),
    /// Compression on worker threads, at most two blocks per worker in flight.
    Pool(Ordered<'static, BlockJob, io::Result<CodedBlock>>),
}

impl BlockCoder {
    /// A coder at zstd `level` (`None`: store every block) on `threads` worker threads (0:
    /// compress on the caller's thread).
    pub(crate) fn new(level: Option<i32>, threads: usize) -> io::Result<Self> {
        let mode = match level {
            None => Mode::Store(VecDeque::new()),
            Some(level) if threads == 0 => {
                Mode::Inline(Box::new(Coder::new(level)?), VecDeque::new())
            }
            Some(level) => {
                let coders = (0..threads)
                    .map(|_| Coder::new(level))
                    .collect::<io::Result<Vec<_>>>()?;
                Mode::Pool(Ordered::spawn(
                    "shardpack-compress",
                    coders,
                    2 * threads,
                    |coder: &mut Coder, job: BlockJob| coder.code_block(job),
                )?)
            }
        };
        Ok(BlockCoder { mode })
    }

    /// The number of worker threads to use by default: one per core.
    pub(crate) fn default_threads() -> usize {
        crate::parallel::cores()
    }

    /// Hands a block over; it comes back from [`BlockCoder::take`] after every block
    /// handed over before it.
    pub(crate) fn submit(&mut self, job: BlockJob) -> io::Result<()> {
        match &mut self.mode {
            Mode::Store(done) => done.push_back(CodedBlock::new(job.raw, None)),
            Mode::Inline(coder, done) => done.push_back(coder.code_block(job)),
            Mode::Pool(pool) => pool.submit(job)?,
        }
        Ok(())
    }

    /// The oldest block handed over and not yet taken, once it is coded; with `wait`,
    /// waits for it. `None` when it is not coded yet (or nothing is pending).
    pub(crate) fn take(&mut self, wait: bool) -> io::Result<Option<CodedBlock>> {
        match &mut self.mode {
            Mode::Store(done) => Ok(done.pop_front()),
            Mode::Inline(_, done) => done.pop_front().transpose(),
            Mode::Pool(pool) => {
                let next = if wait { pool.next() } else { pool.try_next() };
                next.map(|r| r.and_then(|coded| coded)).transpose()
            }
        }
    }
}
