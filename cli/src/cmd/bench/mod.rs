//! `shardpack bench`: measure reading an archive here, and model the same I/O on each medium.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod model;

use anyhow::{bail, Context, Result};
use shardpack::{Archive, IoKind, IoTrace, Sample, SourceKind};

use model::{MediaCost, ModelledTime};

/// Page size the model rounds map accesses to (Linux x86-64 and most arm64 kernels).
const PAGE_BYTES: u64 = 4096;
/// Random reads made when --samples is not given (fewer if the archive is smaller).
const DEFAULT_RANDOM_SAMPLES: u64 = 10_000;
/// Most random reads in one run: their ordinals and latencies are held in memory.
const MAX_RANDOM_SAMPLES: u64 = 100_000_000;
/// Seed of the ordinal generator, fixed so that runs read the same samples.
const SEED: u64 = 0x5348_4152_4450_4143; // "SHARDPAC"
/// Decimal megabyte, as in every MB/s printed.
const MB: f64 = 1e6;

/// Measure reading an archive on this machine (MB/s, samples/s, p50/p99 latency per sample,
/// every byte of every field touched and every checksum checked), and model the traced I/O
/// on a hard disk, an SSD, LTO-9 tape and a Blu-ray disc with a simple cost model (seek,
/// latency and bandwidth figures published for each medium; a model, not a measurement).
/// An archive given by URL is measured only.
///
/// The files are read through the page cache as it is: right after packing they are
/// probably cached, and the measured numbers then show CPU cost, not the device.
/// A damaged sample stops the run with exit status 1.
#[derive(clap::Args)]
pub struct Args {
    /// The archive folder, or its URL (http://, https://, s3://).
    archive: PathBuf,
    /// sequential: read every shard front to back in large reads (`Archive::scan`);
    /// random: read samples by ordinal in a fixed pseudo-random order (`Archive::get`).
    #[arg(long, value_enum)]
    pattern: Pattern,
    /// Samples to read. Random: default 10000, at most the archive's sample count unless
    /// given (then larger counts repeat samples). Sequential: the first N (default all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    samples: Option<u64>,
    /// Print one JSON object with every number.
    #[arg(long)]
    json: bool,
    /// Measure only: read without recording the I/O (recording costs time per read), and
    /// skip the modelled media times.
    #[arg(long)]
    no_model: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pattern {
    Sequential,
    Random,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Sequential => "sequential",
            Pattern::Random => "random",
        }
    }
}

/// What one run measured.
struct Measured {
    samples: u64,
    distinct: u64,
    payload_bytes: u64,
    wall: Duration,
    latencies: Vec<Duration>,
}

pub fn run(args: Args) -> Result<u8> {
    super::refuse_stream(&args.archive, "bench")?;
    let trace = IoTrace::new();
    let mut options = super::archive_options();
    // The model is of a drive serving a local archive's reads. Over a URL the reads a
    // reader makes are served by ranged GETs, read-ahead and caches, so a trace of them is
    // no drive's request stream: a URL is measured only.
    let model = !args.no_model && !shardpack::is_remote(&args.archive.to_string_lossy());
    if model {
        options = options.trace(trace.clone());
        if let Pattern::Sequential = args.pattern {
            // The model charges a sequential pass by its reads: make them the profile's
            // large ascending reads, as a drive would see them.
            options = options.source(SourceKind::Pread);
        }
    }
    let archive = options
        .open(&args.archive)
        .with_context(|| format!("cannot open archive {}", args.archive.display()))?;
    let measured = match args.pattern {
        Pattern::Sequential => sequential(&archive, args.samples)?,
        Pattern::Random => random(&archive, args.samples)?,
    };
    let ops = trace.ops();
    let file_bytes: u64 = ops
        .iter()
        .filter(|op| op.kind == IoKind::Read)
        .map(|op| op.len)
        .sum();
    let modelled = if !model {
        Vec::new()
    } else {
        model::model(&ops, PAGE_BYTES)
    };
    let report = Report {
        args: &args,
        archive: &archive,
        measured,
        ops: ops.len(),
        file_bytes,
        modelled,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print();
    }
    Ok(crate::EXIT_OK)
}

impl Measured {
    /// Counts one sample read since `started`, touching every byte of it.
    fn add(&mut self, sample: &Sample, started: Instant) {
        let (_, bytes) = touch(sample);
        self.latencies.push(started.elapsed());
        self.payload_bytes += bytes;
        self.samples += 1;
    }
}

/// Adds up every byte of every field, so that reading them cannot be optimised away.
fn touch(sample: &Sample) -> (u64, u64) {
    let mut sum = sample.key().len() as u64;
    let mut bytes = 0;
    for (_, data) in sample.fields() {
        bytes += data.len() as u64;
        // Eight bytes at a time, as a consumer's vectorised code would read them.
        let words = data.chunks_exact(8);
        let tail = words.remainder();
        sum = words.fold(sum, |acc, w| {
            acc.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or_default()))
        });
        sum = tail
            .iter()
            .fold(sum, |acc, &b| acc.wrapping_add(u64::from(b)));
    }
    (std::hint::black_box(sum), bytes)
}

/// Reads the archive front to back with [`Archive::scan`].
fn sequential(archive: &Archive, limit: Option<u64>) -> Result<Measured> {
    let limit = limit.unwrap_or(u64::MAX);
    let mut m = Measured {
        samples: 0,
        distinct: 0,
        payload_bytes: 0,
        wall: Duration::ZERO,
        latencies: Vec::new(),
    };
    let start = Instant::now();
    let mut scan = archive.scan();
    while m.samples < limit {
        let t = Instant::now();
        let Some(sample) = scan.next() else { break };
        let sample = sample.with_context(|| {
            format!(
                "cannot read sample {} of {}",
                m.samples,
                archive.path().display()
            )
        })?;
        m.add(&sample, t);
    }
    m.wall = start.elapsed();
    m.distinct = m.samples;
    Ok(m)
}

/// Reads `count` samples by ordinal in a fixed pseudo-random order with [`Archive::get`].
fn random(archive: &Archive, count: Option<u64>) -> Result<Measured> {
    let len = archive.len();
    if len == 0 {
        bail!(
            "{} has no samples to read at random",
            archive.path().display()
        );
    }
    let count = count.unwrap_or(DEFAULT_RANDOM_SAMPLES.min(len));
    if count > MAX_RANDOM_SAMPLES {
        bail!("--samples {count} is more than {MAX_RANDOM_SAMPLES}, the most one run reads");
    }
    let ordinals = ordinals(count, len);
    let distinct = if count <= len {
        count
    } else {
        let mut seen = ordinals.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64
    };
    let mut m = Measured {
        samples: 0,
        distinct,
        payload_bytes: 0,
        wall: Duration::ZERO,
        latencies: Vec::with_capacity(ordinals.len()),
    };
    let start = Instant::now();
    for &ordinal in &ordinals {
        let t = Instant::now();
        let sample = archive.get(ordinal).with_context(|| {
            format!(
                "cannot read sample {ordinal} of {}",
                archive.path().display()
            )
        })?;
        m.add(&sample, t);
    }
    m.wall = start.elapsed();
    Ok(m)
}

/// xorshift64* (Vigna): small, fast and the same on every platform.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n` > 0), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// `count` ordinals below `len`: distinct (a partial Fisher-Yates shuffle) when
/// `count <= len`, otherwise uniform draws that repeat.
fn ordinals(count: u64, len: u64) -> Vec<u64> {
    let mut rng = XorShift(SEED);
    if count > len {
        return (0..count).map(|_| rng.below(len)).collect();
    }
    // Only the displaced positions of the virtual array 0..len are stored.
    let mut moved: HashMap<u64, u64> = HashMap::new();
    (0..count)
        .map(|i| {
            let j = i + rng.below(len - i);
            let at_i = moved.get(&i).copied().unwrap_or(i);
            let at_j = moved.get(&j).copied().unwrap_or(j);
            moved.insert(j, at_i);
            at_j
        })
        .collect()
}

/// The latency at quantile `q` (nearest rank) of sorted latencies.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn per_sec(amount: f64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs > 0.0 {
        amount / secs
    } else {
        0.0
    }
}

struct Report<'a> {
    args: &'a Args,
    archive: &'a Archive,
    measured: Measured,
    ops: usize,
    file_bytes: u64,
    modelled: Vec<ModelledTime>,
}

impl Report<'_> {
    fn latency(&self) -> (Duration, Duration, Duration) {
        let mut sorted = self.measured.latencies.clone();
        sorted.sort_unstable();
        (
            quantile(&sorted, 0.5),
            quantile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
        )
    }

    fn source(medium: &str) -> &'static str {
        MediaCost::ALL
            .iter()
            .find(|m| m.name == medium)
            .map_or("", |m| m.source)
    }

    fn json(&self) -> serde_json::Value {
        let m = &self.measured;
        let sequential = self.args.pattern == Pattern::Sequential;
        let (p50, p99, max) = self.latency();
        let modelled: Vec<_> = self
            .modelled
            .iter()
            .map(|t| {
                serde_json::json!({
                    "medium": t.medium,
                    "secs": t.secs,
                    "requests": t.requests,
                    "seeks": t.seeks,
                    "bytes": t.bytes,
                    "mb_per_sec": t.mb_per_sec,
                    "payload_mb_per_sec": payload_rate(m.payload_bytes, t.secs),
                    "samples_per_sec": if t.secs > 0.0 { m.samples as f64 / t.secs } else { 0.0 },
                    "source": Self::source(t.medium),
                })
            })
            .collect();
        let manifest = self.archive.manifest();
        serde_json::json!({
            "archive": self.args.archive.display().to_string(),
            "pattern": self.args.pattern.name(),
            "profile": manifest.layout.profile,
            "archive_samples": self.archive.len(),
            "shards": self.archive.shard_count(),
            "measured": {
                "samples": m.samples,
                "distinct_samples": m.distinct,
                "wall_secs": m.wall.as_secs_f64(),
                "samples_per_sec": per_sec(m.samples as f64, m.wall),
                "payload_bytes": m.payload_bytes,
                "payload_mb_per_sec": per_sec(m.payload_bytes as f64 / MB, m.wall),
                // Reads of the shard files (sequential); map accesses are not file reads.
                // Only a traced run counts them (not with --no-model, not over a URL).
                "file_bytes_read": (sequential && self.ops > 0).then_some(self.file_bytes),
                "file_mb_per_sec": (sequential && self.ops > 0)
                    .then(|| per_sec(self.file_bytes as f64 / MB, m.wall)),
                "latency_secs": {
                    "p50": p50.as_secs_f64(),
                    "p99": p99.as_secs_f64(),
                    "max": max.as_secs_f64(),
                },
            },
            "trace_ops": self.ops,
            "page_bytes": PAGE_BYTES,
            "modelled": modelled,
            "model_note": model_note(),
        })
    }

    fn print(&self) {
        let m = &self.measured;
        let (p50, p99, max) = self.latency();
        let manifest = self.archive.manifest();
        println!(
            "bench {} ({} pattern; profile {}, {} samples in {} shard(s))",
            self.args.archive.display(),
            self.args.pattern.name(),
            manifest.layout.profile,
            self.archive.len(),
            self.archive.shard_count()
        );
        println!();
        println!(
            "measured here (page cache as found; every field byte read, every checksum checked)"
        );
        println!(
            "  samples      {} ({} distinct) in {:.3} s: {:.0} samples/s",
            m.samples,
            m.distinct,
            m.wall.as_secs_f64(),
            per_sec(m.samples as f64, m.wall)
        );
        println!(
            "  payload      {} bytes: {:.1} MB/s",
            m.payload_bytes,
            per_sec(m.payload_bytes as f64 / MB, m.wall)
        );
        if self.args.pattern == Pattern::Sequential && self.ops > 0 {
            println!(
                "  file reads   {} bytes of shard files: {:.1} MB/s",
                self.file_bytes,
                per_sec(self.file_bytes as f64 / MB, m.wall)
            );
        }
        println!(
            "  latency      p50 {}  p99 {}  max {} per sample",
            human(p50),
            human(p99),
            human(max)
        );
        println!();
        if self.modelled.is_empty() {
            if self.args.no_model {
                println!("not modelled (--no-model)");
            } else {
                println!("not modelled: the media model is of a local archive's reads");
            }
            return;
        }
        println!(
            "modelled from the traced I/O ({} operations, {} B pages)",
            self.ops, PAGE_BYTES
        );
        println!(
            "  {:<8} {:>12} {:>12} {:>14} {:>10} {:>8} {:>12}",
            "medium", "time", "samples/s", "payload MB/s", "requests", "seeks", "device MB"
        );
        for t in &self.modelled {
            println!(
                "  {:<8} {:>12} {:>12} {:>14} {:>10} {:>8} {:>12.1}",
                t.medium,
                human(Duration::from_secs_f64(t.secs.clamp(0.0, 1e12))),
                rate(if t.secs > 0.0 {
                    m.samples as f64 / t.secs
                } else {
                    0.0
                }),
                rate(payload_rate(m.payload_bytes, t.secs)),
                t.requests,
                t.seeks,
                t.bytes as f64 / MB
            );
        }
        println!();
        println!("{}", model_note());
        for medium in MediaCost::ALL {
            println!("  {:<8} {}", medium.name, medium.source);
        }
    }
}

/// What the modelled rows are, printed with them.
fn model_note() -> String {
    format!(
        "The modelled rows are a model, not measurements: one device at queue depth 1; a \
         request pays positioning unless it continues the previous one, plus its bytes at \
         the medium's bandwidth; map accesses see a {} MiB page cache (hot index pages \
         are read once; distinct samples still go to the device). Figures from \
         the published figures in docs/design.md §3:",
        (model::CACHE_PAGES as u64 * PAGE_BYTES) >> 20
    )
}

fn payload_rate(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / MB / secs
    } else {
        0.0
    }
}

/// A rate with the digits that matter (tape rates of random reads are tiny).
fn rate(x: f64) -> String {
    if x >= 10.0 || x == 0.0 {
        format!("{x:.1}")
    } else if x >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// A duration with a unit that suits it.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_distinct_when_they_can_be() {
        let mut o = ordinals(100, 100);
        o.sort_unstable();
        assert_eq!(o, (0..100).collect::<Vec<_>>());
        let o = ordinals(10, 1_000_000);
        let mut d = o.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 10);
        assert_eq!(o, ordinals(10, 1_000_000), "deterministic");
        let o = ordinals(50, 3);
        assert_eq!(o.len(), 50);
        assert!(o.iter().all(|&x| x < 3));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
