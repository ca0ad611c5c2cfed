//! Scale curves: the cost per sample of packing, opening, reading by ordinal and by key,
//! scanning and verifying archives of small samples, from a thousand samples up, with the
//! peak memory of each step. The archives are written with the `ssd` profile, the one for
//! random reads: a `get` decodes one record, not a block.
//!
//! `cargo bench --bench scale -- [--sizes 1000,10000,...] [--dir DIR] [--json FILE]`
//!
//! Each step of each size runs in a process of its own (this binary, run again with
//! `--step`), so that its peak resident set (`VmHWM`) is that step's alone. The table
//! goes to standard output; `--json` also writes every figure, which `bench/plot` draws.
//! What should hold: open flat, `get` by ordinal flat, `get_by_key` logarithmic (a binary
//! search of the key index), pack and verify linear per sample, and pack memory bounded
//! apart from the index the writer keeps until the shard is finished.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;

use common::ordinals;
use shardpack::{Archive, MediaProfile, VerifyOptions, Writer};

const DEFAULT_SIZES: [u64; 5] = [1_000, 10_000, 100_000, 1_000_000, 10_000_000];
/// Bytes of the `bin` field of every sample: small samples, as the curves are about counts.
const SAMPLE_BYTES: usize = 100;
/// Reads timed by ordinal and by key (at most the sample count).
const READS: u64 = 100_000;
const KEY_READS: u64 = 20_000;
/// Opens timed; the median is reported.
const OPENS: usize = 21;
const STEPS: [&str; 6] = ["pack", "open", "get", "get_by_key", "scan", "verify"];

fn key(i: u64) -> String {
    format!("train/{i:010}")
}

/// The process's peak resident set in KiB, from `/proc/self/status` (0 where there is none).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one step on the archive at `path` of `n` samples; returns (operations, seconds).
fn step(name: &str, path: &Path, n: u64) -> (u64, f64) {
    let start = Instant::now();
    let ops = match name {
        "pack" => {
            let _ = std::fs::remove_dir_all(path);
            let mut writer = Writer::builder()
                .profile(MediaProfile::ssd())
                .create(path)
                .expect("create");
            let mut data = [0u8; SAMPLE_BYTES];
            for i in 0..n {
                // Compressible but not constant: a counter in a repeating pattern.
                for (j, b) in data.iter_mut().enumerate() {
                    *b = (j as u64 ^ (i >> (j % 8))) as u8 & 0x3f;
                }
                writer
                    .append(&key(i), &[("bin", &data), ("cls", &(i % 10).to_le_bytes())])
                    .expect("append");
            }
            writer.finish().expect("finish");
            n
        }
        "open" => {
            let mut times: Vec<f64> = (0..OPENS)
                .map(|_| {
                    let t = Instant::now();
                    let archive = Archive::open(path).expect("open");
                    std::hint::black_box(archive.len());
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            return (1, times[OPENS / 2]);
        }
        "get" => {
            let archive = Archive::open(path).expect("open");
            let reads = READS.min(n);
            let start = Instant::now();
            for ordinal in ordinals(n).take(reads as usize) {
                std::hint::black_box(archive.get(ordinal).expect("get").field("bin"));
            }
            return (reads, start.elapsed().as_secs_f64());
        }
        "get_by_key" => {
            let archive = Archive::open(path).expect("open");
            let reads = KEY_READS.min(n);
            let keys: Vec<String> = ordinals(n).take(reads as usize).map(key).collect();
            let start = Instant::now();
            for k in &keys {
                let sample = archive.get_by_key(k).expect("get_by_key");
                assert!(sample.is_some(), "{k} missing");
            }
            return (reads, start.elapsed().as_secs_f64());
        }
        "scan" => {
            let archive = Archive::open(path).expect("open");
            let mut count = 0u64;
            for sample in archive.scan() {
                std::hint::black_box(sample.expect("scan").field("bin"));
                count += 1;
            }
            assert_eq!(count, n);
            n
        }
        "verify" => {
            let report = shardpack::verify(path, &VerifyOptions::default()).expect("verify");
            assert!(report.is_ok(), "{report:?}");
            n
        }
        other => panic!("unknown step {other}"),
    };
    (ops, start.elapsed().as_secs_f64())
}

struct Row {
    samples: u64,
    step: &'static str,
    ops: u64,
    secs: f64,
    peak_kib: u64,
}

fn run_step_process(name: &'static str, path: &Path, n: u64) -> Row {
    let out = Command::new(std::env::current_exe().expect("this binary"))
        .args(["--step", name, "--samples", &n.to_string(), "--path"])
        .arg(path)
        .output()
        .expect("run a step");
    assert!(
        out.status.success(),
        "{name} at {n}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("a step's JSON line");
    Row {
        samples: n,
        step: name,
        ops: v["ops"].as_u64().unwrap_or(0),
        secs: v["secs"].as_f64().unwrap_or(0.0),
        peak_kib: v["peak_kib"].as_u64().unwrap_or(0),
    }
}

/// The cost of one operation of `row`, in the unit the table shows for its step.
fn cost(row: &Row) -> (f64, &'static str) {
    let per = row.secs / row.ops.max(1) as f64;
    match row.step {
        "open" => (per * 1e6, "µs per open"),
        "get" | "get_by_key" => (per * 1e6, "µs per read"),
        _ => (per * 1e9, "ns per sample"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(name) = value("--step") {
        let n: u64 = value("--samples")
            .and_then(|s| s.parse().ok())
            .expect("--samples");
        let path = PathBuf::from(value("--path").expect("--path"));
        let (ops, secs) = step(&name, &path, n);
        println!(
            "{}",
            serde_json::json!({"ops": ops, "secs": secs, "peak_kib": peak_rss_kib()})
        );
        return;
    }
    let sizes: Vec<u64> = value("--sizes")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().replace('_', "").parse().expect("a size"))
                .collect()
        })
        .unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = value("--dir").map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let mut rows = Vec::new();
    println!("| samples | step | cost | unit | seconds | peak RSS MiB | archive MiB |");
    println!("|---:|---|---:|---|---:|---:|---:|");
    for &n in &sizes {
        let path = dir.join(format!("scale-{n}"));
        for name in STEPS {
            let row = run_step_process(name, &path, n);
            let (c, unit) = cost(&row);
            let size: u64 = std::fs::read_dir(&path)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            println!(
                "| {n} | {name} | {c:.3} | {unit} | {:.3} | {:.1} | {:.1} |",
                row.secs,
                row.peak_kib as f64 / 1024.0,
                size as f64 / 1048576.0
            );
            rows.push((row, size));
        }
        let _ = std::fs::remove_dir_all(&path);
    }
    if let Some(file) = value("--json") {
        let json: Vec<_> = rows
            .iter()
            .map(|(r, size)| {
                let (c, unit) = cost(r);
                serde_json::json!({"samples": r.samples, "step": r.step, "ops": r.ops,
                    "secs": r.secs, "cost": c, "unit": unit, "peak_kib": r.peak_kib,
                    "archive_bytes": size})
            })
            .collect();
        std::fs::write(&file, serde_json::to_string_pretty(&json).expect("JSON"))
            .expect("write --json");
    }
}
