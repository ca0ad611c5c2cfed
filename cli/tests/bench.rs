//! `shardpack bench` end to end: both patterns, the JSON report, the cost model's ordering
//! (random reads on a disk cost more than one sequential pass), and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardpack"));
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("run shardpack")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Packs 40 samples of 8 KiB of incompressible bytes, stored, with `profile`.
fn pack(root: &Path, profile: &str) -> std::path::PathBuf {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut x = 0x1234_5678_9abc_def1_u64;
    for i in 0..40 {
        let data: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(input.join(format!("{i:04}.bin")), data).unwrap();
    }
    let archive = root.join(format!("archive-{profile}"));
    let o = run(&[
        &"pack",
        &input,
        &"-o",
        &archive,
        &"--profile",
        &profile,
        &"--compression",
        &"none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    archive
}

fn bench_json(archive: &Path, pattern: &str) -> serde_json::Value {
    let o = run(&[&"bench", &archive, &"--pattern", &pattern, &"--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

fn modelled_secs(report: &serde_json::Value, medium: &str) -> f64 {
    report["modelled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["medium"] == medium)
        .unwrap_or_else(|| panic!("no {medium} row in {report}"))["secs"]
        .as_f64()
        .unwrap()
}

#[test]
fn both_patterns_report_measured_and_modelled_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = pack(tmp.path(), "hdd");
    let seq = bench_json(&archive, "sequential");
    let rnd = bench_json(&archive, "random");
    for (report, pattern) in [(&seq, "sequential"), (&rnd, "random")] {
        assert_eq!(report["pattern"], pattern);
        assert_eq!(report["archive_samples"], 40);
        let m = &report["measured"];
        assert_eq!(m["samples"], 40, "{report}");
        assert_eq!(m["payload_bytes"], 40 * 8192);
        for key in ["wall_secs", "samples_per_sec", "payload_mb_per_sec"] {
            assert!(m[key].as_f64().unwrap() > 0.0, "{key} in {report}");
        }
        let (p50, p99) = (
            m["latency_secs"]["p50"].as_f64().unwrap(),
            m["latency_secs"]["p99"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99, "{report}");
        let media: Vec<&str> = report["modelled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["medium"].as_str().unwrap())
            .collect();
        assert_eq!(media, ["hdd", "ssd", "tape", "optical"]);
        for row in report["modelled"].as_array().unwrap() {
            for key in ["secs", "mb_per_sec", "payload_mb_per_sec"] {
                assert!(row[key].as_f64().unwrap() > 0.0, "{key} in {row}");
            }
            assert!(row["requests"].as_u64().unwrap() >= row["seeks"].as_u64().unwrap());
            assert!(!row["source"].as_str().unwrap().is_empty());
        }
    }
    // The scan reads the whole shard file in large reads: one positioning.
    assert!(seq["measured"]["file_bytes_read"].as_u64().unwrap() > 40 * 8192);
    assert!(rnd["measured"]["file_bytes_read"].is_null());
    assert_eq!(seq["modelled"][0]["seeks"], 1, "{seq}");
    // 40 random reads each pay at least one positioning on a disk.
    assert!(rnd["modelled"][0]["seeks"].as_u64().unwrap() >= 40, "{rnd}");
    assert!(modelled_secs(&rnd, "hdd") > modelled_secs(&seq, "hdd"));
    // The same ordinals every run.
    let again = bench_json(&archive, "random");
    assert_eq!(again["modelled"], rnd["modelled"]);
}

#[test]
fn human_output_samples_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = pack(tmp.path(), "ssd");
    let o = run(&[
        &"bench",
        &archive,
        &"--pattern",
        &"random",
        &"--samples",
        &"100",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "samples      100 (",
        " distinct) in ",
        "p50",
        "p99",
        "hdd",
        "optical",
        "not measurements",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let o = run(&[
        &"bench",
        &archive,
        &"--pattern",
        &"sequential",
        &"--samples",
        &"5",
        &"--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["measured"]["samples"], 5);

    // Usage errors: exit 2.
    let o = run(&[&"bench", &archive, &"--pattern", &"zigzag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[&"bench", &archive]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        &"bench",
        &tmp.path().join("nothing"),
        &"--pattern",
        &"random",
    ]);
    assert_eq!(o.status.code(), Some(2));

    // A damaged record (a byte of sample 0020 flipped in its shard): exit 1 with both
    // patterns.
    let needle = std::fs::read(tmp.path().join("in/0020.bin")).unwrap();
    let (shard, at) = files(&archive)
        .into_iter()
        .find_map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let at = bytes.windows(needle.len()).position(|w| w == needle)?;
            Some((p, at))
        })
        .expect("sample 0020 stored in a shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[at + 100] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    for pattern in ["random", "sequential"] {
        let o = run(&[&"bench", &archive, &"--pattern", &pattern]);
        assert_eq!(o.status.code(), Some(1), "{pattern}: {}", stderr(&o));
    }
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
