//! Media profiles, each proven by its I/O pattern: HDD reads each shard front to back in
//! large contiguous reads; SSD random reads touch as few 4 KiB pages as the record allows and
//! batches are prefetched in file order; tape streams are written in whole records only,
//! read back in one pass, and every prefix of a stream gives the archive of its last
//! checkpoint; every profile round-trips through every reader and the verifier.

mod common;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use common::*;
use shardpack::format::block::BLOCK_HEADER_LEN;
use shardpack::format::stream::{EntryHeader, ENTRY_HEADER_LEN, ENTRY_MAGIC};
use shardpack::manifest::Manifest;
use shardpack::stream::{unstream, StreamItem, StreamReader};
use shardpack::{
    verify, Archive, Compression, Defect, EntryKind, ErrorKind, IoKind, IoOp, IoTrace, Limits,
    MediaProfile, Sample, Shard, SourceKind, VerifyMode, VerifyOptions, WriterBuilder,
};

const KIB: usize = 1 << 10;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Deterministic pseudo-random numbers (xorshift64*), so tests need no RNG crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn borrowed(fields: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    fields
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect()
}

fn owned(sample: &Sample) -> OwnedSample {
    (
        sample.key().to_string(),
        sample
            .fields()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect(),
    )
}

/// Compressible text of about `len` bytes.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let line = format!("{{\"id\": {seed}, \"label\": \"{}\"}}\n", seed % 7);
    line.bytes().cycle().take(len).collect()
}

/// Checks that `ops` read every file of `sizes` exactly once, front to back: one file after
/// the other, offsets starting at 0 and contiguous, every read at least 1 MiB except the one
/// that reaches the end of the file (after which at most one empty read may probe the end).
fn assert_front_to_back(ops: &[IoOp], sizes: &[u64], what: &str) {
    assert!(!ops.is_empty(), "{what}: no reads traced");
    let mut files: Vec<u32> = ops.iter().map(|op| op.file).collect();
    assert!(
        files.windows(2).all(|w| w[0] <= w[1]),
        "{what}: files read interleaved or out of order: {files:?}"
    );
    files.dedup();
    let expected: Vec<u32> = (0..sizes.len() as u32).collect();
    assert_eq!(files, expected, "{what}: every shard file read, in order");
    for (file, &size) in sizes.iter().enumerate() {
        let reads: Vec<&IoOp> = ops.iter().filter(|op| op.file == file as u32).collect();
        let mut next = 0u64;
        let mut reached_end = false;
        for (i, op) in reads.iter().enumerate() {
            assert_eq!(op.kind, IoKind::Read, "{what}: file {file} op {i}: {op:?}");
            assert_eq!(
                op.offset, next,
                "{what}: file {file} read {i} is not contiguous with the one before: {reads:?}"
            );
            if reached_end {
                assert_eq!(
                    (op.len, i),
                    (0, reads.len() - 1),
                    "{what}: file {file}: only one empty read may follow the end: {reads:?}"
                );
            } else {
                assert!(
                    op.len > 0,
                    "{what}: file {file}: empty read {i} before the end"
                );
            }
            next += op.len;
            assert!(next <= size, "{what}: file {file} read past its end");
            if next == size {
                reached_end = true;
            } else {
                assert!(
                    op.len >= MIB,
                    "{what}: file {file} read {i} of {} bytes at {} is under 1 MiB and not the last",
                    op.len,
                    op.offset
                );
            }
        }
        assert!(
            reached_end,
            "{what}: file {file} of {size} bytes read only to {next}"
        );
    }
}

/// HDD: `scan` and `verify` read each shard file exactly once, front to back, in contiguous
/// reads of at least 1 MiB (the profile asks for 16 MiB), one file after the other.
#[test]
fn hdd_scan_and_verify_read_each_shard_front_to_back_in_large_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    // ~52 MiB of incompressible 100 KiB samples in shards of 20 MiB: three shards, each more
    // than one 16 MiB read long.
    let samples: Vec<OwnedSample> = (0..520u64)
        .map(|i| {
            (
                format!("hdd/{i:04}"),
                vec![("bin".to_string(), noise(i + 1, 100 * KIB))],
            )
        })
        .collect();
    let builder = WriterBuilder::for_profile(MediaProfile::hdd()).shard_size(20 * MIB);
    let manifest = write_archive(&path, builder, &samples);
    assert!(
        manifest.shards.len() >= 3,
        "{} shards",
        manifest.shards.len()
    );
    assert_eq!(manifest.layout.profile, "hdd");
    let sizes: Vec<u64> = manifest.shards.iter().map(|s| s.size).collect();
    assert!(
        sizes.iter().any(|&s| s > MediaProfile::hdd().read_chunk),
        "some shard needs more than one read: {sizes:?}"
    );

    let trace = IoTrace::new();
    let archive = Archive::options()
        .source(SourceKind::Pread)
        .trace(trace.clone())
        .open(&path)
        .unwrap();
    let mut n = 0;
    for (i, sample) in archive.scan().enumerate() {
        let sample = sample.unwrap();
        assert_eq!(sample.ordinal(), i as u64);
        assert!(owned(&sample) == samples[i], "scan: sample {i} differs");
        n += 1;
    }
    assert_eq!(n, samples.len());
    assert_front_to_back(&trace.ops(), &sizes, "scan");

    let trace2 = IoTrace::new();
    let report = verify(
        &path,
        &VerifyOptions {
            trace: Some(trace2.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.is_ok() && report.complete, "{:?}", report.findings);
    assert_front_to_back(&trace2.ops(), &sizes, "verify");
}

/// Samples of 1 byte to ~10 KiB, one to three fields, with some records of exactly the
/// interesting lengths around one and two pages.
fn ssd_samples() -> Vec<OwnedSample> {
    let mut rng = Rng::new(7);
    let exact = [64u64, 4095, 4096, 4097, 8191, 8192, 8193, 12288];
    (0..3000u64)
        .map(|i| {
            let key = format!("ssd/{i:05}");
            if i % 61 == 0 {
                // One field sized so that the record is exactly `target` bytes.
                let target = exact[(i / 61) as usize % exact.len()];
                let empty = shardpack::format::record::encoded_len(&key, &[("bin", &[])]).unwrap();
                let data = noise(i, (target - empty) as usize);
                return (key, vec![("bin".to_string(), data)]);
            }
            let size = 1 + rng.below(10 * KIB as u64) as usize;
            let fields = match rng.below(4) {
                0 => vec![
                    ("json".to_string(), text(i, size / 3)),
                    ("jpg".to_string(), noise(i, size - size / 3)),
                ],
                1 => vec![
                    ("a".to_string(), noise(i, size / 2)),
                    ("b".to_string(), Vec::new()),
                    ("c".to_string(), noise(i + 1, size - size / 2)),
                ],
                _ => vec![("bin".to_string(), noise(i, size))],
            };
            (key, fields)
        })
        .collect()
}

/// The distinct 4 KiB pages below `limit` that `ops` touch.
fn data_pages(ops: &[IoOp], limit: u64) -> BTreeSet<u64> {
    ops.iter()
        .filter(|op| op.kind == IoKind::MapAccess && op.offset < limit && op.len > 0)
        .flat_map(|op| op.offset / PAGE..=(op.offset + op.len - 1) / PAGE)
        .collect()
}

/// SSD: a random `get` touches one 4 KiB data page for a record of at most 4 KiB and at most
/// one page more than its length needs for a larger one; the index is page-aligned.
#[test]
fn ssd_random_get_touches_the_fewest_data_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let samples = ssd_samples();
    let builder = WriterBuilder::for_profile(MediaProfile::ssd())
        .compression(Compression::None)
        .shard_size(4 << 20);
    let manifest = write_archive(&path, builder, &samples);
    assert!(
        manifest.shards.len() >= 2,
        "{} shards",
        manifest.shards.len()
    );

    let trace = IoTrace::new();
    let archive = Archive::options().trace(trace.clone()).open(&path).unwrap();
    for i in 0..archive.shard_count() {
        let layout = archive.shard(i).unwrap().layout();
        assert_eq!(
            layout.index_offset % PAGE,
            0,
            "shard {i} index not page-aligned"
        );
        assert_eq!(
            layout.data_offset % PAGE,
            0,
            "shard {i} data not page-aligned"
        );
    }

    // 2,500 random gets, then every record of an exact length around a page boundary.
    let mut rng = Rng::new(11);
    let n = samples.len() as u64;
    let random: Vec<u64> = (0..2500).map(|_| rng.below(n)).collect();
    let (mut small, mut large) = (0, 0);
    for ordinal in random.into_iter().chain((0..n).step_by(61)) {
        trace.clear();
        let sample = archive.get(ordinal).unwrap();
        let ops = trace.ops();
        assert!(
            sample.is_zero_copy(),
            "ordinal {ordinal}: a stored record is borrowed from the map"
        );
        assert!(
            owned(&sample) == samples[ordinal as usize],
            "ordinal {ordinal} differs"
        );
        let len = sample.record_bytes().len() as u64;
        let (shard_index, local) = archive.locate(ordinal).unwrap();
        let shard = archive.shard(shard_index).unwrap();
        let index_offset = shard.layout().index_offset;
        for op in &ops {
            assert_eq!(
                (op.kind, op.file),
                (IoKind::MapAccess, shard_index as u32),
                "ordinal {ordinal}: {op:?}"
            );
            assert!(
                op.offset >= index_offset || op.offset + op.len <= index_offset,
                "ordinal {ordinal}: an access straddles the index start: {op:?}"
            );
        }
        // Every data access lies within the record itself: no block header, no neighbour.
        let (start, end) = shard.record_range(local).unwrap();
        assert_eq!(end - start, len);
        for op in ops.iter().filter(|op| op.offset < index_offset) {
            assert!(
                start <= op.offset && op.offset + op.len <= end,
                "ordinal {ordinal}: data access {op:?} outside the record {start}..{end}"
            );
        }
        let pages = data_pages(&ops, index_offset).len() as u64;
        if len <= PAGE {
            small += 1;
            assert_eq!(
                pages, 1,
                "ordinal {ordinal}: a record of {len} bytes at {start} touches {pages} pages"
            );
        } else {
            large += 1;
            let most = len.div_ceil(PAGE) + 1;
            assert!(
                (1..=most).contains(&pages),
                "ordinal {ordinal}: a record of {len} bytes at {start} touches {pages} pages (at most {most})"
            );
        }
    }
    assert!(
        small > 500 && large > 500,
        "{small} small and {large} large gets"
    );
}

/// SSD batches: `get_many` returns samples in the order asked, equal to single gets; it
/// prefetches merged ranges in file order before reading any record, and every record read
/// lies in a prefetched range.
#[test]
fn ssd_get_many_prefetches_merged_ranges_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive");
    let samples = ssd_samples();
    let builder = WriterBuilder::for_profile(MediaProfile::ssd())
        .compression(Compression::None)
        .shard_size(4 << 20);
    write_archive(&path, builder, &samples);
    let n = samples.len() as u64;
    let trace = IoTrace::new();
    let archive = Archive::options().trace(trace.clone()).open(&path).unwrap();
    let index_offsets: Vec<u64> = (0..archive.shard_count())
        .map(|i| archive.shard(i).unwrap().layout().index_offset)
        .collect();
    let is_data =
        |op: &IoOp| op.kind == IoKind::MapAccess && op.offset < index_offsets[op.file as usize];

    // A run of 120 adjacent samples in shuffled order, 40 scattered ones, a duplicate and an
    // ordinal out of range.
    let mut rng = Rng::new(5);
    let mut run: Vec<u64> = (1000..1120).collect();
    for i in (1..run.len()).rev() {
        run.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut asked = run.clone();
    for _ in 0..40 {
        let at = rng.below(asked.len() as u64) as usize;
        asked.insert(at, rng.below(n));
    }
    asked.insert(17, asked[3]);
    asked.insert(60, n + 5);

    for (what, asked) in [("mixed", &asked), ("adjacent run", &run)] {
        trace.clear();
        let got = archive.get_many(asked);
        let ops = trace.ops();
        assert_eq!(got.len(), asked.len(), "{what}");
        for (i, (&ordinal, result)) in asked.iter().zip(&got).enumerate() {
            if ordinal >= n {
                let Err(err) = result else {
                    panic!("{what}: ordinal {ordinal} out of range was read");
                };
                assert!(
                    matches!(err.kind(), ErrorKind::OrdinalOutOfRange { .. }),
                    "{err}"
                );
                continue;
            }
            let sample = result.as_ref().unwrap();
            assert_eq!(sample.ordinal(), ordinal, "{what}: result {i} out of order");
            assert!(
                owned(sample) == samples[ordinal as usize],
                "{what}: result {i}"
            );
            // Traced ops were taken above; this single get only adds to the trace.
            let single = archive.get(ordinal).unwrap();
            assert_eq!(sample.record_bytes(), single.record_bytes(), "{what}: {i}");
        }

        let prefetches: Vec<&IoOp> = ops
            .iter()
            .filter(|op| op.kind == IoKind::Prefetch)
            .collect();
        let reads: Vec<&IoOp> = ops.iter().filter(|op| is_data(op)).collect();
        assert!(!prefetches.is_empty(), "{what}: no prefetch");
        let last_prefetch = ops.iter().rposition(|op| op.kind == IoKind::Prefetch);
        let first_read = ops.iter().position(is_data);
        assert!(
            last_prefetch < first_read,
            "{what}: a record was read before the last prefetch"
        );
        assert!(
            prefetches
                .windows(2)
                .all(|w| (w[0].file, w[0].offset + w[0].len) < (w[1].file, w[1].offset + 1)),
            "{what}: prefetches not ascending and disjoint per file: {prefetches:?}"
        );
        assert!(
            reads
                .windows(2)
                .all(|w| (w[0].file, w[0].offset) <= (w[1].file, w[1].offset)),
            "{what}: records not read in file order"
        );
        for op in &reads {
            assert!(
                prefetches.iter().any(|p| p.file == op.file
                    && p.offset <= op.offset
                    && op.offset + op.len <= p.offset + p.len),
                "{what}: record read {op:?} was not prefetched: {prefetches:?}"
            );
        }
        let distinct: BTreeSet<u64> = asked.iter().copied().filter(|&o| o < n).collect();
        assert!(
            prefetches.len() < distinct.len(),
            "{what}: {} prefetches for {} samples",
            prefetches.len(),
            distinct.len()
        );
        if what == "adjacent run" {
            let shards: BTreeSet<usize> =
                run.iter().map(|&o| archive.locate(o).unwrap().0).collect();
            assert_eq!(
                prefetches.len(),
                shards.len(),
                "adjacent samples: one prefetch per shard: {prefetches:?}"
            );
        }
    }
}

/// What a tape drive sees: every `write` call and every `flush`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TapeEvent {
    Write(usize),
    Flush,
}

#[derive(Default)]
struct TapeLog {
    bytes: Vec<u8>,
    events: Vec<TapeEvent>,
}

/// A sink that cannot seek (it implements `Write` only) and records every call. It accepts
/// every `write` whole, so one `write` call is one record as `RecordStream` issued it.
#[derive(Clone, Default)]
struct TapeSink(Arc<Mutex<TapeLog>>);

impl Write for TapeSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut log = self.0.lock().unwrap();
        log.events.push(TapeEvent::Write(buf.len()));
        log.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap().events.push(TapeEvent::Flush);
        Ok(())
    }
}

const TAPE_RECORD: usize = 64 * KIB;

fn tape_builder() -> WriterBuilder {
    WriterBuilder::for_profile(MediaProfile::tape())
        .stream_record(TAPE_RECORD as u32)
        .align(TAPE_RECORD as u32)
        .block_size(48 * KIB as u64)
        .shard_size(400 * KIB as u64)
}

/// Mixed compressible and incompressible samples of 100 bytes to 6 KiB.
fn tape_samples() -> Vec<OwnedSample> {
    let mut rng = Rng::new(3);
    (0..160u64)
        .map(|i| {
            let size = 100 + rng.below(6 * KIB as u64 - 100) as usize;
            let data = if i % 3 == 0 {
                text(i, size)
            } else {
                noise(i, size)
            };
            (format!("tape/{i:04}"), vec![("x".to_string(), data)])
        })
        .collect()
}

/// Writes `samples` as a stream; returns the stream's bytes, the sink's events and the
/// final manifest.
fn write_stream(
    builder: WriterBuilder,
    samples: &[OwnedSample],
) -> (Vec<u8>, Vec<TapeEvent>, Manifest) {
    let sink = TapeSink::default();
    let mut w = builder
        .create_stream(Box::new(sink.clone()), "test")
        .unwrap();
    for (key, fields) in samples {
        w.append(key, &borrowed(fields)).unwrap();
    }
    let manifest = w.finish().unwrap();
    let log = std::mem::take(&mut *sink.0.lock().unwrap());
    (log.bytes, log.events, manifest)
}

/// A manifest entry found in a stream: where it starts and ends, and its header.
struct Entry {
    start: usize,
    end: usize,
    header: EntryHeader,
}

/// Finds the manifest entries of a stream by their magic at record boundaries.
fn stream_entries(stream: &[u8], record: usize) -> Vec<Entry> {
    (0..stream.len())
        .step_by(record)
        .filter(|&at| stream[at..].starts_with(&ENTRY_MAGIC))
        .map(|start| {
            let bytes: [u8; ENTRY_HEADER_LEN] =
                stream[start..start + ENTRY_HEADER_LEN].try_into().unwrap();
            let header = EntryHeader::decode(&bytes).unwrap();
            assert_eq!(header.self_offset, start as u64);
            let end = start + record + (header.manifest_len as usize).div_ceil(record) * record;
            Entry { start, end, header }
        })
        .collect()
}

/// Everything a stream reader yields, or the error that stopped it, with no panic.
fn read_stream(stream: &[u8]) -> (Vec<StreamItem>, Option<shardpack::Error>) {
    let run = || {
        let reader = match StreamReader::new(stream, "test", Limits::default()) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut items = Vec::new();
        for item in reader.take(1_000_000) {
            match item {
                Ok(item) => items.push(item),
                Err(e) => return (items, Some(e)),
            }
        }
        (items, None)
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        panic!(
            "the stream reader panicked on {} bytes starting {:02x?}",
            stream.len(),
            &stream[..stream.len().min(16)]
        )
    })
}

/// Tape: the writer issues only whole records through a sink that cannot seek; the stream
/// reads back in one pass (samples, shard ends, checkpoints, final manifest); and every
/// prefix of it unstreams to the archive of its last complete checkpoint, or fails when it
/// has none, never panicking.
#[test]
fn tape_stream_whole_records_one_pass_and_every_prefix_recovers_its_last_checkpoint() {
    let samples = tape_samples();
    let (stream, events, manifest) = write_stream(tape_builder(), &samples);
    assert!(
        manifest.shards.len() >= 4,
        "{} shards",
        manifest.shards.len()
    );
    assert_eq!(manifest.layout.profile, "tape");

    // Whole records only, flushed at the end.
    let writes: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TapeEvent::Write(n) => Some(*n),
            TapeEvent::Flush => None,
        })
        .collect();
    assert!(
        writes.iter().all(|&n| n == TAPE_RECORD),
        "write sizes other than {TAPE_RECORD}: {:?}",
        writes
            .iter()
            .filter(|&&n| n != TAPE_RECORD)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(writes.iter().sum::<usize>(), stream.len());
    assert_eq!(stream.len() % TAPE_RECORD, 0);
    assert_eq!(
        events.last(),
        Some(&TapeEvent::Flush),
        "the stream ends flushed"
    );

    // Its layout: a start entry, a checkpoint after every shard, the final manifest last.
    let entries = stream_entries(&stream, TAPE_RECORD);
    let kinds: Vec<EntryKind> = entries.iter().map(|e| e.header.kind).collect();
    let mut expected = vec![EntryKind::Start];
    expected.extend(std::iter::repeat_n(
        EntryKind::Checkpoint,
        manifest.shards.len(),
    ));
    expected.push(EntryKind::Final);
    assert_eq!(kinds, expected);
    assert_eq!(
        (entries[0].start, entries.last().unwrap().end),
        (0, stream.len())
    );

    // One pass: samples, then each shard's end and its checkpoint; the final manifest last.
    let (items, err) = read_stream(&stream);
    assert!(err.is_none(), "{err:?}");
    let mut read: Vec<OwnedSample> = Vec::new();
    let mut shard_ends = 0usize;
    let mut manifests: Vec<Manifest> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            StreamItem::Sample(s) => {
                assert_eq!(s.ordinal(), read.len() as u64);
                read.push(owned(s));
            }
            StreamItem::ShardEnd {
                number,
                size,
                blake3,
                ..
            } => {
                let info = &manifest.shards[shard_ends];
                assert_eq!(*number as usize, shard_ends);
                assert_eq!((*size, blake3), (info.size, &info.blake3));
                assert_eq!(read.len() as u64, info.first_ordinal + info.samples);
                shard_ends += 1;
            }
            StreamItem::Manifest { kind, manifest: m } => {
                let last = i == items.len() - 1;
                let want = if last {
                    EntryKind::Final
                } else {
                    EntryKind::Checkpoint
                };
                assert_eq!(*kind, want, "item {i}");
                assert_eq!(m.shards, manifest.shards[..shard_ends]);
                assert_eq!(m.totals.samples, read.len() as u64);
                manifests.push((**m).clone());
            }
            other => panic!("unexpected item {other:?}"),
        }
    }
    assert!(matches!(
        items.last(),
        Some(StreamItem::Manifest {
            kind: EntryKind::Final,
            ..
        })
    ));
    assert_eq!(manifests.last(), Some(&manifest));
    assert_eq!(shard_ends, manifest.shards.len());
    assert!(read == samples, "stream samples differ");

    // Every prefix: record boundaries and their neighbours, entry edges, random cuts.
    let len = stream.len();
    let mut cuts: BTreeSet<usize> = [0, 1, 64, 127, 128, 129, len - 1, len].into();
    for at in (0..=len).step_by(TAPE_RECORD) {
        cuts.extend([at, at + 1, at.saturating_sub(1)]);
    }
    for e in &entries {
        cuts.extend([e.start + 200, e.end - 1, e.end, e.end + 1]);
    }
    let mut rng = Rng::new(17);
    for _ in 0..40 {
        cuts.insert(rng.below(len as u64 + 1) as usize);
    }
    cuts.retain(|&c| c <= len);
    assert!(cuts.len() >= 30);

    let tmp = tempfile::tempdir().unwrap();
    for &cut in &cuts {
        let out = tmp.path().join(format!("cut{cut}"));
        let prefix = &stream[..cut];
        let result = catch_unwind(AssertUnwindSafe(|| {
            unstream(prefix, "test", &out, Limits::default())
        }))
        .unwrap_or_else(|_| panic!("unstream panicked on a prefix of {cut} bytes"));
        // The last manifest entry (checkpoint or final) wholly inside the prefix.
        let last = entries
            .iter()
            .rposition(|e| e.header.kind != EntryKind::Start && e.end <= cut);
        let Some(entry) = last else {
            let err = result.expect_err(&format!("prefix of {cut} bytes has no checkpoint"));
            assert!(err.is_corruption(), "prefix {cut}: {err}");
            continue;
        };
        let want = &manifests[entry - 1];
        let report = result.unwrap_or_else(|e| panic!("prefix of {cut} bytes: {e}"));
        assert_eq!(report.complete, cut == len, "prefix {cut}");
        assert_eq!(report.damage.is_some(), cut < len, "prefix {cut}");
        assert_eq!(report.shards, want.shards.len() as u64, "prefix {cut}");
        assert_eq!(report.samples, want.totals.samples, "prefix {cut}");
        // Shard k lies between entry k and entry k + 1; it is complete when the prefix
        // reaches entry k + 1.
        let complete_shards = (0..manifest.shards.len())
            .filter(|&k| entries[k + 1].start <= cut)
            .count();
        assert_eq!(
            report.dropped_shards,
            (complete_shards - want.shards.len()) as u64,
            "prefix {cut}"
        );
        let archive = Archive::open(&out).unwrap();
        assert_eq!(archive.manifest(), want, "prefix {cut}");
        assert!(
            read_all(&archive) == samples[..want.totals.samples as usize],
            "prefix {cut}: samples differ"
        );
        let report = verify(&out, &VerifyOptions::default()).unwrap();
        assert!(
            report.is_ok() && report.complete,
            "prefix {cut}: {:?}",
            report.findings
        );
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut listed: Vec<String> = want.shards.iter().map(|s| s.file.clone()).collect();
        listed.push("manifest.json".into());
        listed.sort();
        assert_eq!(names, listed, "prefix {cut}: files left in the folder");
    }
}

fn stream_error(builder: WriterBuilder) -> (shardpack::Error, Vec<TapeEvent>) {
    let sink = TapeSink::default();
    let err = match builder.create_stream(Box::new(sink.clone()), "test") {
        Ok(_) => panic!("create_stream accepted bad options"),
        Err(e) => e,
    };
    let events = std::mem::take(&mut sink.0.lock().unwrap().events);
    (err, events)
}

/// Bad input: a stream record size below the alignment, not a power of two or below 64 bytes
/// is refused before anything is written.
#[test]
fn tape_stream_record_size_must_be_a_power_of_two_at_least_the_alignment() {
    // Record sizes: below the alignment, not a power of two, below 64 bytes.
    for (what, builder) in [
        (
            "below the alignment",
            WriterBuilder::for_profile(MediaProfile::tape()).stream_record(64 * KIB as u32),
        ),
        (
            "not a power of two",
            WriterBuilder::new().stream_record(100_000),
        ),
        (
            "below 64 bytes",
            WriterBuilder::new().align(64).stream_record(32),
        ),
    ] {
        let (err, events) = stream_error(builder);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput { .. }),
            "{what}: {err:?}"
        );
        assert!(events.is_empty(), "{what}: wrote {events:?}");
    }
    // A record as large as the alignment is fine.
    let sink = TapeSink::default();
    let w = WriterBuilder::new()
        .stream_record(4096)
        .create_stream(Box::new(sink.clone()), "test")
        .unwrap();
    w.finish().unwrap();
    let events = std::mem::take(&mut sink.0.lock().unwrap().events);
    assert!(events
        .iter()
        .all(|e| matches!(e, TapeEvent::Write(4096) | TapeEvent::Flush)));
}

/// Bad input: a stream torn mid-record, in each kind of item, yields every sample before the
/// tear and then an error that says the stream ends mid-record.
#[test]
fn tape_stream_torn_mid_record_reports_it_after_every_sample_before() {
    let samples = tape_samples();
    let (stream, _, manifest) = write_stream(tape_builder(), &samples);
    let entries = stream_entries(&stream, TAPE_RECORD);
    let align = TAPE_RECORD as u64;
    let k = 1; // shard 1: between entries 1 and 2
    let (shard_start, shard_end) = (entries[k].end, entries[k + 1].start);
    let shard = Shard::from_vec(
        "shard",
        stream[shard_start..shard_end].to_vec(),
        Limits::default(),
    )
    .unwrap();
    assert!(shard.layout().block_count >= 3);
    let before_shard = manifest.shards[k].first_ordinal;
    // Stream offset where block `b`'s padded extent ends, and the samples up to it.
    let block_end = |b: u32| {
        let e = shard.block_entry(b).unwrap();
        let end = (e.offset + BLOCK_HEADER_LEN as u64 + e.stored_len).div_ceil(align) * align;
        let samples = before_shard + u64::from(e.first_record + e.record_count);
        (shard_start + end as usize, samples)
    };
    let (block1_end, through_block1) = block_end(1);
    let index_start = shard_start + shard.layout().index_offset as usize;
    let shard_samples = before_shard + manifest.shards[k].samples;
    let final_entry = entries.last().unwrap();
    let torn = [
        ("the start entry", 1000, 0),
        ("a shard header", shard_start + 1000, before_shard),
        ("a block", block1_end + 5000, through_block1),
        ("a block header", block1_end + 30, through_block1),
        ("a shard index", index_start + 100, shard_samples),
        (
            "a checkpoint header",
            entries[k + 1].start + 1000,
            shard_samples,
        ),
        (
            "a checkpoint manifest",
            entries[k + 1].start + TAPE_RECORD + 10,
            shard_samples,
        ),
        (
            "the final manifest",
            final_entry.start + TAPE_RECORD + 10,
            samples.len() as u64,
        ),
    ];
    let mut failures = Vec::new();
    for (what, cut, before) in torn {
        assert_ne!(cut % TAPE_RECORD, 0, "{what}: cut on a record boundary");
        let (items, err) = read_stream(&stream[..cut]);
        let got: Vec<OwnedSample> = items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Sample(s) => Some(owned(s)),
                _ => None,
            })
            .collect();
        assert!(
            got == samples[..got.len()],
            "{what}: samples read before the tear differ"
        );
        let Some(err) = err else {
            panic!("{what}: a stream cut at {cut} read without error");
        };
        let mid_record = matches!(
            err.defect(),
            Some(shardpack::Defect::StreamEnds {
                mid_record: true,
                ..
            })
        );
        if got.len() as u64 != before || !mid_record {
            failures.push(format!(
                "torn in {what} at {cut}: {} samples before the error (expected {before}); error: {err}",
                got.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Bad input: random bytes, a valid start record followed by random bytes, and a valid stream
/// with any one record replaced by random bytes give an error, never a panic, and random
/// bytes never unstream.
#[test]
fn tape_garbage_streams_give_an_error_never_a_panic() {
    let (stream, _, _) = write_stream(tape_builder(), &tape_samples());
    // Garbage: random bytes, and a valid start entry followed by random bytes.
    let start_record = &stream[..TAPE_RECORD];
    for seed in 0..24u64 {
        let len = [0, 1, 64, 127, 128, 129, 4096, 70_000][seed as usize % 8] + seed as usize;
        let mut garbage = noise(seed + 100, len);
        if seed % 2 == 1 {
            let mut prefixed = start_record.to_vec();
            prefixed.append(&mut garbage);
            garbage = prefixed;
        }
        let (_, err) = read_stream(&garbage);
        assert!(err.is_some(), "garbage {seed} read without error");
        let out = tempfile::tempdir().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            unstream(&garbage[..], "garbage", out.path(), Limits::default())
        }))
        .unwrap_or_else(|_| panic!("unstream panicked on garbage {seed}"));
        assert!(result.is_err(), "garbage {seed} unstreamed");
    }
    // A valid stream with one whole record replaced by random bytes, for every record.
    for (r, at) in (0..stream.len()).step_by(TAPE_RECORD).enumerate() {
        let mut damaged = stream.clone();
        damaged[at..at + TAPE_RECORD].copy_from_slice(&noise(r as u64 + 1000, TAPE_RECORD));
        let (_, err) = read_stream(&damaged);
        assert!(
            err.is_some(),
            "record {r} replaced by noise read without error"
        );
    }
}

/// Every profile: a small mixed archive reads back through `iter` and `scan`, verifies clean
/// in every mode, and records the profile's name, code and alignment.
#[test]
fn every_profile_round_trips() {
    let mut samples = small_samples();
    for i in 0..40u64 {
        let size = 200 + (i as usize * 337) % 5000;
        samples.push((
            format!("mixed/{i:03}"),
            vec![
                ("txt".to_string(), text(i, size)),
                ("bin".to_string(), noise(i, size / 2)),
            ],
        ));
    }
    for profile in MediaProfile::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(profile.name);
        // Room for the header, two blocks, the index and the trailer, plus ~96 KiB of data:
        // a few shards of each profile.
        let shard_size = 4 * u64::from(profile.align) + 32 * KIB as u64;
        let builder = WriterBuilder::for_profile(profile).shard_size(shard_size);
        let manifest = write_archive(&path, builder, &samples);
        let name = profile.name;
        assert!(
            manifest.shards.len() >= 2,
            "{name}: {} shards",
            manifest.shards.len()
        );

        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.manifest().layout.profile, name);
        assert_eq!(archive.manifest().layout.align, profile.align, "{name}");
        for (i, info) in archive.manifest().shards.iter().enumerate() {
            let shard = archive.shard(i).unwrap();
            assert_eq!(shard.header().profile, profile.code, "{name} shard {i}");
            assert_eq!(info.size % u64::from(profile.align), 0, "{name} shard {i}");
            assert_eq!(
                shard.layout().index_offset % u64::from(profile.align),
                0,
                "{name} shard {i}"
            );
        }
        assert!(read_all(&archive) == samples, "{name}: iter differs");
        let scanned: Vec<OwnedSample> = archive.scan().map(|s| owned(&s.unwrap())).collect();
        assert!(scanned == samples, "{name}: scan differs");
        for mode in [VerifyMode::Quick, VerifyMode::Full, VerifyMode::Deep] {
            let report = verify(
                &path,
                &VerifyOptions {
                    mode,
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(
                report.is_ok() && report.complete,
                "{name} {mode:?}: {:?}",
                report.findings
            );
        }
    }
}

/// Every byte of an entry's first record is covered: the header by its CRC, the rest must
/// be zero, so a flipped byte anywhere in a start, checkpoint or final entry is an error.
#[test]
fn tape_entry_records_are_checked_to_their_last_byte() {
    let (stream, _, _) = write_stream(tape_builder(), &tape_samples()[..20]);
    let record = 64 * 1024;
    for entry in stream_entries(&stream, record) {
        for offset in [0usize, 127, 128, 129, 1000, record - 1] {
            let mut damaged = stream.clone();
            damaged[entry.start + offset] ^= 0x40;
            let (_, err) = read_stream(&damaged);
            assert!(
                err.is_some(),
                "flip at entry {} + {offset} not detected",
                entry.start
            );
        }
    }
}

// ---- Stream reader checks of §16.1, §16.2 and §16.4 on hand-patched streams. ----

/// A small stream: the `tiny()` options in 4 KiB records, a checkpoint after each shard.
fn small_stream() -> Vec<u8> {
    let builder = tiny(Compression::None).stream_record(4096);
    write_stream(builder, &small_samples()).0
}

/// Recomputes the CRC-32 of a 128-byte entry or shard header at `at` (both at 124).
fn fix_header_crc(stream: &mut [u8], at: usize) {
    let crc = crc32fast::hash(&stream[at..at + 124]);
    stream[at + 124..at + 128].copy_from_slice(&crc.to_le_bytes());
}

/// The stream's error: Corrupt, at `offset` (in the stream, or in `shard` when given), an
/// invalid or mismatched field whose name contains `what`.
fn assert_stream_error(stream: &[u8], offset: u64, shard: Option<u32>, what: &str) {
    let (_, err) = read_stream(stream);
    let err = err.unwrap_or_else(|| panic!("{what}: read without error"));
    match err.kind() {
        ErrorKind::Corrupt {
            location,
            defect: Defect::Invalid { field, .. } | Defect::Mismatch { field, .. },
        } => {
            assert_eq!(
                (location.offset, location.shard),
                (offset, shard),
                "{what}: {err}"
            );
            assert!(field.contains(what), "{what}: {err}");
        }
        _ => panic!("{what}: {err:?}"),
    }
}

/// Puts `value` at `at + field` of the stream and reseals the header at `at`.
fn patch(stream: &[u8], at: usize, field: usize, value: &[u8]) -> Vec<u8> {
    let mut s = stream.to_vec();
    s[at + field..at + field + value.len()].copy_from_slice(value);
    fix_header_crc(&mut s, at);
    s
}

/// §16.1: a record size that is a power of two but outside 4 KiB ..= 8 MiB is rejected at
/// entry header offset 16, and so is a shard whose `align` is greater than `R`, at its
/// header offset 64.
#[test]
fn stream_record_size_and_shard_alignment_are_checked() {
    let stream = small_stream();
    for r in [64u32, 2048, 16 << 20, 4097] {
        let bad = patch(&stream, 0, 16, &r.to_le_bytes());
        assert_stream_error(&bad, 16, None, "record size");
    }
    // Shard 0 (at 4096) claims an alignment of 8 KiB in 4 KiB records.
    let bad = patch(&stream, 4096, 64, &8192u32.to_le_bytes());
    assert_stream_error(&bad, 64, Some(0), "align");
    // Its first ordinal and archive id must be the stream's.
    let bad = patch(&stream, 4096, 40, &1u64.to_le_bytes());
    assert_stream_error(&bad, 40, Some(0), "first ordinal");
    let bad = patch(&stream, 4096, 16, &[0x5A; 16]);
    assert_stream_error(&bad, 16, Some(0), "archive id");
}

/// §16.4 step 3: any byte after the final entry's last record is an error, reported where
/// the stream should have ended.
#[test]
fn stream_bytes_after_the_final_entry_are_an_error() {
    let stream = small_stream();
    let (_, err) = read_stream(&stream);
    assert!(err.is_none(), "{err:?}");
    for extra in [1usize, 7, 8, 4096] {
        let mut bad = stream.clone();
        bad.extend(std::iter::repeat_n(0u8, extra));
        assert_stream_error(&bad, stream.len() as u64, None, "end");
    }
}

/// §16.2, §16.4 steps 2 and 3: the start entry's `self_offset`, `generation`, `previous`,
/// `manifest_len` and `digest`, and each later entry's `generation`, `previous`,
/// `self_offset` and `archive_id`, each reported at its field.
#[test]
fn stream_entry_fields_are_checked() {
    let stream = small_stream();
    let entries = stream_entries(&stream, 4096);
    let starts: Vec<usize> = entries.iter().map(|e| e.start).collect();
    assert_eq!(starts.len(), 4, "start, two checkpoints, final: {starts:?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.header.generation, i as u64);
        let previous = if i == 0 {
            u64::MAX
        } else {
            starts[i - 1] as u64
        };
        assert_eq!(e.header.previous, previous);
    }
    let start_cases: [(usize, Vec<u8>, &str); 5] = [
        (24, 1u64.to_le_bytes().to_vec(), "generation"),
        (32, 5u64.to_le_bytes().to_vec(), "manifest_len"),
        (40, 4096u64.to_le_bytes().to_vec(), "self_offset"),
        (48, 0u64.to_le_bytes().to_vec(), "previous"),
        (72, vec![0; 32], "digest"),
    ];
    for (field, value, what) in start_cases {
        let bad = patch(&stream, 0, field, &value);
        assert_stream_error(&bad, field as u64, None, what);
    }
    for (i, &at) in starts.iter().enumerate().skip(1) {
        let cases: [(usize, Vec<u8>, &str); 5] = [
            (24, (i as u64 + 1).to_le_bytes().to_vec(), "generation"),
            (24, 0u64.to_le_bytes().to_vec(), "generation"),
            (48, (at as u64).to_le_bytes().to_vec(), "previous"),
            (40, 0u64.to_le_bytes().to_vec(), "self_offset"),
            (56, vec![0x5A; 16], "archive_id"),
        ];
        for (field, value, what) in cases {
            let bad = patch(&stream, at, field, &value);
            assert_stream_error(&bad, (at + field) as u64, None, what);
        }
        // A second start entry.
        let bad = patch(&stream, at, 20, &[0]);
        assert_stream_error(&bad, (at + 20) as u64, None, "kind");
    }
}
