//! The order in which a training run reads an archive's samples, and each reader's part
//! of it (docs/sample-order.md). Every front end (Rust, Python, the PyTorch datasets) draws
//! its order from here, so that the same seed gives the same samples everywhere.
//!
//! An epoch is a sequence of *positions* `0..len`, each naming one ordinal. Shuffling keeps
//! locality: the ordinals are cut into spans of consecutive samples that never cross a
//! shard, the spans are permuted, and the samples are then shuffled within windows of
//! consecutive positions, so a reader touches a bounded set of spans at a time. Readers
//! split the positions into chunks of one batch; chunk `j` goes to rank `j % world` and,
//! within it, to worker `(j / world) % workers`, which is exactly the order in which
//! in-order data loaders on every rank hand batches out. So after every rank consumed `s`
//! batches, the consumed positions are the prefix `start..start + s * world * batch`, and
//! one global position is the whole state needed to resume, with any other number of
//! ranks or workers.

use crate::error::{Error, Result};

/// How positions map to ordinals: file order, or a seeded shuffle that keeps locality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shuffle {
    /// The run's seed.
    pub seed: u64,
    /// Samples per span: consecutive ordinals of one shard that stay together.
    pub span: u32,
    /// Positions per window within which samples are shuffled.
    pub window: u32,
}

impl Shuffle {
    /// A shuffle with `seed`, spans of 1,024 samples and windows of 4 spans.
    pub fn new(seed: u64) -> Self {
        Shuffle {
            seed,
            span: 1024,
            window: 4096,
        }
    }
}

/// The order of one epoch: position → ordinal.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    len: u64,
    /// Spans in epoch order: (first ordinal, number of samples).
    spans: Vec<(u64, u64)>,
    /// `starts[i]` is the first position of `spans[i]`.
    starts: Vec<u64>,
    /// Window size and seed; `None` in file order.
    window: Option<(u64, u64)>,
}

impl EpochOrder {
    /// File order over `len` samples.
    pub fn sequential(len: u64) -> Self {
        EpochOrder {
            len,
            spans: vec![(0, len)],
            starts: vec![0],
            window: None,
        }
    }

    /// The order of `epoch` over shards holding `shard_samples[i]` samples each, in file
    /// order when `shuffle` is `None`.
    ///
    /// # Errors
    /// A span or window of 0 samples, or a total that overflows.
    pub fn new(shard_samples: &[u64], shuffle: Option<Shuffle>, epoch: u64) -> Result<Self> {
        let len = shard_samples
            .iter()
            .try_fold(0u64, |sum, &n| sum.checked_add(n))
            .ok_or_else(|| Error::invalid_input("shard sizes", "their sum overflows 64 bits"))?;
        let Some(shuffle) = shuffle else {
            return Ok(EpochOrder::sequential(len));
        };
        if shuffle.span == 0 || shuffle.window == 0 {
            return Err(Error::invalid_input(
                "shuffle",
                format!(
                    "span and window must be at least 1 sample (got {} and {})",
                    shuffle.span, shuffle.window
                ),
            ));
        }
        let span = u64::from(shuffle.span);
        let mut spans = Vec::new();
        let mut first = 0u64;
        for &n in shard_samples {
            let mut at = 0;
            while at < n {
                let take = span.min(n - at);
                spans.push((first + at, take));
                at += take;
            }
            first += n;
        }
        let mut rng = SplitMix64::new(mix(shuffle.seed, epoch, 0));
        rng.shuffle(&mut spans);
        let mut starts = Vec::with_capacity(spans.len());
        let mut at = 0;
        for &(_, n) in &spans {
            starts.push(at);
            at += n;
        }
        Ok(EpochOrder {
            len,
            spans,
            starts,
            window: Some((u64::from(shuffle.window), mix(shuffle.seed, epoch, 1))),
        })
    }

    /// Number of positions (= samples).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the epoch has no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cursor that maps positions to ordinals, fastest when asked in rising order.
    pub fn cursor(self) -> OrderCursor {
        OrderCursor {
            order: self,
            window: None,
        }
    }

    /// The ordinal at `position` after the spans are permuted, before window shuffling.
    fn spanned(&self, position: u64) -> u64 {
        let i = self.starts.partition_point(|&s| s <= position) - 1;
        self.spans[i].0 + (position - self.starts[i])
    }
}

/// Maps positions to ordinals, keeping the permutation of the last window it used.
#[derive(Clone, Debug)]
pub struct OrderCursor {
    order: EpochOrder,
    /// (window number, the positions of that window in shuffled order).
    window: Option<(u64, Vec<u64>)>,
}

impl OrderCursor {
    /// The order this cursor walks.
    pub fn order(&self) -> &EpochOrder {
        &self.order
    }

    /// The ordinal at `position`, or `None` past the end.
    pub fn ordinal(&mut self, position: u64) -> Option<u64> {
        let order = &self.order;
        if position >= order.len {
            return None;
        }
        let Some((size, seed)) = order.window else {
            return Some(position);
        };
        let number = position / size;
        let start = number * size;
        let current = match &self.window {
            Some((n, perm)) if *n == number => perm,
            _ => {
                let end = (start + size).min(order.len);
                let mut perm: Vec<u64> = (start..end).collect();
                SplitMix64::new(mix(seed, number, 2)).shuffle(&mut perm);
                &self.window.insert((number, perm)).1
            }
        };
        Some(order.spanned(current[(position - start) as usize]))
    }
}

/// What to do with the positions that do not fill a last step of every rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Read them: the last step gives some ranks a short batch or none.
    Keep,
    /// Skip them, so every rank reads the same number of full batches.
    Drop,
    /// Fill the last step with samples from the start of the epoch, so every rank reads
    /// the same number of full batches (some samples twice).
    Pad,
}

/// One reader's part of an epoch: rank `rank` of `world`, data-loader worker `worker` of
/// `workers`, reading chunks of `batch` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// This process's rank.
    pub rank: u32,
    /// Number of ranks.
    pub world: u32,
    /// This reader's worker number within its rank.
    pub worker: u32,
    /// Number of workers of each rank (1 when the loader has none).
    pub workers: u32,
    /// Positions per chunk: the loader's batch size.
    pub batch: u32,
    /// What to do with an incomplete last step.
    pub tail: Tail,
}

impl Partition {
    /// The only reader, in chunks of `batch`.
    pub fn single(batch: u32) -> Self {
        Partition {
            rank: 0,
            world: 1,
            worker: 0,
            workers: 1,
            batch,
            tail: Tail::Keep,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str, detail: String| Err(Error::invalid_input(what, detail));
        if self.world == 0 || self.rank >= self.world {
            return bad(
                "rank",
                format!("{} of world size {}", self.rank, self.world),
            );
        }
        if self.workers == 0 || self.worker >= self.workers {
            return bad(
                "worker",
                format!("{} of {} workers", self.worker, self.workers),
            );
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        Ok(())
    }

    /// Positions one step of every rank consumes.
    fn step(&self) -> u64 {
        u64::from(self.world) * u64::from(self.batch)
    }

    /// The end of the positions read from `start` in an epoch of `len`; past `len` only
    /// with [`Tail::Pad`].
    pub fn end(&self, len: u64, start: u64) -> u64 {
        let left = len.saturating_sub(start);
        let step = self.step();
        match self.tail {
            Tail::Keep => len.max(start),
            Tail::Drop => start + left / step * step,
            Tail::Pad => start + left.div_ceil(step) * step,
        }
    }

    /// The global position after every rank consumed `steps` batches from `start`.
    pub fn position_after(&self, len: u64, start: u64, steps: u64) -> u64 {
        start
            .saturating_add(steps.saturating_mul(self.step()))
            .min(self.end(len, start))
    }

    /// This reader's chunks of positions from global position `start` of an epoch of
    /// `len`, skipping the first `done` chunks of its own (for resuming with the same
    /// partition). Positions at or past `len` (only with [`Tail::Pad`]) wrap to the epoch's
    /// start.
    ///
    /// # Errors
    /// A rank, worker or batch out of range.
    pub fn chunks(&self, len: u64, start: u64, done: u64) -> Result<Chunks> {
        self.check()?;
        Ok(Chunks {
            partition: *self,
            len,
            start,
            end: self.end(len, start),
            next: done,
        })
    }
}

/// The chunks of positions of one reader, in the order it reads them.
#[derive(Clone, Debug)]
pub struct Chunks {
    partition: Partition,
    len: u64,
    start: u64,
    end: u64,
    /// The reader's next chunk number (0 = its first).
    next: u64,
}

impl Chunks {
    /// How many of its own chunks the reader has taken.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

impl Iterator for Chunks {
    /// Positions, wrapped into `0..len`.
    type Item = Vec<u64>;

    fn next(&mut self) -> Option<Vec<u64>> {
        let p = &self.partition;
        // The reader's n-th chunk is global step n * workers + worker, rank `rank` in it.
        let step = self.next.checked_mul(u64::from(p.workers))? + u64::from(p.worker);
        let chunk = step.checked_mul(u64::from(p.world))? + u64::from(p.rank);
        let first = chunk
            .checked_mul(u64::from(p.batch))?
            .checked_add(self.start)?;
        if first >= self.end || self.len == 0 {
            return None;
        }
        let last = (first + u64::from(p.batch)).min(self.end);
        self.next += 1;
        Some((first..last).map(|q| q % self.len).collect())
    }
}

/// One reader's epoch: its chunks of positions, as ordinals.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    cursor: OrderCursor,
    chunks: Chunks,
}

impl ReadPlan {
    /// The chunks of `partition` in `order`, from global position `start`, skipping the
    /// reader's first `done` chunks.
    ///
    /// # Errors
    /// As [`Partition::chunks`].
    pub fn new(order: EpochOrder, partition: Partition, start: u64, done: u64) -> Result<Self> {
        let chunks = partition.chunks(order.len(), start, done)?;
        Ok(ReadPlan {
            cursor: order.cursor(),
            chunks,
        })
    }

    /// How many of its own chunks the reader has taken.
    pub fn taken(&self) -> u64 {
        self.chunks.taken()
    }
}

impl Iterator for ReadPlan {
    /// The ordinals of the next chunk, in reading order.
    type Item = Vec<u64>;

    fn next(&mut self) -> Option<Vec<u64>> {
        let positions = self.chunks.next()?;
        positions
            .into_iter()
            .map(|p| self.cursor.ordinal(p))
            .collect()
    }
}

/// Mixes a seed with two numbers into an independent stream's seed.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut s = SplitMix64::new(seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let x = s.next_u64();
    SplitMix64::new(x ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast and fully specified, so that any
/// implementation can reproduce the order (docs/sample-order.md gives the constants).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..bound` (bound > 0), by rejection so there is no bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }

    /// Fisher–Yates, from the last element down.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all(order: &EpochOrder) -> Vec<u64> {
        let mut c = order.clone().cursor();
        (0..order.len()).map(|p| c.ordinal(p).unwrap()).collect()
    }

    #[test]
    fn a_shuffle_is_a_permutation_that_depends_on_seed_and_epoch() {
        let shards = [1000, 7, 2500, 1];
        let s = Shuffle {
            seed: 5,
            span: 64,
            window: 200,
        };
        let a = all(&EpochOrder::new(&shards, Some(s), 0).unwrap());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..3508).collect::<Vec<_>>());
        assert_eq!(a, all(&EpochOrder::new(&shards, Some(s), 0).unwrap()));
        assert_ne!(a, all(&EpochOrder::new(&shards, Some(s), 1).unwrap()));
        let other = Shuffle { seed: 6, ..s };
        assert_ne!(a, all(&EpochOrder::new(&shards, Some(other), 0).unwrap()));
        assert_eq!(
            all(&EpochOrder::new(&shards, None, 3).unwrap()),
            (0..3508).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_window_draws_from_few_spans() {
        let s = Shuffle {
            seed: 1,
            span: 100,
            window: 200,
        };
        let order = EpochOrder::new(&[10_000], Some(s), 0).unwrap();
        let got = all(&order);
        for window in got.chunks(200) {
            let spans: HashSet<u64> = window.iter().map(|o| o / 100).collect();
            assert!(spans.len() <= 3, "{spans:?}");
        }
    }

    fn positions(p: Partition, len: u64, start: u64) -> Vec<u64> {
        p.chunks(len, start, 0).unwrap().flatten().collect()
    }

    #[test]
    fn every_position_once_for_any_world_and_workers() {
        for len in [0, 1, 7, 100, 1001] {
            for world in 1..4 {
                for workers in 1..4 {
                    for batch in [1, 3, 16] {
                        let mut seen = Vec::new();
                        for rank in 0..world {
                            for worker in 0..workers {
                                let p = Partition {
                                    rank,
                                    world,
                                    worker,
                                    workers,
                                    batch,
                                    tail: Tail::Keep,
                                };
                                seen.extend(positions(p, len, 0));
                            }
                        }
                        seen.sort_unstable();
                        assert_eq!(seen, (0..len).collect::<Vec<_>>());
                    }
                }
            }
        }
    }

    /// Loaders on every rank hand out their workers' chunks round-robin, one batch per
    /// step; the consumed positions after each step are a prefix.
    fn consumed_in_steps(world: u32, workers: u32, batch: u32, len: u64, start: u64) -> Vec<u64> {
        let mut readers: Vec<Vec<Chunks>> = (0..world)
            .map(|rank| {
                (0..workers)
                    .map(|worker| {
                        Partition {
                            rank,
                            world,
                            worker,
                            workers,
                            batch,
                            tail: Tail::Keep,
                        }
                        .chunks(len, start, 0)
                        .unwrap()
                    })
                    .collect()
            })
            .collect();
        let mut out = Vec::new();
        for step in 0.. {
            let mut any = false;
            for rank in readers.iter_mut() {
                if let Some(chunk) = rank[step % workers as usize].next() {
                    any = true;
                    out.extend(chunk);
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    #[test]
    fn steps_consume_a_prefix_so_a_position_resumes_with_another_partition() {
        let len = 1000;
        // 1 rank, 1 worker, batch 8: stop after 17 steps.
        let first = consumed_in_steps(1, 1, 8, len, 0);
        let p1 = Partition::single(8);
        let g1 = p1.position_after(len, 0, 17);
        assert_eq!(first[..g1 as usize], (0..g1).collect::<Vec<_>>()[..]);
        // 2 ranks, 2 workers from there: stop after 9 steps.
        let second = consumed_in_steps(2, 2, 8, len, g1);
        let p2 = Partition {
            world: 2,
            workers: 2,
            ..p1
        };
        let g2 = p2.position_after(len, g1, 9);
        assert_eq!(
            second[..(g2 - g1) as usize],
            (g1..g2).collect::<Vec<_>>()[..]
        );
        // 3 ranks, 1 worker to the end.
        let third = consumed_in_steps(3, 1, 8, len, g2);
        let mut all: Vec<u64> = (0..g2).chain(third).collect();
        all.sort_unstable();
        assert_eq!(all, (0..len).collect::<Vec<_>>());
    }

    #[test]
    fn drop_and_pad_give_every_rank_full_batches() {
        let len = 103;
        for tail in [Tail::Drop, Tail::Pad] {
            let counts: Vec<usize> = (0..3)
                .map(|rank| {
                    let p = Partition {
                        rank,
                        world: 3,
                        worker: 0,
                        workers: 1,
                        batch: 10,
                        tail,
                    };
                    positions(p, len, 0).len()
                })
                .collect();
            let expect = if tail == Tail::Drop { 30 } else { 40 };
            assert_eq!(counts, vec![expect; 3]);
        }
    }

    #[test]
    fn out_of_range_partitions_are_refused() {
        let p = Partition::single(4);
        assert!(Partition { rank: 1, ..p }.chunks(10, 0, 0).is_err());
        assert!(Partition {
            worker: 2,
            workers: 2,
            ..p
        }
        .chunks(10, 0, 0)
        .is_err());
        assert!(Partition { batch: 0, ..p }.chunks(10, 0, 0).is_err());
        let s = Shuffle {
            span: 0,
            ..Shuffle::new(1)
        };
        assert!(EpochOrder::new(&[5], Some(s), 0).is_err());
    }

    #[test]
    fn resuming_with_the_same_partition_skips_done_chunks() {
        let p = Partition {
            rank: 1,
            world: 2,
            worker: 1,
            workers: 2,
            batch: 5,
            tail: Tail::Keep,
        };
        let whole: Vec<Vec<u64>> = p.chunks(200, 0, 0).unwrap().collect();
        let rest: Vec<Vec<u64>> = p.chunks(200, 0, 3).unwrap().collect();
        assert_eq!(whole[3..], rest[..]);
    }
}
