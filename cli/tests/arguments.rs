//! Every argument of every command is checked (issue #10): a value out of range, an option
//! that does not apply to the mode chosen, or nonsense is a usage error (exit 2) with a
//! message naming it, never a panic, and a failed command leaves nothing it created.
//! Exit codes follow the README: 1 only for damage found in an archive, 2 for usage and
//! local I/O errors (a full disk included).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardpack"))
}

/// Runs `shardpack` in `dir` with `args`, standard input from `stdin` (else empty).
fn run_in(dir: &Path, args: &[&str], stdin: Option<&Path>) -> Output {
    let mut c = bin();
    c.current_dir(dir).args(args);
    c.stdin(match stdin {
        Some(p) => std::process::Stdio::from(std::fs::File::open(p).unwrap()),
        None => std::process::Stdio::null(),
    });
    c.output().expect("run shardpack")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder `in` with two small files, its archive `arc` and its stream `s.stream`.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("in/sub")).unwrap();
    std::fs::write(dir.join("in/a.txt"), b"alpha").unwrap();
    std::fs::write(dir.join("in/sub/b.json"), b"{}").unwrap();
    let o = run_in(&dir, &["pack", "in", "-o", "arc"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(&dir, &["pack", "in", "-o", "-", "--profile", "tape"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(dir.join("s.stream"), &o.stdout).unwrap();
    (tmp, dir)
}

/// Asserts a usage error: exit 2, a message containing `says`, no panic, and no `out`.
fn assert_usage_error(dir: &Path, args: &[&str], says: &str) {
    let stdin = args.contains(&"-").then(|| dir.join("s.stream"));
    let o = run_in(dir, args, stdin.as_deref());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(
        err.to_lowercase().contains(&says.to_lowercase()),
        "{args:?}: expected the message to say {says:?}: {err}"
    );
    for created in ["out", "in/out", "arc/out"] {
        assert!(!dir.join(created).exists(), "{args:?} left {created}");
    }
}

#[test]
fn numeric_option_out_of_range_is_a_usage_error() {
    let (_tmp, dir) = fixture();
    let pack = |extra: &[&'static str]| {
        let mut a = vec!["pack", "in", "-o", "out"];
        a.extend_from_slice(extra);
        a
    };
    let stream = |extra: &[&'static str]| {
        let mut a = vec!["pack", "in", "-o", "-", "--profile", "tape"];
        a.extend_from_slice(extra);
        a
    };
    let table: Vec<(Vec<&str>, &str)> = vec![
        (pack(&["--shard-size", "0"]), "out of range"),
        (pack(&["--shard-size", ""]), "not a size"),
        (pack(&["--shard-size", "1QB"]), "unknown size unit"),
        (
            pack(&["--shard-size", "99999999999999999999G"]),
            "not a size",
        ),
        (pack(&["--shard-size", "17179869184T"]), "out of range"),
        (pack(&["--shard-size", "-5"]), "unexpected argument"),
        (pack(&["--shard-size", "1.5G"]), "unknown size unit"),
        (pack(&["--block-size", "0"]), "out of range"),
        (pack(&["--block-size", "5G"]), "at most 4294967296"),
        (pack(&["--align", "3"]), "power of two"),
        (pack(&["--align", "32M"]), "power of two"),
        (pack(&["--align", "99999999999"]), "power of two"),
        (pack(&["--level", "23"]), "-7 to 22"),
        (pack(&["--level", "-8"]), "-7 to 22"),
        (pack(&["--level", "NaN"]), "invalid value"),
        (pack(&["--level", "99999999999"]), "invalid value"),
        (pack(&["--dictionary", "512"]), "1024 to 1048576"),
        (pack(&["--dictionary", "2M"]), "1024 to 1048576"),
        (pack(&["--dictionary", "99999999999"]), "1K to 1M"),
        (pack(&["--dictionary", "1QB"]), "unknown size unit"),
        (pack(&["--volume-size", "1"]), "must be at least"),
        (pack(&["--volume-size", "0"]), "out of range"),
        (pack(&["--parity", "NaN"]), "parity percentage"),
        (pack(&["--parity", "-1"]), "parity percentage"),
        (pack(&["--parity", "1000.5"]), "parity percentage"),
        (pack(&["--parity", "1e400"]), "parity percentage"),
        (pack(&["--archive-id", ""]), "32 hex digits"),
        (pack(&["--archive-id", "xyz"]), "32 hex digits"),
        (pack(&["--profile", "floppy"]), "no profile"),
        (pack(&["--volume", "lp"]), "no medium"),
        (stream(&["--record-size", "3K"]), "power of two"),
        (stream(&["--record-size", "16M"]), "power of two"),
        (stream(&["--record-size", "99999999999"]), "power of two"),
        (stream(&["--checkpoint-every", "0"]), "not in 1.."),
        (
            stream(&["--checkpoint-every", "99999999999"]),
            "invalid value",
        ),
        (vec!["cat", "arc", "--ordinal", "99"], "out of range"),
        (vec!["cat", "arc", "--ordinal", "-1"], "unexpected argument"),
        (
            vec!["cat", "arc", "--ordinal", "99999999999999999999"],
            "invalid value",
        ),
        (
            vec!["verify", "arc", "--expect-root", "zz"],
            "64 hex digits",
        ),
        (vec!["verify", "arc", "--expect-root", ""], "64 hex digits"),
        (vec!["verify", "-", "--expect-root", "zz"], "64 hex digits"),
        (vec!["protect", "arc", "--parity", "0"], "more than 0"),
        (
            vec!["protect", "arc", "--parity", "NaN"],
            "parity percentage",
        ),
        (
            vec!["bench", "arc", "--pattern", "random", "--samples", "0"],
            "not in 1..",
        ),
        (
            vec!["bench", "arc", "--pattern", "sequential", "--samples", "0"],
            "not in 1..",
        ),
        (
            vec![
                "bench",
                "arc",
                "--pattern",
                "random",
                "--samples",
                "999999999999",
            ],
            "the most one run reads",
        ),
        (vec!["bench", "arc", "--pattern", "zigzag"], "invalid value"),
    ];
    for (args, says) in &table {
        assert_usage_error(&dir, args, says);
    }
}

#[test]
fn option_that_does_not_apply_to_the_mode_is_refused() {
    let (_tmp, dir) = fixture();
    let table: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["pack", "in", "-o", "out", "--record-size", "512K"],
            "streams only",
        ),
        (
            vec!["pack", "in", "-o", "out", "--checkpoint-every", "2"],
            "streams only",
        ),
        (
            vec![
                "pack",
                "in",
                "-o",
                "out",
                "--compression",
                "none",
                "--level",
                "5",
            ],
            "zstd compression only",
        ),
        (
            vec![
                "pack",
                "in",
                "-o",
                "out",
                "--compression",
                "none",
                "--dictionary",
                "64K",
            ],
            "zstd compression only",
        ),
        (
            vec!["pack", "in", "-o", "-", "--volume", "cd"],
            "no volumes",
        ),
        (
            vec!["pack", "in", "-o", "-", "--volume-size", "1G"],
            "no volumes",
        ),
        (vec!["pack", "in", "-o", "-", "--parity", "5"], "unstream"),
        (
            vec![
                "pack",
                "in",
                "-o",
                "out",
                "--volume",
                "cd",
                "--volume-size",
                "1G",
            ],
            "cannot be used with",
        ),
        (vec!["verify", "-", "--quick"], "archive folders only"),
        (vec!["verify", "-", "--deep"], "archive folders only"),
        (
            vec!["verify", "arc", "--quick", "--deep"],
            "cannot be used with",
        ),
        (
            vec!["cat", "arc", "a", "--ordinal", "0"],
            "cannot be used with",
        ),
        (vec!["cat", "-", "a"], "not a stream"),
        (vec!["info", "-"], "not a stream"),
        (vec!["bench", "-", "--pattern", "random"], "not a stream"),
        (vec!["salvage", "-", "-o", "out"], "not a stream"),
    ];
    for (args, says) in &table {
        assert_usage_error(&dir, args, says);
    }
}

#[test]
fn output_inside_the_input_is_refused_before_anything_is_written() {
    let (_tmp, dir) = fixture();
    for args in [
        ["pack", "in", "-o", "in/out"],
        ["salvage", "arc", "-o", "arc/out"],
    ] {
        assert_usage_error(&dir, &args, "inside the folder being read");
    }
}

#[test]
fn missing_or_empty_paths_are_usage_errors_not_panics() {
    let (_tmp, dir) = fixture();
    let table: Vec<(Vec<&str>, &str)> = vec![
        (vec!["pack", "nothere", "-o", "out"], "nothere"),
        (vec!["pack", "in/a.txt", "-o", "out"], "not a folder"),
        (vec!["ls", "nothere"], "nothere"),
        (vec!["info", ""], "value is required"),
        (vec!["cat", "arc", ""], "no sample has the key"),
        (vec!["cat", "arc", "a", "--field", "nope"], "no field"),
        (vec!["extract", "nothere", "-o", "out"], "nothere"),
        (vec!["extract", "arc", "-o", ""], "value is required"),
        (vec!["unstream", "nothere", "-o", "out"], "nothere"),
        (vec!["salvage", "nothere", "-o", "out"], "nothere"),
    ];
    for (args, says) in &table {
        assert_usage_error(&dir, args, says);
    }
}

/// With `ulimit -f` (SIGXFSZ ignored, so writes fail with EFBIG): exit 2, the file named,
/// and the output folder removed.
fn assert_full_disk_is_exit_2(dir: &Path, args: &str, stdin: Option<&str>) {
    let script = format!(
        "trap '' XFSZ; ulimit -f 256; exec '{}' {args} {}",
        env!("CARGO_BIN_EXE_shardpack"),
        stdin.map(|s| format!("< '{s}'")).unwrap_or_default()
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args}: {err}");
    assert!(
        err.contains("big.bin") || err.contains("shard-"),
        "{args}: {err}"
    );
    assert!(!dir.join("out").exists(), "{args} left its output");
}

#[test]
fn a_full_disk_is_a_local_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("in")).unwrap();
    // Bytes zstd cannot shrink, so that salvage's zstd output is as large as the input.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(dir.join("in/big.bin"), noise).unwrap();
    for args in [
        vec!["pack", "in", "-o", "arc", "--compression", "none"],
        vec![
            "pack",
            "in",
            "-o",
            "-",
            "--profile",
            "tape",
            "--compression",
            "none",
        ],
    ] {
        let o = run_in(dir, &args, None);
        assert!(o.status.success(), "{}", stderr(&o));
        if args.contains(&"-") {
            std::fs::write(dir.join("s.stream"), &o.stdout).unwrap();
        }
    }
    assert_full_disk_is_exit_2(dir, "pack in -o out --compression none", None);
    assert_full_disk_is_exit_2(dir, "extract arc -o out", None);
    assert_full_disk_is_exit_2(dir, "extract - -o out", Some("s.stream"));
    assert_full_disk_is_exit_2(dir, "unstream - -o out", Some("s.stream"));
    assert_full_disk_is_exit_2(dir, "salvage arc -o out --json", None);
}
