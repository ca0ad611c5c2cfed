//! The writer's compression pipeline: blocks are compressed on worker threads while the
//! writer goes on, and come back in submission order, so the output is the same bytes
//! whatever the number of threads (zstd is deterministic for a given level and input).
//! Memory is bounded: at most two blocks per worker are in flight.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::codec::dictionary::DictionaryCompressor;
use crate::codec::Compressor;
use crate::format::Codec;

/// A block back from the pipeline: its raw bytes, and its compressed payload with the codec
/// that made it when that is smaller.
pub(crate) struct CodedBlock {
    pub(crate) raw: Vec<u8>,
    pub(crate) compressed: Option<(Codec, Vec<u8>)>,
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
type Done = (u64, Coded, Vec<u8>);

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

/// Compresses blocks, in parallel when there are cores to spare.
pub(crate) struct BlockCoder {
    /// Compresses on the calling thread (one core, or no compression).
    inline: Option<Coder>,
    compress: bool,
    jobs: Option<SyncSender<(u64, BlockJob)>>,
    results: Option<Receiver<Done>>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    done: BTreeMap<u64, io::Result<CodedBlock>>,
    in_flight: usize,
    max_in_flight: usize,
}

impl BlockCoder {
    /// A coder at zstd `level` (`None`: store every block) on `threads` worker threads (0:
    /// compress on the caller's thread).
    pub(crate) fn new(level: Option<i32>, threads: usize) -> io::Result<Self> {
        let mut coder = BlockCoder {
            inline: None,
            compress: level.is_some(),
            jobs: None,
            results: None,
            workers: Vec::new(),
            next_seq: 0,
            done: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: 2 * threads.max(1),
        };
        let Some(level) = level else { return Ok(coder) };
        if threads == 0 {
            coder.inline = Some(Coder::new(level)?);
            return Ok(coder);
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, BlockJob)>(coder.max_in_flight);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let mut compressor = Coder::new(level)?;
            coder.workers.push(std::thread::spawn(move || loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                let Ok((seq, job)) = job else { return };
                let coded = compressor.code(&job);
                if tx.send((seq, coded, job.raw)).is_err() {
                    return;
                }
            }));
        }
        coder.jobs = Some(job_tx);
        coder.results = Some(done_rx);
        Ok(coder)
    }

    /// The number of worker threads to use by default: one per core.
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Hands a block over; returns its sequence number.
    pub(crate) fn submit(&mut self, job: BlockJob) -> io::Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.compress {
            self.done.insert(
                seq,
                Ok(CodedBlock {
                    raw: job.raw,
                    compressed: None,
                }),
            );
            return Ok(seq);
        }
        if let Some(c) = self.inline.as_mut() {
            let coded = c.code(&job).map(|compressed| CodedBlock {
                raw: job.raw,
                compressed,
            });
            self.done.insert(seq, coded);
            return Ok(seq);
        }
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("compression workers stopped"))?;
        jobs.send((seq, job))
            .map_err(|_| io::Error::other("compression workers stopped"))?;
        self.in_flight += 1;
        Ok(seq)
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let results = self
            .results
            .as_ref()
            .ok_or_else(|| io::Error::other("compression workers stopped"))?;
        let (seq, coded, raw) = results
            .recv()
            .map_err(|_| io::Error::other("compression workers stopped"))?;
        self.in_flight -= 1;
        self.done
            .insert(seq, coded.map(|compressed| CodedBlock { raw, compressed }));
        Ok(())
    }

    /// Block `seq` once it is coded; with `wait`, waits for it.
    pub(crate) fn take(&mut self, seq: u64, wait: bool) -> io::Result<Option<CodedBlock>> {
        loop {
            if let Some(done) = self.done.remove(&seq) {
                return done.map(Some);
            }
            if !wait || self.in_flight == 0 {
                return Ok(None);
            }
            self.receive_one()?;
        }
    }
}

impl Drop for BlockCoder {
    fn drop(&mut self) {
        // Closing the job channel ends the workers.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
