//! The CLI on remote archives (issue #14), against a loopback HTTP server the test starts:
//! `ls`, `info`, `cat`, `verify`, `extract` and `bench` take a URL where they take a folder;
//! `fetch` killed
//! mid-download (SIGKILL) resumes to an archive identical to the source; a wrong
//! `--expect-root` exits 1; `push` uploads an archive that then reads remotely.

#[path = "../../tests/support/http_server.rs"]
mod http_server;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use http_server::Server;

fn shardpack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packs files of pseudo-random bytes into `root/ds`, in shards of 1 MiB.
fn pack(root: &Path, files: u32, size: u32) {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..files {
        // Incompressible (xorshift), so that the shards are as large as the inputs.
        let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(input.join(format!("{i:03}.bin")), data).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shardpack"))
        .args(["pack", "--shard-size", "1M"])
        .arg(&input)
        .arg("-o")
        .arg(root.join("ds"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn folder_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ls_info_cat_and_verify_take_a_url() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 30, 50_000);
    let server = Server::start(tmp.path());
    let url = server.url("ds");
    let local = tmp.path().join("ds");
    let local = local.to_str().unwrap();
    for args in [
        vec!["ls"],
        vec!["ls", "--long"],
        vec!["info", "--json"],
        vec!["cat", "003", "-f", "bin"],
    ] {
        let mut remote_args = args.clone();
        remote_args.insert(1, &url);
        let mut local_args = args.clone();
        local_args.insert(1, local);
        let (r, l) = (shardpack(&remote_args), shardpack(&local_args));
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_eq!(r.stdout, l.stdout, "{args:?}");
    }
    let v = shardpack(&["verify", &url]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).starts_with("OK"), "{}", text(&v));
    // A byte flipped on the server's disk: verify over the network finds it, by URL.
    let shard = tmp.path().join("ds/shard-000001.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let v = shardpack(&["verify", &url]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains(&format!("{url}/shard-000001.shp")),
        "{}",
        text(&v)
    );
}

#[test]
fn a_cache_dir_serves_a_second_command_without_requests() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 6, 50_000);
    let server = Server::start(tmp.path());
    let url = server.url("ds");
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().unwrap();
    let cat = [
        "--cache-dir",
        cache,
        "--cache-size",
        "64M",
        "cat",
        &url,
        "003",
        "-f",
        "bin",
    ];
    let first = shardpack(&cat);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout.len(), 50_000);
    let gets = || server.gets.load(std::sync::atomic::Ordering::Relaxed);
    let before = gets();
    let again = shardpack(&cat);
    assert_eq!(again.stdout, first.stdout);
    // The manifest's GET only: the shard's bytes came from the cache folder.
    assert_eq!(gets() - before, 1);
    let v = shardpack(&["verify", &url, "--cache-dir", cache]);
    assert!(text(&v).starts_with("OK"), "{}", text(&v));
    let size_alone = shardpack(&["--cache-size", "1M", "ls", &url]);
    assert_eq!(
        size_alone.status.code(),
        Some(2),
        "--cache-size needs --cache-dir"
    );
}

#[test]
fn fetch_with_a_wrong_root_exits_1_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 4, 50_000);
    let server = Server::start(tmp.path());
    let dest = tmp.path().join("copy");
    let out = shardpack(&[
        "fetch",
        &server.url("ds"),
        "-o",
        dest.to_str().unwrap(),
        "--expect-root",
        &"ab".repeat(32),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.join("manifest.json").exists());
}

#[test]
fn a_killed_fetch_resumes_to_an_identical_verified_archive() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 40, 200_000);
    let source = tmp.path().join("ds");
    let root = {
        let out = shardpack(&["info", "--json", source.to_str().unwrap()]);
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        m["root"].as_str().unwrap().to_string()
    };
    let server = Server::start(tmp.path());
    // Slow answers, so that the kill lands mid-download.
    server.faults().delay = Some(Duration::from_millis(100));
    let dest = tmp.path().join("copy");
    let url = server.url("ds");
    let mut killed = 0;
    for wait_ms in [150u64, 450, 800] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardpack"))
            .args([
                "fetch",
                &url,
                "-o",
                dest.to_str().unwrap(),
                "--expect-root",
                &root,
            ])
            .args(["--request-size", "128K"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Never a partial shard under a finished name, never a manifest before the end.
        if dest.exists() {
            let report = shardpack_lib_verify(&dest);
            if dest.join("manifest.json").exists() {
                assert!(report, "a manifest means a whole archive");
            }
            for (name, bytes) in folder_files(&dest) {
                if let Ok(orig) = std::fs::read(source.join(&name)) {
                    assert_eq!(bytes, orig, "{name} is under its finished name, so whole");
                }
            }
        }
    }
    assert!(killed > 0, "no fetch was killed: the test proves nothing");
    server.faults().delay = None;
    let out = shardpack(&[
        "fetch",
        &url,
        "-o",
        dest.to_str().unwrap(),
        "--expect-root",
        &root,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("OK"), "{}", text(&out));
    eprintln!("final fetch: {}", text(&out));
    assert!(
        !text(&out).contains(" 0 already there, 0 resumed"),
        "the last fetch reused nothing of the killed ones: {}",
        text(&out)
    );
    let left: Vec<_> = folder_files(&dest)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".partial"))
        .collect();
    assert!(
        left.is_empty(),
        "partials left: {:?}",
        left.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    assert_eq!(folder_files(&dest), folder_files(&source));
    let v = shardpack(&["verify", dest.to_str().unwrap(), "--expect-root", &root]);
    assert!(v.status.success(), "{}", text(&v));
}

fn shardpack_lib_verify(dir: &Path) -> bool {
    shardpack::verify(dir, &Default::default()).is_ok_and(|r| r.is_ok() && r.complete)
}

#[test]
fn push_then_read_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 6, 50_000);
    let served = tempfile::tempdir().unwrap();
    let server = Server::start(served.path());
    let url = server.url("up/ds");
    let out = shardpack(&["push", tmp.path().join("ds").to_str().unwrap(), &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        folder_files(&served.path().join("up/ds")),
        folder_files(&tmp.path().join("ds"))
    );
    let v = shardpack(&["verify", &url]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn extract_of_a_url_writes_the_files_extract_of_the_folder_writes() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 30, 50_000);
    let server = Server::start(tmp.path());
    let (remote_out, local_out) = (tmp.path().join("from-url"), tmp.path().join("from-dir"));
    let r = shardpack(&[
        "extract",
        &server.url("ds"),
        "-o",
        remote_out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let l = shardpack(&[
        "extract",
        tmp.path().join("ds").to_str().unwrap(),
        "-o",
        local_out.to_str().unwrap(),
    ]);
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    assert_eq!(folder_files(&remote_out), folder_files(&local_out));
    assert_eq!(
        folder_files(&remote_out),
        folder_files(&tmp.path().join("in"))
    );

    // A byte flipped on the server: that file is reported by its URL, the others written.
    let shard = tmp.path().join("ds/shard-000001.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let damaged_out = tmp.path().join("damaged");
    let d = shardpack(&[
        "extract",
        &server.url("ds"),
        "-o",
        damaged_out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&d.stderr);
    assert_eq!(d.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}/shard-000001.shp", server.url("ds"))),
        "{stderr}"
    );
    let written = folder_files(&damaged_out);
    assert!(
        !written.is_empty() && written.len() < 30,
        "{} files",
        written.len()
    );
    for (name, data) in written {
        assert_eq!(
            data,
            std::fs::read(tmp.path().join("in").join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn bench_reads_a_url_as_it_reads_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), 30, 50_000);
    let server = Server::start(tmp.path());
    let url = server.url("ds");
    for args in [
        vec!["--pattern", "random", "--samples", "20"],
        vec!["--pattern", "sequential"],
        vec!["--pattern", "sequential", "--no-model"],
    ] {
        let mut all = vec!["bench", url.as_str(), "--json"];
        all.extend(&args);
        let out = shardpack(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["archive"], url.as_str(), "{args:?}");
        assert_eq!(report["archive_samples"], 30, "{args:?}");
        let measured = &report["measured"];
        let want = if args[1] == "random" { 20 } else { 30 };
        assert_eq!(measured["samples"], want, "{args:?}: {report}");
        // A sequential run reads every byte of the 30 files.
        if args[1] == "sequential" {
            assert_eq!(measured["payload_bytes"], 30 * 50_000, "{args:?}");
        }
        // A URL's reads are GETs through caches, no drive's requests: measured only.
        let modelled = report["modelled"].as_array().unwrap();
        assert!(modelled.is_empty(), "{args:?}: {report}");
        assert!(measured["file_bytes_read"].is_null(), "{args:?}: {report}");
    }
    // Bytes damaged on the server stop the run with exit status 1, naming the URL.
    let shard = tmp.path().join("ds/shard-000001.shp");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let out = shardpack(&["bench", &url, "--pattern", "sequential", "--no-model"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{url}/shard-000001.shp")),
        "{stderr}"
    );
}
