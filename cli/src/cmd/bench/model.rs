//! A cost model: how long a traced access pattern would take on each storage medium.
//!
//! The model is deliberately simple and is **not a measurement**. It turns an [`IoTrace`]
//! into device requests and charges each request a positioning cost (unless it continues
//! the previous request), a fixed per-request overhead, and its bytes at the medium's
//! sustained bandwidth. Every figure cites the published fact
//! it comes from, or says that it is an assumption.
//!
//! What it leaves out, on purpose: queue depth and parallelism, drive caches, any page
//! cache beyond prefetched pages and [`CACHE_PAGES`] for map accesses, readahead, zone
//! speeds, tape wraps, the order of files on the medium (a file's first request always
//! pays positioning), and CPU time.
//!
//! [`IoTrace`]: shardpack::IoTrace

use std::collections::{BTreeMap, HashMap};

use shardpack::{IoKind, IoOp};

/// Decimal megabyte, the unit of every bandwidth figure used here.
const MB: f64 = 1e6;

/// What one medium costs per request and per byte (plain data; copy a row and change
/// fields to model another device).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct MediaCost {
    /// The medium's name (`hdd`, `ssd`, `tape`, `optical`).
    pub name: &'static str,
    /// Seconds to position before a request that does not continue the previous one
    /// (seek and rotation, locate).
    pub position_secs: f64,
    /// Sustained transfer rate in bytes per second.
    pub bytes_per_sec: f64,
    /// Seconds every request pays whether or not it is contiguous (command latency).
    pub request_overhead_secs: f64,
    /// Where the figures come from, and which of them are assumptions.
    pub source: &'static str,
}

impl MediaCost {
    /// A 7200 rpm hard disk: 7.4 ms average seek + 4.16 ms average rotational latency =
    /// 11.6 ms per positioning, 250 MB/s sustained.
    pub const fn hdd() -> Self {
        MediaCost {
            name: "hdd",
            position_secs: 0.0074 + 0.00416,
            bytes_per_sec: 250.0 * MB,
            request_overhead_secs: 0.0,
            source: "docs/design.md §3: 7.4 ms avg seek (WD Ultrastar DC HC310) + 4.16 ms avg \
                     rotational latency at 7200 rpm; 250 MB/s sustained (250-270 MB/s, Exos X18)",
        }
    }

    /// An NVMe SSD at queue depth 1: no positioning, ~50 µs per request (a QD1 random
    /// 4 KiB read), 6.7 GB/s sequential.
    pub const fn ssd() -> Self {
        MediaCost {
            name: "ssd",
            position_secs: 0.0,
            bytes_per_sec: 6700.0 * MB,
            request_overhead_secs: 50e-6,
            source:
                "docs/design.md §3: ~50 us per QD1 random 4K read (Samsung 9100 Pro, PlanetScale), \
                     paid by every request; 6.7 GB/s sequential; no positioning",
        }
    }

    /// LTO-9 tape: 400 MB/s native; a request that does not continue the previous one
    /// costs a locate, modelled by the 65 s average space-record time.
    pub const fn tape() -> Self {
        MediaCost {
            name: "tape",
            position_secs: 65.0,
            bytes_per_sec: 400.0 * MB,
            request_overhead_secs: 0.0,
            source: "docs/design.md §3: LTO-9 400 MB/s native; 65 s average space-record time \
                     from load point (IBM TS2290) per non-sequential access",
        }
    }

    /// A Blu-ray disc read at 12x (12 × 4.5 MB/s = 54 MB/s). Drive makers publish no
    /// access time for optical drives: 0.1 s per positioning is an assumption.
    pub const fn optical() -> Self {
        MediaCost {
            name: "optical",
            position_secs: 0.1,
            bytes_per_sec: 12.0 * 4.5 * MB,
            request_overhead_secs: 0.0,
            source: "docs/design.md §3: BD 1x = 36 Mbit/s = 4.5 MB/s, read at 12x = 54 MB/s; \
                     ASSUMED 0.1 s per positioning (no published optical access time)",
        }
    }

    /// Every medium, in the order reports list them.
    pub const ALL: [MediaCost; 4] = [
        MediaCost::hdd(),
        MediaCost::ssd(),
        MediaCost::tape(),
        MediaCost::optical(),
    ];

    /// The modelled seconds for `seeks` positionings, `requests` requests and `bytes`
    /// transferred.
    pub fn secs(&self, requests: u64, seeks: u64, bytes: u64) -> f64 {
        seeks as f64 * self.position_secs
            + requests as f64 * self.request_overhead_secs
            + bytes as f64 / self.bytes_per_sec
    }
}

/// The modelled cost of a trace on one medium.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ModelledTime {
    /// The medium's name, from [`MediaCost::name`].
    pub medium: &'static str,
    /// Modelled seconds.
    pub secs: f64,
    /// Device requests the trace turned into.
    pub requests: u64,
    /// Requests that paid positioning (did not continue the previous request).
    pub seeks: u64,
    /// Bytes the device transferred (map accesses and prefetches rounded out to pages).
    pub bytes: u64,
    /// `bytes` over `secs`, in MB/s (10^6 bytes); 0 when nothing was read.
    pub mb_per_sec: f64,
}

/// One device request: a byte range of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    file: u32,
    start: u64,
    end: u64,
}

/// The requests, positionings and bytes of a trace; the same on every medium.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Plan {
    requests: u64,
    seeks: u64,
    bytes: u64,
}

/// Pages of memory the model assumes keep what map accesses read, least recently touched
/// out first (64 MiB of 4 KiB pages): enough to keep the index pages that reads touch
/// again and again, and the page two neighbouring records share; far too little to hold
/// a dataset, so distinct samples read at random each go to the device.
pub const CACHE_PAGES: usize = 16 << 10;

/// Models `ops` on every medium of [`MediaCost::ALL`], with map accesses and prefetches
/// rounded out to pages of `page` bytes (4096 on Linux x86-64) and a cache of
/// [`CACHE_PAGES`] pages.
///
/// The trace becomes device requests as follows:
/// - [`IoKind::Read`] and [`IoKind::Write`]: one request each, as they are (the readers
///   that issue them never read a byte twice, so no cache is looked up).
/// - [`IoKind::Prefetch`]: one request covering the pages of its range.
/// - [`IoKind::MapAccess`]: the pages the access touches, minus pages an earlier prefetch
///   on the same file covered and pages still in the cache (the least recently touched
///   of them leave first); each run of contiguous pages left is one request. So the same
///   page touched by two reads far apart is read twice, as in an archive larger than
///   memory, but an index page that every read touches is read once.
/// - Operations of zero bytes (a read at the end of a file) are not requests.
///
/// A request pays the medium's positioning cost unless the request just before it, in
/// trace order, was on the same file and ended exactly where this one starts. One device
/// serves the whole trace, so a request to another file in between breaks the run.
///
/// Time = positionings × position + requests × per-request overhead + bytes / bandwidth.
///
/// # Panics
/// Never; a `page` of 0 is taken as 1.
pub fn model(ops: &[IoOp], page: u64) -> Vec<ModelledTime> {
    model_media(ops, page, CACHE_PAGES, &MediaCost::ALL)
}

/// [`model`] with your own cache size (0: every map access goes to the device) and media
/// table.
///
/// # Panics
/// Never.
pub fn model_media(
    ops: &[IoOp],
    page: u64,
    cache_pages: usize,
    media: &[MediaCost],
) -> Vec<ModelledTime> {
    let plan = plan(&requests(ops, page, cache_pages));
    media
        .iter()
        .map(|m| {
            let secs = m.secs(plan.requests, plan.seeks, plan.bytes);
            ModelledTime {
                medium: m.name,
                secs,
                requests: plan.requests,
                seeks: plan.seeks,
                bytes: plan.bytes,
                mb_per_sec: if secs > 0.0 {
                    plan.bytes as f64 / secs / MB
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Rounds `[start, end)` out to whole pages.
fn page_range(start: u64, end: u64, page: u64) -> (u64, u64) {
    let first = start - start % page;
    let last = match end % page {
        0 => end,
        r => end.saturating_add(page - r),
    };
    (first, last)
}

/// Sorted, disjoint, non-adjacent byte ranges of one file.
#[derive(Default)]
struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    fn insert(&mut self, start: u64, end: u64) {
        // Every range touching [start, end) is merged into it.
        let lo = self.0.partition_point(|&(_, e)| e < start);
        let hi = self.0.partition_point(|&(s, _)| s <= end);
        // lo <= hi: a range ending before `start` also starts before `end`.
        let hi = hi.max(lo);
        let (mut s, mut e) = (start, end);
        if lo < hi {
            if let (Some(first), Some(last)) = (self.0.get(lo), self.0.get(hi - 1)) {
                s = s.min(first.0);
                e = e.max(last.1);
            }
        }
        self.0.splice(lo..hi, [(s, e)]);
    }

    /// The parts of `[start, end)` not in the set, in order.
    fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        let from = self.0.partition_point(|&(_, e)| e <= start);
        for &(s, e) in self.0.get(from..).unwrap_or_default() {
            if s >= end {
                break;
            }
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }
}

/// The pages map accesses read last, least recently touched first out.
struct PageCache {
    capacity: usize,
    clock: u64,
    /// (file, page number) → when it was last touched.
    pages: BTreeMap<(u32, u64), u64>,
    /// When → (file, page number), for eviction.
    ages: BTreeMap<u64, (u32, u64)>,
}

impl PageCache {
    fn new(capacity: usize) -> Self {
        PageCache {
            capacity,
            clock: 0,
            pages: BTreeMap::new(),
            ages: BTreeMap::new(),
        }
    }

    /// The parts of pages `[first, end)` of `file` not in the cache, as page runs.
    fn misses(&self, file: u32, first: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = first;
        for (&(_, p), _) in self.pages.range((file, first)..(file, end)) {
            if p > at {
                out.push((at, p));
            }
            at = p + 1;
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    /// Marks pages `[first, end)` of `file` as just touched, in ascending order; only the
    /// last `capacity` of them can stay.
    fn touch(&mut self, file: u32, first: u64, end: u64) {
        let keep = u64::try_from(self.capacity).unwrap_or(u64::MAX);
        for p in first.max(end.saturating_sub(keep))..end {
            self.clock += 1;
            if let Some(old) = self.pages.insert((file, p), self.clock) {
                self.ages.remove(&old);
            }
            self.ages.insert(self.clock, (file, p));
        }
        while self.pages.len() > self.capacity {
            match self.ages.pop_first() {
                Some((_, key)) => self.pages.remove(&key),
                None => break,
            };
        }
    }
}

/// Turns a trace into device requests (see [`model`]).
fn requests(ops: &[IoOp], page: u64, cache_pages: usize) -> Vec<Request> {
    let page = page.max(1);
    let mut prefetched: HashMap<u32, RangeSet> = HashMap::new();
    let mut cache = PageCache::new(cache_pages);
    let mut out = Vec::with_capacity(ops.len());
    for op in ops.iter().filter(|op| op.len > 0) {
        let end = op.offset.saturating_add(op.len);
        match op.kind {
            IoKind::Read | IoKind::Write => out.push(Request {
                file: op.file,
                start: op.offset,
                end,
            }),
            IoKind::Prefetch => {
                let (start, end) = page_range(op.offset, end, page);
                prefetched.entry(op.file).or_default().insert(start, end);
                out.push(Request {
                    file: op.file,
                    start,
                    end,
                });
            }
            IoKind::MapAccess => {
                let (first, last) = (op.offset / page, (end - 1) / page + 1);
                let runs = match prefetched.get(&op.file) {
                    // Prefetched ranges are whole pages, so page numbers divide exactly.
                    Some(set) => set
                        .gaps(first.saturating_mul(page), last.saturating_mul(page))
                        .into_iter()
                        .map(|(s, e)| (s / page, e / page))
                        .collect(),
                    None => vec![(first, last)],
                };
                for (s, e) in runs {
                    out.extend(
                        cache
                            .misses(op.file, s, e)
                            .into_iter()
                            .map(|(s, e)| Request {
                                file: op.file,
                                start: s.saturating_mul(page),
                                end: e.saturating_mul(page),
                            }),
                    );
                }
                cache.touch(op.file, first, last);
            }
        }
    }
    out
}

/// Counts requests, positionings and bytes.
fn plan(requests: &[Request]) -> Plan {
    let mut plan = Plan::default();
    let mut head: Option<(u32, u64)> = None;
    for r in requests {
        plan.requests += 1;
        plan.bytes = plan.bytes.saturating_add(r.end - r.start);
        if head != Some((r.file, r.start)) {
            plan.seeks += 1;
        }
        head = Some((r.file, r.end));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn op(kind: IoKind, file: u32, offset: u64, len: u64) -> IoOp {
        IoOp {
            kind,
            file,
            offset,
            len,
        }
    }

    fn read(file: u32, offset: u64, len: u64) -> IoOp {
        op(IoKind::Read, file, offset, len)
    }

    fn on<'a>(times: &'a [ModelledTime], medium: &str) -> &'a ModelledTime {
        times.iter().find(|t| t.medium == medium).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn sequential_reads_pay_one_seek() {
        let mib = 1 << 20;
        let ops: Vec<IoOp> = (0..16).map(|i| read(0, i * mib, mib)).collect();
        let times = model(&ops, PAGE);
        assert_eq!(times.len(), MediaCost::ALL.len());
        for t in &times {
            assert_eq!((t.requests, t.seeks, t.bytes), (16, 1, 16 * mib));
        }
        let hdd = on(&times, "hdd");
        assert!(close(hdd.secs, 0.01156 + (16 * mib) as f64 / 250e6));
        assert!(close(hdd.mb_per_sec, (16 * mib) as f64 / hdd.secs / 1e6));
        let tape = on(&times, "tape");
        assert!(close(tape.secs, 65.0 + (16 * mib) as f64 / 400e6));
        let ssd = on(&times, "ssd");
        assert!(close(ssd.secs, 16.0 * 50e-6 + (16 * mib) as f64 / 6.7e9));
    }

    #[test]
    fn random_reads_pay_one_seek_each() {
        let ops: Vec<IoOp> = [9u64, 2, 7, 4, 0]
            .iter()
            .map(|&i| read(0, i * 1_000_000, 4096))
            .collect();
        let times = model(&ops, PAGE);
        let hdd = on(&times, "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (5, 5, 5 * 4096));
        assert!(close(hdd.secs, 5.0 * 0.01156 + 5.0 * 4096.0 / 250e6));
        let optical = on(&times, "optical");
        assert!(close(optical.secs, 5.0 * 0.1 + 5.0 * 4096.0 / 54e6));
    }

    #[test]
    fn backwards_and_overlapping_reads_seek() {
        let ops = [read(0, 4096, 4096), read(0, 0, 4096), read(0, 0, 4096)];
        assert_eq!(on(&model(&ops, PAGE), "hdd").seeks, 3);
    }

    #[test]
    fn another_file_breaks_the_run() {
        let ops = [read(0, 0, 100), read(1, 100, 100), read(0, 100, 100)];
        assert_eq!(on(&model(&ops, PAGE), "hdd").seeks, 3);
        let ops = [read(0, 0, 100), read(0, 100, 100), read(1, 0, 100)];
        assert_eq!(on(&model(&ops, PAGE), "hdd").seeks, 2);
    }

    #[test]
    fn adjacent_pages_of_one_map_access_merge() {
        // 5000 bytes from offset 100 touch pages 0 and 1: one request of two pages.
        let ops = [op(IoKind::MapAccess, 0, 100, 5000)];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (1, 1, 2 * PAGE));
        // A 36-byte access inside one page costs the whole page.
        let ops = [op(IoKind::MapAccess, 0, 4100, 36)];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.bytes), (1, PAGE));
    }

    #[test]
    fn map_accesses_are_separate_requests() {
        // Consecutive pages from two accesses: two requests, the second continues.
        let ops = [
            op(IoKind::MapAccess, 0, 0, PAGE),
            op(IoKind::MapAccess, 0, PAGE, PAGE),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (2, 1, 2 * PAGE));
    }

    #[test]
    fn a_page_still_cached_is_not_read_again() {
        // Three reads of one record each: two index entries on one index page, then the
        // record far away. The index page is read once; every record pays a seek.
        let index = 1 << 30;
        let ops: Vec<IoOp> = (0..3u64)
            .flat_map(|i| {
                [
                    op(IoKind::MapAccess, 0, index + 32 * i, 32),
                    op(IoKind::MapAccess, 0, index + 32 * (i + 1), 32),
                    op(IoKind::MapAccess, 0, i * (1 << 20) + 7, 10_000),
                ]
            })
            .collect();
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks), (4, 4));
        assert_eq!(hdd.bytes, PAGE + 3 * 3 * PAGE);
        // Without a cache every access is a request of its own.
        let hdd = model_media(&ops, PAGE, 0, &[MediaCost::hdd()])[0];
        assert_eq!((hdd.requests, hdd.seeks), (9, 9));
        // Only the part of an access not cached is read.
        let ops = [
            op(IoKind::MapAccess, 0, PAGE, PAGE),
            op(IoKind::MapAccess, 0, 0, 3 * PAGE),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (3, 3, 3 * PAGE));
    }

    #[test]
    fn the_least_recently_touched_page_leaves_the_cache_first() {
        let at = |p: u64| op(IoKind::MapAccess, 0, p * 10 * PAGE, 1);
        // Cache of 2: 0 1 0 2 keeps 0 and 2, so 0 is a hit and 1 a miss.
        let ops = [at(0), at(1), at(0), at(2), at(0), at(1)];
        let hdd = model_media(&ops, PAGE, 2, &[MediaCost::hdd()])[0];
        assert_eq!(hdd.requests, 4);
        // An access larger than the cache keeps only its last pages.
        let ops = [
            op(IoKind::MapAccess, 0, 0, 4 * PAGE),
            op(IoKind::MapAccess, 0, 3 * PAGE, 1),
            op(IoKind::MapAccess, 0, 0, 1),
        ];
        let hdd = model_media(&ops, PAGE, 2, &[MediaCost::hdd()])[0];
        assert_eq!((hdd.requests, hdd.bytes), (2, 5 * PAGE));
    }

    #[test]
    fn prefetched_pages_cost_nothing_later() {
        let ops = [
            op(IoKind::Prefetch, 0, 0, 3 * PAGE),
            op(IoKind::MapAccess, 0, 10, 100),
            op(IoKind::MapAccess, 0, PAGE + 5, 2 * PAGE - 5),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (1, 1, 3 * PAGE));
        // Prefetch on another file does not count.
        let ops = [
            op(IoKind::Prefetch, 1, 0, PAGE),
            op(IoKind::MapAccess, 0, 0, 10),
        ];
        assert_eq!(on(&model(&ops, PAGE), "hdd").requests, 2);
    }

    #[test]
    fn partly_prefetched_access_reads_the_rest() {
        // Pages 0-1 and 4 prefetched; an access over pages 1-5 reads 2-3 and 5.
        let ops = [
            op(IoKind::Prefetch, 0, 0, 2 * PAGE),
            op(IoKind::Prefetch, 0, 4 * PAGE, 1),
            op(IoKind::MapAccess, 0, PAGE, 5 * PAGE),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        // Requests in pages: [0,2) [4,5) [2,4) [5,6); none continues the one before.
        assert_eq!(hdd.requests, 4);
        assert_eq!(hdd.seeks, 4);
        assert_eq!(hdd.bytes, 6 * PAGE);
        // A prefetch ending where the access goes on is continued without a seek.
        let ops = [
            op(IoKind::Prefetch, 0, 0, 2 * PAGE),
            op(IoKind::MapAccess, 0, PAGE, 2 * PAGE),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (2, 1, 3 * PAGE));
    }

    #[test]
    fn writes_are_requests_and_empty_ops_are_not() {
        let ops = [
            op(IoKind::Write, 0, 0, 1000),
            op(IoKind::Write, 0, 1000, 1000),
            read(0, 2000, 0),
        ];
        let hdd = *on(&model(&ops, PAGE), "hdd");
        assert_eq!((hdd.requests, hdd.seeks, hdd.bytes), (2, 1, 2000));
    }

    #[test]
    fn empty_trace_and_odd_pages() {
        for t in model(&[], PAGE) {
            assert_eq!((t.secs, t.requests, t.mb_per_sec), (0.0, 0, 0.0));
        }
        let ops = [op(IoKind::MapAccess, 0, u64::MAX - 3, 10)];
        let t = model(&ops, 0);
        assert_eq!(t[0].requests, 1);
        let t = model(&ops, PAGE);
        assert_eq!(t[0].requests, 1);
    }

    #[test]
    fn range_set_merges() {
        let mut s = RangeSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        s.insert(20, 30);
        assert_eq!(s.0, vec![(10, 40)]);
        s.insert(0, 5);
        s.insert(50, 60);
        s.insert(4, 55);
        assert_eq!(s.0, vec![(0, 60)]);
        assert_eq!(s.gaps(0, 70), vec![(60, 70)]);
        let mut s = RangeSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert_eq!(s.gaps(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(s.gaps(12, 18), vec![]);
    }
}
