//! `shardpack import` and `shardpack export` end to end, with GNU tar on both sides: tars
//! GNU tar writes import from files, brace patterns and standard input; exports list and
//! extract with GNU tar to the files `shardpack extract` writes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn shardpack(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardpack"));
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("run shardpack")
}

fn gnu_tar(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("tar")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("GNU tar is installed");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `root`, by relative path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A folder of WebDataset-style files, with a long name (over 100 bytes) and a name with
/// spaces and unicode.
fn make_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let long = format!("{}/{}.jpg", "deep".repeat(30), "n".repeat(90));
    let files: Vec<(String, Vec<u8>)> = vec![
        ("train/0001.jpg".into(), vec![0xFF, 0xD8, 1, 2, 3]),
        ("train/0001.json".into(), br#"{"label": 1}"#.to_vec()),
        ("train/0002.jpg".into(), vec![0xFF, 0xD8, 4]),
        ("train/0002.json".into(), br#"{"label": 2}"#.to_vec()),
        ("with space/ünï.txt".into(), "unicode".as_bytes().to_vec()),
        (long, vec![7; 1000]),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files.into_iter().collect()
}

#[test]
fn gnu_tar_in_gnu_tar_out() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let want = make_tree(&src);
    // GNU tar, sorted so that a key's members are next to each other, with `./` prefixes
    // and folder entries; once plain, once gzip.
    gnu_tar(&src, &["--sort=name", "-cf", "../in-0.tar", "."]);
    gnu_tar(&src, &["--sort=name", "-czf", "../in-1.tar", "."]);
    let a = tmp.path().join("a");
    let o = shardpack(&[
        &"import",
        &tmp.path().join("in-0.tar"),
        &"-o",
        &a,
        &"--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["samples"], 4);
    assert_eq!(summary["members"], 6);

    // The gzip tar from standard input gives the same archive.
    let b = tmp.path().join("b");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .args(["import", "-", "-o"])
        .arg(&b)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gz = std::fs::read(tmp.path().join("in-1.tar")).unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ls = |p: &Path| text(&shardpack(&[&"ls", &p, &"--long"]).stdout);
    assert_eq!(ls(&a), ls(&b));

    // Export, twice: the same bytes.
    let out1 = tmp.path().join("out1");
    let out2 = tmp.path().join("out2");
    for out in [&out1, &out2] {
        std::fs::create_dir_all(out).unwrap();
        let pattern = out.join("shard-%06d.tar");
        let o = shardpack(&[&"export", &a, &"-o", &pattern]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let tar1 = std::fs::read(out1.join("shard-000000.tar")).unwrap();
    assert_eq!(tar1, std::fs::read(out2.join("shard-000000.tar")).unwrap());

    // GNU tar lists the members in archive order, and extracts exactly the input files,
    // which are also what `shardpack extract` writes.
    let listed = text(&gnu_tar(&out1, &["-tf", "shard-000000.tar"]).stdout);
    let names: Vec<&str> = listed.lines().collect();
    assert_eq!(names.len(), 6);
    assert!(names.iter().any(|n| n.len() > 100), "{names:?}");
    let x = tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    gnu_tar(
        &x,
        &["-xf", &out1.join("shard-000000.tar").to_string_lossy()],
    );
    assert_eq!(files(&x), want);
    let e = tmp.path().join("e");
    let o = shardpack(&[&"extract", &a, &"-o", &e]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(files(&e), want);
}

#[test]
fn brace_patterns_and_shard_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let d = tmp.path().join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..4 {
            std::fs::write(d.join(format!("{i}{j:03}.bin")), vec![i as u8; 3000]).unwrap();
        }
        let name = format!("../s-{i:06}.tar");
        gnu_tar(&d, &["--sort=name", "-cf", &name, "."]);
    }
    let a = tmp.path().join("a");
    let pattern = tmp.path().join("s-{000000..000002}.tar");
    let o = shardpack(&[&"import", &pattern, &"-o", &a]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("imported 12 samples"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stdout).contains("from 3 tar(s)"),
        "{}",
        text(&o.stdout)
    );
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = shardpack(&[
        &"export",
        &a,
        &"-o",
        &out.join("p-%d.tar"),
        &"--shard-size",
        &"8K",
        &"--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tars = summary["tars"].as_array().unwrap();
    assert_eq!(tars.len(), 6, "two 3.5 KiB samples per 8 KiB tar");
    for (i, t) in tars.iter().enumerate() {
        assert!(t["bytes"].as_u64().unwrap() <= 8192);
        assert!(out.join(format!("p-{i}.tar")).exists());
    }
}

#[test]
fn bad_patterns_and_damaged_tars_fail_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    gnu_tar(&src, &["--sort=name", "-cf", "../in.tar", "."]);
    let a = tmp.path().join("a");
    assert!(
        shardpack(&[&"import", &tmp.path().join("in.tar"), &"-o", &a])
            .status
            .success()
    );
    for pattern in ["out.tar", "out-%d-%d.tar", "out-%s.tar"] {
        let o = shardpack(&[&"export", &a, &"-o", &tmp.path().join(pattern)]);
        assert_eq!(o.status.code(), Some(2), "{pattern}");
        assert!(text(&o.stderr).contains("pattern"), "{}", text(&o.stderr));
    }
    assert!(!tmp.path().join("out.tar").exists());

    // One flipped byte in the second member's header: exit 2, the member before it and
    // the offset named, no archive folder.
    let mut tar = std::fs::read(tmp.path().join("in.tar")).unwrap();
    let listed = text(&gnu_tar(tmp.path(), &["-tvf", "in.tar"]).stdout);
    assert!(listed.lines().count() > 3);
    // Members of GNU tar start at 512-byte blocks; the second header follows the first
    // (a folder entry, no data) at 512.
    tar[512 + 3] ^= 0x20;
    std::fs::write(tmp.path().join("bad.tar"), &tar).unwrap();
    let b = tmp.path().join("b");
    let o = shardpack(&[&"import", &tmp.path().join("bad.tar"), &"-o", &b]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("bad.tar at byte 512"), "{err}");
    assert!(err.contains("after member \"./\""), "{err}");
    assert!(err.contains("damaged tar"), "{err}");
    assert!(!b.exists());

    // Cut short: truncated, nothing left.
    let good = std::fs::read(tmp.path().join("in.tar")).unwrap();
    std::fs::write(tmp.path().join("cut.tar"), &good[..good.len() / 2]).unwrap();
    let o = shardpack(&[&"import", &tmp.path().join("cut.tar"), &"-o", &b]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("truncated tar"),
        "{}",
        text(&o.stderr)
    );
    assert!(!b.exists());
}
