//! The `shardpack` command end to end: exit codes, output, bad input, extraction safety.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardpack"))
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("run shardpack")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tree with the awkward names the issue lists: spaces, dots, no extension, unicode,
/// empty files, nested folders.
fn make_tree(root: &Path) {
    let files: &[(&str, &[u8])] = &[
        ("train/0001.jpg", &[0xFF, 0xD8, 0xFF, 0x00, 0x01]),
        ("train/0001.json", br#"{"label": 1}"#),
        ("train/0002.jpg", &[0xFF, 0xD8, 0x02]),
        ("train/0002.json", br#"{"label": 2}"#),
        ("with space/a b.txt", b"spaces"),
        ("dots/x.tar.gz", b"tgz"),
        ("dots/.hidden", b"hidden"),
        ("dots/trailing.", b"trailing dot"),
        ("noext/README", b"readme"),
        ("ünïcödé/日本.txt", "unicode".as_bytes()),
        ("empty/zero.bin", b""),
        ("top.txt", b"top"),
    ];
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((
                        p.strip_prefix(root).unwrap().to_path_buf(),
                        std::fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    };
    assert_eq!(list(a), list(b));
}

#[test]
fn pack_ls_info_cat_verify_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let archive = tmp.path().join("archive");
    let o = run(&[&"pack", &input, &"-o", &archive]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("packed 10 samples"), "{}", stdout(&o));

    let o = run(&[&"ls", &archive]);
    assert_eq!(o.status.code(), Some(0));
    let keys: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert!(
        keys.contains(&"train/0001".to_string()) && keys.contains(&"dots/.hidden".to_string()),
        "{keys:?}"
    );
    let o = run(&[&"ls", &archive, &"--long", &"--json"]);
    let first: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert!(first["fields"].is_array());

    let o = run(&[&"info", &archive, &"--json"]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let root = info["root"].as_str().unwrap().to_string();
    let o = run(&[&"info", &archive]);
    assert!(stdout(&o).contains(&root));

    let o = run(&[&"cat", &archive, &"train/0001", &"--field", &"json"]);
    assert_eq!(o.stdout, br#"{"label": 1}"#);
    let o = run(&[&"cat", &archive, &"train/0001"]);
    assert_eq!(o.status.code(), Some(2), "two fields need --field");
    assert!(stderr(&o).contains("--field"));
    let o = run(&[&"cat", &archive, &"--ordinal", &"0"]);
    assert!(o.status.success());
    let o = run(&[&"cat", &archive, &"no/such/key"]);
    assert_eq!(o.status.code(), Some(2));

    let o = run(&[&"verify", &archive, &"--expect-root", &root]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // A root that cannot be one is a usage error (2), not damage (1); a wrong one is damage.
    for bad in ["abc", "zz".repeat(32).as_str(), &root[..63]] {
        let o = run(&[&"verify", &archive, &"--expect-root", &bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("64 hex digits"), "{}", stderr(&o));
    }
    let o = run(&[&"verify", &archive, &"--expect-root", &"0".repeat(64)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = run(&[&"verify", &archive, &"--deep", &"--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["complete"], true);

    let out = tmp.path().join("out");
    let o = run(&[&"extract", &archive, &"-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&input, &out);

    // Deterministic: packing again gives the same bytes.
    let again = tmp.path().join("again");
    assert!(run(&[&"pack", &input, &"-o", &again]).status.success());
    for f in ["manifest.json", "shard-000000.shp"] {
        assert_eq!(
            std::fs::read(archive.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap()
        );
    }
}

#[test]
fn verify_exit_codes_and_located_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let archive = tmp.path().join("archive");
    assert!(
        run(&[&"pack", &input, &"-o", &archive, &"--compression", &"none"])
            .status
            .success()
    );
    let shard = archive.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.windows(6).position(|w| w == b"spaces").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&shard, &bytes).unwrap();
    let o = run(&[&"verify", &archive]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("shard-000000.shp (shard 0)") && text.contains("DAMAGED"),
        "{text}"
    );
    assert!(
        text.contains("with space/a b"),
        "finding names the key: {text}"
    );
    let o = run(&[&"cat", &archive, &"with space/a b"]);
    assert_eq!(o.status.code(), Some(1), "a damaged read exits 1");
    assert!(
        o.stdout.is_empty(),
        "no bytes of a damaged record are written"
    );
    assert!(
        stderr(&o).contains("shard-000000.shp") && stderr(&o).contains("at byte"),
        "{}",
        stderr(&o)
    );
    let o = run(&[&"verify", &tmp.path().join("nope")]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[&"verify"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    // Missing input.
    let o = run(&[&"pack", &tmp.path().join("missing"), &"-o", &archive]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    assert!(!archive.exists());
    // A symlink is refused by default, skipped with a warning on request.
    let input = tmp.path().join("in");
    make_tree(&input);
    std::os::unix::fs::symlink("/etc/passwd", input.join("link.txt")).unwrap();
    let o = run(&[&"pack", &input, &"-o", &archive]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("symbolic link") && stderr(&o).contains("--skip-special"),
        "{}",
        stderr(&o)
    );
    assert!(!archive.exists());
    let o = run(&[&"pack", &input, &"-o", &archive, &"--skip-special"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("warning: skipping"));
    // Output that exists and is not empty.
    let o = run(&[&"pack", &input, &"-o", &archive, &"--skip-special"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    // Bad options.
    // Options that would do nothing in the mode chosen are refused, not ignored.
    for bad in [
        &["--level", "99"][..],
        &["--align", "100"],
        &["--shard-size", "0"],
        &["--archive-id", "xyz"],
        &["--record-size", "64K"],
        &["--checkpoint-every", "2"],
        &["--compression", "none", "--level", "5"],
        &["--compression", "none", "--dictionary", "64K"],
    ] {
        let mut c = bin();
        c.arg("pack")
            .arg(&input)
            .arg("-o")
            .arg(tmp.path().join("x"))
            .args(bad);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(o.stdout.is_empty(), "{bad:?}: nothing is streamed");
        assert!(
            !tmp.path().join("x").exists(),
            "{bad:?}: nothing is created"
        );
    }
}

#[test]
fn special_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.txt"), b"x").unwrap();
    let fifo = input.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = run(&[&"pack", &input, &"-o", &tmp.path().join("a")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("special file"), "{}", stderr(&o));
    assert!(!tmp.path().join("a").exists());
}

/// A full disk: writes beyond a file-size limit fail (EFBIG), as they would with ENOSPC.
#[test]
fn full_disk_is_a_clear_error_and_leaves_no_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..8 {
        let data: Vec<u8> = (0..300_000u32)
            .map(|x| (x.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(input.join(format!("{i}.bin")), data).unwrap();
    }
    let archive = tmp.path().join("archive");
    // ulimit -f counts 1024-byte blocks in bash and dash alike; SIGXFSZ is ignored so the
    // write returns EFBIG instead of killing the process.
    let script = format!(
        "trap '' XFSZ; ulimit -f 512; exec '{}' pack '{}' -o '{}' --compression none",
        env!("CARGO_BIN_EXE_shardpack"),
        input.display(),
        archive.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("shard-000000.shp") && err.contains("at byte"),
        "{err}"
    );
    assert!(
        !archive.exists(),
        "a failed pack removes the folder it created"
    );

    // A full disk while extracting is a local I/O error (2), not damage (1), and the
    // folder extract created is removed.
    let o = run(&[&"pack", &input, &"-o", &archive, &"--compression", &"none"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("out");
    let script = format!(
        "trap '' XFSZ; ulimit -f 512; exec '{}' extract '{}' -o '{}'",
        env!("CARGO_BIN_EXE_shardpack"),
        archive.display(),
        out.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(".bin"),
        "names the file: {}",
        stderr(&o)
    );
    assert!(
        !out.exists(),
        "a failed extract removes the folder it created"
    );
}

#[test]
fn extract_refuses_unsafe_keys_and_symlinks() {
    use shardpack::Writer;
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("evil");
    let mut w = Writer::builder().create(&archive).unwrap();
    for key in [
        "../escape",
        "/etc/evil",
        "a/../../escape2",
        "ok/..",
        "link/inside",
        "fine",
    ] {
        w.append(key, &[("txt", b"payload".as_slice())]).unwrap();
    }
    w.finish().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // A pre-existing symlink in the target folder must not be followed.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let o = run(&[&"extract", &archive, &"-o", &out]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(out.join("fine.txt").exists() && out.join("link/inside.txt").exists());
    // "ok/.." + ".txt" is the harmless name "...txt" inside "ok".
    assert!(out.join("ok/...txt").exists());
    assert!(!tmp.path().join("escape.txt").exists() && !tmp.path().join("escape2.txt").exists());
    assert!(!Path::new("/etc/evil.txt").exists());
    let refused = stderr(&o).matches("refusing").count();
    assert_eq!(refused, 3, "{}", stderr(&o));

    // The target must be empty, so no symbolic link planted in it beforehand is followed.
    let out2 = tmp.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    std::os::unix::fs::symlink(&outside, out2.join("link")).unwrap();
    let o = run(&[&"extract", &archive, &"-o", &out2]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a non-empty target is refused: {}",
        stderr(&o)
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written outside"
    );
}

fn run_with_stdin(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &Path) -> Output {
    let mut c = bin();
    for a in args {
        c.arg(a.as_ref());
    }
    c.stdin(std::fs::File::open(stdin).unwrap())
        .output()
        .expect("run shardpack")
}

#[test]
fn tape_stream_through_stdout_and_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let stream = tmp.path().join("stream.tape");
    let o = bin()
        .args([
            "pack",
            "--profile",
            "tape",
            "--record-size",
            "64K",
            "--align",
            "64K",
            "--shard-size",
            "256K",
        ])
        .arg(&input)
        .args(["-o", "-"])
        .stdout(std::fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("packed 10 samples"),
        "the summary goes to stderr: {}",
        stderr(&o)
    );
    let len = std::fs::metadata(&stream).unwrap().len();
    assert_eq!(len % (64 << 10), 0, "whole records only");

    let o = run_with_stdin(&[&"ls", &"-"], &stream);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 10);
    let o = run_with_stdin(&[&"verify", &"-"], &stream);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = tmp.path().join("out");
    let o = run_with_stdin(&[&"extract", &"-", &"-o", &out], &stream);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&input, &out);
    let folder = tmp.path().join("folder");
    let o = run_with_stdin(&[&"unstream", &"-", &"-o", &folder], &stream);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(run(&[&"verify", &folder]).status.code(), Some(0));

    // Torn mid-record: verify and unstream report it, exit 1, and keep what came before.
    let bytes = std::fs::read(&stream).unwrap();
    let torn = tmp.path().join("torn.tape");
    std::fs::write(&torn, &bytes[..bytes.len() / 2 + 1000]).unwrap();
    let o = run_with_stdin(&[&"verify", &"-"], &torn);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("mid-record"), "{}", stdout(&o));
    let kept = tmp.path().join("kept");
    let o = run_with_stdin(&[&"unstream", &"-", &"-o", &kept], &torn);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        run(&[&"verify", &kept]).status.code(),
        Some(0),
        "the checkpointed part verifies"
    );

    // A full disk while unstreaming is a local I/O error (2), not a torn stream (1), and
    // the folder unstream created is removed.
    let full = tmp.path().join("full");
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' unstream - -o '{}' < '{}'",
        env!("CARGO_BIN_EXE_shardpack"),
        full.display(),
        stream.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        !full.exists(),
        "a failed unstream removes the folder it created"
    );

    // A record size a tape driver would refuse.
    for bad in ["1000", "2K", "16M"] {
        let o = bin()
            .args(["pack", "--profile", "tape", "--record-size", bad])
            .arg(&input)
            .args(["-o", "-"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("record size"), "{}", stderr(&o));
    }
}

#[test]
fn optical_volumes_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..30u32 {
        let data: Vec<u8> = (0..400_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i) >> 9) as u8)
            .collect();
        std::fs::write(input.join(format!("{i:02}.bin")), data).unwrap();
    }
    let archive = tmp.path().join("discs");
    let o = run(&[
        &"pack",
        &input,
        &"-o",
        &archive,
        &"--profile",
        &"optical",
        &"--volume-size",
        &"16M",
        &"--shard-size",
        &"3M",
        &"--compression",
        &"none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(archive.join("vol-0001").is_dir() && archive.join("vol-0002").is_dir());
    assert_eq!(run(&[&"verify", &archive]).status.code(), Some(0));
    std::fs::remove_dir_all(archive.join("vol-0002")).unwrap();
    let o = run(&[&"verify", &archive]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("volume 2 of"), "{}", stdout(&o));
    // A medium too small for one sample.
    let o = run(&[
        &"pack",
        &input,
        &"-o",
        &tmp.path().join("tiny"),
        &"--profile",
        &"optical",
        &"--volume-size",
        &"9M",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("volume"), "{}", stderr(&o));
    // A profile that does not exist.
    let o = run(&[
        &"pack",
        &input,
        &"-o",
        &tmp.path().join("x"),
        &"--profile",
        &"floppy",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
}

#[test]
fn salvage_recovers_what_a_damaged_archive_still_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let archive = tmp.path().join("a");
    assert!(run(&[
        &"pack",
        &input,
        &"-o",
        &archive,
        &"--compression",
        &"none",
        &"--block-size",
        &"64"
    ])
    .status
    .success());
    // Lose the manifest and the shard's trailer and index.
    std::fs::remove_file(archive.join("manifest.json")).unwrap();
    let shard = archive.join("shard-000000.shp");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 4096]).unwrap();
    let out = tmp.path().join("saved");
    let o = run(&[&"salvage", &archive, &"-o", &out]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("recovered 10 sample(s)"),
        "{}",
        stdout(&o)
    );
    let extracted = tmp.path().join("x");
    assert!(run(&[&"extract", &out, &"-o", &extracted]).status.success());
    assert_same_tree(&input, &extracted);
}

#[test]
fn protect_then_repair_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let archive = tmp.path().join("a");
    assert!(run(&[&"pack", &input, &"-o", &archive]).status.success());
    let root = run(&[&"info", &archive, &"--json"]).stdout;
    let o = run(&[&"protect", &archive, &"--parity", &"30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        run(&[&"info", &archive, &"--json"]).stdout,
        root,
        "protect leaves the manifest alone"
    );
    let shard = archive.join("shard-000000.shp");
    let pristine = std::fs::read(&shard).unwrap();
    let mut damaged = pristine.clone();
    damaged[4096 + 100] ^= 0xFF;
    std::fs::write(&shard, &damaged).unwrap();
    let o = run(&[&"verify", &archive, &"--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["recoverable"], true);
    let o = run(&[&"repair", &archive]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("REPAIRED"), "{}", stdout(&o));
    assert_eq!(std::fs::read(&shard).unwrap(), pristine);
    assert_eq!(run(&[&"verify", &archive]).status.code(), Some(0));
    // Without parity there is nothing to repair from.
    let bare = tmp.path().join("bare");
    assert!(run(&[&"pack", &input, &"-o", &bare]).status.success());
    assert_eq!(run(&[&"repair", &bare]).status.code(), Some(2));
    // Optical packs carry parity by default.
    let disc = tmp.path().join("disc");
    assert!(
        run(&[&"pack", &input, &"-o", &disc, &"--profile", &"optical"])
            .status
            .success()
    );
    assert!(disc.join("parity.spp").exists());
}

/// Every file of `dir` with its bytes, sorted by name.
fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn repair_refuses_the_parity_file_of_other_contents_with_the_same_archive_id() {
    // Two packs of different contents, their archive ids forced equal: b's parity file in
    // a is refused by its root (spec §17.5 rule 4), nothing is written, exit 1 (damage:
    // the parity file does not belong to the archive).
    let tmp = tempfile::tempdir().unwrap();
    let (input_a, input_b) = (tmp.path().join("in-a"), tmp.path().join("in-b"));
    make_tree(&input_a);
    make_tree(&input_b);
    std::fs::write(input_b.join("top.txt"), b"not the same").unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let id = "0123456789abcdef0123456789abcdef";
    for (input, out) in [(&input_a, &a), (&input_b, &b)] {
        let o = run(&[&"pack", input, &"-o", out, &"--archive-id", &id]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(&[&"protect", &b, &"--parity", &"100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(b.join("parity.spp"), a.join("parity.spp")).unwrap();
    let shard = a.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[4096 + 10] ^= 0x01;
    std::fs::write(&shard, &bytes).unwrap();
    let before = files_of(&a);
    let o = run(&[&"repair", &a]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("parity file unusable") && stdout(&o).contains("root"),
        "{}",
        stdout(&o)
    );
    assert_eq!(files_of(&a), before, "repair wrote nothing");
}

#[test]
fn protect_refuses_a_damaged_archive_unless_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    let archive = tmp.path().join("a");
    assert!(run(&[&"pack", &input, &"-o", &archive]).status.success());
    let shard = archive.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[4096 + 3] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let o = run(&[&"protect", &archive]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("shard-000000.shp") && err.contains("--as-is"),
        "names what is damaged and the way out: {err}"
    );
    assert!(!archive.join("parity.spp").exists());
    let o = run(&[&"protect", &archive, &"--as-is"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(archive.join("parity.spp").exists());
    let help = stdout(&run(&[&"protect", &"--help"]));
    assert!(help.contains("--as-is"), "{help}");
}

#[test]
fn parity_takes_a_percent_sign_and_refuses_nonsense() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    // par2 users type the percent sign; with or without it, the same parity.
    let with = tmp.path().join("with");
    let o = run(&[&"pack", &input, &"-o", &with, &"--parity", &"10%"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let without = tmp.path().join("without");
    let o = run(&[&"pack", &input, &"-o", &without, &"--parity", &"10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let parity = |dir: &Path| std::fs::read(dir.join("parity.spp")).unwrap();
    assert_eq!(parity(&with), parity(&without));
    let o = run(&[&"protect", &with, &"--parity", &"20%"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Streams carry no parity.
    let o = run(&[&"pack", &input, &"-o", &"-", &"--parity", &"10%"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unstream, then protect"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "nothing is streamed");
    // Negative, not a number, infinite or over the maximum: a usage error, and nothing
    // is written.
    for bad in ["-5", "-5%", "NaN", "inf", "1001", "1e9%", "ten"] {
        let out = tmp.path().join("bad");
        let o = run(&[&"pack", &input, &"-o", &out, &"--parity", &bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("parity percentage"),
            "{bad}: {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{bad}");
    }
}

/// `--dictionary` takes a size or `off`; it once panicked whatever its value, because the
/// argument's type did not match its parser.
#[test]
fn dictionary_option_takes_a_size_or_off() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    make_tree(&input);
    for (value, ok) in [("256K", true), ("off", true), ("64KiB", true), ("1", false)] {
        let out = tmp.path().join(format!("out-{value}"));
        let o = run(&[&"pack", &input, &"-o", &out, &"--dictionary", &value]);
        let code = o.status.code();
        assert!(code.is_some(), "{value}: killed by a signal");
        assert!(!stderr(&o).contains("panicked"), "{value}: {}", stderr(&o));
        if ok {
            assert!(o.status.success(), "{value}: {}", stderr(&o));
            let o = run(&[&"verify", &out]);
            assert!(o.status.success(), "{value}: {}", stderr(&o));
        } else {
            assert_eq!(code, Some(2), "{value}: {}", stderr(&o));
            assert!(!out.exists(), "{value}: nothing left behind");
        }
    }
}

#[test]
fn merge_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_in, b_in) = (tmp.path().join("a-in"), tmp.path().join("b-in"));
    make_tree(&a_in);
    for i in 0..5 {
        let p = b_in.join(format!("more/{i:03}.txt"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("sample {i}")).unwrap();
    }
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (input, out) in [(&a_in, &a), (&b_in, &b)] {
        let o = run(&[&"pack", input, &"-o", out, &"--shard-size", &"8K"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let merged = tmp.path().join("merged");
    let o = run(&[&"merge", &a, &b, &"-o", &merged, &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["samples"], 15);
    assert_eq!(summary["inputs"].as_array().unwrap().len(), 2);
    let o = run(&[&"verify", &"--deep", &merged]);
    assert!(o.status.success(), "{}", stdout(&o));
    // The merged archive extracts to both trees at once.
    let out = tmp.path().join("extracted");
    let o = run(&[&"extract", &merged, &"-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let both = tmp.path().join("both");
    for tree in [&a_in, &b_in] {
        let o = std::process::Command::new("cp")
            .arg("-r")
            .arg(format!("{}/.", tree.display()))
            .arg(&both)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    assert_same_tree(&out, &both);

    // The first input's id: its shards are copied unchanged.
    let info = run(&[&"info", &a, &"--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&stdout(&info)).unwrap()["archive_id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = tmp.path().join("kept");
    let o = run(&[&"merge", &a, &b, &"-o", &kept, &"--archive-id", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(" unchanged)"), "{}", stdout(&o));
    assert_eq!(
        std::fs::read(a.join("shard-000000.shp")).unwrap(),
        std::fs::read(kept.join("shard-000000.shp")).unwrap()
    );

    // The same keys twice: bad input, exit 2, nothing written.
    let twice = tmp.path().join("twice");
    let o = run(&[&"merge", &a, &a, &"-o", &twice]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a key may appear once"),
        "{}",
        stderr(&o)
    );
    assert!(!twice.exists());

    // A damaged input: exit 1, the file named, nothing written.
    let shard = b.join("shard-000000.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[4096 + 64 + 3] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    let broken = tmp.path().join("broken");
    let o = run(&[&"merge", &a, &b, &"-o", &broken]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&*shard.to_string_lossy()),
        "{}",
        stderr(&o)
    );
    assert!(!broken.exists());
}

/// A folder of `n` files named `prefix-NNN.bin`, each `len` bytes of its own noise.
fn numbered_files(root: &Path, prefix: &str, n: u32, len: u32) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..n {
        let data: Vec<u8> = (0..len)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i * 31) >> 9) as u8)
            .collect();
        std::fs::write(root.join(format!("{prefix}-{i:03}.bin")), data).unwrap();
    }
}

#[test]
fn append_to_a_stream_file_and_to_a_split_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    numbered_files(&first, "a", 12, 100_000);
    numbered_files(&second, "b", 8, 100_000);

    let stream = tmp.path().join("s.tape");
    let o = bin()
        .args([
            "pack",
            "--profile",
            "tape",
            "--record-size",
            "64K",
            "--align",
            "64K",
        ])
        .args(["--shard-size", "256K"])
        .arg(&first)
        .args(["-o", "-"])
        .stdout(std::fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        &"append",
        &stream,
        &second,
        &"--checkpoint-every",
        &"2",
        &"--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["generation"], 2);
    assert_eq!(summary["samples"], 20);
    let o = run_with_stdin(&[&"verify", &"-"], &stream);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("generation 2"), "{}", stdout(&o));
    let folder = tmp.path().join("unstreamed");
    let o = run_with_stdin(&[&"unstream", &"-", &"-o", &folder], &stream);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(folder.join("manifest-000001.json").exists());
    assert_eq!(run(&[&"verify", &folder]).status.code(), Some(0));
    let o = run(&[&"ls", &folder, &"--generation", &"1"]);
    assert_eq!(stdout(&o).lines().count(), 12, "{}", stdout(&o));
    // The same samples again: a key repeats, refused, and the stream is unchanged.
    let before = std::fs::read(&stream).unwrap();
    let o = run(&[&"append", &stream, &second]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&stream).unwrap(), before);
    // Refused before anything is read: standard input, parity for a stream, a checkpoint
    // interval for a folder.
    let o = run(&[&"append", &"-", &second]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("stream file"), "{}", stderr(&o));
    let o = run(&[&"append", &stream, &second, &"--parity", &"5"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[&"append", &folder, &second, &"--checkpoint-every", &"2"]);
    assert_eq!(o.status.code(), Some(2));

    let discs = tmp.path().join("discs");
    let o = run(&[
        &"pack",
        &first,
        &"-o",
        &discs,
        &"--profile",
        &"optical",
        &"--volume-size",
        &"16M",
        &"--shard-size",
        &"1M",
        &"--compression",
        &"none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let volumes = std::fs::read_dir(&discs).unwrap().count();
    let o = run(&[&"append", &discs, &second]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_dir(&discs).unwrap().count() > volumes);
    assert_eq!(run(&[&"verify", &discs]).status.code(), Some(0));
    let o = run(&[&"ls", &discs]);
    assert_eq!(stdout(&o).lines().count(), 20, "{}", stdout(&o));
    let o = run(&[&"ls", &discs, &"--generation", &"1"]);
    assert_eq!(stdout(&o).lines().count(), 12, "{}", stdout(&o));
}
